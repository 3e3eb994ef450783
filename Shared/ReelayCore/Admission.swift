import Foundation

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
    /// The submission itself cannot be stored (the database refused its data, or its user does not exist): sending it
    /// again unchanged never helps. `reason` says what is wrong and what to do, for the user.
    case invalid(reason: String)

    /// The reason shown to the user; nil for `admit`.
    public var message: String? {
        switch self {
        case .admit:
            return nil
        case .userLimit(let limit):
            return "You can only have \(limit) video tasks in progress at once"
        case .queueFull(let limit):
            return "The queue is full (\(limit) tasks waiting); try again in a few minutes"
        case .invalid(let reason):
            return "The submission cannot be accepted: \(reason)"
        }
    }

    /// The HTTP status the gateway answers with: 202, 429 (the user can act), 503 (the service is saturated), 422 (the
    /// submission must change).
    public var httpStatus: Int {
        switch self {
        case .admit: 202
        case .userLimit: 429
        case .queueFull: 503
        case .invalid: 422
        }
    }

    /// The refusal counter's key for this decision ("user_limit", "queue_full", "invalid"); nil for `admit`.
    public var refusalReason: String? {
        switch self {
        case .admit: nil
        case .userLimit: "user_limit"
        case .queueFull: "queue_full"
        case .invalid: "invalid"
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

    /// Whether a refusal decided at `decidedAt` must be kept as a `rejected` row rather than only counted: when the
    /// gateway may already have answered 202 "submitted" (it waits until `replyBy` for the verdict), the user can only
    /// learn the outcome by reading the task. `margin` covers the commit, the way back to the gateway and clock skew.
    /// Without a deadline (a command from an older gateway) the row is always kept.
    public static func mustKeepRefusal(replyBy: Date?, decidedAt: Date, margin: Duration) -> Bool {
        guard let replyBy else { return true }
        return decidedAt >= replyBy.addingTimeInterval(-margin.timeInterval)
    }

    /// What to tell a user whose submission the database refused as data (SQLSTATE class 22, 23 or 54): what was wrong and
    /// what to do. Never the server's own text, which may quote values or name the schema.
    public static func invalidReason(sqlState: String?) -> String {
        switch sqlState {
        case "22021", "22P05":
            return "it contains a NUL character (\\u0000), which cannot be stored; remove it from the prompt, the image URL "
                + "and the input values, then submit again"
        case "22001", "54000":
            return "a value is too long to store; shorten the prompt, the input values or the Idempotency-Key, then submit again"
        case "22003":
            return "a number in the input is out of range; use a smaller value, then submit again"
        case "22P02", "22007", "22008", "22023":
            return "a value has a form that cannot be stored; check the input values, then submit again"
        case let state? where state.hasPrefix("23"):
            return "it conflicts with stored data (for example a reused Idempotency-Key); submit it with a new Idempotency-Key"
        default:
            return "a value cannot be stored; check the prompt and the input values, then submit again"
        }
    }

    /// The reason given when the submitting user does not exist (any more).
    public static let unknownUserReason =
        "the submitting user is not known (its API key may have been removed); ask an operator for a new key"
}

extension Duration {
    /// Seconds as a `TimeInterval`, for `Date` arithmetic.
    var timeInterval: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) + Double(attoseconds) / 1e18
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
