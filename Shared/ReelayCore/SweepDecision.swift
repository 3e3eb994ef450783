/// The scheduler's decisions about what its sweeps find and what the events it hears ask for. The sweeps are how
/// "never leak a slot" holds when a message is lost or a process dies: every row that holds a slot is either advanced
/// by an event or found by a sweep within a bounded time, and the sweep's action moves it on.
///
/// Which rows are found is SQL (`TaskStore.expiredLeases`, `unconfirmedCancels`, `staleProcessing`); what is done with
/// each is decided here. `Scheduler` runs the action: publishes the command.
public enum SweepDecision {
    /// What a sweep found a task to be.
    public enum Finding: Sendable, Equatable, CaseIterable {
        /// `dispatching` past its lease: its dispatcher died, or its command was lost.
        case expiredLease
        /// `processing` with a cancel requested and not confirmed for `CancelDecision.resendAfter`.
        case unconfirmedCancel
        /// `processing` with no news for `PROCESSING_RECONCILE_SECONDS`: its terminal webhook may be lost.
        case silentPrediction
    }

    public enum Action: Sendable, Equatable {
        /// Send the create command again: no create was attempted, so sending it cannot run the task twice.
        case resendCreate
        /// Ask a dispatcher to find out what became of the prediction (a get, or a search when no id is recorded).
        case reconcile
        /// Send the cancel again (cancel is idempotent at Replicate).
        case resendCancel
        /// Run a scheduling pass: a slot may be free or work may be queued.
        case runPass
        case nothing
    }

    /// What to do with a task a sweep found.
    public static func swept(_ finding: Finding, task: TaskSnapshot) -> Action {
        switch finding {
        case .expiredLease:
            // A create was attempted: its outcome is unknown, so the prediction is looked for before anything else.
            task.createAttemptedAt == nil ? .resendCreate : .reconcile
        case .unconfirmedCancel:
            .resendCancel
        case .silentPrediction:
            .reconcile
        }
    }

    /// A task event was heard: anything that is not a move into a slot may have freed one or queued work.
    public static func taskEvent(status: TaskStatus) -> Action {
        status == .dispatching || status == .processing ? .nothing : .runPass
    }
}
