import Foundation

/// The queue-ordering formula (ARCHITECTURE.md "Priority"). Higher runs first; ties go to the older task.
public enum Priority {
    /// Points per retry, so a task that already waited and failed is not sent to the back of the queue.
    public static let retryBonus = 10
    /// Prompt-length points are capped so a long prompt cannot outrank a higher tier.
    public static let maxPromptBonus = 10

    /// tier bonus + 10 per retry + min(floor(promptLength / 100), 10). `promptLength` counts Characters.
    ///
    /// Negative inputs count as zero; the retry term saturates instead of overflowing.
    public static func base(tier: Tier, retryCount: Int, promptLength: Int) -> Int {
        let retries = max(0, retryCount)
        let (retryPoints, overflow) = retries.multipliedReportingOverflow(by: Self.retryBonus)
        let promptPoints = min(max(0, promptLength) / 100, Self.maxPromptBonus)
        if overflow {
            return Int.max
        }
        let (sum, sumOverflow) = (tier.priorityBonus + promptPoints).addingReportingOverflow(retryPoints)
        return sumOverflow ? Int.max : sum
    }

    /// base + floor(waitedSeconds / agingSeconds) when agingSeconds > 0, else base.
    ///
    /// A negative wait (clock skew between replicas) adds nothing; the result saturates at `Int.max`.
    public static func effective(base: Int, waitedSeconds: Double, agingSeconds: Int) -> Int {
        guard agingSeconds > 0, waitedSeconds.isFinite, waitedSeconds > 0 else {
            return base
        }
        let points = (waitedSeconds / Double(agingSeconds)).rounded(.down)
        // Doubles at or beyond 2^63 cannot convert to Int.
        guard points < 9.0e18 else {
            return Int.max
        }
        let (sum, overflow) = base.addingReportingOverflow(Int(points))
        return overflow ? Int.max : sum
    }
}

/// A pending task as the dispatch order sees it: what `Priority.runsBefore` compares.
public struct QueuedTask: Sendable, Equatable {
    public var id: UUID
    /// The stored priority (`Priority.base` at admission, plus `retryBonus` per retry).
    public var priority: Int
    public var createdAt: Date

    public init(id: UUID, priority: Int, createdAt: Date) {
        self.id = id
        self.priority = priority
        self.createdAt = createdAt
    }
}

extension Priority {
    /// The dispatch order (ARCHITECTURE.md "Priority"): higher effective priority first, then the older task, then the
    /// smaller id (PostgreSQL's uuid order, so that the order is total). The SQL rank of `TaskStore` (`claimForDispatch`,
    /// `queuePosition`) is this rule; `DispatchOrderTests` checks that both order the same rows the same way.
    public static func runsBefore(_ a: QueuedTask, _ b: QueuedTask, now: Date, agingSeconds: Int) -> Bool {
        let rankA = Self.effective(base: a.priority, waitedSeconds: now.timeIntervalSince(a.createdAt), agingSeconds: agingSeconds)
        let rankB = Self.effective(base: b.priority, waitedSeconds: now.timeIntervalSince(b.createdAt), agingSeconds: agingSeconds)
        if rankA != rankB { return rankA > rankB }
        if a.createdAt != b.createdAt { return a.createdAt < b.createdAt }
        // uuid_cmp compares the 16 bytes; the canonical hex text, hyphens at fixed places, sorts the same way.
        return a.id.uuidString.lowercased() < b.id.uuidString.lowercased()
    }
}
