import Logging
import ReelayPostgres

/// The schema, as ordered migrations. `reelay migrate` applies the ones not yet recorded; never edit an applied one.
public enum Migrations {
    public struct Migration: Sendable {
        public var version: Int
        public var name: String
        /// One statement each (they run through the extended protocol).
        public var statements: [String]
    }

    public static let all: [Migration] = [
        Migration(
            version: 1, name: "core schema",
            statements: [
                """
                CREATE TABLE users (
                    id uuid PRIMARY KEY,
                    tier text NOT NULL DEFAULT 'free' CHECK (tier IN ('free', 'premium', 'pro')),
                    max_active_tasks int CHECK (max_active_tasks > 0),
                    created_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                """
                CREATE TABLE api_keys (
                    key_hash text PRIMARY KEY,
                    user_uuid uuid NOT NULL REFERENCES users (id),
                    created_at timestamptz NOT NULL DEFAULT now(),
                    revoked_at timestamptz
                )
                """,
                """
                CREATE TABLE video_tasks (
                    id uuid PRIMARY KEY,
                    user_uuid uuid NOT NULL,
                    status text NOT NULL CHECK (status IN
                        ('pending', 'dispatching', 'processing', 'completed', 'failed', 'canceled', 'rejected')),
                    input_image_url text NOT NULL,
                    output_video_url text,
                    prompt text NOT NULL,
                    replicate_task_id text,
                    error_message text,
                    priority int NOT NULL DEFAULT 0,
                    retry_count int NOT NULL DEFAULT 0,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now(),
                    model text NOT NULL,
                    model_input jsonb,
                    tier text NOT NULL,
                    attempt int NOT NULL DEFAULT 0,
                    not_before timestamptz,
                    lease_expires_at timestamptz,
                    create_attempted_at timestamptz,
                    dispatched_at timestamptz,
                    started_at timestamptz,
                    completed_at timestamptz,
                    cancel_requested_at timestamptz,
                    output_storage_key text,
                    idempotency_key text,
                    UNIQUE (user_uuid, idempotency_key)
                )
                """,
                "CREATE INDEX video_tasks_pending_order ON video_tasks (priority DESC, created_at) WHERE status = 'pending'",
                """
                CREATE INDEX video_tasks_active_by_user ON video_tasks (user_uuid)
                    WHERE status IN ('pending', 'dispatching', 'processing')
                """,
                "CREATE INDEX video_tasks_holding_slots ON video_tasks (status) WHERE status IN ('dispatching', 'processing')",
                "CREATE INDEX video_tasks_by_user ON video_tasks (user_uuid, created_at DESC, id DESC)",
                "CREATE INDEX video_tasks_by_prediction ON video_tasks (replicate_task_id) WHERE replicate_task_id IS NOT NULL",
                """
                CREATE TABLE task_events (
                    id bigserial PRIMARY KEY,
                    task_id uuid NOT NULL REFERENCES video_tasks (id),
                    at timestamptz NOT NULL DEFAULT now(),
                    from_status text,
                    to_status text NOT NULL,
                    attempt int NOT NULL,
                    reason text
                )
                """,
                "CREATE INDEX task_events_by_task ON task_events (task_id, id)",
                """
                CREATE TABLE webhook_deliveries (
                    webhook_id text PRIMARY KEY,
                    task_id uuid,
                    attempt int,
                    prediction_id text,
                    prediction_status text,
                    received_at timestamptz NOT NULL DEFAULT now()
                )
                """,
            ]),
        Migration(
            version: 2, name: "shared rate limits",
            statements: [
                """
                CREATE TABLE rate_limits (
                    name text PRIMARY KEY,
                    tokens double precision NOT NULL,
                    refilled_at timestamptz NOT NULL DEFAULT now(),
                    blocked_until timestamptz NOT NULL DEFAULT 'epoch'
                )
                """
            ]),
        Migration(
            version: 3, name: "api key ids and idempotency fingerprints",
            statements: [
                // An id to list and revoke a key by, and the first characters of the key to recognise it (keys created before
                // this migration have none); the key itself is never stored.
                "ALTER TABLE api_keys ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid()",
                "ALTER TABLE api_keys ADD COLUMN prefix text",
                "CREATE UNIQUE INDEX api_keys_by_id ON api_keys (id)",
                // Written by the gateway before it publishes: the first submission with a key decides its task id and
                // fingerprint; the same key with another fingerprint is a conflict.
                """
                CREATE TABLE idempotency_keys (
                    user_uuid uuid NOT NULL,
                    key text NOT NULL,
                    fingerprint text NOT NULL,
                    task_id uuid NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (user_uuid, key)
                )
                """,
            ]),
        Migration(
            version: 4, name: "admission refusal counters",
            statements: [
                // A refusal the user heard about at once (429/503/422 within ADMISSION_TIMEOUT_MS) costs a counter, not a
                // row: a flood of refused submissions cannot grow video_tasks. One row per user and reason.
                """
                CREATE TABLE admission_refusals (
                    user_uuid uuid NOT NULL,
                    reason text NOT NULL,
                    refusals bigint NOT NULL CHECK (refusals >= 0),
                    first_at timestamptz NOT NULL DEFAULT now(),
                    last_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (user_uuid, reason)
                )
                """
            ]),
    ]

    /// Applies every migration not yet recorded, each in its own transaction, in order. Safe to run concurrently
    /// (an advisory lock serialises runners). Returns the versions applied now.
    @discardableResult
    public static func apply(pool: PostgresPool, logger: Logger) async throws -> [Int] {
        try await pool.withConnection { connection in
            _ = try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
                """)
        }
        var applied: [Int] = []
        for migration in Self.all {
            let didApply = try await pool.transaction { connection -> Bool in
                _ = try await connection.query("SELECT pg_advisory_xact_lock($1)", [String(AdvisoryLock.migrations)])
                let seen = try await connection.query("SELECT 1 FROM schema_migrations WHERE version = $1", [String(migration.version)])
                if !seen.rows.isEmpty { return false }
                for statement in migration.statements {
                    _ = try await connection.query(statement)
                }
                _ = try await connection.query(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [String(migration.version), migration.name])
                return true
            }
            if didApply {
                logger.info("applied migration", metadata: ["pg.migration": "\(migration.version) \(migration.name)"])
                applied.append(migration.version)
            }
        }
        return applied
    }

    /// The highest applied version, or 0; services refuse to start on a schema older than `all.last`.
    public static func currentVersion(pool: PostgresPool) async throws -> Int {
        try await pool.withConnection { connection in
            let exists = try await connection.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
            guard try exists.rows.first?.bool("present") == true else { return 0 }
            let result = try await connection.query("SELECT coalesce(max(version), 0) AS version FROM schema_migrations")
            return try result.rows.first?.int("version") ?? 0
        }
    }
}

/// Keys of PostgreSQL advisory locks, one place.
enum AdvisoryLock {
    static let migrations: Int64 = 0x5245_454C_0001
    static let admission: Int64 = 0x5245_454C_0002
    static let scheduling: Int64 = 0x5245_454C_0003
}
