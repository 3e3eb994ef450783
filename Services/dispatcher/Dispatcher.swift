import Foundation
import Logging
import ReelayAMQP
import ReelayConfig
import ReelayCore
import ReelayMessaging
import ReelayService
import ReelayStore

/// Every outbound call to Replicate. Create is not idempotent at Replicate, so a create is recorded before it is sent,
/// and an attempt whose create outcome is unknown is looked up (by the task and attempt in its webhook URL) instead of
/// being sent again.
struct Dispatcher: Sendable {
    let configuration: ReelayConfiguration
    let store: TaskStore
    let bus: MessageBus
    let replicate: ReplicateClient
    let rateLimits: RateLimitStore
    let logger: Logger

    func handle(_ delivery: AMQPDelivery) async throws {
        let command = try delivery.decode(PredictionCommand.self)
        switch command.action {
        case .create: try await self.create(command)
        case .cancel: try await self.cancel(command)
        case .get: try await self.reconcile(command)
        }
    }

    // MARK: create

    private func create(_ command: PredictionCommand) async throws {
        guard let current = try await self.store.task(id: command.taskID), current.status == .dispatching,
            current.attempt == command.attempt
        else { return }  // a stale command: the task moved on
        if current.createAttemptedAt != nil {
            // A create was already attempted for this attempt (a redelivery after a crash, or a re-sent command): never
            // create twice; find out what happened instead.
            return try await self.reconcile(command)
        }
        try await self.waitForCreateToken()
        guard let task = try await self.store.beginCreate(
            taskID: command.taskID, attempt: command.attempt, lease: self.configuration.dispatchLease)
        else {
            return  // another dispatcher took this attempt while we waited for a token
        }
        var metadata: Logger.Metadata = ["task.id": "\(task.id)", "task.attempt": "\(task.attempt)"]
        if task.cancelRequestedAt != nil {
            try await self.finish(task, to: .canceled, reason: "canceled before it reached Replicate", message: "Canceled by the user")
            return
        }
        let input = self.modelInput(for: task)
        let webhook = WebhookURL.make(base: self.configuration.webhookPublicURL, taskID: task.id, attempt: task.attempt)
        let outcome = await self.replicate.create(
            model: self.configuration.replicateModel, input: input, webhook: webhook, events: ["start", "completed"])
        switch outcome {
        case .prediction(let prediction):
            metadata["prediction.id"] = "\(prediction.id)"
            self.logger.info("prediction created", metadata: metadata)
            try await self.recordCreated(task: task, predictionID: prediction.id)
        case .refused(let failure, let status):
            try await self.refused(task: task, failure: failure, status: status)
        case .unreachable(let reason, let mayHaveBeenSent):
            // Shutting down: the call was abandoned, its outcome unknown. The create is recorded as attempted, so the
            // dispatcher that gets this command next reconciles instead of creating again.
            try Task.checkCancellation()
            if mayHaveBeenSent {
                self.logger.warning("create outcome unknown; reconciling", metadata: metadata.merging(["error": "\(reason)"]) { $1 })
                try await self.reconcile(command, fallbackReason: "Replicate did not answer the create (\(reason))")
            } else {
                try await self.retry(task, reason: "Replicate could not be reached (\(reason))")
            }
        }
    }

    /// The model's input: the user's extra keys, then the prompt and the image under the configured field name.
    func modelInput(for task: TaskRecord) -> [String: Any] {
        var input: [String: Any] = [:]
        if let json = task.modelInputJSON, let data = json.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        {
            input = object
        }
        input["prompt"] = task.prompt
        input[self.configuration.replicateImageInput] = task.inputImageURL
        return input
    }

    private func recordCreated(task: TaskRecord, predictionID: String) async throws {
        if let updated = try await self.store.transition(
            taskID: task.id, attempt: task.attempt, from: [.dispatching], to: .processing, reason: "prediction \(predictionID) created",
            changes: TaskChanges(replicateTaskID: predictionID))
        {
            try await self.publishEvent(updated, reason: "prediction created")
            if updated.cancelRequestedAt != nil {
                try await self.bus.publish(PredictionCommand(action: .cancel, taskID: task.id, attempt: task.attempt))
            }
        }
        // nil: the terminal webhook overtook us and the task is already finished; nothing to do.
    }

    private func refused(task: TaskRecord, failure: ReplicateOutcomeClass, status: Int) async throws {
        switch failure {
        case .success:
            return
        case .permanent(let message):
            if failure.needsAlert {
                self.logger.critical(
                    "Replicate refused the account (\(status)); every create will fail until this is fixed",
                    metadata: ["task.id": "\(task.id)"])
            }
            try await self.finish(task, to: .failed, reason: "Replicate refused the create (\(status))", message: message)
        case .rateLimited(let retryAfter):
            // Not created: safe to try again after the reset. Every dispatcher waits too (the shared bucket is blocked);
            // the task counts a retry (ARCHITECTURE.md "Retries") and waits at least until the reset.
            let wait = retryAfter ?? Self.defaultRateLimitPause
            try await self.rateLimits.block(Self.createBucket, for: wait)
            self.logger.warning("Replicate rate limit; all dispatchers pause", metadata: ["task.id": "\(task.id)", "pause.seconds": "\(wait.seconds)"])
            try await self.retry(task, reason: "Replicate rate limit (429), resets in \(wait.seconds) s", notBefore: wait)
        case .transient(let message):
            // A 5xx on create is ambiguous: the prediction may exist. Look before trying again.
            self.logger.warning(
                "create answered \(status); reconciling", metadata: ["task.id": "\(task.id)", "error": "\(message)"])
            try await self.reconcile(PredictionCommand(action: .get, taskID: task.id, attempt: task.attempt), fallbackReason: message)
        }
    }

    static let createBucket = "replicate.create"
    static let defaultRateLimitPause: Duration = .seconds(10)

    /// Waits for a token of the create rate shared by every dispatcher (REPLICATE_CREATE_RATE_PER_MIN).
    private func waitForCreateToken() async throws {
        let rate = self.configuration.replicateCreateRatePerMinute
        while let wait = try await self.rateLimits.acquire(Self.createBucket, perMinute: rate, burst: max(1, rate / 60)) {
            try await Task.sleep(for: min(wait, .seconds(2)))
        }
    }

    // MARK: cancel

    private func cancel(_ command: PredictionCommand) async throws {
        guard let task = try await self.store.task(id: command.taskID), task.attempt == command.attempt, task.status.holdsSlot,
            let predictionID = task.replicateTaskID
        else { return }
        switch await self.replicate.cancel(predictionID: predictionID) {
        case .prediction(let prediction):
            self.logger.info("cancel sent", metadata: ["task.id": "\(task.id)", "prediction.id": "\(predictionID)"])
            if prediction.status.isTerminal {
                try await self.forward(prediction, task: task, source: "cancel")
            }
        case .refused(let failure, let status):
            self.logger.warning("cancel refused", metadata: ["task.id": "\(task.id)", "status": "\(status)", "error": "\(failure)"])
        case .unreachable(let reason, _):
            throw DispatchError("cancel of \(predictionID) failed: \(reason)")
        }
    }

    // MARK: reconcile

    /// Finds out what became of an attempt: by its prediction id when known, else by listing recent predictions and
    /// matching the task and attempt in their webhook URLs. A terminal answer goes to the finalizer exactly as a webhook
    /// would; an attempt with no prediction at all is retried.
    /// - Parameter fallbackReason: set when this dispatcher's own create call has ended (a 5xx, a timeout): no create can
    ///   be in flight any more, and a missing prediction is retried with this reason.
    private func reconcile(_ command: PredictionCommand, fallbackReason: String? = nil) async throws {
        guard let task = try await self.store.task(id: command.taskID), task.attempt == command.attempt, task.status.holdsSlot else {
            return
        }
        var prediction: ReplicatePrediction?
        if let predictionID = task.replicateTaskID {
            switch await self.replicate.get(predictionID: predictionID) {
            case .prediction(let found): prediction = found
            case .refused(let failure, let status):
                throw DispatchError("get \(predictionID) answered \(status): \(failure)")
            case .unreachable(let reason, _):
                throw DispatchError("get \(predictionID) failed: \(reason)")
            }
        } else {
            prediction = try await self.findPrediction(task: task)
        }
        guard let prediction else {
            if fallbackReason == nil, let attempted = task.createAttemptedAt,
                Date().timeIntervalSince(attempted) < self.configuration.replicateTimeout.seconds + 5
            {
                // The create may still be in flight at another dispatcher: its answer, its webhook or the next lease
                // sweep settles it.
                return
            }
            if task.status == .dispatching {
                try await self.retry(task, reason: fallbackReason ?? "the create never reached Replicate")
            }
            return
        }
        if task.status == .dispatching {
            try await self.recordCreated(task: task, predictionID: prediction.id)
        }
        if prediction.status.isTerminal {
            try await self.forward(prediction, task: task, source: "reconcile")
        } else {
            try await self.store.touch(taskID: task.id, attempt: task.attempt)
        }
    }

    /// Looks through recent predictions for this attempt's: by the task and attempt in its webhook URL when Replicate
    /// shows it, else by the same input (prompt and image) created after this attempt's create was recorded.
    private func findPrediction(task: TaskRecord) async throws -> ReplicatePrediction? {
        let since = (task.createAttemptedAt ?? task.dispatchedAt ?? task.createdAt).addingTimeInterval(-5)
        var next: String? = nil
        for _ in 0..<5 {
            guard let page = await self.replicate.list(url: next) else {
                throw DispatchError("listing predictions failed; will try again")
            }
            for listed in page.predictions {
                if let webhook = listed.prediction.webhook, let found = WebhookURL.parse(webhook) {
                    if found.taskID == task.id && found.attempt == task.attempt { return listed.prediction }
                    continue
                }
                let created = listed.prediction.createdAt.flatMap(MessageCodec.parseDate)
                if let created, created >= since, listed.input["prompt"] == task.prompt,
                    listed.input[self.configuration.replicateImageInput] == task.inputImageURL
                {
                    return listed.prediction
                }
            }
            // Newest first: once a page reaches back before the create, older pages cannot hold it.
            let oldest = page.predictions.last?.prediction.createdAt.flatMap(MessageCodec.parseDate)
            guard let more = page.next, oldest.map({ $0 >= since }) ?? false else { return nil }
            next = more
        }
        return nil
    }

    /// Hands a terminal prediction to the webhook finalizer, as if Replicate's webhook had arrived.
    private func forward(_ prediction: ReplicatePrediction, task: TaskRecord, source: String) async throws {
        let body = (try? JSONEncoder().encode(prediction)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
        try await self.bus.publish(
            PredictionWebhookCommand(
                taskID: task.id, attempt: task.attempt, webhookID: "\(source)-\(prediction.id)-\(prediction.status.rawValue)",
                receivedAt: Date(), body: body))
    }

    // MARK: outcomes

    private func retry(_ task: TaskRecord, reason: String, notBefore: Duration? = nil) async throws {
        if let updated = try await self.store.retryOrFail(
            taskID: task.id, attempt: task.attempt, from: [.dispatching], reason: reason, maxRetries: self.configuration.maxRetries,
            backoff: self.configuration.retryBackoff, atLeast: notBefore)
        {
            self.logger.notice("attempt failed", metadata: ["task.id": "\(task.id)", "status": "\(updated.status)", "reason": "\(reason)"])
            try await self.publishEvent(updated, reason: reason)
        }
    }

    private func finish(_ task: TaskRecord, to status: TaskStatus, reason: String, message: String) async throws {
        if let updated = try await self.store.transition(
            taskID: task.id, attempt: task.attempt, from: [.dispatching], to: status, reason: reason,
            changes: TaskChanges(errorMessage: message))
        {
            try await self.publishEvent(updated, reason: reason)
        }
    }

    private func publishEvent(_ task: TaskRecord, reason: String) async throws {
        try await self.bus.publish(TaskEvent(taskID: task.id, userID: task.userID, status: task.status, attempt: task.attempt, reason: reason))
    }
}

struct DispatchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
