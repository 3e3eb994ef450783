import Foundation
import Logging
import ReelayCore
import ReelayPostgres

/// All SQL of `video_tasks` and `task_events`. Every change of status is a conditional update (status, and attempt where
/// it matters, in the WHERE clause) plus a history row, in one transaction: replays and races change nothing.
public struct TaskStore: Sendable {
    public let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    // MARK: Reads

    public func task(id: UUID) async throws -> TaskRecord? {
        try await self.pool.withConnection { connection in
            let result = try await connection.query("SELECT \(TaskRecord.columns) FROM video_tasks WHERE id = $1", [id.uuidString])
            return try result.rows.first.map(TaskRecord.init(row:))
        }
    }

    public func task(predictionID: String) async throws -> TaskRecord? {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                "SELECT \(TaskRecord.columns) FROM video_tasks WHERE replicate_task_id = $1 ORDER BY created_at DESC LIMIT 1",
                [predictionID])
            return try result.rows.first.map(TaskRecord.init(row:))
        }
    }

    /// A user's tasks, newest first. `before` is the (created_at, id) of the last task of the previous page.
    public func tasks(userID: UUID, status: TaskStatus?, before: (Date, UUID)?, limit: Int) async throws -> [TaskRecord] {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                """
                SELECT \(TaskRecord.columns) FROM video_tasks
                WHERE user_uuid = $1 AND ($2::text IS NULL OR status = $2)
                  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3::timestamptz, $4::uuid))
                ORDER BY created_at DESC, id DESC LIMIT $5
                """,
                [
                    userID.uuidString, status?.rawValue, before.map { PostgresFormat.timestamp($0.0) }, before?.1.uuidString,
                    String(limit),
                ])
            return try result.rows.map(TaskRecord.init(row:))
        }
    }

    /// 1-based position among pending tasks in dispatch order (`Priority.runsBefore`), or nil when the task is not pending.
    public func queuePosition(of task: TaskRecord, agingSeconds: Int) async throws -> Int? {
        guard task.status == .pending else { return nil }
        return try await self.pool.withConnection { connection in
            let result = try await connection.query(
                """
                SELECT count(*) + 1 AS position FROM video_tasks o, video_tasks t
                WHERE t.id = $1 AND o.status = 'pending' AND o.id <> t.id
                  AND ((\(Self.rank("o")) > \(Self.rank("t")))
                    OR (\(Self.rank("o")) = \(Self.rank("t")) AND (o.created_at, o.id) < (t.created_at, t.id)))
                """,
                [task.id.uuidString, String(agingSeconds)])
            return try result.rows.first?.int("position")
        }
    }

    /// The history of a task, oldest first: what answers "why is my task still waiting".
    public func events(taskID: UUID) async throws -> [TaskHistoryEntry] {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                "SELECT at, from_status, to_status, attempt, reason FROM task_events WHERE task_id = $1 ORDER BY id", [taskID.uuidString])
            return try result.rows.map { row in
                TaskHistoryEntry(
                    at: try row.date("at"), from: row["from_status"].flatMap(TaskStatus.init(rawValue:)),
                    to: TaskStatus(rawValue: try row.string("to_status")) ?? .pending, attempt: try row.int("attempt"),
                    reason: row["reason"])
            }
        }
    }

    /// The effective priority of a pending row as SQL: `Priority.effective` (stored priority plus a point per `$2` seconds
    /// waited, 0 = off; a wait that is negative, a `created_at` ahead of the database's clock, adds nothing). Ordered by
    /// it, then `created_at`, then `id`, rows come out as `Priority.runsBefore` orders them (`DispatchOrderTests`).
    static func rank(_ alias: String) -> String {
        """
        (\(alias).priority + CASE WHEN $2::int > 0 \
        THEN greatest(0, floor(extract(epoch FROM now() - \(alias).created_at) / $2::int))::int ELSE 0 END)
        """
    }

    // MARK: Admission (scheduler): TaskAdmission.swift

    // MARK: Scheduling (scheduler)

    /// One scheduling pass: under a global lock, fills free slots with the pending tasks of highest effective priority
    /// (then oldest). Each claimed task moves to `dispatching` with a new attempt and a lease. Returns the claimed tasks;
    /// the caller publishes their create commands after this commits.
    public func claimForDispatch(maxConcurrent: Int, lease: Duration, agingSeconds: Int) async throws -> [TaskRecord] {
        try await self.pool.transaction { connection in
            _ = try await connection.query("SELECT pg_advisory_xact_lock($1)", [String(AdvisoryLock.scheduling)])
            let running = try await connection.query(
                "SELECT count(*) AS running FROM video_tasks WHERE status IN ('dispatching', 'processing')")
            let free = Slots.free(running: try running.rows.first?.int("running") ?? 0, maxConcurrent: maxConcurrent)
            guard free > 0 else { return [] }
            let claimed = try await connection.query(
                """
                WITH next AS (
                    SELECT t.id FROM video_tasks t
                    WHERE t.status = 'pending' AND (t.not_before IS NULL OR t.not_before <= now())
                    ORDER BY \(Self.rank("t")) DESC, t.created_at, t.id
                    LIMIT $1 FOR UPDATE SKIP LOCKED
                )
                UPDATE video_tasks v SET status = 'dispatching', attempt = v.attempt + 1, dispatched_at = now(), updated_at = now(),
                    lease_expires_at = now() + make_interval(secs => $3::double precision), create_attempted_at = NULL,
                    replicate_task_id = NULL, not_before = NULL
                FROM next WHERE v.id = next.id
                RETURNING v.id
                """,
                [String(free), String(agingSeconds), String(lease.seconds)])
            let ids = try claimed.rows.map { try $0.uuid("id").uuidString }
            guard !ids.isEmpty else { return [] }
            let rows = try await connection.query(
                "SELECT \(TaskRecord.columns) FROM video_tasks WHERE id = ANY($1::uuid[]) ORDER BY priority DESC, created_at",
                ["{" + ids.joined(separator: ",") + "}"])
            let tasks = try rows.rows.map(TaskRecord.init(row:))
            for task in tasks {
                try await Self.recordEvent(
                    connection, taskID: task.id, from: .pending, to: .dispatching, attempt: task.attempt,
                    reason: "slot granted with priority \(task.priority)")
            }
            return tasks
        }
    }

    /// Tasks in `dispatching` whose lease ran out: their dispatcher died or their command was lost.
    public func expiredLeases(limit: Int = 100) async throws -> [TaskRecord] {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                """
                SELECT \(TaskRecord.columns) FROM video_tasks
                WHERE status = 'dispatching' AND lease_expires_at < now() ORDER BY lease_expires_at LIMIT $1
                """,
                [String(limit)])
            return try result.rows.map(TaskRecord.init(row:))
        }
    }

    /// Tasks in `processing` with no news for `after`: their terminal webhook may be lost.
    public func staleProcessing(after: Duration, limit: Int = 100) async throws -> [TaskRecord] {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                """
                SELECT \(TaskRecord.columns) FROM video_tasks
                WHERE status = 'processing' AND updated_at < now() - make_interval(secs => $1::double precision)
                ORDER BY updated_at LIMIT $2
                """,
                [String(after.seconds), String(limit)])
            return try result.rows.map(TaskRecord.init(row:))
        }
    }

    /// Running tasks whose cancel was requested but not yet confirmed by Replicate, quiet for `after`: the cancel is sent
    /// again (a cancel is idempotent at Replicate; a lost command or a race with the create must not let the run finish).
    public func unconfirmedCancels(after: Duration, limit: Int = 100) async throws -> [TaskRecord] {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                """
                SELECT \(TaskRecord.columns) FROM video_tasks
                WHERE status = 'processing' AND cancel_requested_at IS NOT NULL
                  AND updated_at < now() - make_interval(secs => $1::double precision)
                ORDER BY updated_at LIMIT $2
                """,
                [String(after.seconds), String(limit)])
            return try result.rows.map(TaskRecord.init(row:))
        }
    }

    /// Pushes a lease forward (a re-sent command gets a fresh lease) without changing anything else.
    public func extendLease(taskID: UUID, attempt: Int, by lease: Duration) async throws -> Bool {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                """
                UPDATE video_tasks SET lease_expires_at = now() + make_interval(secs => $3::double precision)
                WHERE id = $1 AND attempt = $2 AND status = 'dispatching'
                """,
                [taskID.uuidString, String(attempt), String(lease.seconds)])
            return result.affectedRows == 1
        }
    }

    /// Touches a processing row so the stale-processing sweep waits another period before asking again.
    public func touch(taskID: UUID, attempt: Int) async throws {
        _ = try await self.pool.withConnection { connection in
            try await connection.query(
                "UPDATE video_tasks SET updated_at = now() WHERE id = $1 AND attempt = $2 AND status = 'processing'",
                [taskID.uuidString, String(attempt)])
        }
    }

    // MARK: Dispatch (dispatcher)

    /// Records, before calling Replicate, that a create is being attempted for this attempt. Returns the task when this
    /// caller may create now; nil when the command is stale or a create was already attempted (its outcome must be
    /// reconciled, never blindly repeated).
    public func beginCreate(taskID: UUID, attempt: Int, lease: Duration) async throws -> TaskRecord? {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                """
                UPDATE video_tasks SET create_attempted_at = now(), updated_at = now(),
                    lease_expires_at = now() + make_interval(secs => $3::double precision)
                WHERE id = $1 AND attempt = $2 AND status = 'dispatching' AND create_attempted_at IS NULL
                RETURNING \(TaskRecord.columns)
                """,
                [taskID.uuidString, String(attempt), String(lease.seconds)])
            return try result.rows.first.map(TaskRecord.init(row:))
        }
    }

    // MARK: Transitions

    /// Moves a task to `to` when it is in one of `from` (and at `attempt`, when given), setting the extra columns, and
    /// records the history row. Returns the updated task, or nil when the condition did not hold (a replay, a race lost,
    /// a stale attempt). Only legal transitions are attempted.
    public func transition(
        taskID: UUID, attempt: Int?, from: Set<TaskStatus>, to: TaskStatus, reason: String?, changes: TaskChanges = TaskChanges()
    ) async throws -> TaskRecord? {
        let legal = from.filter { TaskTransition.isAllowed(from: $0, to: to) }
        guard !legal.isEmpty else { return nil }
        return try await self.pool.transaction { connection in
            try await Self.transition(
                connection, taskID: taskID, attempt: attempt, from: legal, to: to, reason: reason, changes: changes)
        }
    }

    static func transition(
        _ connection: PostgresConnection, taskID: UUID, attempt: Int?, from: Set<TaskStatus>, to: TaskStatus, reason: String?,
        changes: TaskChanges
    ) async throws -> TaskRecord? {
        let locked = try await connection.query(
            "SELECT status, attempt FROM video_tasks WHERE id = $1 FOR UPDATE", [taskID.uuidString])
        guard let row = locked.rows.first, let current = TaskStatus(rawValue: try row.string("status")) else { return nil }
        let currentAttempt = try row.int("attempt")
        guard from.contains(current), attempt == nil || attempt == currentAttempt else { return nil }
        let terminal = to.isTerminal
        let result = try await connection.query(
            """
            UPDATE video_tasks SET status = $2, updated_at = now(),
                error_message = CASE WHEN $3::boolean THEN $4 ELSE error_message END,
                replicate_task_id = coalesce($5, replicate_task_id),
                output_video_url = coalesce($6, output_video_url),
                output_storage_key = coalesce($7, output_storage_key),
                started_at = CASE WHEN $2 = 'processing' THEN coalesce(started_at, now()) ELSE started_at END,
                completed_at = CASE WHEN $8::boolean THEN now() ELSE completed_at END,
                lease_expires_at = CASE WHEN $2 = 'dispatching' THEN lease_expires_at ELSE NULL END,
                retry_count = retry_count + $9::int,
                priority = priority + $10::int,
                not_before = CASE WHEN $2 = 'pending' THEN now() + make_interval(secs => $11::double precision) ELSE NULL END,
                cancel_requested_at = CASE WHEN $12::boolean THEN coalesce(cancel_requested_at, now()) ELSE cancel_requested_at END
            WHERE id = $1
            RETURNING \(TaskRecord.columns)
            """,
            [
                taskID.uuidString, to.rawValue, changes.setErrorMessage ? "t" : "f", changes.errorMessage, changes.replicateTaskID,
                changes.outputVideoURL, changes.outputStorageKey, terminal ? "t" : "f", String(changes.retryIncrement),
                String(changes.priorityIncrement), String(changes.notBefore?.seconds ?? 0), changes.cancelRequested ? "t" : "f",
            ])
        try await Self.recordEvent(connection, taskID: taskID, from: current, to: to, attempt: currentAttempt, reason: reason)
        return try result.rows.first.map(TaskRecord.init(row:))
    }

    /// A transient failure of `attempt`: back to pending with backoff (slot released), or failed once retries are spent.
    public func retryOrFail(
        taskID: UUID, attempt: Int, from: Set<TaskStatus>, reason: String, maxRetries: Int, backoff: Backoff,
        atLeast minimumDelay: Duration? = nil
    ) async throws -> TaskRecord? {
        guard let task = try await self.task(id: taskID), task.attempt == attempt, from.contains(task.status) else { return nil }
        var rng = SystemRandomNumberGenerator()
        switch RetryDecision.decide(
            retryCount: task.retryCount, maxRetries: maxRetries, reason: reason, backoff: backoff, atLeast: minimumDelay, using: &rng)
        {
        case .giveUp(let historyReason, let message):
            return try await self.transition(
                taskID: taskID, attempt: attempt, from: from, to: .failed, reason: historyReason, changes: TaskChanges(errorMessage: message))
        case .retry(let delay, let historyReason, let message, let priorityBonus):
            return try await self.transition(
                taskID: taskID, attempt: attempt, from: from, to: .pending, reason: historyReason,
                changes: TaskChanges(errorMessage: message, retryIncrement: 1, priorityIncrement: priorityBonus, notBefore: delay))
        }
    }

    /// Marks a cancel request; a pending task is canceled at once. Returns the task after the change, and whether it
    /// still needs canceling at Replicate. nil when the task does not exist.
    public func requestCancel(taskID: UUID) async throws -> (task: TaskRecord, needsRemoteCancel: Bool)? {
        try await self.pool.transaction { connection in
            let locked = try await connection.query("SELECT status FROM video_tasks WHERE id = $1 FOR UPDATE", [taskID.uuidString])
            guard let row = locked.rows.first, let status = TaskStatus(rawValue: try row.string("status")) else { return nil }
            if status == .pending {
                let task = try await Self.transition(
                    connection, taskID: taskID, attempt: nil, from: [.pending], to: .canceled, reason: "canceled by the user",
                    changes: TaskChanges(errorMessage: "Canceled by the user", cancelRequested: true))
                return task.map { ($0, false) }
            }
            _ = try await connection.query(
                """
                UPDATE video_tasks SET cancel_requested_at = coalesce(cancel_requested_at, now()), updated_at = now()
                WHERE id = $1 AND status IN ('dispatching', 'processing')
                """,
                [taskID.uuidString])
            let result = try await connection.query("SELECT \(TaskRecord.columns) FROM video_tasks WHERE id = $1", [taskID.uuidString])
            guard let task = try result.rows.first.map(TaskRecord.init(row:)) else { return nil }
            return (task, task.status.holdsSlot)
        }
    }

    // MARK: Webhooks (webhook finalizer)

    /// Whether this webhook delivery was already applied.
    public func webhookSeen(_ webhookID: String) async throws -> Bool {
        try await self.pool.withConnection { connection in
            try await !connection.query("SELECT 1 FROM webhook_deliveries WHERE webhook_id = $1", [webhookID]).rows.isEmpty
        }
    }

    /// Records a delivery as applied. Idempotent.
    public func recordWebhook(
        _ webhookID: String, taskID: UUID?, attempt: Int?, predictionID: String, status: String, receivedAt: Date
    ) async throws {
        _ = try await self.pool.withConnection { connection in
            try await connection.query(
                """
                INSERT INTO webhook_deliveries (webhook_id, task_id, attempt, prediction_id, prediction_status, received_at)
                VALUES ($1, $2, $3, $4, $5, $6::timestamptz) ON CONFLICT (webhook_id) DO NOTHING
                """,
                [webhookID, taskID?.uuidString, attempt.map(String.init), predictionID, status, PostgresFormat.timestamp(receivedAt)])
        }
    }

    // MARK: Stats

    public func stats() async throws -> QueueStats {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                """
                SELECT
                  count(*) FILTER (WHERE status = 'pending') AS pending,
                  count(*) FILTER (WHERE status IN ('dispatching', 'processing')) AS running,
                  count(*) FILTER (WHERE status = 'completed') AS completed,
                  count(*) FILTER (WHERE status = 'failed') AS failed,
                  count(*) FILTER (WHERE status = 'canceled') AS canceled,
                  count(*) FILTER (WHERE status = 'rejected') AS rejected,
                  coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM dispatched_at - created_at))
                    FILTER (WHERE dispatched_at IS NOT NULL), 0) AS wait_p50,
                  coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM dispatched_at - created_at))
                    FILTER (WHERE dispatched_at IS NOT NULL), 0) AS wait_p95,
                  coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at))
                    FILTER (WHERE status = 'completed'), 0) AS run_p50,
                  coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at))
                    FILTER (WHERE status = 'completed'), 0) AS run_p95,
                  (SELECT coalesce(sum(refusals), 0) FROM admission_refusals) AS refused_counted
                FROM video_tasks
                """)
            guard let row = result.rows.first else { throw StoreError("stats query returned no row") }
            func double(_ name: String) -> Double { Double(row[name] ?? "0") ?? 0 }
            return QueueStats(
                pending: try row.int("pending"), running: try row.int("running"), completed: try row.int("completed"),
                failed: try row.int("failed"), canceled: try row.int("canceled"),
                rejected: try row.int("rejected") + row.int("refused_counted"),
                waitSecondsP50: double("wait_p50"), waitSecondsP95: double("wait_p95"),
                runSecondsP50: double("run_p50"), runSecondsP95: double("run_p95"))
        }
    }

    static func recordEvent(
        _ connection: PostgresConnection, taskID: UUID, from: TaskStatus?, to: TaskStatus, attempt: Int, reason: String?
    ) async throws {
        _ = try await connection.query(
            "INSERT INTO task_events (task_id, from_status, to_status, attempt, reason) VALUES ($1, $2, $3, $4, $5)",
            [taskID.uuidString, from?.rawValue, to.rawValue, String(attempt), reason])
    }
}

extension TaskRecord {
    /// What the workers' decisions (`DispatchDecision`, `WebhookDecision`, `SweepDecision`) read of this row.
    public var snapshot: TaskSnapshot {
        TaskSnapshot(
            id: self.id, status: self.status, attempt: self.attempt, retryCount: self.retryCount, replicateTaskID: self.replicateTaskID,
            createAttemptedAt: self.createAttemptedAt, cancelRequestedAt: self.cancelRequestedAt, dispatchedAt: self.dispatchedAt,
            createdAt: self.createdAt)
    }
}

/// A submission as the scheduler admits it.
public struct Submission: Sendable {
    public var taskID: UUID
    public var userID: UUID
    public var prompt: String
    public var inputImageURL: String
    public var inputJSON: String?
    public var idempotencyKey: String?
    public var submittedAt: Date
    /// The gateway's reply deadline (`SubmitTaskCommand.replyBy`); nil keeps every refusal as a row.
    public var replyBy: Date?

    public init(
        taskID: UUID, userID: UUID, prompt: String, inputImageURL: String, inputJSON: String?, idempotencyKey: String?,
        submittedAt: Date, replyBy: Date? = nil
    ) {
        self.taskID = taskID
        self.userID = userID
        self.prompt = prompt
        self.inputImageURL = inputImageURL
        self.inputJSON = inputJSON
        self.idempotencyKey = idempotencyKey
        self.submittedAt = submittedAt
        self.replyBy = replyBy
    }
}

public struct AdmissionResult: Sendable, Equatable {
    public var taskID: UUID
    public var decision: AdmissionDecision
    /// The task existed already (same id or idempotency key); `decision` is `.admit` and nothing changed.
    public var duplicate: Bool
    /// Whether a row exists for `taskID` now: always for admitted and duplicate; for a refusal only when it was kept
    /// (the gateway may have answered 202 "submitted"), otherwise it was only counted.
    public var stored: Bool

    public init(taskID: UUID, decision: AdmissionDecision, duplicate: Bool, stored: Bool? = nil) {
        self.taskID = taskID
        self.decision = decision
        self.duplicate = duplicate
        self.stored = stored ?? duplicate
    }
}

/// Column changes that ride along with a transition.
public struct TaskChanges: Sendable {
    public var setErrorMessage: Bool
    public var errorMessage: String?
    public var replicateTaskID: String?
    public var outputVideoURL: String?
    public var outputStorageKey: String?
    public var retryIncrement: Int
    public var priorityIncrement: Int
    public var notBefore: Duration?
    public var cancelRequested: Bool

    public init(
        errorMessage: String? = nil, clearError: Bool = false, replicateTaskID: String? = nil, outputVideoURL: String? = nil,
        outputStorageKey: String? = nil, retryIncrement: Int = 0, priorityIncrement: Int = 0, notBefore: Duration? = nil,
        cancelRequested: Bool = false
    ) {
        self.setErrorMessage = errorMessage != nil || clearError
        self.errorMessage = errorMessage
        self.replicateTaskID = replicateTaskID
        self.outputVideoURL = outputVideoURL
        self.outputStorageKey = outputStorageKey
        self.retryIncrement = retryIncrement
        self.priorityIncrement = priorityIncrement
        self.notBefore = notBefore
        self.cancelRequested = cancelRequested
    }
}

public struct TaskHistoryEntry: Sendable, Equatable {
    public var at: Date
    public var from: TaskStatus?
    public var to: TaskStatus
    public var attempt: Int
    public var reason: String?
}

public struct QueueStats: Sendable, Equatable, Codable {
    public var pending: Int
    public var running: Int
    public var completed: Int
    public var failed: Int
    public var canceled: Int
    /// Refused submissions: `rejected` rows plus the refusals only counted in `admission_refusals`.
    public var rejected: Int
    public var waitSecondsP50: Double
    public var waitSecondsP95: Double
    public var runSecondsP50: Double
    public var runSecondsP95: Double

    /// Completed among finished runs (completed + failed), 1 when nothing finished yet.
    public var successRate: Double {
        let finished = self.completed + self.failed
        return finished == 0 ? 1 : Double(self.completed) / Double(finished)
    }
}

/// Text forms PostgreSQL parses unambiguously.
public enum PostgresFormat {
    /// Microsecond precision, as PostgreSQL stores it (ISO 8601 with milliseconds would lose rows at a page boundary).
    public static func timestamp(_ date: Date) -> String {
        PostgresTimestamp.format(date)
    }
}

extension Duration {
    /// Whole and fractional seconds as a Double.
    public var seconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
