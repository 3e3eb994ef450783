import ReelayCore
import Testing

@Suite("Priority")
struct PriorityTests {
    /// Invariant: tier bonuses are pro 200, premium 100, free 0.
    @Test(arguments: [(Tier.free, 0), (Tier.premium, 100), (Tier.pro, 200)])
    func tierBonus(tier: Tier, expected: Int) {
        #expect(tier.priorityBonus == expected)
        #expect(Priority.base(tier: tier, retryCount: 0, promptLength: 0) == expected)
    }

    /// Invariant: each retry adds exactly 10 points.
    @Test(arguments: 0...5)
    func retriesAddTenEach(retries: Int) {
        #expect(Priority.base(tier: .free, retryCount: retries, promptLength: 50) == 10 * retries)
        #expect(Priority.base(tier: .premium, retryCount: retries, promptLength: 50) == 100 + 10 * retries)
    }

    /// Invariant: the prompt adds floor(length / 100), capped at 10.
    @Test(arguments: [(0, 0), (99, 0), (100, 1), (199, 1), (250, 2), (999, 9), (1000, 10), (1099, 10), (2000, 10), (50_000, 10)])
    func promptLengthIsFlooredAndCapped(length: Int, expected: Int) {
        #expect(Priority.base(tier: .free, retryCount: 0, promptLength: length) == expected)
    }

    @Test func allTermsAdd() {
        #expect(Priority.base(tier: .pro, retryCount: 2, promptLength: 345) == 200 + 20 + 3)
    }

    /// A higher tier always outranks a lower one with the longest prompt and no retries.
    @Test func promptCannotOutrankTier() {
        #expect(Priority.base(tier: .premium, retryCount: 0, promptLength: 0) > Priority.base(tier: .free, retryCount: 0, promptLength: 5000))
    }

    @Test func negativeInputsCountAsZero() {
        #expect(Priority.base(tier: .premium, retryCount: -3, promptLength: -500) == 100)
    }

    @Test func hugeRetryCountSaturates() {
        #expect(Priority.base(tier: .pro, retryCount: Int.max, promptLength: 0) == Int.max)
    }

    /// Invariant: aging adds one point per full PRIORITY_AGING_SECONDS waited.
    @Test(arguments: [(0.0, 0), (29.9, 0), (30.0, 1), (59.99, 1), (60.0, 2), (3000.0, 100)])
    func agingAddsAPointPerPeriod(waited: Double, points: Int) {
        #expect(Priority.effective(base: 110, waitedSeconds: waited, agingSeconds: 30) == 110 + points)
    }

    /// Invariant: PRIORITY_AGING_SECONDS = 0 disables aging.
    @Test func agingZeroIsOff() {
        #expect(Priority.effective(base: 42, waitedSeconds: 1_000_000, agingSeconds: 0) == 42)
        #expect(Priority.effective(base: 42, waitedSeconds: 1_000_000, agingSeconds: -5) == 42)
    }

    @Test func negativeOrNonFiniteWaitAddsNothing() {
        #expect(Priority.effective(base: 7, waitedSeconds: -100, agingSeconds: 1) == 7)
        #expect(Priority.effective(base: 7, waitedSeconds: .nan, agingSeconds: 1) == 7)
        #expect(Priority.effective(base: 7, waitedSeconds: .infinity, agingSeconds: 1) == 7)
    }

    @Test func agingSaturatesInsteadOfTrapping() {
        #expect(Priority.effective(base: 7, waitedSeconds: 1e300, agingSeconds: 1) == Int.max)
        #expect(Priority.effective(base: Int.max - 1, waitedSeconds: 100, agingSeconds: 1) == Int.max)
    }

    /// Aging lets a long-waiting free task overtake a newly submitted premium one, so nobody starves.
    @Test func agingPreventsStarvation() {
        let free = Priority.base(tier: .free, retryCount: 0, promptLength: 0)
        let premium = Priority.base(tier: .premium, retryCount: 0, promptLength: 0)
        #expect(Priority.effective(base: free, waitedSeconds: 101 * 10, agingSeconds: 10) > Priority.effective(
            base: premium, waitedSeconds: 0, agingSeconds: 10))
    }
}
