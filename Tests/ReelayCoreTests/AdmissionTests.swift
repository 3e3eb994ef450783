import ReelayCore
import Testing

@Suite("Admission")
struct AdmissionTests {
    let limits = AdmissionLimits(maxUserActiveTasks: 3, maxQueueSize: 1000)

    @Test func defaultsMatchTheArchitecture() {
        #expect(AdmissionLimits() == AdmissionLimits(maxUserActiveTasks: 3, maxQueueSize: 1000))
    }

    /// Invariant: a user below the limit, with a queue below its limit, is admitted.
    @Test(arguments: [(0, 0), (2, 0), (0, 999), (2, 999)])
    func underBothLimitsAdmits(userActive: Int, queuePending: Int) {
        let decision = Admission.decide(userActive: userActive, queuePending: queuePending, limits: self.limits)
        #expect(decision == .admit)
        #expect(decision.message == nil)
        #expect(decision.httpStatus == 202)
    }

    /// Invariant: at or over MAX_USER_ACTIVE_TASKS the user is refused with 429 and the configured number.
    @Test(arguments: [3, 4, 50])
    func atOrOverUserLimitRefuses(userActive: Int) throws {
        let decision = Admission.decide(userActive: userActive, queuePending: 0, limits: self.limits)
        #expect(decision == .userLimit(limit: 3))
        #expect(decision.httpStatus == 429)
        let message = try #require(decision.message)
        #expect(message == "You can only have 3 video tasks in progress at once")
    }

    /// Invariant: at or over MAX_QUEUE_SIZE pending tasks the submission is refused with 503 and the configured number.
    @Test(arguments: [1000, 1001, 5000])
    func atOrOverQueueLimitRefuses(queuePending: Int) throws {
        let decision = Admission.decide(userActive: 0, queuePending: queuePending, limits: self.limits)
        #expect(decision == .queueFull(limit: 1000))
        #expect(decision.httpStatus == 503)
        let message = try #require(decision.message)
        #expect(message == "The queue is full (1000 tasks waiting); try again in a few minutes")
    }

    @Test func messagesUseTheConfiguredNumbers() throws {
        let custom = AdmissionLimits(maxUserActiveTasks: 7, maxQueueSize: 42)
        let user = try #require(Admission.decide(userActive: 7, queuePending: 0, limits: custom).message)
        let queue = try #require(Admission.decide(userActive: 0, queuePending: 42, limits: custom).message)
        #expect(user.contains("7"))
        #expect(queue.contains("42"))
        #expect(Admission.decide(userActive: 6, queuePending: 41, limits: custom) == .admit)
    }

    /// When both limits are hit, the user's own limit is reported: it is the one the user can act on.
    @Test func userLimitWinsOverQueueLimit() {
        #expect(Admission.decide(userActive: 3, queuePending: 1000, limits: self.limits) == .userLimit(limit: 3))
    }

    /// Invariant: free slots are max(0, limit - running), never negative.
    @Test(arguments: [(0, 5, 5), (3, 5, 2), (5, 5, 0), (8, 5, 0), (0, 0, 0), (Int.max, 5, 0), (Int.min, 5, Int.max)])
    func freeSlots(running: Int, maxConcurrent: Int, expected: Int) {
        #expect(Slots.free(running: running, maxConcurrent: maxConcurrent) == expected)
    }
}
