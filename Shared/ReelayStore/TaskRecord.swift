import Foundation
import ReelayCore
import ReelayPostgres

/// One row of `video_tasks`.
public struct TaskRecord: Sendable, Equatable {
    public var id: UUID
    public var userID: UUID
    public var status: TaskStatus
    public var prompt: String
    public var inputImageURL: String
    public var modelInputJSON: String?
    public var model: String
    public var tier: Tier
    public var outputVideoURL: String?
    public var outputStorageKey: String?
    public var replicateTaskID: String?
    public var errorMessage: String?
    public var priority: Int
    public var retryCount: Int
    public var attempt: Int
    public var notBefore: Date?
    public var leaseExpiresAt: Date?
    public var createAttemptedAt: Date?
    public var dispatchedAt: Date?
    public var startedAt: Date?
    public var completedAt: Date?
    public var cancelRequestedAt: Date?
    public var idempotencyKey: String?
    public var createdAt: Date
    public var updatedAt: Date

    /// The column list every task query selects, so `init(row:)` always finds what it reads.
    static let columns = """
        id, user_uuid, status, prompt, input_image_url, model_input::text AS model_input, model, tier, output_video_url,
        output_storage_key, replicate_task_id, error_message, priority, retry_count, attempt, not_before, lease_expires_at,
        create_attempted_at, dispatched_at, started_at, completed_at, cancel_requested_at, idempotency_key, created_at, updated_at
        """

    init(row: PostgresRow) throws {
        self.id = try row.uuid("id")
        self.userID = try row.uuid("user_uuid")
        let status = try row.string("status")
        guard let parsed = TaskStatus(rawValue: status) else { throw StoreError("unknown task status '\(status)' in the database") }
        self.status = parsed
        self.prompt = try row.string("prompt")
        self.inputImageURL = try row.string("input_image_url")
        self.modelInputJSON = row["model_input"]
        self.model = try row.string("model")
        self.tier = Tier(rawValue: try row.string("tier")) ?? .free
        self.outputVideoURL = row["output_video_url"]
        self.outputStorageKey = row["output_storage_key"]
        self.replicateTaskID = row["replicate_task_id"]
        self.errorMessage = row["error_message"]
        self.priority = try row.int("priority")
        self.retryCount = try row.int("retry_count")
        self.attempt = try row.int("attempt")
        self.notBefore = try row.optionalDate("not_before")
        self.leaseExpiresAt = try row.optionalDate("lease_expires_at")
        self.createAttemptedAt = try row.optionalDate("create_attempted_at")
        self.dispatchedAt = try row.optionalDate("dispatched_at")
        self.startedAt = try row.optionalDate("started_at")
        self.completedAt = try row.optionalDate("completed_at")
        self.cancelRequestedAt = try row.optionalDate("cancel_requested_at")
        self.idempotencyKey = row["idempotency_key"]
        self.createdAt = try row.date("created_at")
        self.updatedAt = try row.date("updated_at")
    }
}

/// A store-level failure that is not PostgreSQL's (bad data, a broken invariant).
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
