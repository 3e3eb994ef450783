import Foundation
import Logging
import ReelayCore
import ReelayPostgres
import ReelayStore
import Testing

@Suite("StoreIntegration")
struct StoreIntegrationTests {
    func submission(user: UUID, prompt: String = "a fox", key: String? = nil) -> Submission {
        Submission(
            taskID: UUID(), userID: user, prompt: prompt, inputImageURL: "https://example.com/a.png", inputJSON: nil,
            idempotencyKey: key, submittedAt: Date())
    }

    /// Invariant: admission is atomic. 50 racing submissions of one user admit exactly MAX_USER_ACTIVE_TASKS.
    @Test func fiftyConcurrentSubmissionsOfOneUserAdmitExactlyTheLimit() async throws {
        let db = try await StoreDatabase.create("admit")
        let users = UserStore(pool: db.pool)
        let store = TaskStore(pool: db.pool)
        let user = UUID()
        _ = try await users.createKey(userID: user, tier: .free)
        let limits = AdmissionLimits(maxUserActiveTasks: 3, maxQueueSize: 1000)
        let results = try await withThrowingTaskGroup(of: AdmissionResult.self) { group in
            for _ in 0..<50 {
                group.addTask { try await store.admit([self.submission(user: user)], limits: limits, model: "o/m").first! }
            }
            var all: [AdmissionResult] = []
            for try await result in group { all.append(result) }
            return all
        }
        #expect(results.filter { $0.decision == .admit }.count == 3)
        #expect(results.filter { $0.decision == .userLimit(limit: 3) }.count == 47)
        let counts = try await db.pool.withConnection {
            try await $0.query("SELECT count(*) FILTER (WHERE status = 'pending') AS p, count(*) AS n FROM video_tasks")
        }
        #expect(try counts.rows[0].int("p") == 3)
        #expect(try counts.rows[0].int("n") == 50, "without a reply deadline (an older gateway) refusals are kept as rows")
        await db.pool.shutdown()
    }

    /// Invariant: the queue bound holds; a full queue refuses with 503.
    @Test func queueFullRefuses() async throws {
        let db = try await StoreDatabase.create("queue")
        let users = UserStore(pool: db.pool)
        let store = TaskStore(pool: db.pool)
        var ids: [UUID] = []
        for _ in 0..<3 {
            let user = UUID()
            _ = try await users.createKey(userID: user, tier: .free)
            ids.append(user)
        }
        let limits = AdmissionLimits(maxUserActiveTasks: 3, maxQueueSize: 2)
        let results = try await store.admit(ids.map { self.submission(user: $0) }, limits: limits, model: "o/m")
        #expect(results.map(\.decision) == [.admit, .admit, .queueFull(limit: 2)])
        #expect(results[2].decision.httpStatus == 503)
        await db.pool.shutdown()
    }

    /// Invariant: the same idempotency key gives the same task, never a second one.
    @Test func idempotencyKeyReturnsTheExistingTask() async throws {
        let db = try await StoreDatabase.create("idem")
        let store = TaskStore(pool: db.pool)
        let user = UUID()
        _ = try await UserStore(pool: db.pool).createKey(userID: user, tier: .pro)
        let first = try await store.admit([self.submission(user: user, key: "k1")], limits: AdmissionLimits(), model: "o/m")[0]
        let second = try await store.admit([self.submission(user: user, key: "k1")], limits: AdmissionLimits(), model: "o/m")[0]
        #expect(second.duplicate)
        #expect(second.taskID == first.taskID)
        await db.pool.shutdown()
    }

    /// Invariant: concurrent scheduling passes never hand out more than MAX_CONCURRENT_TASKS slots, and take the highest
    /// priority first.
    @Test func concurrentPassesRespectTheGlobalLimitAndPriority() async throws {
        let db = try await StoreDatabase.create("slots")
        let store = TaskStore(pool: db.pool)
        let users = UserStore(pool: db.pool)
        var proTasks: Set<UUID> = []
        for tier in [Tier.free, .premium, .pro, .free, .pro, .premium, .free, .pro] {
            let user = UUID()
            _ = try await users.createKey(userID: user, tier: tier)
            let results = try await store.admit(
                [self.submission(user: user), self.submission(user: user)], limits: AdmissionLimits(), model: "o/m")
            if tier == .pro { proTasks.formUnion(results.map(\.taskID)) }
        }
        let claimed = try await withThrowingTaskGroup(of: [TaskRecord].self) { group in
            for _ in 0..<8 {
                group.addTask { try await store.claimForDispatch(maxConcurrent: 5, lease: .seconds(60), agingSeconds: 0) }
            }
            var all: [TaskRecord] = []
            for try await batch in group { all += batch }
            return all
        }
        #expect(claimed.count == 5)
        #expect(Set(claimed.map(\.id)).isSubset(of: proTasks), "the 6 pro tasks outrank everyone; 5 of them get the slots")
        #expect(claimed.allSatisfy { $0.status == .dispatching && $0.attempt == 1 && $0.leaseExpiresAt != nil })
        let again = try await store.claimForDispatch(maxConcurrent: 5, lease: .seconds(60), agingSeconds: 0)
        #expect(again.isEmpty)
        await db.pool.shutdown()
    }

    /// Invariant: the attempt is a fencing token and terminal states are final.
    @Test func transitionsAreFencedByAttemptAndStatus() async throws {
        let db = try await StoreDatabase.create("fence")
        let store = TaskStore(pool: db.pool)
        let user = UUID()
        _ = try await UserStore(pool: db.pool).createKey(userID: user, tier: .free)
        let id = try await store.admit([self.submission(user: user)], limits: AdmissionLimits(), model: "o/m")[0].taskID
        let task = try #require(try await store.claimForDispatch(maxConcurrent: 5, lease: .seconds(60), agingSeconds: 0).first)
        #expect(task.id == id)
        // A create may be recorded once per attempt.
        #expect(try await store.beginCreate(taskID: id, attempt: 1, lease: .seconds(60)) != nil)
        #expect(try await store.beginCreate(taskID: id, attempt: 1, lease: .seconds(60)) == nil)
        // An older attempt changes nothing.
        #expect(
            try await store.transition(taskID: id, attempt: 0, from: [.dispatching], to: .processing, reason: "stale") == nil)
        let processing = try await store.transition(
            taskID: id, attempt: 1, from: [.dispatching], to: .processing, reason: "created",
            changes: TaskChanges(replicateTaskID: "p1"))
        #expect(processing?.status == .processing)
        #expect(processing?.replicateTaskID == "p1")
        let done = try await store.transition(
            taskID: id, attempt: 1, from: [.processing], to: .completed, reason: "done", changes: TaskChanges(outputStorageKey: "k"))
        #expect(done?.completedAt != nil)
        // Replays of terminal events change nothing.
        #expect(try await store.transition(taskID: id, attempt: 1, from: [.processing], to: .failed, reason: "late") == nil)
        let history = try await store.events(taskID: id).map(\.to)
        #expect(history == [.pending, .dispatching, .processing, .completed])
        await db.pool.shutdown()
    }

    /// Invariant: a transient failure releases the slot with backoff and raises priority; retries are bounded.
    @Test func retriesBackOffRaisePriorityAndEndFailed() async throws {
        let db = try await StoreDatabase.create("retry")
        let store = TaskStore(pool: db.pool)
        let user = UUID()
        _ = try await UserStore(pool: db.pool).createKey(userID: user, tier: .free)
        let id = try await store.admit([self.submission(user: user)], limits: AdmissionLimits(), model: "o/m")[0].taskID
        let backoff = Backoff(base: .milliseconds(1), cap: .milliseconds(5))
        for attempt in 1...3 {
            try await Task.sleep(for: .milliseconds(20))
            let claimed = try await store.claimForDispatch(maxConcurrent: 5, lease: .seconds(60), agingSeconds: 0)
            #expect(claimed.first?.attempt == attempt)
            let retried = try await store.retryOrFail(
                taskID: id, attempt: attempt, from: [.dispatching], reason: "Replicate 503", maxRetries: 2, backoff: backoff)
            if attempt < 3 {
                #expect(retried?.status == .pending)
                #expect(retried?.retryCount == attempt)
                #expect(retried?.priority == attempt * 10)
            } else {
                #expect(retried?.status == .failed)
                #expect(retried?.errorMessage?.contains("Gave up after 2 retries") == true)
            }
        }
        await db.pool.shutdown()
    }

    /// Invariant: migrations are idempotent.
    @Test func migrateTwiceAppliesNothingTheSecondTime() async throws {
        let db = try await StoreDatabase.create("migrate")
        let again = try await Migrations.apply(pool: db.pool, logger: Logger(label: "it"))
        #expect(again.isEmpty)
        #expect(try await Migrations.currentVersion(pool: db.pool) == Migrations.all.last?.version)
        await db.pool.shutdown()
    }

    /// Invariant: the shared create rate holds across concurrent callers (dispatcher replicas): a full bucket gives
    /// exactly `burst` tokens at once, then one per 1/rate; a 429 blocks everyone until its reset.
    @Test func sharedRateLimitHoldsAcrossConcurrentCallersAndBlocksOn429() async throws {
        let db = try await StoreDatabase.create("rate")
        let limits = RateLimitStore(pool: db.pool)
        let waits = try await withThrowingTaskGroup(of: Duration?.self) { group in
            for _ in 0..<20 {
                group.addTask { try await limits.acquire("test.bucket", perMinute: 60, burst: 5) }
            }
            var all: [Duration?] = []
            for try await wait in group { all.append(wait) }
            return all
        }
        #expect(waits.filter { $0 == nil }.count == 5)
        #expect(waits.compactMap { $0 }.allSatisfy { $0 > .zero && $0 <= .milliseconds(1100) })
        try await limits.block("test.bucket", for: .seconds(3))
        let blocked = try #require(try await limits.acquire("test.bucket", perMinute: 6000, burst: 100))
        #expect(blocked > .milliseconds(2500))
        await db.pool.shutdown()
    }
}
