import Foundation
import HTTPTypes
import Hummingbird
import Logging
import ReelayCore
import ReelayMessaging
import ReelayService

/// `POST /webhooks/replicate` (and the product's original `/api/webhook/replicate`): verify the Standard Webhooks
/// signature over the raw body, hand the delivery to the finalizer through the broker (confirmed), then answer 200.
/// Nothing slow happens here: Replicate wants an answer within seconds.
struct WebhookRoutes: Sendable {
    let verifier: StandardWebhook
    let bus: MessageBus
    let logger: Logger
    static let maxBody = 1 << 20

    func add(to router: Router<BasicRequestContext>) {
        router.post("/webhooks/replicate") { request, context in try await self.receive(request, context: context) }
        router.post("/api/webhook/replicate") { request, context in try await self.receive(request, context: context) }
    }

    func receive(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: Self.maxBody)
        } catch {
            throw Problem(
                .contentTooLarge, title: "Payload too large",
                detail: "Webhook bodies are limited to \(Self.maxBody) bytes and this one is larger. Send the prediction JSON only.")
        }
        let body = Array(buffer.readableBytesView)
        let id = request.headers[HTTPField.Name("webhook-id")!]
        if let failure = self.verificationFailure(request, body: body) {
            self.logger.warning("webhook rejected", metadata: ["webhook.id": "\(id ?? "-")", "reason": "\(failure.code.rawValue)"])
            throw Problem(.unauthorized, title: "Invalid signature", detail: Self.advice(for: failure))
        }
        guard let id, let text = String(validating: body, as: UTF8.self) else {
            throw Problem(.badRequest, title: "Bad body", detail: "The webhook body must be UTF-8 JSON (a Replicate prediction).")
        }
        let query = request.uri.query.flatMap { WebhookURL.parse($0) }.map { WebhookTarget(taskID: $0.taskID, attempt: $0.attempt) }
        // The signature covers the body, not the query: a prediction whose signed `webhook` URL names a task and attempt
        // is for that task and attempt only. A body that is no prediction is passed on (the finalizer dead-letters it).
        var target = query
        if let prediction = try? ReplicatePrediction.decode(body) {
            let claim = WebhookClaim(signedWebhookURL: prediction.webhook, query: query)
            if let conflict = claim.conflictDescription {
                self.logger.warning("webhook refused: its query disagrees with its signed body", metadata: ["webhook.id": "\(id)"])
                throw Problem(
                    .badRequest, title: "Webhook URL mismatch",
                    detail: "\(conflict) Post it to the webhook URL the prediction was created with.")
            }
            target = claim.target
        }
        do {
            try await self.bus.publish(
                PredictionWebhookCommand(taskID: target?.taskID, attempt: target?.attempt, webhookID: id, receivedAt: Date(), body: text))
        } catch {
            // Not accepted: Replicate retries the terminal webhook on any non-2xx.
            self.logger.error("could not enqueue a webhook", metadata: ["webhook.id": "\(id)", "error": "\(error)"])
            throw Problem(
                .serviceUnavailable, title: "Not accepted", detail: "The webhook could not be queued; retry it in a few seconds.",
                headers: [.retryAfter: "5"])
        }
        self.logger.debug("webhook accepted", metadata: ["webhook.id": "\(id)", "task.id": "\(target?.taskID.uuidString ?? "-")"])
        return JSONResponse.make(.ok, ["accepted": true])
    }

    /// What was wrong with the signature, and what to do about it.
    static func advice(for failure: WebhookVerificationError) -> String {
        let fix: String
        switch failure.code {
        case .missingHeader, .malformedSignature, .malformedTimestamp:
            fix = "Send the Standard Webhooks headers webhook-id, webhook-timestamp (Unix seconds) and webhook-signature (v1,<base64>)."
        case .timestampOutOfTolerance:
            fix = "Sign each delivery with the current time; check the sender's clock."
        case .noMatchingSignature, .invalidSecret:
            fix = "Sign id.timestamp.body with the account's webhook secret (GET /v1/webhooks/default/secret), the one set as "
                + "REPLICATE_WEBHOOK_SECRET here."
        }
        return "\(failure.description). \(fix)"
    }

    private func verificationFailure(_ request: Request, body: [UInt8]) -> WebhookVerificationError? {
        do {
            try self.verifier.verify(
                id: request.headers[HTTPField.Name("webhook-id")!], timestamp: request.headers[HTTPField.Name("webhook-timestamp")!],
                signatureHeader: request.headers[HTTPField.Name("webhook-signature")!], body: body, now: Date())
            return nil
        } catch {
            return error
        }
    }
}
