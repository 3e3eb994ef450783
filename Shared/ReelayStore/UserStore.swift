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
        /// The id of the API key the user authenticated with (`reelay keys list`); rate limits are per key.
        public var keyID: UUID
    }

    /// An API key as operators see it: never the key, only its id and first characters.
    public struct KeyInfo: Sendable, Equatable {
        public var id: UUID
        /// "rk_" and the first 8 characters of the secret; nil for keys created before keys had ids.
        public var prefix: String?
        public var userID: UUID
        public var tier: Tier
        public var createdAt: Date
        public var revokedAt: Date?
    }

    /// How many characters of a new key are kept to recognise it: "rk_" and 8 hex digits (32 of its 256 bits).
    static let prefixLength = 11

    /// Creates the user when missing (or updates its tier) and returns a new API key; only its hash is stored.
    public func createKey(userID: UUID, tier: Tier) async throws -> String {
        let key = Self.newKey()
        try await self.pool.transaction { connection in
            _ = try await connection.query(
                "INSERT INTO users (id, tier) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET tier = EXCLUDED.tier",
                [userID.uuidString, tier.rawValue])
            _ = try await connection.query(
                "INSERT INTO api_keys (key_hash, user_uuid, prefix) VALUES ($1, $2, $3)",
                [Self.hash(key), userID.uuidString, String(key.prefix(Self.prefixLength))])
        }
        return key
    }

    /// The user an API key belongs to, or nil for an unknown or revoked key.
    public func user(apiKey: String) async throws -> User? {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                """
                SELECT u.id, u.tier, k.id AS key_id FROM api_keys k JOIN users u ON u.id = k.user_uuid
                WHERE k.key_hash = $1 AND k.revoked_at IS NULL
                """,
                [Self.hash(apiKey)])
            guard let row = result.rows.first else { return nil }
            return User(id: try row.uuid("id"), tier: Tier(rawValue: try row.string("tier")) ?? .free, keyID: try row.uuid("key_id"))
        }
    }

    /// The keys of `userID` (or of every user), oldest first, revoked ones included.
    public func keys(userID: UUID?) async throws -> [KeyInfo] {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                """
                SELECT k.id, k.prefix, k.user_uuid, u.tier, k.created_at, k.revoked_at
                FROM api_keys k JOIN users u ON u.id = k.user_uuid
                WHERE $1::uuid IS NULL OR k.user_uuid = $1::uuid
                ORDER BY k.created_at, k.id
                """,
                [userID?.uuidString])
            return try result.rows.map { row in
                KeyInfo(
                    id: try row.uuid("id"), prefix: try row.optionalString("prefix"), userID: try row.uuid("user_uuid"),
                    tier: Tier(rawValue: try row.string("tier")) ?? .free, createdAt: try row.date("created_at"),
                    revokedAt: try row.optionalDate("revoked_at"))
            }
        }
    }

    /// Revokes the key `id`: from the next request on it gets 401. Returns the key as it is now (revoked, possibly earlier),
    /// or nil when no key has this id.
    public func revokeKey(id: UUID) async throws -> KeyInfo? {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                """
                WITH revoked AS (
                    UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
                    RETURNING id, prefix, user_uuid, created_at, revoked_at
                )
                SELECT r.id, r.prefix, r.user_uuid, u.tier, r.created_at, r.revoked_at FROM revoked r JOIN users u ON u.id = r.user_uuid
                """,
                [id.uuidString])
            return try result.rows.first.map { row in
                KeyInfo(
                    id: try row.uuid("id"), prefix: try row.optionalString("prefix"), userID: try row.uuid("user_uuid"),
                    tier: Tier(rawValue: try row.string("tier")) ?? .free, createdAt: try row.date("created_at"),
                    revokedAt: try row.optionalDate("revoked_at"))
            }
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
