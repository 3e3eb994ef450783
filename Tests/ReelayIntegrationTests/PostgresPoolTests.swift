import Foundation
import ReelayPostgres
import ReelayService
import Testing

@Suite("PostgresPool")
struct PostgresPoolTests {
    @Test("50 concurrent queries on a pool of 4 all succeed on at most 4 backends")
    func concurrencyIsBounded() async throws {
        let name = PostgresTestSupport.uniqueName("reelay_pool")
        try await PostgresTestSupport.withPool(size: 4, name: name) { pool in
            let counts = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        try await pool.withConnection { connection in
                            try await connection.query(
                                """
                                SELECT pg_sleep(0.02),
                                       (SELECT count(*) FROM pg_stat_activity WHERE application_name = $1)::int AS backends
                                """, [name]
                            ).rows.first?.int("backends") ?? -1
                        }
                    }
                }
                var counts: [Int] = []
                for try await count in group {
                    counts.append(count)
                }
                return counts
            }
            #expect(counts.count == 50)
            let most = try #require(counts.max())
            #expect(most <= 4, "the pool opened more than its size")
            #expect(most >= 2, "queries did not run concurrently")
            #expect(counts.min() ?? 0 >= 1)
        }
    }

    @Test("cancelling a task stops pg_sleep(120) at once with 57014, and the connection stays usable")
    func cancellation() async throws {
        try await PostgresTestSupport.withPool(size: 1) { pool in
            let pidBefore = try await pool.withConnection { try await $0.query("SELECT pg_backend_pid() AS pid").rows.first?.int("pid") }
            let started = ContinuousClock.now
            let sleeper = Task {
                try await pool.withConnection { connection in
                    try await connection.query("SELECT pg_sleep(120)")
                }
            }
            try await Task.sleep(for: .milliseconds(200))
            sleeper.cancel()
            let outcome = await sleeper.result
            let elapsed = ContinuousClock.now - started
            #expect(elapsed < .seconds(30), "the cancel, not the 120 s sleep, ended the query")
            guard case .failure(let failure) = outcome else {
                Issue.record("pg_sleep(30) was not cancelled")
                return
            }
            let error = try #require(failure as? PostgresError)
            #expect(error.sqlState == "57014")
            #expect(!error.isConnectionError)
            let pidAfter = try await pool.withConnection { try await $0.query("SELECT pg_backend_pid() AS pid").rows.first?.int("pid") }
            #expect(pidAfter == pidBefore, "the cancelled connection was replaced instead of reused")
        }
    }

    @Test("a query in an already-cancelled task fails with 57014 without running")
    func alreadyCancelled() async throws {
        try await PostgresTestSupport.withPool(size: 1) { pool in
            try await pool.withConnection { connection in
                let task = Task {
                    withUnsafeCurrentTask { $0?.cancel() }
                    return try await connection.query("SELECT pg_sleep(120)")
                }
                let started = ContinuousClock.now
                let error = try #require(await task.result.failure as? PostgresError)
                #expect(error.sqlState == "57014")
                #expect(ContinuousClock.now - started < .seconds(30), "it never ran the 120 s sleep")
                #expect(try await connection.query("SELECT 2 AS two").rows.first?.int("two") == 2)
            }
        }
    }

    @Test("ping is true for a live server and false, quickly, for a dead address")
    func ping() async throws {
        try await PostgresTestSupport.withPool { pool in
            // The first ping opens a connection: on a busy machine that may outlast the 2 s a readiness probe allows.
            #expect(await pool.ping(timeout: .seconds(30)))
        }
        let dead = PostgresPool(url: "postgresql://reelay@127.0.0.1:1/reelay_test", size: 1, name: "dead", logger: PostgresTestSupport.logger)
        let started = ContinuousClock.now
        #expect(await dead.ping() == false)
        #expect(ContinuousClock.now - started < .seconds(10), "within its 2 s timeout, with slack for a busy machine")
        await dead.shutdown()
    }

    @Test("a connection failure is a connection error that never shows the password")
    func connectionError() async throws {
        let pool = PostgresPool(
            url: "postgresql://reelay:hunter2secret@127.0.0.1:1/reelay_test", size: 1, name: "refused", logger: PostgresTestSupport.logger)
        let error = try await #require(throws: PostgresError.self) {
            try await pool.withConnection { try await $0.query("SELECT 1") }
        }
        #expect(error.isConnectionError)
        #expect(error.sqlState == nil)
        #expect(!error.description.contains("hunter2secret"))
        // The failed attempt gave its slot back: a second try fails the same way instead of waiting forever.
        await #expect(throws: PostgresError.self) {
            try await pool.withConnection { try await $0.query("SELECT 1") }
        }
        await pool.shutdown()
    }

    @Test("a backend killed while idle is replaced on the next checkout (as after a server restart)")
    func replacesLostConnection() async throws {
        try await PostgresTestSupport.withPool(size: 1) { pool in
            let pid = try await pool.withConnection { try await $0.query("SELECT pg_backend_pid() AS pid").rows.first?.int("pid") }
            let killer = try await PostgresConnection.connect(url: PostgresTestSupport.url, name: "killer", logger: PostgresTestSupport.logger)
            let killed = try await killer.query("SELECT pg_terminate_backend($1) AS ok", [pid.map(String.init)])
            await killer.close()
            #expect(try killed.rows.first?.bool("ok") == true)
            try await Task.sleep(for: .milliseconds(100))
            let newPID = try await pool.withConnection { try await $0.query("SELECT pg_backend_pid() AS pid").rows.first?.int("pid") }
            #expect(newPID != nil)
            #expect(newPID != pid)
        }
    }

    @Test("a connection broken mid-checkout is replaced after the error")
    func replacesBrokenConnection() async throws {
        try await PostgresTestSupport.withPool(size: 1) { pool in
            let error = try await #require(throws: PostgresError.self) {
                try await pool.withConnection { connection in
                    try await connection.query("SELECT pg_terminate_backend(pg_backend_pid())")
                }
            }
            #expect(error.isConnectionError)
            #expect(try await pool.withConnection { try await $0.query("SELECT 1 AS one").rows.first?.int("one") } == 1)
        }
    }

    @Test("waiters are served first come, first served")
    func fifo() async throws {
        try await PostgresTestSupport.withPool(size: 1) { pool in
            let order = PostgresOrderLog()
            let gate = Task {
                try await pool.withConnection { try await $0.query("SELECT pg_sleep(0.3)") }
            }
            try await Task.sleep(for: .milliseconds(50))
            var waiters: [Task<Void, Error>] = []
            for index in 0..<5 {
                waiters.append(
                    Task {
                        try await pool.withConnection { _ in order.append(index) }
                    })
                try await Task.sleep(for: .milliseconds(20))
            }
            _ = try await gate.value
            for waiter in waiters {
                try await waiter.value
            }
            #expect(order.values == [0, 1, 2, 3, 4])
        }
    }

    @Test("a cancelled waiter leaves the queue and the pool keeps working")
    func cancelledWaiter() async throws {
        try await PostgresTestSupport.withPool(size: 1) { pool in
            let holder = Task { try await pool.withConnection { try await $0.query("SELECT pg_sleep(0.3)") } }
            try await Task.sleep(for: .milliseconds(50))
            let waiter = Task { try await pool.withConnection { try await $0.query("SELECT 1") } }
            try await Task.sleep(for: .milliseconds(50))
            waiter.cancel()
            #expect(await waiter.result.failure is CancellationError)
            _ = try await holder.value
            #expect(try await pool.withConnection { try await $0.query("SELECT 1 AS one").rows.count } == 1)
        }
    }

    /// Invariant: a checkout never waits longer than the pool's acquire timeout; it fails with a distinct error that
    /// the HTTP edge answers with 503 and Retry-After (not "database unavailable": the database is busy, not down).
    @Test("pool of 1 with its connection held: a second checkout fails with acquireTimeout after the timeout")
    func acquireTimeout() async throws {
        let pool = PostgresPool(
            url: PostgresTestSupport.url, size: 1, name: PostgresTestSupport.uniqueName("reelay_acquire"), logger: PostgresTestSupport.logger,
            acquireTimeout: .milliseconds(300))
        let (held, release) = try await PostgresTestSupport.hold(pool)
        let start = ContinuousClock.now
        let error = await #expect(throws: PostgresPoolError.self) {
            try await pool.withConnection { try await $0.query("SELECT 1") }
        }
        let waited = ContinuousClock.now - start
        #expect(error?.code == .acquireTimeout)
        #expect(waited >= .milliseconds(300), "it waited for the timeout first (\(waited))")
        #expect(waited < .seconds(20), "and not much longer (\(waited))")
        #expect(error?.description.contains("SELECT") == false)
        if let error {
            let problem = Problem.databaseBusy(error)
            #expect(problem.status == .serviceUnavailable)
            #expect(problem.headers[.retryAfter] != nil)
        }
        release()
        try await held.value
        // The held connection came back: the pool works again, and the timed-out waiter left nothing behind.
        #expect(try await pool.withConnection { try await $0.query("SELECT 1 AS one").rows.first?.int("one") } == 1)
        await pool.shutdown()
    }

    /// Invariant: at most `maxWaiters` checkouts wait; one more fails at once instead of joining an unbounded queue.
    @Test("beyond maxWaiters a checkout fails at once with tooManyWaiters; the waiting one is still served")
    func waiterBound() async throws {
        let pool = PostgresPool(
            url: PostgresTestSupport.url, size: 1, name: PostgresTestSupport.uniqueName("reelay_waiters"), logger: PostgresTestSupport.logger,
            acquireTimeout: .seconds(60), maxWaiters: 1)
        let (held, release) = try await PostgresTestSupport.hold(pool)
        let waiting = Task { try await pool.withConnection { try await $0.query("SELECT 2 AS two").rows.first?.int("two") } }
        try await Task.sleep(for: .milliseconds(200))
        let start = ContinuousClock.now
        let error = await #expect(throws: PostgresPoolError.self) {
            try await pool.withConnection { try await $0.query("SELECT 1") }
        }
        #expect(error?.code == .tooManyWaiters)
        #expect(ContinuousClock.now - start < .seconds(20), "refused at once, far from the 60 s acquire timeout")
        release()
        try await held.value
        #expect(try await waiting.value == 2)
        await pool.shutdown()
    }

    @Test("after shutdown, checkouts fail and the backends are gone")
    func shutdown() async throws {
        let name = PostgresTestSupport.uniqueName("reelay_shutdown")
        let pool = PostgresPool(url: PostgresTestSupport.url, size: 2, name: name, logger: PostgresTestSupport.logger)
        try await pool.withConnection { try await $0.query("SELECT 1") }
        await pool.shutdown()
        await #expect(throws: PostgresError.self) {
            try await pool.withConnection { try await $0.query("SELECT 1") }
        }
        let observer = try await PostgresConnection.connect(url: PostgresTestSupport.url, name: "observer", logger: PostgresTestSupport.logger)
        try await Task.sleep(for: .milliseconds(100))
        let left = try await observer.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1", [name])
        await observer.close()
        #expect(try left.rows.first?.int("n") == 0)
    }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self {
            return error
        }
        return nil
    }
}
