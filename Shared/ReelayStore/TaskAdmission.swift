import Foundation
import ReelayCore
import ReelayPostgres

// Admission SQL of `video_tasks`, `task_events` and `admission_refusals` (the scheduler's intake, and the gateway's
// keeping of a rejection that arrived after it answered 202 "submitted").

extension TaskStore {
    /// Admits a batch of submissions in ONE transaction under a global admission lock, so limits hold exactly however many
    /// submissions race and however many schedulers run. Duplicates (same task id, or same user + idempotency key) return
    /// the existing task.
    ///
    /// A refusal is kept as a `rejected` row only when the gateway may already have answered 202 "submitted"
    /// (`Admission.mustKeepRefusal` with the command's `replyBy` and `replyMargin`), so that user can read the verdict;
    /// otherwise it only adds to `admission_refusals` (by user and reason), and a flood of refusals grows no table.
    ///
    /// A submission whose data the database refuses (SQLSTATE class 22, 23 or 54: a NUL, a value too long...) must not take
    /// its batch down with it. The batch first runs without savepoints, so the common case costs nothing extra; when a row
    /// is refused, the transaction rolls back and the batch runs again with a savepoint per row: each poisoned row is
    /// answered `.invalid` on its own, and every other row is decided as usual in the same commit.
    public func admit(
        _ submissions: [Submission], limits: AdmissionLimits, model: String, replyMargin: Duration = .milliseconds(500)
    ) async throws -> [AdmissionResult] {
        let batch = AdmissionBatch(submissions: submissions, limits: limits, model: model, replyMargin: replyMargin)
        do {
            return try await self.pool.transaction { connection in
                try await batch.run(connection, isolated: false)
            }
        } catch let error as PostgresError where AdmissionBatch.isRowRefusal(error) {
            return try await self.pool.transaction { connection in
                try await batch.run(connection, isolated: true)
            }
        }
    }

    /// Keeps a refusal that was only counted as a `rejected` row after all, because its verdict did not reach the
    /// client in time: the gateway received it after answering 202 "submitted", or the scheduler could not deliver it
    /// (the reply queue was gone). The user can then read it with GET. The count moves from `admission_refusals` to the
    /// row, so the statistics count it once. Returns false when the task already has a row (nothing changed).
    public func keepLateRejection(_ submission: Submission, reason: String, message: String, model: String) async throws -> Bool {
        do {
            let kept = reason == "invalid" ? submission.storable : submission
            return try await self.keepRejection(kept, reason: reason, message: message, model: model)
        } catch let error as PostgresError where AdmissionBatch.isRowRefusal(error) {
            // Refused under a limit before its data was ever written, yet unstorable as it is (a NUL): keep what can be.
            return try await self.keepRejection(submission.storable, reason: reason, message: message, model: model)
        }
    }

    private func keepRejection(_ submission: Submission, reason: String, message: String, model: String) async throws -> Bool {
        try await self.pool.transaction { connection in
            // Under the admission lock: the scheduler and a gateway may both keep the same refusal; one row, one decrement.
            _ = try await connection.query("SELECT pg_advisory_xact_lock($1)", [String(AdvisoryLock.admission)])
            let exists = try await connection.query("SELECT 1 FROM video_tasks WHERE id = $1", [submission.taskID.uuidString])
            guard exists.rows.isEmpty else { return false }
            let user = try await connection.query("SELECT tier FROM users WHERE id = $1", [submission.userID.uuidString])
            let tier = try user.rows.first.flatMap { Tier(rawValue: try $0.string("tier")) } ?? .free
            // Without the idempotency key: a retry with the same key must be decided afresh, not answered with this row.
            var kept = submission
            kept.idempotencyKey = nil
            try await AdmissionBatch.insert(
                connection, kept, status: .rejected, message: message, tier: tier,
                priority: Priority.base(tier: tier, retryCount: 0, promptLength: kept.prompt.count), model: model,
                reason: message + " (decided before the gateway's deadline, kept after it)")
            _ = try await connection.query(
                """
                UPDATE admission_refusals SET refusals = refusals - 1
                WHERE user_uuid = $1 AND reason = $2 AND refusals > 0
                """,
                [submission.userID.uuidString, reason])
            return true
        }
    }

    /// Refusals counted instead of stored, by user and reason, highest first (for operators and tests).
    public func refusalCounts(userID: UUID? = nil) async throws -> [RefusalCount] {
        try await self.pool.withConnection { connection in
            let result = try await connection.query(
                """
                SELECT user_uuid, reason, refusals, last_at FROM admission_refusals
                WHERE $1::uuid IS NULL OR user_uuid = $1 ORDER BY refusals DESC, user_uuid, reason
                """,
                [userID?.uuidString])
            return try result.rows.map { row in
                RefusalCount(
                    userID: try row.uuid("user_uuid"), reason: try row.string("reason"), count: try row.int("refusals"),
                    lastAt: try row.date("last_at"))
            }
        }
    }
}

/// Refusals of one user for one reason that were counted, not stored.
public struct RefusalCount: Sendable, Equatable {
    public var userID: UUID
    /// `AdmissionDecision.refusalReason`: "user_limit", "queue_full", "invalid".
    public var reason: String
    public var count: Int
    public var lastAt: Date
}

/// One admission transaction's work. `run` is the transaction's body, so a serialization retry repeats all of it.
struct AdmissionBatch: Sendable {
    let submissions: [Submission]
    let limits: AdmissionLimits
    let model: String
    let replyMargin: Duration

    /// What one row came to: the caller's result, and the refusal reason to count when nothing was stored.
    private struct RowOutcome {
        var result: AdmissionResult
        var counted: String?
    }

    /// The database refused the row's data, not the batch: class 22 (data exception, e.g. a NUL), 23 (integrity
    /// constraint) or 54 (program limit, e.g. an index entry too large). Running it again unchanged cannot succeed.
    static func isRowRefusal(_ error: PostgresError) -> Bool {
        !error.isConnectionError && (error.isDataException || error.isIntegrityConstraintViolation || error.sqlStateClass == "54")
    }

    func run(_ connection: PostgresConnection, isolated: Bool) async throws -> [AdmissionResult] {
        _ = try await connection.query("SELECT pg_advisory_xact_lock($1)", [String(AdvisoryLock.admission)])
        var results: [AdmissionResult] = []
        results.reserveCapacity(self.submissions.count)
        var counted: [RefusalKey: Int] = [:]
        for submission in self.submissions {
            let outcome = isolated ? try await self.isolatedRow(connection, submission) : try await self.row(connection, submission)
            results.append(outcome.result)
            if let reason = outcome.counted {
                counted[RefusalKey(userID: submission.userID, reason: reason), default: 0] += 1
            }
        }
        // Sorted, so two transactions (there is one at a time under the lock, but still) touch counters in one order.
        for (key, count) in counted.sorted(by: { ($0.key.userID.uuidString, $0.key.reason) < ($1.key.userID.uuidString, $1.key.reason) }) {
            _ = try await connection.query(
                """
                INSERT INTO admission_refusals (user_uuid, reason, refusals) VALUES ($1, $2, $3)
                ON CONFLICT (user_uuid, reason) DO UPDATE
                SET refusals = admission_refusals.refusals + excluded.refusals, last_at = now()
                """,
                [key.userID.uuidString, key.reason, String(count)])
        }
        return results
    }

    private struct RefusalKey: Hashable {
        var userID: UUID
        var reason: String
    }

    /// One submission inside a savepoint: a row the database refuses is rolled back alone and answered `.invalid`.
    private func isolatedRow(_ connection: PostgresConnection, _ submission: Submission) async throws -> RowOutcome {
        _ = try await connection.query("SAVEPOINT admission_row")
        let refusal: PostgresError
        do {
            let outcome = try await self.row(connection, submission)
            _ = try await connection.query("RELEASE SAVEPOINT admission_row")
            return outcome
        } catch let error as PostgresError where Self.isRowRefusal(error) {
            refusal = error
        }
        _ = try await connection.query("ROLLBACK TO SAVEPOINT admission_row")
        let decision = AdmissionDecision.invalid(reason: Admission.invalidReason(sqlState: refusal.sqlState))
        var outcome = RowOutcome(result: AdmissionResult(taskID: submission.taskID, decision: decision, duplicate: false), counted: "invalid")
        if Admission.mustKeepRefusal(replyBy: submission.replyBy, decidedAt: Date(), margin: self.replyMargin) {
            // Kept with what can be stored of it; when even that is refused, it is only counted.
            do {
                try await Self.insert(
                    connection, submission.storable, status: .rejected, message: decision.message, tier: .free, priority: 0,
                    model: self.model, reason: decision.message)
                outcome = RowOutcome(
                    result: AdmissionResult(taskID: submission.taskID, decision: decision, duplicate: false, stored: true), counted: nil)
            } catch let error as PostgresError where Self.isRowRefusal(error) {
                _ = try await connection.query("ROLLBACK TO SAVEPOINT admission_row")
            }
        }
        _ = try await connection.query("RELEASE SAVEPOINT admission_row")
        return outcome
    }

    private func row(_ connection: PostgresConnection, _ submission: Submission) async throws -> RowOutcome {
        let existing = try await connection.query(
            """
            SELECT id, status FROM video_tasks
            WHERE id = $1 OR ($3::text IS NOT NULL AND user_uuid = $2 AND idempotency_key = $3) LIMIT 1
            """,
            [submission.taskID.uuidString, submission.userID.uuidString, submission.idempotencyKey])
        if let row = existing.rows.first {
            return RowOutcome(result: AdmissionResult(taskID: try row.uuid("id"), decision: .admit, duplicate: true), counted: nil)
        }
        let user = try await connection.query("SELECT tier, max_active_tasks FROM users WHERE id = $1", [submission.userID.uuidString])
        guard let userRow = user.rows.first else {
            // A forged command, or a user removed since the gateway authenticated it: refused alone, never the batch.
            return try await self.refuse(
                connection, submission, .invalid(reason: Admission.unknownUserReason), tier: .free, priority: 0)
        }
        let tier = Tier(rawValue: try userRow.string("tier")) ?? .free
        var userLimits = self.limits
        if let own = try userRow.optionalInt("max_active_tasks") { userLimits.maxUserActiveTasks = own }
        let counts = try await connection.query(
            """
            SELECT count(*) FILTER (WHERE user_uuid = $1) AS user_active, count(*) FILTER (WHERE status = 'pending') AS pending
            FROM video_tasks WHERE status IN ('pending', 'dispatching', 'processing')
            """,
            [submission.userID.uuidString])
        let userActive = try counts.rows.first?.int("user_active") ?? 0
        let pending = try counts.rows.first?.int("pending") ?? 0
        let decision = Admission.decide(userActive: userActive, queuePending: pending, limits: userLimits)
        let priority = Priority.base(tier: tier, retryCount: 0, promptLength: submission.prompt.count)
        guard decision == .admit else {
            return try await self.refuse(connection, submission, decision, tier: tier, priority: priority)
        }
        try await Self.insert(
            connection, submission, status: .pending, message: nil, tier: tier, priority: priority, model: self.model,
            reason: "admitted with priority \(priority)")
        return RowOutcome(result: AdmissionResult(taskID: submission.taskID, decision: .admit, duplicate: false, stored: true), counted: nil)
    }

    /// A refusal: a `rejected` row when the gateway may already have answered 202 "submitted", otherwise only counted.
    private func refuse(
        _ connection: PostgresConnection, _ submission: Submission, _ decision: AdmissionDecision, tier: Tier, priority: Int
    ) async throws -> RowOutcome {
        guard Admission.mustKeepRefusal(replyBy: submission.replyBy, decidedAt: Date(), margin: self.replyMargin) else {
            return RowOutcome(
                result: AdmissionResult(taskID: submission.taskID, decision: decision, duplicate: false), counted: decision.refusalReason)
        }
        try await Self.insert(
            connection, submission, status: .rejected, message: decision.message, tier: tier, priority: priority, model: self.model,
            reason: decision.message)
        return RowOutcome(result: AdmissionResult(taskID: submission.taskID, decision: decision, duplicate: false, stored: true), counted: nil)
    }

    /// The task row and its first history row.
    static func insert(
        _ connection: PostgresConnection, _ submission: Submission, status: TaskStatus, message: String?, tier: Tier, priority: Int,
        model: String, reason: String?
    ) async throws {
        _ = try await connection.query(
            """
            INSERT INTO video_tasks (id, user_uuid, status, input_image_url, prompt, priority, model, model_input, tier,
                idempotency_key, error_message, created_at, updated_at, completed_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12::timestamptz, now(),
                CASE WHEN $3 = 'rejected' THEN now() END)
            """,
            [
                submission.taskID.uuidString, submission.userID.uuidString, status.rawValue, submission.inputImageURL,
                submission.prompt, String(priority), model, submission.inputJSON, tier.rawValue, submission.idempotencyKey,
                message, PostgresFormat.timestamp(submission.submittedAt),
            ])
        try await TaskStore.recordEvent(connection, taskID: submission.taskID, from: nil, to: status, attempt: 0, reason: reason)
    }
}

extension Submission {
    /// What can be stored of a submission whose data the database refused: the prompt and image URL without NULs (cut to
    /// a sane length), no model input, no idempotency key. Enough for its user to recognise it and read why.
    var storable: Submission {
        var kept = self
        kept.prompt = String(self.prompt.filter { $0 != "\u{0}" }.prefix(2000))
        kept.inputImageURL = String(self.inputImageURL.filter { $0 != "\u{0}" }.prefix(2048))
        kept.inputJSON = nil
        kept.idempotencyKey = nil
        return kept
    }
}
