import Foundation
import Logging
import ReelayAMQP
import ReelayConfig
import ReelayCore
import ReelayMessaging
import ReelayService
import ReelayStore

/// Every outbound call to Replicate. What to do at each step is `DispatchDecision`'s (ReelayCore, unit-tested): create
/// is not idempotent at Replicate, so a create is recorded before it is sent, and an attempt whose create outcome is
/// unknown is looked up (by the task and attempt in its webhook URL) instead of being sent again. This type reads rows,
/// calls Replicate and runs the actions.
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
        let current = try await self.store.task(id: command.taskID)
        let decided = DispatchDecision.createCommand(task: current?.snapshot, attempt: command.attempt)
        guard decided == .beginCreate else { return try await self.run(decided, command) }
        try await self.waitForCreateToken()
        let begun = try await self.store.beginCreate(taskID: command.taskID, attempt: command.attempt, lease: self.configuration.dispatchLease)
        let next = DispatchDecision.createBegun(task: begun?.snapshot)
        guard next == .sendCreate, let task = begun else { return try await self.run(next, command) }
        let metadata: Logger.Metadata = ["task.id": "\(task.id)", "task.attempt": "\(task.attempt)"]
        let webhook = WebhookURL.make(base: self.configuration.webhookPublicURL, taskID: task.id, attempt: task.attempt)
        let outcome = ReplicateCallResult(
            await self.replicate.create(
                model: self.configuration.replicateModel, input: self.modelInput(for: task), webhook: webhook,
                events: ["start", "completed"]))
        if case .unreachable = outcome {
            // Shutting down: the call was abandoned, its outcome unknown. The create is recorded as attempted, so the
            // dispatcher that gets this command next reconciles instead of creating again.
            try Task.checkCancellation()
        }
        let answer = DispatchDecision.createAnswered(outcome)
        self.log(outcome, answer, metadata: metadata)
        try await self.run(answer, command)
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

    /// What Replicate said to a create and what was decided, in the words operators (and the fault tests) look for.
    private func log(_ outcome: ReplicateCallResult, _ answer: DispatchDecision.Action, metadata: Logger.Metadata) {
        switch (outcome, answer) {
        case (.prediction(let prediction), _):
            self.logger.info("prediction created", metadata: metadata.merging(["prediction.id": "\(prediction.id)"]) { $1 })
        case (.refused(_, let status), .fail(_, _, alert: true)):
            self.logger.critical(
                "Replicate refused the account (\(status)); every create will fail until this is fixed", metadata: metadata)
        case (.refused(.transient(let message), let status), .reconcile):
            self.logger.warning("create answered \(status); reconciling", metadata: metadata.merging(["error": "\(message)"]) { $1 })
        case (.unreachable(let reason, _), .reconcile):
            self.logger.warning("create outcome unknown; reconciling", metadata: metadata.merging(["error": "\(reason)"]) { $1 })
        default:
            break
        }
    }

    static let createBucket = "replicate.create"

    /// Waits for a token of the create rate shared by every dispatcher (REPLICATE_CREATE_RATE_PER_MIN).
    private func waitForCreateToken() async throws {
        let rate = self.configuration.replicateCreateRatePerMinute
        while let wait = try await self.rateLimits.acquire(Self.createBucket, perMinute: rate, burst: max(1, rate / 60)) {
            try await Task.sleep(for: min(wait, .seconds(2)))
        }
    }

    // MARK: cancel

    private func cancel(_ command: PredictionCommand) async throws {
        let current = try await self.store.task(id: command.taskID)
        let decided = DispatchDecision.cancelCommand(task: current?.snapshot, attempt: command.attempt)
        guard case .cancelAtReplicate(let predictionID) = decided else { return try await self.run(decided, command) }
        let outcome = ReplicateCallResult(await self.replicate.cancel(predictionID: predictionID))
        let metadata: Logger.Metadata = ["task.id": "\(command.taskID)", "prediction.id": "\(predictionID)"]
        switch outcome {
        case .prediction:
            self.logger.info("cancel sent", metadata: metadata)
        case .refused(let failure, let status):
            self.logger.warning("cancel refused", metadata: metadata.merging(["status": "\(status)", "error": "\(failure)"]) { $1 })
        case .unreachable:
            break
        }
        try await self.run(DispatchDecision.cancelAnswered(outcome, predictionID: predictionID), command, source: "cancel")
    }

    // MARK: reconcile

    /// Finds out what became of an attempt: by its prediction id when known, else by searching recent predictions for
    /// the task and attempt in their webhook URLs. A terminal answer goes to the finalizer exactly as a webhook would;
    /// an attempt with no prediction at all is retried.
    /// - Parameter fallbackReason: set when this dispatcher's own create call has ended (a 5xx, a timeout): no create can
    ///   be in flight any more, and a missing prediction is retried with this reason.
    private func reconcile(_ command: PredictionCommand, fallbackReason: String? = nil) async throws {
        let current = try await self.store.task(id: command.taskID)
        let decided = DispatchDecision.reconcileCommand(task: current?.snapshot, attempt: command.attempt)
        let actions: [DispatchDecision.Action]
        switch (decided, current) {
        case (.getPrediction(let predictionID), let task?):
            let outcome = ReplicateCallResult(await self.replicate.get(predictionID: predictionID))
            actions = DispatchDecision.getAnswered(
                outcome, predictionID: predictionID, task: task.snapshot, fallbackReason: fallbackReason, now: Date(),
                createTimeout: self.configuration.replicateTimeout)
        case (.searchPredictions(let since), let task?):
            let found = try await self.findPrediction(task, since: since)
            actions = DispatchDecision.predictionLookedUp(
                found, task: task.snapshot, fallbackReason: fallbackReason, now: Date(), createTimeout: self.configuration.replicateTimeout)
        default:
            actions = [decided]
        }
        for action in actions {
            try await self.run(action, command)
        }
    }

    /// Pages through recent predictions (`PredictionSearch` decides what matches and whether to read on).
    private func findPrediction(_ task: TaskRecord, since: Date) async throws -> ReplicatePrediction? {
        let search = PredictionSearch(
            target: WebhookTarget(taskID: task.id, attempt: task.attempt), prompt: task.prompt, imageURL: task.inputImageURL,
            imageInput: self.configuration.replicateImageInput, since: since)
        var next: String? = nil
        for _ in 0..<PredictionSearch.maxPages {
            guard let page = await self.replicate.list(url: next) else {
                throw DispatchError("listing predictions failed; will try again")
            }
            let listed = page.predictions.map { listed in
                PredictionSearch.Listed(
                    prediction: listed.prediction, createdAt: listed.prediction.createdAt.flatMap(MessageCodec.parseDate), input: listed.input)
            }
            switch search.scan(listed, next: page.next) {
            case .found(let prediction): return prediction
            case .nextPage(let url): next = url
            case .notFound: return nil
            }
        }
        return nil
    }

    // MARK: actions

    /// Runs one decided action for the task and attempt `command` names. `source` names who learned of a terminal
    /// prediction, in the id of the delivery forwarded to the finalizer (its dedupe key).
    private func run(_ action: DispatchDecision.Action, _ command: PredictionCommand, source: String = "reconcile") async throws {
        switch action {
        case .ignoreStale, .nothing, .awaitCancelConfirmation, .waitForInFlightCreate:
            return
        case .cancelBeforeCreate(let reason, let message):
            try await self.finish(command, to: .canceled, reason: reason, message: message)
        case .fail(let reason, let message, _):
            try await self.finish(command, to: .failed, reason: reason, message: message)
        case .recordCreated(let predictionID):
            try await self.recordCreated(command, predictionID: predictionID)
        case .pauseCreatesAndRetry(let pause, let reason):
            // Every dispatcher waits too (the shared bucket is blocked).
            try await self.rateLimits.block(Self.createBucket, for: pause)
            self.logger.warning(
                "Replicate rate limit; all dispatchers pause", metadata: ["task.id": "\(command.taskID)", "pause.seconds": "\(pause.seconds)"])
            try await self.retry(command, reason: reason, notBefore: pause)
        case .retry(let reason, let notBefore):
            try await self.retry(command, reason: reason, notBefore: notBefore)
        case .reconcile(let fallbackReason):
            try await self.reconcile(command, fallbackReason: fallbackReason)
        case .forwardTerminal(let prediction):
            try await self.forward(prediction, command, source: source)
        case .keepWaiting:
            try await self.store.touch(taskID: command.taskID, attempt: command.attempt)
        case .redeliver(let reason):
            throw DispatchError(reason)
        case .beginCreate, .sendCreate, .cancelAtReplicate, .getPrediction, .searchPredictions:
            // Steps of a flow above, which runs them where it awaits their answer; no decision hands them on.
            assertionFailure("\(action) is a step of its flow, not an action to run")
        }
    }

    private func recordCreated(_ command: PredictionCommand, predictionID: String) async throws {
        if let updated = try await self.store.transition(
            taskID: command.taskID, attempt: command.attempt, from: [.dispatching], to: .processing,
            reason: "prediction \(predictionID) created", changes: TaskChanges(replicateTaskID: predictionID))
        {
            try await self.publishEvent(updated, reason: "prediction created")
            if CancelDecision.predictionRecorded(task: updated.snapshot) == .sendCancel {
                try await self.bus.publish(PredictionCommand(action: .cancel, taskID: updated.id, attempt: updated.attempt))
            }
        }
        // nil: the terminal webhook overtook us and the task is already finished; nothing to do.
    }

    /// Hands a terminal prediction to the webhook finalizer, as if Replicate's webhook had arrived.
    private func forward(_ prediction: ReplicatePrediction, _ command: PredictionCommand, source: String) async throws {
        let body = (try? JSONEncoder().encode(prediction)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
        try await self.bus.publish(
            PredictionWebhookCommand(
                taskID: command.taskID, attempt: command.attempt, webhookID: "\(source)-\(prediction.id)-\(prediction.status.rawValue)",
                receivedAt: Date(), body: body))
    }

    private func retry(_ command: PredictionCommand, reason: String, notBefore: Duration?) async throws {
        if let updated = try await self.store.retryOrFail(
            taskID: command.taskID, attempt: command.attempt, from: [.dispatching], reason: reason,
            maxRetries: self.configuration.maxRetries, backoff: self.configuration.retryBackoff, atLeast: notBefore)
        {
            self.logger.notice("attempt failed", metadata: ["task.id": "\(command.taskID)", "status": "\(updated.status)", "reason": "\(reason)"])
            try await self.publishEvent(updated, reason: reason)
        }
    }

    private func finish(_ command: PredictionCommand, to status: TaskStatus, reason: String, message: String) async throws {
        if let updated = try await self.store.transition(
            taskID: command.taskID, attempt: command.attempt, from: [.dispatching], to: status, reason: reason,
            changes: TaskChanges(errorMessage: message))
        {
            try await self.publishEvent(updated, reason: reason)
        }
    }

    private func publishEvent(_ task: TaskRecord, reason: String) async throws {
        try await self.bus.publish(TaskEvent(taskID: task.id, userID: task.userID, status: task.status, attempt: task.attempt, reason: reason))
    }
}

extension ReplicateCallResult {
    /// The client's answer, as the decisions take it.
    init(_ outcome: ReplicateClient.CallOutcome) {
        switch outcome {
        case .prediction(let prediction): self = .prediction(prediction)
        case .refused(let failure, let status): self = .refused(failure, status: status)
        case .unreachable(let reason, let mayHaveBeenSent): self = .unreachable(reason, mayHaveBeenSent: mayHaveBeenSent)
        }
    }
}

struct DispatchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
