/// When a user's cancel of a running task is (re-)sent to the dispatchers (README "How it behaves under faults": cancel).
///
/// A pending task is canceled at once in SQL (`TaskStore.requestCancel`); a running one must be canceled at Replicate, and
/// a cancel can only name a prediction once its id is recorded: so a cancel requested while the create was in flight is
/// sent when the prediction is recorded, and one that Replicate has not confirmed is sent again by the scheduler's sweep.
public enum CancelDecision {
    public enum Action: Sendable, Equatable {
        /// Publish a cancel command for the task's current attempt; a dispatcher calls Replicate.
        case sendCancel
        case nothing
    }

    /// How long a requested cancel may go unconfirmed (the task still `processing`, unchanged) before it is sent again.
    public static let resendAfter: Duration = .seconds(5)

    /// The scheduler got the gateway's cancel command. `task` is the row after `requestCancel` (nil: gone).
    public static func cancelRequested(task: TaskSnapshot?) -> Action {
        guard let task, task.status.holdsSlot, task.cancelRequestedAt != nil else { return .nothing }
        return .sendCancel
    }

    /// A prediction id was just recorded on `task` (its create answered, or its first webhook arrived): a cancel
    /// requested while the create was in flight now has a prediction to cancel.
    public static func predictionRecorded(task: TaskSnapshot) -> Action {
        task.cancelRequestedAt != nil ? .sendCancel : .nothing
    }
}
