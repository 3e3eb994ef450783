/// The lifecycle state of a video task (ARCHITECTURE.md "Task lifecycle"); raw values are the database/API spelling.
public enum TaskStatus: String, Sendable, Codable, CaseIterable {
    case pending, dispatching, processing, completed, failed, canceled, rejected

    /// Whether the task has reached its one final state; nothing leaves a terminal state.
    public var isTerminal: Bool {
        switch self {
        case .completed, .failed, .canceled, .rejected: true
        case .pending, .dispatching, .processing: false
        }
    }

    /// Whether the task occupies one of the `MAX_CONCURRENT_TASKS` global slots.
    public var holdsSlot: Bool {
        switch self {
        case .dispatching, .processing: true
        case .pending, .completed, .failed, .canceled, .rejected: false
        }
    }

    /// Whether the task counts toward the per-user `MAX_USER_ACTIVE_TASKS` limit.
    public var isActive: Bool {
        switch self {
        case .pending, .dispatching, .processing: true
        case .completed, .failed, .canceled, .rejected: false
        }
    }
}

/// The legal edges of the task state machine.
public enum TaskTransition {
    /// Whether a task may move from `from` to `to` (ARCHITECTURE.md "Task lifecycle").
    ///
    /// `from == nil` is a new submission (legal targets: pending, rejected). dispatching->completed/failed/canceled are legal
    /// because a terminal webhook can overtake the dispatcher's record of the prediction. Nothing leaves a terminal state,
    /// and same-state is not a transition.
    public static func isAllowed(from: TaskStatus?, to: TaskStatus) -> Bool {
        guard let from else {
            return to == .pending || to == .rejected
        }
        switch from {
        case .pending:
            return to == .dispatching || to == .canceled || to == .failed
        case .dispatching:
            return to == .processing || to == .pending || to == .completed || to == .failed || to == .canceled
        case .processing:
            return to == .completed || to == .failed || to == .canceled || to == .pending
        case .completed, .failed, .canceled, .rejected:
            return false
        }
    }
}
