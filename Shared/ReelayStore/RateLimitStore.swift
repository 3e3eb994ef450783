import Foundation
import ReelayPostgres

/// Rate limits shared by every replica, as token buckets in PostgreSQL: one row per limit, refilled and taken from in
/// one atomic statement, so N dispatchers together stay under the rate. A 429 from Replicate blocks the bucket for
/// everyone until its reset.
public struct RateLimitStore: Sendable {
    public let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// Takes one token. Returns nil when taken, else how long to wait before asking again.
    /// - Parameters:
    ///   - perMinute: the sustained rate.
    ///   - burst: the bucket's size (tokens that may be spent at once after a quiet period).
    public func acquire(_ name: String, perMinute: Int, burst: Int) async throws -> Duration? {
        let rate = Double(perMinute) / 60
        let result = try await self.pool.withConnection { connection in
            _ = try await connection.query(
                "INSERT INTO rate_limits (name, tokens) VALUES ($1, $2::float8) ON CONFLICT (name) DO NOTHING", [name, String(burst)])
            return try await connection.query(
                """
                WITH current AS (
                    SELECT name, least($3::float8, tokens + extract(epoch FROM clock_timestamp() - refilled_at) * $2::float8) AS available,
                           greatest(extract(epoch FROM blocked_until - clock_timestamp()), 0)::float8 AS blocked_for
                    FROM rate_limits WHERE name = $1 FOR UPDATE
                ), taken AS (
                    UPDATE rate_limits r SET tokens = current.available - 1, refilled_at = clock_timestamp()
                    FROM current WHERE r.name = current.name AND current.available >= 1 AND current.blocked_for = 0
                    RETURNING r.name
                )
                SELECT (SELECT count(*) FROM taken) AS taken, available, blocked_for FROM current
                """,
                [name, String(rate), String(burst)])
        }
        guard let row = result.rows.first else { throw StoreError("rate limit \(name) has no row") }
        if try row.int("taken") == 1 { return nil }
        let available = Double(row["available"] ?? "0") ?? 0
        let blockedFor = Double(row["blocked_for"] ?? "0") ?? 0
        let refill = rate > 0 ? max(0, 1 - available) / rate : 60
        return .milliseconds(Int64((max(blockedFor, refill) * 1000).rounded(.up)) + 1)
    }

    /// Blocks the bucket for everyone for `duration` (a 429's reset), unless it is already blocked for longer.
    public func block(_ name: String, for duration: Duration) async throws {
        _ = try await self.pool.withConnection { connection in
            try await connection.query(
                """
                INSERT INTO rate_limits (name, tokens, blocked_until) VALUES ($1, 0, clock_timestamp() + make_interval(secs => $2::float8))
                ON CONFLICT (name) DO UPDATE SET
                    blocked_until = greatest(rate_limits.blocked_until, EXCLUDED.blocked_until)
                """,
                [name, String(duration.seconds)])
        }
    }
}
