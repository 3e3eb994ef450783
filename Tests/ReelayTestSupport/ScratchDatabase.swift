import Logging
import ReelayPostgres

/// A PostgreSQL database of its own on the test server (its own tables, nobody else's rows), empty until migrated.
public struct ScratchDatabase: Sendable {
    public let name: String
    /// The test server's URL with this database as its path.
    public let url: String

    /// Creates `<prefix>_<8 hex digits>` (lower case: an unquoted SQL name).
    public static func create(_ prefix: String) async throws -> ScratchDatabase {
        let name = TestServers.uniqueName(prefix, separator: "_")
        try await Self.admin { _ = try await $0.query("CREATE DATABASE \(name)") }
        return ScratchDatabase(name: name, url: TestServers.replacingPath(of: TestServers.databaseURL, with: "/" + name))
    }

    /// Drops the database, closing whatever is still connected to it; errors are ignored.
    public func drop() async {
        let name = self.name
        try? await Self.admin { _ = try await $0.query("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
    }

    /// Runs `body` on a connection to the test database, from a pool of one that is shut down afterwards.
    private static func admin(_ body: (PostgresConnection) async throws -> Void) async throws {
        let pool = PostgresPool(url: TestServers.databaseURL, size: 1, name: "reelay-test-admin", logger: Logger(label: "reelay.test"))
        try await withTearDown(pool, tearDown: { await $0.shutdown() }) { pool in
            try await pool.withConnection { try await body($0) }
        }
    }
}
