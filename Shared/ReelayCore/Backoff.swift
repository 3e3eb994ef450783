/// Exponential backoff with full jitter for retries of transient failures.
public struct Backoff: Sendable, Equatable {
    /// The ceiling of the first retry (retry 0).
    public var base: Duration
    /// The largest ceiling, whatever the retry number.
    public var cap: Duration

    public init(base: Duration = .seconds(2), cap: Duration = .seconds(300)) {
        self.base = base
        self.cap = cap
    }

    /// Full jitter: uniform in [0, min(cap, base * 2^retry)]. retry starts at 0.
    ///
    /// Full jitter spreads retries of many tasks that failed together (a Replicate outage) instead of synchronising them.
    public func delay<R: RandomNumberGenerator>(retry: Int, using rng: inout R) -> Duration {
        let ceiling = Self.nanoseconds(of: self.ceiling(retry: retry))
        guard ceiling > 0 else {
            return .zero
        }
        return .nanoseconds(Int64.random(in: 0...ceiling, using: &rng))
    }

    /// min(cap, base * 2^retry); negative retries count as 0 and big retries never overflow.
    public func ceiling(retry: Int) -> Duration {
        guard self.cap > .zero, self.base > .zero else {
            return .zero
        }
        var value = self.base
        var remaining = max(0, retry)
        // Doubling a positive Duration passes any cap within ~128 steps, so the loop is short even for huge retries.
        while remaining > 0 {
            if value > self.cap / 2 {
                return self.cap
            }
            value = value * 2
            remaining -= 1
        }
        return min(value, self.cap)
    }

    /// Whole nanoseconds of a non-negative duration, saturating at `Int64.max`.
    static func nanoseconds(of duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else {
            return 0
        }
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow {
            return Int64.max
        }
        let (sum, sumOverflow) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        return sumOverflow ? Int64.max : sum
    }
}
