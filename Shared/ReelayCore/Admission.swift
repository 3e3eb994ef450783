/// The two admission limits (ARCHITECTURE.md "Admission").
public struct AdmissionLimits: Sendable, Equatable {
    /// Most pending + dispatching + processing tasks one user may have (`MAX_USER_ACTIVE_TASKS`).
    public var maxUserActiveTasks: Int
    /// Most pending tasks in the whole queue (`MAX_QUEUE_SIZE`).
    public var maxQueueSize: Int

    public init(maxUserActiveTasks: Int = 3, maxQueueSize: Int = 1000) {
        self.maxUserActiveTasks = maxUserActiveTasks
        self.maxQueueSize = maxQueueSize
    }
}

/// The scheduler's verdict on one submission.
public enum AdmissionDecision: Sendable, Equatable {
    case admit
    /// The user already has `limit` active tasks.
    case userLimit(limit: Int)
    /// The queue already holds `limit` pending tasks.
    case queueFull(limit: Int)

    /// The reason shown to the user; nil for `admit`.
    public var message: String? {
        switch self {
        case .admit:
            return nil
        case .userLimit(let limit):
            return "You can only have \(limit) video tasks in progress at once"
        case .queueFull(let limit):
            return "The queue is full (\(limit) tasks waiting); try again in a few minutes"
        }
    }

    /// The HTTP status the gateway answers with: 202, 429 (the user can act), 503 (the service is saturated).
    public var httpStatus: Int {
        switch self {
        case .admit: 202
        case .userLimit: 429
        case .queueFull: 503
        }
    }
}

/// The admission rule, evaluated by the scheduler inside the transaction that persists the task.
public enum Admission {
    /// userActive: the user's pending+dispatching+processing tasks; queuePending: all pending tasks.
    ///
    /// The user limit is checked first because it is the one the user can do something about.
    public static func decide(userActive: Int, queuePending: Int, limits: AdmissionLimits) -> AdmissionDecision {
        if userActive >= limits.maxUserActiveTasks {
            return .userLimit(limit: limits.maxUserActiveTasks)
        }
        if queuePending >= limits.maxQueueSize {
            return .queueFull(limit: limits.maxQueueSize)
        }
        return .admit
    }
}

/// Global concurrency arithmetic; "running" is always derived from rows, never kept in a counter.
public enum Slots {
    /// How many more tasks may start now; never negative, even when `running` exceeds the limit after it was lowered.
    public static func free(running: Int, maxConcurrent: Int) -> Int {
        let (difference, overflow) = maxConcurrent.subtractingReportingOverflow(running)
        if overflow {
            return running < 0 ? Int.max : 0
        }
        return max(0, difference)
    }
}
