import Foundation
import Logging

/// The stand-in's IO around `PredictionBook`: clocks, lifecycle timers and webhook deliveries.
struct Standin: Sendable {
    let config: StandinConfig
    let book: PredictionBook
    let sender: WebhookSender
    let logger: Logger

    /// Replicate-like ids: 26 lower-case base32 characters.
    static func newPredictionID() -> String {
        let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz")
        return String((0..<26).map { _ in alphabet.randomElement()! })
    }

    /// The prediction as GET returns it right now.
    func render(_ prediction: Prediction, now: Date = Date()) -> JSON {
        prediction.json(publicURL: self.config.publicURL, now: now, ttl: self.config.outputTTL)
    }

    /// Creates a validated prediction (subject to faults and the rate limit) and starts its run.
    func create(_ request: NewPrediction) async -> CreateOutcome {
        let outcome = await self.book.create(request, id: Self.newPredictionID(), now: Date())
        switch outcome {
        case .serverError:
            self.logger.info("create refused by create_500 fault")
        case .throttled(let wait):
            self.logger.info("create throttled", metadata: ["retry_after": "\(wait)"])
        case .created(let prediction, let withhold):
            var logger = self.logger(for: prediction)
            logger[metadataKey: "model"] = "\(prediction.model)"
            logger.info("prediction created", metadata: ["withheld": "\(withhold)"])
            self.startRun(of: prediction)
        }
        return outcome
    }

    /// Cancels a prediction; a running one ends canceled and gets its terminal webhook.
    func cancel(id: String) async -> Prediction? {
        guard let result = await self.book.cancel(id: id, now: Date()) else { return nil }
        if result.changed {
            self.logger(for: result.prediction).info("prediction canceled")
            Task { await self.sendTerminal(result.prediction) }
        }
        return result.prediction
    }

    private func logger(for prediction: Prediction) -> Logger {
        var logger = self.logger
        logger[metadataKey: "prediction.id"] = "\(prediction.id)"
        if let task = prediction.taskID {
            logger[metadataKey: "task.id"] = "\(task.uuidString.lowercased())"
        }
        return logger
    }

    private func startRun(of prediction: Prediction) {
        let id = prediction.id
        let runTime = self.config.runTime
        let startup = runTime / 10
        Task {
            try? await Task.sleep(for: startup)
            if let processing = await self.book.markProcessing(id: id, now: Date()) {
                if !processing.events.isDisjoint(with: [.start, .logs]) {
                    await self.sendNonTerminal(processing)
                }
            }
            try? await Task.sleep(for: runTime - startup)
            if let finished = await self.book.finish(id: id, now: Date()) {
                self.logger(for: finished).info("prediction finished", metadata: ["status": "\(finished.status.rawValue)"])
                await self.sendTerminal(finished)
            }
        }
        if let deadline = prediction.deadline {
            Task {
                try? await Task.sleep(for: .milliseconds(max(0, Int64(deadline.timeIntervalSinceNow * 1000))))
                if let expired = await self.book.expireDeadline(id: id, now: Date()) {
                    self.logger(for: expired).info("deadline passed", metadata: ["status": "\(expired.status.rawValue)"])
                    await self.sendTerminal(expired)
                }
            }
        }
    }

    /// Non-terminal webhooks are sent once and never retried.
    private func sendNonTerminal(_ prediction: Prediction) async {
        guard let url = prediction.webhook else { return }
        _ = await self.sender.attempt(
            url: url, id: WebhookSender.newID(), body: self.render(prediction).bytes, logger: self.logger(for: prediction))
    }

    /// The terminal webhook, with the prediction's webhook faults applied.
    private func sendTerminal(_ prediction: Prediction) async {
        guard let url = prediction.webhook, prediction.events.contains(.completed) else { return }
        let logger = self.logger(for: prediction)
        // The body is the prediction as GET shows it at completion; retries resend the same bytes.
        let body = self.render(prediction).bytes
        let id = WebhookSender.newID()
        if prediction.plan.dropWebhook {
            await self.book.tally(.dropped)
            logger.info("terminal webhook dropped by fault", metadata: ["webhook.id": "\(id)"])
            return
        }
        if prediction.plan.delayWebhook {
            let delay = await self.book.faults.delayMs
            logger.info("terminal webhook delayed by fault", metadata: ["delay_ms": "\(delay)"])
            try? await Task.sleep(for: .milliseconds(delay))
        }
        await self.sender.deliverTerminal(url: url, id: id, body: body, logger: logger)
        if prediction.plan.duplicateWebhook {
            logger.info("terminal webhook duplicated by fault", metadata: ["webhook.id": "\(id)"])
            try? await Task.sleep(for: .milliseconds(100))
            await self.sender.deliverTerminal(url: url, id: id, body: body, logger: logger)
        }
    }
}
