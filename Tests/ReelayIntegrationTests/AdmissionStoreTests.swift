import Foundation
import Logging
import ReelayConfig
import ReelayCore
import ReelayMessaging
import ReelayPostgres
import ReelayService
import ReelayStore
import ReelayTestSupport
import Testing

/// The admission SQL against a real PostgreSQL: a poisoned submission fails alone, and refusals cost a counter unless
/// the gateway may already have answered 202 "submitted".
@Suite("AdmissionStore")
struct AdmissionStoreTests {
    static let limits = AdmissionLimits(maxUserActiveTasks: 3, maxQueueSize: 1000)
    /// A deadline the scheduler decides well before: refusals are only counted.
    static var comfortable: Date { Date().addingTimeInterval(60) }
    /// A deadline already past: the gateway has answered 202 "submitted", refusals are kept as rows.
    static var passed: Date { Date().addingTimeInterval(-1) }
    /// A JSON object PostgreSQL's jsonb refuses (SQLSTATE 22P05): `\u0000` cannot become text.
    static let poisonedInput = #"{"negative_prompt":"\u0000"}"#

    func submission(user: UUID, prompt: String = "a fox", input: String? = nil, replyBy: Date? = nil) -> Submission {
        Submission(
            taskID: UUID(), userID: user, prompt: prompt, inputImageURL: "https://example.com/a.png", inputJSON: input,
            idempotencyKey: nil, submittedAt: Date(), replyBy: replyBy)
    }

    func users(_ count: Int, in db: StoreDatabase) async throws -> [UUID] {
        var ids: [UUID] = []
        for _ in 0..<count {
            let user = UUID()
            _ = try await UserStore(pool: db.pool).createKey(userID: user, tier: .free)
            ids.append(user)
        }
        return ids
    }

    func count(_ db: StoreDatabase, _ sql: String, _ params: [String?] = []) async throws -> Int {
        try await db.pool.withConnection { try await $0.query(sql, params).rows.first?.int("n") ?? -1 }
    }

    /// Invariant: a submission the database refuses (22P05 here) fails alone: the 30 valid submissions of its batch are
    /// admitted in the same call, in order, and the poison is answered `.invalid` (422) naming the NUL.
    @Test func onePoisonInABatchOfThirtyOneFailsAlone() async throws {
        let db = try await StoreDatabase.create("poison")
        let store = TaskStore(pool: db.pool)
        let users = try await self.users(11, in: db)
        var batch = (0..<30).map { self.submission(user: users[$0 % 10], input: #"{"seed":\#($0)}"#, replyBy: Self.comfortable) }
        let poison = self.submission(user: users[10], input: Self.poisonedInput, replyBy: Self.comfortable)
        batch.insert(poison, at: 17)
        let results = try await store.admit(batch, limits: Self.limits, model: "o/m")
        #expect(results.map(\.taskID) == batch.map(\.taskID), "one result per submission, in order")
        for (submission, result) in zip(batch, results) where submission.taskID != poison.taskID {
            #expect(result.decision == .admit && !result.duplicate && result.stored)
        }
        let refused = try #require(results.first { $0.taskID == poison.taskID })
        guard case .invalid(let reason) = refused.decision else {
            Issue.record("the poison is refused as invalid, got \(refused.decision)")
            return
        }
        #expect(reason.contains("NUL"))
        #expect(refused.decision.httpStatus == 422)
        #expect(!refused.stored, "decided well before the gateway's deadline: counted, not stored")
        #expect(try await self.count(db, "SELECT count(*) AS n FROM video_tasks WHERE status = 'pending'") == 30)
        #expect(try await self.count(db, "SELECT count(*) AS n FROM video_tasks WHERE id = $1", [poison.taskID.uuidString]) == 0)
        let counted = try await store.refusalCounts(userID: users[10])
        #expect(counted.map(\.reason) == ["invalid"])
        #expect(counted.first?.count == 1)
        await db.pool.shutdown()
    }

    /// Invariant: a NUL in a text field (refused by the database layer itself, 22021) is poison the same way.
    @Test func aNulInThePromptFailsAloneToo() async throws {
        let db = try await StoreDatabase.create("nulprompt")
        let store = TaskStore(pool: db.pool)
        let users = try await self.users(2, in: db)
        let poison = self.submission(user: users[0], prompt: "\u{0}hidden", replyBy: Self.comfortable)
        let valid = self.submission(user: users[1], replyBy: Self.comfortable)
        let results = try await store.admit([poison, valid], limits: Self.limits, model: "o/m")
        #expect(results[0].decision.httpStatus == 422)
        #expect(results[0].decision.message?.contains("NUL") == true)
        #expect(results[1].decision == .admit && results[1].stored)
        #expect(try await self.count(db, "SELECT count(*) AS n FROM video_tasks") == 1)
        await db.pool.shutdown()
    }

    /// Invariant: a poisoned submission decided after the gateway's deadline is kept as a rejected row, with what can be
    /// stored of it (no NUL, no model input), so the user who got 202 "submitted" can read why.
    @Test func aLatePoisonIsKeptWithWhatCanBeStored() async throws {
        let db = try await StoreDatabase.create("latepoison")
        let store = TaskStore(pool: db.pool)
        let users = try await self.users(2, in: db)
        let poison = self.submission(user: users[0], prompt: "a fox\u{0} in snow", input: Self.poisonedInput, replyBy: Self.passed)
        let results = try await store.admit(
            [poison, self.submission(user: users[1], replyBy: Self.passed)], limits: Self.limits, model: "o/m")
        #expect(results[0].stored)
        #expect(results[1].decision == .admit)
        let task = try #require(try await store.task(id: poison.taskID))
        #expect(task.status == .rejected)
        #expect(task.prompt == "a fox in snow")
        #expect(task.modelInputJSON == nil)
        #expect(task.errorMessage?.contains("NUL") == true)
        #expect(task.completedAt != nil)
        #expect(try await store.events(taskID: poison.taskID).map(\.to) == [.rejected])
        #expect(try await store.refusalCounts().isEmpty, "kept as a row, so not counted as well")
        await db.pool.shutdown()
    }

    /// Invariant: a submission for a user that does not exist is refused alone, never the batch.
    @Test func anUnknownUserIsRefusedAlone() async throws {
        let db = try await StoreDatabase.create("nouser")
        let store = TaskStore(pool: db.pool)
        let users = try await self.users(1, in: db)
        let results = try await store.admit(
            [self.submission(user: UUID(), replyBy: Self.comfortable), self.submission(user: users[0], replyBy: Self.comfortable)],
            limits: Self.limits, model: "o/m")
        #expect(results[0].decision == .invalid(reason: Admission.unknownUserReason))
        #expect(results[1].decision == .admit)
        await db.pool.shutdown()
    }

    /// Invariant: a refusal the user hears about in time (429/503 within ADMISSION_TIMEOUT_MS) costs a counter, not a
    /// row; one the gateway may have answered with 202 "submitted" (deadline passed, or an older gateway without one) is
    /// a rejected row. The statistics count both, once each.
    @Test func refusalsAreCountedUnlessTheGatewayMayHaveAnswered202() async throws {
        let db = try await StoreDatabase.create("refusals")
        let store = TaskStore(pool: db.pool)
        let user = try await self.users(1, in: db)[0]
        let limits = AdmissionLimits(maxUserActiveTasks: 1, maxQueueSize: 1000)
        #expect(try await store.admit([self.submission(user: user, replyBy: Self.comfortable)], limits: limits, model: "o/m")[0].stored)

        // A flood of refusals in time: no row grows.
        let flood = (0..<40).map { _ in self.submission(user: user, replyBy: Self.comfortable) }
        let refused = try await store.admit(flood, limits: limits, model: "o/m")
        #expect(refused.allSatisfy { $0.decision == .userLimit(limit: 1) && !$0.stored })
        #expect(try await self.count(db, "SELECT count(*) AS n FROM video_tasks") == 1)
        #expect(try await store.refusalCounts(userID: user).map(\.count) == [40])

        // Past the deadline, or without one: kept as rows.
        let late = try await store.admit(
            [self.submission(user: user, replyBy: Self.passed), self.submission(user: user, replyBy: nil)], limits: limits, model: "o/m")
        #expect(late.allSatisfy { $0.decision == .userLimit(limit: 1) && $0.stored })
        for result in late {
            let task = try await store.task(id: result.taskID)
            #expect(task?.status == .rejected)
            #expect(task?.errorMessage == "You can only have 1 video tasks in progress at once")
        }
        #expect(try await store.refusalCounts(userID: user).map(\.count) == [40])
        #expect(try await store.stats().rejected == 42, "40 counted + 2 rows")
        await db.pool.shutdown()
    }

    /// Invariant: a rejection the gateway received after answering 202 "submitted", which the scheduler had only
    /// counted, becomes a row the user can read; the count moves to the row (the statistics do not count it twice), and
    /// keeping it again changes nothing.
    @Test func aLateRejectionMovesFromTheCounterToARow() async throws {
        let db = try await StoreDatabase.create("lateverdict")
        let store = TaskStore(pool: db.pool)
        let user = try await self.users(1, in: db)[0]
        let limits = AdmissionLimits(maxUserActiveTasks: 1, maxQueueSize: 1000)
        _ = try await store.admit([self.submission(user: user, replyBy: Self.comfortable)], limits: limits, model: "o/m")
        let submission = self.submission(user: user, replyBy: Self.comfortable)
        let result = try await store.admit([submission], limits: limits, model: "o/m")[0]
        #expect(!result.stored)
        #expect(try await store.stats().rejected == 1)

        let message = try #require(result.decision.message)
        #expect(try await store.keepLateRejection(submission, reason: "user_limit", message: message, model: "o/m"))
        let task = try #require(try await store.task(id: submission.taskID))
        #expect(task.status == .rejected)
        #expect(task.errorMessage == message)
        #expect(try await store.refusalCounts(userID: user).map(\.count) == [0])
        #expect(try await store.stats().rejected == 1, "moved, not added")
        #expect(try await store.keepLateRejection(submission, reason: "user_limit", message: message, model: "o/m") == false)
        #expect(try await store.stats().rejected == 1)
        await db.pool.shutdown()
    }

    /// The gateway's side of the deadline race, below HTTP: the scheduler decided in time (counted, `persisted: false`),
    /// but the verdict reached the gateway after its wait had answered 202 "submitted". The gateway's handler
    /// (`LateRejections.store`, as its `main` wires it) turns it into the row the client can read.
    @Test func theGatewaysLateRejectionHandlerStoresTheRow() async throws {
        let db = try await StoreDatabase.create("gatewaylate")
        let store = TaskStore(pool: db.pool)
        let user = try await self.users(1, in: db)[0]
        let limits = AdmissionLimits(maxUserActiveTasks: 1, maxQueueSize: 1000)
        _ = try await store.admit([self.submission(user: user, replyBy: Self.comfortable)], limits: limits, model: "o/m")
        let command = SubmitTaskCommand(
            taskID: UUID(), userID: user, prompt: "a heron", inputImageURL: "https://example.com/h.png", inputJSON: #"{"seed":1}"#,
            idempotencyKey: "key-1", submittedAt: Date(), replyBy: Self.comfortable)
        let submission = Submission(
            taskID: command.taskID, userID: user, prompt: command.prompt, inputImageURL: command.inputImageURL,
            inputJSON: command.inputJSON, idempotencyKey: command.idempotencyKey, submittedAt: command.submittedAt,
            replyBy: command.replyBy)
        let result = try await store.admit([submission], limits: limits, model: "o/m")[0]
        #expect(!result.stored)
        let verdict = AdmissionVerdict(
            taskID: command.taskID, outcome: .rejected, httpStatus: result.decision.httpStatus, message: result.decision.message,
            reason: result.decision.refusalReason, persisted: result.stored)

        let configuration = try ReelayConfiguration.load(from: [:])
        let waiter = VerdictWaiter(
            logger: Logger(label: "it"), onLateRejection: LateRejections.store(in: store, configuration: configuration))
        waiter.expect(command.taskID.uuidString, submission: command)
        #expect(await waiter.wait(for: command.taskID.uuidString, timeout: .milliseconds(20)) == nil, "answered 202 submitted")
        try await waiter.handleReply(reply(MessageCodec.encode(verdict), correlationID: command.taskID.uuidString))

        let task = try #require(try await store.task(id: command.taskID))
        #expect(task.status == .rejected)
        #expect(task.errorMessage == "You can only have 1 video tasks in progress at once")
        #expect(task.modelInputJSON != nil, "a limit refusal keeps the submission as sent")
        #expect(task.idempotencyKey == nil, "a retry with the same key is decided afresh")
        #expect(try await store.stats().rejected == 1)
        await db.pool.shutdown()
    }
}
