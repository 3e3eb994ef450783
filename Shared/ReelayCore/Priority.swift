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
