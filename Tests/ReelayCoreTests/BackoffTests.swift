import ReelayCore
import ReelayTestSupport
import Testing

@Suite("Backoff")
struct BackoffTests {
    @Test func defaults() {
        #expect(Backoff() == Backoff(base: .seconds(2), cap: .seconds(300)))
    }

    /// Invariant: the ceiling doubles from base and stops at cap.
    @Test(arguments: [(0, 2), (1, 4), (2, 8), (3, 16), (6, 128), (7, 256), (8, 300), (20, 300)])
    func ceilingDoublesUntilCap(retry: Int, seconds: Int64) {
        #expect(Backoff().ceiling(retry: retry) == .seconds(seconds))
    }

    /// Invariant: big retry numbers neither overflow nor exceed the cap.
    @Test(arguments: [63, 64, 100, 1000, Int.max])
    func noOverflowForHugeRetries(retry: Int) {
        #expect(Backoff().ceiling(retry: retry) == .seconds(300))
        var rng = SeededGenerator(state: 7)
        #expect(Backoff().delay(retry: retry, using: &rng) <= .seconds(300))
    }

    @Test func negativeRetryIsRetryZero() {
        #expect(Backoff().ceiling(retry: -4) == .seconds(2))
    }

    /// Invariant: every delay lies in [0, ceiling], over many draws and retries.
    @Test func delayNeverAboveCeiling() {
        let backoff = Backoff(base: .milliseconds(250), cap: .seconds(10))
        var rng = SeededGenerator(state: 42)
        for retry in 0...12 {
            let ceiling = backoff.ceiling(retry: retry)
            var largest = Duration.zero
            var smallest = ceiling
            for _ in 0..<500 {
                let delay = backoff.delay(retry: retry, using: &rng)
                #expect(delay >= .zero)
                #expect(delay <= ceiling)
                largest = max(largest, delay)
                smallest = min(smallest, delay)
            }
            // Full jitter uses the whole range: 500 uniform draws reach both outer tenths with overwhelming probability.
            #expect(largest > ceiling * 9 / 10)
            #expect(smallest < ceiling / 10)
        }
    }

    @Test func capBelowBaseWins() {
        let backoff = Backoff(base: .seconds(10), cap: .seconds(3))
        #expect(backoff.ceiling(retry: 0) == .seconds(3))
        var rng = SeededGenerator(state: 1)
        #expect(backoff.delay(retry: 0, using: &rng) <= .seconds(3))
    }

    @Test func zeroBaseMeansNoDelay() {
        var rng = SeededGenerator(state: 1)
        #expect(Backoff(base: .zero, cap: .seconds(3)).ceiling(retry: 1000) == .zero)
        #expect(Backoff(base: .zero, cap: .seconds(3)).delay(retry: 5, using: &rng) == .zero)
    }
}
