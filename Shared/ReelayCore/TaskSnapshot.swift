import Foundation

/// What a worker's decision needs to know of a task, read from its row just before deciding.
///
/// A plain value, so each decision (`DispatchDecision`, `WebhookDecision`, `SweepDecision`, `CancelDecision`) is a pure
/// function of it, of what Replicate or the broker said, and of the time; the services only read rows and run actions.
public struct TaskSnapshot: Sendable, Equatable {
    public var id: UUID
    public var status: TaskStatus
    /// The fencing token: every dispatch increments it, and anything meant for another attempt changes nothing.
    public var attempt: Int
    public var retryCount: Int
    /// The prediction recorded for this attempt, nil until the create's answer (or its webhook) is recorded.
    public var replicateTaskID: String?
    /// Set before a create is sent: from then on the create may exist at Replicate and is never sent again.
    public var createAttemptedAt: Date?
    public var cancelRequestedAt: Date?
    public var dispatchedAt: Date?
    public var createdAt: Date

    public init(
        id: UUID, status: TaskStatus, attempt: Int, retryCount: Int = 0, replicateTaskID: String? = nil,
        createAttemptedAt: Date? = nil, cancelRequestedAt: Date? = nil, dispatchedAt: Date? = nil, createdAt: Date
    ) {
        self.id = id
        self.status = status
        self.attempt = attempt
        self.retryCount = retryCount
        self.replicateTaskID = replicateTaskID
        self.createAttemptedAt = createAttemptedAt
        self.cancelRequestedAt = cancelRequestedAt
        self.dispatchedAt = dispatchedAt
        self.createdAt = createdAt
    }
}

/// What Replicate answered one call (create, get or cancel), as the decisions see it.
public enum ReplicateCallResult: Sendable, Equatable {
    /// 2xx with a prediction body.
    case prediction(ReplicatePrediction)
    /// Replicate answered with an error status, classified.
    case refused(ReplicateOutcomeClass, status: Int)
    /// No usable answer. `mayHaveBeenSent`: Replicate may have acted on the request (an ambiguous create).
    case unreachable(String, mayHaveBeenSent: Bool)

    /// The HTTP status Replicate answered with, when it answered with an error.
    public var refusedStatus: Int? {
        guard case .refused(_, let status) = self else { return nil }
        return status
    }
}

extension Duration {
    /// Whole and fractional seconds, as the reasons in task histories print them ("10.0 s").
    var secondsInReasons: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
