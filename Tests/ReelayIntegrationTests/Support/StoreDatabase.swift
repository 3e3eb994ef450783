import Logging
import ReelayPostgres
import ReelayStore
import ReelayTestSupport

/// A database of its own, migrated, for one test.
struct StoreDatabase {
    let pool: PostgresPool
    let name: String

    static func create(_ label: String) async throws -> StoreDatabase {
        let database = try await ScratchDatabase.create("reelay_it_\(label)")
        let pool = PostgresPool(url: database.url, size: 16, name: "it-store", logger: Logger(label: "it"))
        try await Migrations.apply(pool: pool, logger: Logger(label: "it"))
        return StoreDatabase(pool: pool, name: database.name)
    }
}
