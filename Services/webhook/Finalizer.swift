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
        let found: TaskRecord?
        if let taskID = command.taskID { found = try await self.store.task(id: taskID) } else { found = try await self.store.task(predictionID: prediction.id) }
        guard let task = found else {
            self.logger.warning("webhook for an unknown task", metadata: metadata)
            return try await self.seen(command, prediction)
        }
        metadata["task.id"] = "\(task.id)"
        let attempt = command.attempt ?? task.attempt
        // Only a task holding a slot (dispatching or processing) at this attempt can take this prediction's news.
        let stale = attempt != task.attempt || !task.status.holdsSlot
            || (task.replicateTaskID != nil && task.replicateTaskID != prediction.id)
        if stale {
            self.logger.info("stale or late webhook ignored", metadata: metadata)
            return try await self.seen(command, prediction)
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
        try await self.seen(command, prediction)
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
            result = try await self.http.download(url: url, to: self.storage.path(forKey: key), timeout: .seconds(600))
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

    private func seen(_ command: PredictionWebhookCommand, _ prediction: ReplicatePrediction) async throws {
        try await self.store.recordWebhook(
            command.webhookID, taskID: command.taskID, attempt: command.attempt, predictionID: prediction.id,
            status: prediction.status.rawValue, receivedAt: command.receivedAt)
    }
}

struct FinalizeError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
