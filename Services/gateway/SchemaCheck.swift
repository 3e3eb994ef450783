import Foundation
import Logging
import ReelayPostgres
import ReelayStore

enum SchemaCheck {
    /// Exits with one line when the database schema is older than this build needs (migrations are applied by
    /// `reelay migrate`, never by a service). An unreachable database is not fatal: /readyz reports it until it answers.
    static func refuseOldSchema(pool: PostgresPool, logger: Logger) async {
        let required = Migrations.all.last?.version ?? 0
        do {
            let current = try await Migrations.currentVersion(pool: pool)
            if current < required {
                FileHandle.standardError.write(
                    Data("gateway: the database schema is at version \(current), this gateway needs \(required); run 'reelay migrate'\n".utf8))
                exit(1)
            }
        } catch {
            logger.warning("cannot check the schema version yet", metadata: ["error": "\(error)"])
        }
    }
}
