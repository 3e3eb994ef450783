import Foundation
import ReelayPostgres

/// All SQL of `idempotency_keys`: which task and which submission (by fingerprint) an Idempotency-Key stands for.
public struct IdempotencyStore: Sendable {
    public let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// What a key stands for: the task and fingerprint of the first submission that used it.
    public struct Claim: Sendable, Equatable {
        public var taskID: UUID
        public var fingerprint: String
    }

    /// Records `key` for (`taskID`, `fingerprint`) unless the user used it before; returns the claim that holds now (this
    /// one, or the earlier one, which the caller compares). One statement, so racing submissions agree on one claim.
    public func claim(userID: UUID, key: String, fingerprint: String, taskID: UUID) async throws -> Claim {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                """
                WITH inserted AS (
                    INSERT INTO idempotency_keys (user_uuid, key, fingerprint, task_id) VALUES ($1, $2, $3, $4)
                    ON CONFLICT (user_uuid, key) DO NOTHING
                    RETURNING task_id, fingerprint
                )
                SELECT task_id, fingerprint FROM inserted
                UNION ALL
                SELECT task_id, fingerprint FROM idempotency_keys WHERE user_uuid = $1 AND key = $2
                LIMIT 1
                """,
                [userID.uuidString, key, fingerprint, taskID.uuidString])
            if let row = result.rows.first {
                return Claim(taskID: try row.uuid("task_id"), fingerprint: try row.string("fingerprint"))
            }
            // A racing submission committed the key after this statement's snapshot: a new statement sees it.
            let again = try await connection.query(
                "SELECT task_id, fingerprint FROM idempotency_keys WHERE user_uuid = $1 AND key = $2", [userID.uuidString, key])
            guard let row = again.rows.first else {
                throw StoreError("idempotency key claim found no row")
            }
            return Claim(taskID: try row.uuid("task_id"), fingerprint: try row.string("fingerprint"))
        }
    }
}
