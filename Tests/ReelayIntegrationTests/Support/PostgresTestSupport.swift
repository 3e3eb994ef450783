import Foundation
import Logging
import ReelayPostgres
import ReelayTestSupport

/// Integration tests against the PostgreSQL from `scripts/servers.sh up test`.
enum PostgresTestSupport {
    static var url: String {
        TestServers.databaseURL
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
        return try await withTearDown(pool, tearDown: { await $0.shutdown() }, body)
    }
}

/// A counter for closures the pool may run several times (any thread may touch it).
final class PostgresTestCounter: Sendable {
    private let count = Locked(0)

    @discardableResult
    func increment() -> Int {
        self.count.withLock {
            $0 += 1
            return $0
        }
    }

    var value: Int { self.count.withLock { $0 } }
}

/// The order in which waiters got a connection.
final class PostgresOrderLog: Sendable {
    private let log = Locked<[Int]>([])

    func append(_ value: Int) { self.log.withLock { $0.append(value) } }
    var values: [Int] { self.log.withLock { $0 } }
}
