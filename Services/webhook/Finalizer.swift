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
/// deletes it, then moves the task to its final state. Duplicates, replays and webhooks of older attempts change nothing.
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
        let target = WebhookTarget(taskID: task.id, attempt: attempt)
        // Only a task holding a slot (dispatching or processing) at this attempt can take this prediction's news.
        let stale = attempt != task.attempt || !task.status.holdsSlot
            || (task.replicateTaskID != nil && task.replicateTaskID != prediction.id)
        if stale {
            self.logger.info("stale or late webhook ignored", metadata: metadata)
            return try await self.seen(command, prediction, target: target)
        }
        switch prediction.status {
        case .succeeded:
            try await self.succeeded(task, prediction, metadata: metadata)
        case .failed, .aborted:
            let reason = prediction.error ?? "the prediction \(prediction.status.rawValue) without an error message"
            if PredictionFailure.isTransient(error: prediction.error) {
                if let updated = try await self.store.retryOrFail(
                    taskID: task.id, attempt: task.attempt, from: [.dispatching, .processing], reason: "Replicate: \(reason)",
                    maxRetries: self.configuration.maxRetries, backoff: self.configuration.retryBackoff)
                {
                    try await self.publish(updated, reason: reason)
                }
            } else {
                try await self.finish(task, to: .failed, prediction: prediction, reason: "Replicate: \(reason)", message: "Replicate: \(reason)")
            }
        case .canceled:
            try await self.finish(task, to: .canceled, prediction: prediction, reason: "canceled at Replicate", message: "Canceled")
        case .starting, .processing, .unknown:
            if task.status == .dispatching {
                if let updated = try await self.store.transition(
                    taskID: task.id, attempt: task.attempt, from: [.dispatching], to: .processing,
                    reason: "prediction \(prediction.id) started", changes: TaskChanges(replicateTaskID: prediction.id))
                {
                    try await self.publish(updated, reason: "prediction started")
                    if updated.cancelRequestedAt != nil {
                        // The user canceled while the create was in flight: now there is a prediction to cancel.
                        try await self.bus.publish(PredictionCommand(action: .cancel, taskID: updated.id, attempt: updated.attempt))
                    }
                }
            }
            if case .unknown(let status) = prediction.status {
                self.logger.warning("unknown prediction status; still waiting", metadata: metadata.merging(["status": "\(status)"]) { $1 })
            }
        }
        try await self.seen(command, prediction, target: target)
    }

    /// The task this delivery may change, and the attempt it is for (WebhookClaim): named by the signed body's webhook
    /// URL, else by the unsigned query only when that task recorded this prediction, else by the recorded prediction
    /// id. nil when it matches no task; the reconciliation then finishes the task from Replicate's own answer.
    private func matchTask(
        _ command: PredictionWebhookCommand, _ prediction: ReplicatePrediction, metadata: Logger.Metadata
    ) async throws -> (TaskRecord, Int)? {
        let query = command.taskID.flatMap { id in command.attempt.map { WebhookTarget(taskID: id, attempt: $0) } }
        switch WebhookClaim(signedWebhookURL: prediction.webhook, query: query) {
        case .conflict(let signed, let claimed):
            self.logger.warning(
                "webhook not applied: its query names another task than its signed body",
                metadata: metadata.merging(["signed": "\(signed)", "claimed": "\(claimed)"]) { $1 })
            return nil
        case .signed(let target):
            guard let task = try await self.store.task(id: target.taskID) else {
                self.logger.warning("webhook for an unknown task", metadata: metadata.merging(["task.id": "\(target.taskID)"]) { $1 })
                return nil
            }
            return (task, target.attempt)
        case .unsigned(let target):
            let task = try await self.store.task(id: target.taskID)
            guard let task, WebhookClaim.holds(recordedPredictionID: task.replicateTaskID, predictionID: prediction.id) else {
                self.logger.warning(
                    "webhook not matched to a task: no signed webhook URL, and the task in its query has not recorded this prediction",
                    metadata: metadata.merging(["claimed": "\(target)"]) { $1 })
                return nil
            }
            return (task, target.attempt)
        case .none:
            guard let task = try await self.store.task(predictionID: prediction.id) else {
                self.logger.warning("webhook for an unknown task", metadata: metadata)
                return nil
            }
            return (task, task.attempt)
        }
    }

    private func succeeded(_ task: TaskRecord, _ prediction: ReplicatePrediction, metadata: Logger.Metadata) async throws {
        guard let url = prediction.output?.firstURL else {
            let reason = prediction.dataRemoved == true
                ? "Replicate deleted the output before it could be stored" : "Replicate reported success without an output file"
            return try await self.finish(task, to: .failed, prediction: prediction, reason: reason, message: reason)
        }
        let key = self.storage.key(for: task.id)
        // Never send the Replicate token with a download: output files live on other hosts.
        let result: (status: Int, bytes: Int64)
        do {
            let rules = DownloadRules(sources: self.configuration.outputSources, maxBytes: self.configuration.outputMaxBytes)
            result = try await self.http.download(url: url, to: self.storage.path(forKey: key), rules: rules, timeout: .seconds(600))
        } catch let refusal as OutputRefusal {
            // Final: the same URL gets the same answer, so the task fails now instead of spending retries.
            self.logger.warning(
                "output refused", metadata: metadata.merging(["refusal": "\(refusal.reason.rawValue)", "detail": "\(refusal)"]) { $1 })
            return try await self.finish(task, to: .failed, prediction: prediction, reason: refusal.taskMessage, message: refusal.taskMessage)
        } catch {
            // Transient: the delivery comes back (redelivered) and the download is tried again.
            throw FinalizeError("downloading the output of \(prediction.id) failed: \(error)")
        }
        guard (200..<300).contains(result.status) else {
            if result.status == 404 || result.status == 410 || prediction.dataRemoved == true {
                let reason = "Replicate deleted the output before it could be stored (\(result.status))"
                return try await self.finish(task, to: .failed, prediction: prediction, reason: reason, message: reason)
            }
            throw FinalizeError("downloading the output of \(prediction.id) answered \(result.status)")
        }
        self.logger.info("output stored", metadata: metadata.merging(["bytes": "\(result.bytes)"]) { $1 })
        if let updated = try await self.store.transition(
            taskID: task.id, attempt: task.attempt, from: [.dispatching, .processing], to: .completed,
            reason: "output stored (\(result.bytes) bytes)",
            changes: TaskChanges(
                clearError: true, replicateTaskID: prediction.id, outputVideoURL: "/v1/tasks/\(task.id.uuidString.lowercased())/video",
                outputStorageKey: key))
        {
            try await self.publish(updated, reason: "completed")
        }
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
