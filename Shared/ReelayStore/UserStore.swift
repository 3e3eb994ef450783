import Crypto
import Foundation
import ReelayCore
import ReelayPostgres

/// All SQL of `users` and `api_keys`. API keys are stored as SHA-256 hashes only.
public struct UserStore: Sendable {
    public let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    public struct User: Sendable, Equatable {
        public var id: UUID
        public var tier: Tier
    }

    /// Creates the user when missing (or updates its tier) and returns a new API key; only its hash is stored.
    public func createKey(userID: UUID, tier: Tier) async throws -> String {
        let key = Self.newKey()
        try await self.pool.transaction { connection in
            _ = try await connection.query(
                "INSERT INTO users (id, tier) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET tier = EXCLUDED.tier",
                [userID.uuidString, tier.rawValue])
            _ = try await connection.query(
                "INSERT INTO api_keys (key_hash, user_uuid) VALUES ($1, $2)", [Self.hash(key), userID.uuidString])
        }
        return key
    }

    /// The user an API key belongs to, or nil for an unknown or revoked key.
    public func user(apiKey: String) async throws -> User? {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                """
                SELECT u.id, u.tier FROM api_keys k JOIN users u ON u.id = k.user_uuid
                WHERE k.key_hash = $1 AND k.revoked_at IS NULL
                """,
                [Self.hash(apiKey)])
            guard let row = result.rows.first else { return nil }
            return User(id: try row.uuid("id"), tier: Tier(rawValue: try row.string("tier")) ?? .free)
        }
    }

    /// "rk_" + 32 random bytes as lowercase hex.
    static func newKey() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return "rk_" + bytes.map { String(format: "%02x", $0) }.joined()
    }

    static func hash(_ key: String) -> String {
        SHA256.hash(data: Array(key.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
