import Foundation
import Logging
import ReelayAMQP
import ReelayConfig
import ReelayCore
import ReelayHTTPClient
import ReelayMessaging
import ReelayService
import ReelayStore

/// Applies a verified webhook (or a reconciled prediction) to its task: keeps the video in our storage before Replicate
/// deletes it, then moves the task to its final state. Which task a delivery may change and what its prediction means
/// are `WebhookDecision`'s (ReelayCore, unit-tested): duplicates, replays and webhooks of older attempts change nothing.
/// This type reads rows, downloads and runs the actions.
struct Finalizer: Sendable {
    let configuration: ReelayConfiguration
    let store: TaskStore
    let bus: MessageBus
    let http: HTTPClient
    let storage: FileStorage
    let logger: Logger

    func handle(_ delivery: AMQPDelivery) async throws {
        let command = try delivery.decode(PredictionWebhookCommand.self)
        let prediction: ReplicatePrediction
        do {
            prediction = try ReplicatePrediction.decode(Array(command.body.utf8))
        } catch {
            throw PoisonMessage("webhook \(command.webhookID) is not a prediction: \(error)")
        }
        if try await self.store.webhookSeen(command.webhookID) { return }
        var metadata: Logger.Metadata = [
            "webhook.id": "\(command.webhookID)", "prediction.id": "\(prediction.id)", "prediction.status": "\(prediction.status.rawValue)",
        ]
        guard let matched = try await self.matchTask(command, prediction, metadata: metadata) else {
            return try await self.seen(command, prediction, target: nil)
        }
        let (task, attempt) = matched
        metadata["task.id"] = "\(task.id)"
        let action = WebhookDecision.predictionArrived(prediction, task: task.snapshot, attempt: attempt)
        if case .unknown(let status) = prediction.status, action != .ignoreStale {
            self.logger.warning("unknown prediction status; still waiting", metadata: metadata.merging(["status": "\(status)"]) { $1 })
        }
        try await self.run(action, task, prediction, metadata: metadata)
        try await self.seen(command, prediction, target: WebhookTarget(taskID: task.id, attempt: attempt))
    }

    /// The task this delivery may change, and the attempt it is for: `WebhookDecision.lookup` names the row to read,
    /// `WebhookDecision.bind` decides. nil when it matches no task; the reconciliation then finishes the task from
    /// Replicate's own answer.
    private func matchTask(
        _ command: PredictionWebhookCommand, _ prediction: ReplicatePrediction, metadata: Logger.Metadata
    ) async throws -> (TaskRecord, Int)? {
        let query = command.taskID.flatMap { id in command.attempt.map { WebhookTarget(taskID: id, attempt: $0) } }
        let claim = WebhookClaim(signedWebhookURL: prediction.webhook, query: query)
        let task: TaskRecord?
        switch WebhookDecision.lookup(for: claim) {
        case .task(let taskID): task = try await self.store.task(id: taskID)
        case .taskRecordingPrediction: task = try await self.store.task(predictionID: prediction.id)
        case .none: task = nil
        }
        switch WebhookDecision.bind(claim, task: task?.snapshot, predictionID: prediction.id) {
        case .bound(let attempt):
            return task.map { ($0, attempt) }
        case .conflict(let signed, let claimed):
            self.logger.warning(
                "webhook not applied: its query names another task than its signed body",
                metadata: metadata.merging(["signed": "\(signed)", "claimed": "\(claimed)"]) { $1 })
        case .unknownTask:
            var logged = metadata
            if let taskID = claim.target?.taskID { logged["task.id"] = "\(taskID)" }
            self.logger.warning("webhook for an unknown task", metadata: logged)
        case .unrecordedPrediction(let claimed):
            self.logger.warning(
                "webhook not matched to a task: no signed webhook URL, and the task in its query has not recorded this prediction",
                metadata: metadata.merging(["claimed": "\(claimed)"]) { $1 })
        }
        return nil
    }

    /// Runs one decided action on `task` (at its current attempt: the decision checked the delivery's attempt).
    private func run(
        _ action: WebhookDecision.Action, _ task: TaskRecord, _ prediction: ReplicatePrediction, metadata: Logger.Metadata
    ) async throws {
        switch action {
        case .ignoreStale:
            self.logger.info("stale or late webhook ignored", metadata: metadata)
        case .keepWaiting:
            return
        case .storeOutput(let url):
            try await self.storeOutput(url, task, prediction, metadata: metadata)
        case .complete(let reason):
            let key = self.storage.key(for: task.id)
            if let updated = try await self.store.transition(
                taskID: task.id, attempt: task.attempt, from: [.dispatching, .processing], to: .completed, reason: reason,
                changes: TaskChanges(
                    clearError: true, replicateTaskID: prediction.id, outputVideoURL: "/v1/tasks/\(task.id.uuidString.lowercased())/video",
                    outputStorageKey: key))
            {
                try await self.publish(updated, reason: "completed")
            }
        case .fail(let reason, let message):
            try await self.finish(task, to: .failed, prediction: prediction, reason: reason, message: message)
        case .finishCanceled(let reason, let message):
            try await self.finish(task, to: .canceled, prediction: prediction, reason: reason, message: message)
        case .retry(let reason, let eventReason):
            if let updated = try await self.store.retryOrFail(
                taskID: task.id, attempt: task.attempt, from: [.dispatching, .processing], reason: reason,
                maxRetries: self.configuration.maxRetries, backoff: self.configuration.retryBackoff)
            {
                try await self.publish(updated, reason: eventReason)
            }
        case .markProcessing(let predictionID):
            if let updated = try await self.store.transition(
                taskID: task.id, attempt: task.attempt, from: [.dispatching], to: .processing,
                reason: "prediction \(predictionID) started", changes: TaskChanges(replicateTaskID: predictionID))
            {
                try await self.publish(updated, reason: "prediction started")
                if CancelDecision.predictionRecorded(task: updated.snapshot) == .sendCancel {
                    // The user canceled while the create was in flight: now there is a prediction to cancel.
                    try await self.bus.publish(PredictionCommand(action: .cancel, taskID: updated.id, attempt: updated.attempt))
                }
            }
        case .redeliver(let reason):
            // Transient: the delivery comes back (redelivered) and the download is tried again.
            throw FinalizeError(reason)
        }
    }

    /// Fetches the output into our storage (never with the Replicate token: output files live on other hosts), then
    /// runs what `WebhookDecision.downloaded` makes of the result.
    private func storeOutput(
        _ url: String, _ task: TaskRecord, _ prediction: ReplicatePrediction, metadata: Logger.Metadata
    ) async throws {
        let result: WebhookDecision.Download
        do {
            let rules = DownloadRules(sources: self.configuration.outputSources, maxBytes: self.configuration.outputMaxBytes)
            let answer = try await self.http.download(
                url: url, to: self.storage.path(forKey: self.storage.key(for: task.id)), rules: rules, timeout: .seconds(600))
            result = .answered(status: answer.status, bytes: answer.bytes)
        } catch let refusal as OutputRefusal {
            self.logger.warning(
                "output refused", metadata: metadata.merging(["refusal": "\(refusal.reason.rawValue)", "detail": "\(refusal)"]) { $1 })
            result = .refused(refusal)
        } catch {
            result = .failed("\(error)")
        }
        let action = WebhookDecision.downloaded(result, prediction: prediction)
        if case .answered(_, let bytes) = result, case .complete = action {
            self.logger.info("output stored", metadata: metadata.merging(["bytes": "\(bytes)"]) { $1 })
        }
        try await self.run(action, task, prediction, metadata: metadata)
    }

    private func finish(
        _ task: TaskRecord, to status: TaskStatus, prediction: ReplicatePrediction, reason: String, message: String
    ) async throws {
        if let updated = try await self.store.transition(
            taskID: task.id, attempt: task.attempt, from: [.dispatching, .processing], to: status, reason: reason,
            changes: TaskChanges(errorMessage: message, replicateTaskID: prediction.id))
        {
            try await self.publish(updated, reason: reason)
        }
    }

    private func publish(_ task: TaskRecord, reason: String) async throws {
        try await self.bus.publish(TaskEvent(taskID: task.id, userID: task.userID, status: task.status, attempt: task.attempt, reason: reason))
    }

    /// Records the delivery as handled, under the task it was matched to (nil: matched to none).
    private func seen(_ command: PredictionWebhookCommand, _ prediction: ReplicatePrediction, target: WebhookTarget?) async throws {
        try await self.store.recordWebhook(
            command.webhookID, taskID: target?.taskID, attempt: target?.attempt, predictionID: prediction.id,
            status: prediction.status.rawValue, receivedAt: command.receivedAt)
    }
}

struct FinalizeError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
