import Foundation
import ReelayPostgres
import Testing

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
