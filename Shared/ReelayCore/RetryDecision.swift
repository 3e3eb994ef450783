/// What a transient failure of an attempt does to its task (ARCHITECTURE.md "Retries"): back to `pending` with
/// exponential backoff and full jitter, slot released, a retry counted and `Priority.retryBonus` added; or `failed` once
/// `MAX_RETRIES` retries are spent. `TaskStore.retryOrFail` applies it.
public enum RetryDecision: Sendable, Equatable {
    /// Back to pending, eligible again `after` from now.
    case retry(after: Duration, reason: String, message: String, priorityBonus: Int)
    /// Retries spent: fail with this history reason and error message.
    case giveUp(reason: String, message: String)

    /// - Parameters:
    ///   - retryCount: the retries the task has had so far.
    ///   - reason: why this attempt failed, as a user reads it.
    ///   - atLeast: the least wait (a 429's reset): the backoff never sends the task back sooner.
    public static func decide<R: RandomNumberGenerator>(
        retryCount: Int, maxRetries: Int, reason: String, backoff: Backoff, atLeast: Duration?, using rng: inout R
    ) -> RetryDecision {
        if retryCount >= maxRetries {
            return .giveUp(
                reason: "retries exhausted (\(maxRetries)): \(reason)", message: "Gave up after \(maxRetries) retries: \(reason)")
        }
        let delay = max(backoff.delay(retry: retryCount, using: &rng), atLeast ?? .zero)
        return .retry(
            after: delay, reason: "retry \(retryCount + 1) of \(maxRetries) in \(delay.secondsInReasons) s: \(reason)", message: reason,
            priorityBonus: Priority.retryBonus)
    }
}
