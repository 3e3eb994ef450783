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
            throw Problem(.contentTooLarge, title: "Payload too large", detail: "Webhook bodies are limited to \(Self.maxBody) bytes.")
        }
        let body = Array(buffer.readableBytesView)
        let id = request.headers[HTTPField.Name("webhook-id")!]
        if let failure = self.verificationFailure(request, body: body) {
            self.logger.warning("webhook rejected", metadata: ["webhook.id": "\(id ?? "-")", "reason": "\(failure.code.rawValue)"])
            throw Problem(.unauthorized, title: "Invalid signature", detail: failure.description)
        }
        guard let id, let text = String(validating: body, as: UTF8.self) else {
            throw Problem(.badRequest, title: "Bad body", detail: "The webhook body must be UTF-8 JSON.")
        }
        let target = request.uri.query.flatMap { WebhookURL.parse($0) }
        do {
            try await self.bus.publish(
                PredictionWebhookCommand(taskID: target?.taskID, attempt: target?.attempt, webhookID: id, receivedAt: Date(), body: text))
        } catch {
            // Not accepted: Replicate retries the terminal webhook on any non-2xx.
            self.logger.error("could not enqueue a webhook", metadata: ["webhook.id": "\(id)", "error": "\(error)"])
            throw Problem(.serviceUnavailable, title: "Not accepted", detail: "The webhook could not be queued; please retry.")
        }
        self.logger.debug("webhook accepted", metadata: ["webhook.id": "\(id)", "task.id": "\(target?.taskID.uuidString ?? "-")"])
        return JSONResponse.make(.ok, ["accepted": true])
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
