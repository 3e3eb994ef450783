import Foundation
import ReelayPostgres
import Testing

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
