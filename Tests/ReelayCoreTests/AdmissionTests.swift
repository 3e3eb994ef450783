import Foundation
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

    /// A submission the database cannot store is refused with 422, and the message says what is wrong and what to do.
    @Test func invalidIsUnprocessableAndSaysWhatToDo() throws {
        let decision = AdmissionDecision.invalid(reason: Admission.invalidReason(sqlState: "22P05"))
        #expect(decision.httpStatus == 422)
        #expect(decision.refusalReason == "invalid")
        let message = try #require(decision.message)
        #expect(message.hasPrefix("The submission cannot be accepted: "))
        #expect(message.contains("NUL"))
        #expect(message.contains("submit again"))
    }

    /// Every refusal has a counter reason; admission has none.
    @Test func refusalReasons() {
        #expect(AdmissionDecision.admit.refusalReason == nil)
        #expect(AdmissionDecision.userLimit(limit: 3).refusalReason == "user_limit")
        #expect(AdmissionDecision.queueFull(limit: 1000).refusalReason == "queue_full")
    }

    /// The database's own text never reaches the user: each SQLSTATE maps to a sentence of ours, NUL codes name the NUL.
    @Test(arguments: ["22021", "22P05", "22001", "54000", "22003", "22P02", "23505", "23514", "22000", nil])
    func invalidReasonIsOurs(sqlState: String?) {
        let reason = Admission.invalidReason(sqlState: sqlState)
        #expect(!reason.isEmpty)
        #expect(reason.contains("submit"), "says what to do: \(reason)")
        #expect(reason.contains("NUL") == (sqlState == "22021" || sqlState == "22P05"))
    }

    /// Invariant: a refusal the gateway may have answered with 202 "submitted" is kept as a row. The gateway answers that
    /// at `replyBy`; a decision within `margin` of it (or after it, or without a deadline) keeps the row.
    @Test func refusalIsKeptNearOrAfterTheDeadline() {
        let replyBy = Date(timeIntervalSince1970: 1_000_000)
        let margin = Duration.milliseconds(500)
        func keep(_ offset: Double) -> Bool {
            Admission.mustKeepRefusal(replyBy: replyBy, decidedAt: replyBy.addingTimeInterval(offset), margin: margin)
        }
        #expect(!keep(-2), "decided 2 s before the deadline: the gateway gets the verdict in time")
        #expect(!keep(-0.501))
        #expect(keep(-0.5), "at the margin")
        #expect(keep(-0.1))
        #expect(keep(0))
        #expect(keep(30), "long after (a retried message)")
        #expect(Admission.mustKeepRefusal(replyBy: nil, decidedAt: replyBy, margin: margin), "an older gateway's command")
        #expect(!Admission.mustKeepRefusal(replyBy: replyBy, decidedAt: replyBy.addingTimeInterval(-0.001), margin: .zero))
    }

    /// Invariant: free slots are max(0, limit - running), never negative.
    @Test(arguments: [(0, 5, 5), (3, 5, 2), (5, 5, 0), (8, 5, 0), (0, 0, 0), (Int.max, 5, 0), (Int.min, 5, Int.max)])
    func freeSlots(running: Int, maxConcurrent: Int, expected: Int) {
        #expect(Slots.free(running: running, maxConcurrent: maxConcurrent) == expected)
    }
}
