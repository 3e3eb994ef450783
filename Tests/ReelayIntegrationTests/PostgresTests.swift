import Foundation
import Logging
import ReelayPostgres
import ReelayService
import Testing

/// Integration tests against the PostgreSQL from `scripts/servers.sh up test`.
enum PostgresTestSupport {
    static var url: String {
        ProcessInfo.processInfo.environment["DATABASE_URL"] ?? "postgresql://reelay@127.0.0.1:55433/reelay_test"
    }

    static let logger = Logger(label: "reelay.test.postgres")

    static func uniqueName(_ prefix: String) -> String {
        prefix + "_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
    }

    /// Checks a connection of `pool` out and keeps it until `release` is called; `task` ends once it is back.
    static func hold(_ pool: PostgresPool) async throws -> (task: Task<Void, Error>, release: @Sendable () -> Void) {
        let (checkedOut, checkedOutSignal) = AsyncStream.makeStream(of: Void.self)
        let (released, releaseSignal) = AsyncStream.makeStream(of: Void.self)
        let task = Task {
            try await pool.withConnection { _ in
                checkedOutSignal.yield()
                for await _ in released { break }
            }
        }
        for await _ in checkedOut { break }
        return (task, { releaseSignal.yield() })
    }

    /// A pool that is always shut down, even when the test body throws.
    static func withPool<T>(size: Int = 4, name: String? = nil, _ body: (PostgresPool) async throws -> T) async throws -> T {
        let pool = PostgresPool(url: Self.url, size: size, name: name ?? Self.uniqueName("reelay_test"), logger: Self.logger)
        do {
            let result = try await body(pool)
            await pool.shutdown()
            return result
        } catch {
            await pool.shutdown()
            throw error
        }
    }
}

@Suite("PostgresQueries")
struct PostgresQueryTests {
    @Test("bound parameters stay data, even with quotes and SQL in them")
    func boundParametersAreData() async throws {
        try await PostgresTestSupport.withPool { pool in
            try await pool.withConnection { connection in
                try await connection.query("CREATE TEMP TABLE pg_params (id serial PRIMARY KEY, value text)")
                let hostile = "O'Reilly'); DROP TABLE pg_params; -- \"quoted\" \\ $1"
                let inserted = try await connection.query("INSERT INTO pg_params (value) VALUES ($1), ($2)", [hostile, "plain"])
                #expect(inserted.affectedRows == 2)
                let found = try await connection.query("SELECT id, value FROM pg_params WHERE value = $1", [hostile])
                #expect(found.rows.count == 1)
                #expect(try found.rows.first?.string("value") == hostile)
                let all = try await connection.query("SELECT count(*)::int AS n FROM pg_params")
                #expect(try all.rows.first?.int("n") == 2)
                try await connection.query("DROP TABLE pg_params")
            }
        }
    }

    /// Invariant: a value is stored whole or not at all. libpq takes parameters as C strings, so a NUL would cut
    /// "\u{0}hidden" down to "" and store that silently; it is refused with SQLSTATE 22021 (what PostgreSQL reports for a
    /// NUL in text), which callers classify as a data exception.
    @Test("a parameter with a NUL is refused with 22021 instead of being stored cut short")
    func nulParameterIsRefused() async throws {
        try await PostgresTestSupport.withPool { pool in
            try await pool.withConnection { connection in
                try await connection.query("CREATE TEMP TABLE pg_nul (value text)")
                for value in ["\u{0}hidden", "before\u{0}after", "\u{0}"] {
                    let error = await #expect(throws: PostgresError.self) {
                        try await connection.query("INSERT INTO pg_nul (value) VALUES ($1)", [value])
                    }
                    #expect(error?.sqlState == PostgresError.characterNotInRepertoire)
                    #expect(error?.isDataException == true)
                    #expect(error?.isConnectionError == false)
                    #expect(error?.description.contains("hidden") == false, "the value is not echoed")
                }
                let error = await #expect(throws: PostgresError.self) {
                    try await connection.query("SELECT $1::text, $2::text AS b", ["ok", "x\u{0}"])
                }
                #expect(error?.message.contains("$2") == true, "the message names the parameter: \(error?.message ?? "-")")
                let stored = try await connection.query("SELECT count(*)::int AS n FROM pg_nul")
                #expect(try stored.rows.first?.int("n") == 0, "nothing was stored, not even an empty string")
                // The connection is fine, and a NUL-free value (and NULL) still goes through.
                try await connection.query("INSERT INTO pg_nul (value) VALUES ($1), ($2)", ["visible", nil])
                #expect(try await connection.query("SELECT count(*)::int AS n FROM pg_nul").rows.first?.int("n") == 2)
                try await connection.query("DROP TABLE pg_nul")
            }
            // Inside a transaction the refusal rolls the transaction back like any statement error.
            await #expect(throws: PostgresError.self) {
                try await pool.transaction { connection in
                    try await connection.query("SELECT $1::text", ["a\u{0}b"])
                }
            }
        }
    }

    @Test("NULL in and out")
    func nulls() async throws {
        try await PostgresTestSupport.withPool { pool in
            let result = try await pool.withConnection { connection in
                try await connection.query(
                    "SELECT $1::text AS a, $2::int AS b, $3::timestamptz AS c, 'x'::text AS d, $1::text IS NULL AS a_is_null",
                    [nil, nil, nil])
            }
            let row = try #require(result.rows.first)
            #expect(row["a"] == nil)
            #expect(try row.optionalInt("b") == nil)
            #expect(try row.optionalDate("c") == nil)
            #expect(try row.bool("a_is_null"))
            #expect(row["d"] == "x")
            #expect(throws: PostgresError.self) { try row.string("a") }
            #expect(throws: PostgresError.self) { try row.int("no_such_column") }
        }
    }

    @Test("int, bool, timestamptz and uuid round trip")
    func typesRoundTrip() async throws {
        try await PostgresTestSupport.withPool { pool in
            let id = UUID()
            let when = Date(timeIntervalSince1970: 1_795_922_663.123456)
            let result = try await pool.withConnection { connection in
                try await connection.query(
                    """
                    SELECT $1::bigint AS big, $2::int AS small, $3::bool AS yes, $4::bool AS no, $5::timestamptz AS at,
                           $6::uuid AS id, '2026-11-29 05:24:23.5+02'::timestamptz AS offset_input, now() AS now,
                           current_setting('application_name') AS app
                    """,
                    ["9007199254740993", "-42", "true", "f", PostgresTimestamp.format(when), id.uuidString])
            }
            let row = try #require(result.rows.first)
            #expect(try row.int("big") == 9_007_199_254_740_993)
            #expect(try row.int("small") == -42)
            #expect(try row.bool("yes"))
            #expect(try !row.bool("no"))
            #expect(abs(try row.date("at").timeIntervalSince(when)) < 0.000_001)
            #expect(try row.uuid("id") == id)
            // The session is in UTC: an input with another offset comes back as +00.
            #expect(row["offset_input"] == "2026-11-29 03:24:23.5+00")
            #expect(try row.date("offset_input") == Date(timeIntervalSince1970: 1_795_922_663.5))
            #expect(row["now"]?.hasSuffix("+00") == true)
            #expect(abs(try row.date("now").timeIntervalSinceNow) < 60)
            #expect(row["app"]?.hasPrefix("reelay_test_") == true)
            #expect(throws: PostgresError.self) { try row.int("yes") }
        }
    }

    @Test("a unique violation reports SQLSTATE 23505 and the constraint, without the SQL or the value")
    func uniqueViolation() async throws {
        try await PostgresTestSupport.withPool { pool in
            try await pool.withConnection { connection in
                try await connection.query("CREATE TEMP TABLE pg_unique (email text CONSTRAINT pg_unique_email UNIQUE)")
                try await connection.query("INSERT INTO pg_unique (email) VALUES ($1)", ["secret-value@example.com"])
                let error = try await #require(throws: PostgresError.self) {
                    try await connection.query("INSERT INTO pg_unique (email) VALUES ($1)", ["secret-value@example.com"])
                }
                #expect(error.sqlState == "23505")
                #expect(error.constraint == "pg_unique_email")
                #expect(!error.isConnectionError)
                #expect(!error.description.contains("INSERT"))
                #expect(!error.description.contains("secret-value"))
                // The connection stays usable after a statement error.
                #expect(try await connection.query("SELECT 1 AS one").rows.first?.int("one") == 1)
            }
        }
    }

    @Test("a syntax error carries its SQLSTATE and is not a connection error")
    func syntaxError() async throws {
        try await PostgresTestSupport.withPool { pool in
            let error = try await #require(throws: PostgresError.self) {
                try await pool.withConnection { try await $0.query("SELEC 1") }
            }
            #expect(error.sqlState == "42601")
            #expect(!error.isConnectionError)
        }
    }

    @Test("execute runs a multi-statement script")
    func script() async throws {
        try await PostgresTestSupport.withPool { pool in
            let count = try await pool.withConnection { connection in
                try await connection.execute("CREATE TEMP TABLE pg_script (n int); INSERT INTO pg_script VALUES (1), (2), (3);")
                return try await connection.query("SELECT sum(n)::int AS total FROM pg_script").rows.first?.int("total")
            }
            #expect(count == 6)
        }
    }
}

@Suite("PostgresTransactions")
struct PostgresTransactionTests {
    struct Rollback: Error {}

    private func withTable(_ pool: PostgresPool, _ body: (String) async throws -> Void) async throws {
        let table = PostgresTestSupport.uniqueName("reelay_pgtest")
        try await pool.withConnection { try await $0.query("CREATE TABLE \(table) (id int PRIMARY KEY)") }
        do {
            try await body(table)
        } catch {
            _ = try? await pool.withConnection { try await $0.query("DROP TABLE IF EXISTS \(table)") }
            throw error
        }
        try await pool.withConnection { try await $0.query("DROP TABLE IF EXISTS \(table)") }
    }

    private func ids(_ pool: PostgresPool, _ table: String) async throws -> [Int] {
        try await pool.withConnection { connection in
            try await connection.query("SELECT id FROM \(table) ORDER BY id").rows.map { try $0.int("id") }
        }
    }

    @Test("commit makes the body's writes visible to other connections")
    func commit() async throws {
        try await PostgresTestSupport.withPool { pool in
            try await self.withTable(pool) { table in
                let value = try await pool.transaction { connection in
                    try await connection.query("INSERT INTO \(table) (id) VALUES (1), (2)")
                    return 7
                }
                #expect(value == 7)
                #expect(try await self.ids(pool, table) == [1, 2])
            }
        }
    }

    @Test("an error in the body rolls everything back")
    func rollback() async throws {
        try await PostgresTestSupport.withPool { pool in
            try await self.withTable(pool) { table in
                await #expect(throws: Rollback.self) {
                    try await pool.transaction { connection in
                        try await connection.query("INSERT INTO \(table) (id) VALUES (1)")
                        throw Rollback()
                    }
                }
                // A statement error inside the body rolls back too.
                await #expect(throws: PostgresError.self) {
                    try await pool.transaction { connection in
                        try await connection.query("INSERT INTO \(table) (id) VALUES (2)")
                        try await connection.query("INSERT INTO \(table) (id) VALUES (2)")
                    }
                }
                let remaining = try await self.ids(pool, table)
                #expect(remaining == [])
            }
        }
    }

    @Test("a body that swallows a statement error does not commit")
    func swallowedErrorDoesNotCommit() async throws {
        try await PostgresTestSupport.withPool { pool in
            try await self.withTable(pool) { table in
                let error = try await #require(throws: PostgresError.self) {
                    try await pool.transaction { connection in
                        try await connection.query("INSERT INTO \(table) (id) VALUES (1)")
                        _ = try? await connection.query("INSERT INTO \(table) (id) VALUES (1)")
                    }
                }
                #expect(error.sqlState == "25P02")
                #expect(try await self.ids(pool, table) == [])
            }
        }
    }

    @Test("serialization failures (40001) are retried and the retry commits")
    func retriesSerializationFailure() async throws {
        try await PostgresTestSupport.withPool { pool in
            try await self.withTable(pool) { table in
                let attempts = PostgresTestCounter()
                try await pool.transaction { connection in
                    let attempt = attempts.increment()
                    try await connection.query("INSERT INTO \(table) (id) VALUES ($1)", [String(attempt)])
                    if attempt < 3 {
                        try await connection.query("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
                    }
                }
                #expect(attempts.value == 3)
                // Only the attempt that committed left a row.
                #expect(try await self.ids(pool, table) == [3])
            }
        }
    }

    @Test("retries stop after three, and the last error surfaces")
    func retriesAreBounded() async throws {
        try await PostgresTestSupport.withPool { pool in
            let attempts = PostgresTestCounter()
            let error = try await #require(throws: PostgresError.self) {
                try await pool.transaction { connection in
                    attempts.increment()
                    try await connection.query("DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$")
                }
            }
            #expect(error.sqlState == "40P01")
            #expect(attempts.value == 1 + PostgresPool.transactionRetries)
        }
    }

    @Test("a transaction left open by withConnection is rolled back before the connection is reused")
    func openTransactionIsRolledBackAtCheckin() async throws {
        try await PostgresTestSupport.withPool(size: 1) { pool in
            try await self.withTable(pool) { table in
                await #expect(throws: Rollback.self) {
                    try await pool.withConnection { connection in
                        try await connection.query("BEGIN")
                        try await connection.query("INSERT INTO \(table) (id) VALUES (1)")
                        throw Rollback()
                    }
                }
                // SAVEPOINT fails (25P01) only outside a transaction block: the next user gets a clean session.
                let error = try await #require(throws: PostgresError.self) {
                    try await pool.withConnection { try await $0.query("SAVEPOINT probe") }
                }
                #expect(error.sqlState == "25P01")
                #expect(try await self.ids(pool, table) == [])
            }
        }
    }
}

/// A counter for closures the pool may run several times. `lock` guards `count` (any thread may touch it).
final class PostgresTestCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    @discardableResult
    func increment() -> Int {
        self.lock.withLock {
            self.count += 1
            return self.count
        }
    }

    var value: Int { self.lock.withLock { self.count } }
}

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

/// The order in which waiters got a connection. `lock` guards `log`.
final class PostgresOrderLog: @unchecked Sendable {
    private let lock = NSLock()
    private var log: [Int] = []

    func append(_ value: Int) { self.lock.withLock { self.log.append(value) } }
    var values: [Int] { self.lock.withLock { self.log } }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self {
            return error
        }
        return nil
    }
}

@Suite("PostgresTimestamp")
struct PostgresTimestampTests {
    @Test("parses PostgreSQL's text forms")
    func parse() {
        #expect(PostgresTimestamp.parse("1970-01-01 00:00:00+00") == Date(timeIntervalSince1970: 0))
        #expect(PostgresTimestamp.parse("2026-11-29 03:24:23.123456+00")?.timeIntervalSince1970 == 1_795_922_663.123456)
        #expect(PostgresTimestamp.parse("2026-11-29 05:24:23+02") == Date(timeIntervalSince1970: 1_795_922_663))
        #expect(PostgresTimestamp.parse("2026-11-28 22:54:23-04:30") == Date(timeIntervalSince1970: 1_795_922_663))
        #expect(PostgresTimestamp.parse("2026-11-29T03:24:23Z") == Date(timeIntervalSince1970: 1_795_922_663))
        #expect(PostgresTimestamp.parse("2026-11-29") == Date(timeIntervalSince1970: 1_795_910_400))
        #expect(PostgresTimestamp.parse("1960-02-29 12:00:00+00") == Date(timeIntervalSince1970: -310_478_400))
        #expect(PostgresTimestamp.parse("infinity") == .distantFuture)
        for bad in ["", "2026-13-01 00:00:00+00", "2026-11-29 03:24", "2026-11-29 03:24:23+0x", "yesterday", "2026-11-29 03:24:23 BC"] {
            #expect(PostgresTimestamp.parse(bad) == nil, "\(bad)")
        }
    }

    @Test("format and parse round trip to the microsecond")
    func roundTrip() {
        #expect(PostgresTimestamp.format(Date(timeIntervalSince1970: 0)) == "1970-01-01 00:00:00.000000+00")
        #expect(PostgresTimestamp.format(Date(timeIntervalSince1970: 1_795_922_663.5)) == "2026-11-29 03:24:23.500000+00")
        #expect(PostgresTimestamp.format(Date(timeIntervalSince1970: -0.25)) == "1969-12-31 23:59:59.750000+00")
        for seconds in stride(from: -2_000_000_000.0, to: 4_000_000_000.0, by: 123_456_789.012345) {
            let date = Date(timeIntervalSince1970: seconds)
            let parsed = PostgresTimestamp.parse(PostgresTimestamp.format(date))
            #expect(abs((parsed ?? .distantPast).timeIntervalSince(date)) < 0.000_001)
        }
    }
}
