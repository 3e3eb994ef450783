import Foundation
import Logging
import ReelayCore
import ReelayHTTPClient

/// Sends signed webhooks the way Replicate does (Standard Webhooks v1), re-signing every attempt.
struct WebhookSender: Sendable {
    let client: HTTPClient
    let signer: StandardWebhook
    let book: PredictionBook
    /// How long a terminal webhook is retried before giving up.
    let retryWindow: Duration
    let logger: Logger

    /// Standard Webhooks ids are unique per event and reused on every retry of it.
    static func newID() -> String {
        let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        return "msg_" + String((0..<27).map { _ in alphabet.randomElement()! })
    }

    /// One attempt; true on a 2xx answer.
    func attempt(url: String, id: String, body: [UInt8], logger: Logger) async -> Bool {
        let timestamp = Int(Date().timeIntervalSince1970)
        let headers = [
            ("Content-Type", "application/json"),
            ("webhook-id", id),
            ("webhook-timestamp", String(timestamp)),
            ("webhook-signature", self.signer.sign(id: id, timestamp: timestamp, body: body)),
        ]
        do {
            let response = try await self.client.request(
                method: "POST", url: url, headers: headers, body: body, timeout: .seconds(10))
            if (200..<300).contains(response.status) {
                await self.book.tally(.delivered)
                logger.debug("webhook delivered", metadata: ["webhook.id": "\(id)", "http.status": "\(response.status)"])
                return true
            }
            logger.info("webhook refused", metadata: ["webhook.id": "\(id)", "http.status": "\(response.status)"])
        } catch {
            logger.info("webhook failed", metadata: ["webhook.id": "\(id)", "error": "\(error)"])
        }
        await self.book.tally(.failed)
        return false
    }

    /// Delivers a terminal webhook, retrying on network errors and non-2xx answers with doubling backoff (0.5 s first)
    /// until the retry window is spent. Returns whether it got through.
    @discardableResult
    func deliverTerminal(url: String, id: String, body: [UInt8], logger: Logger) async -> Bool {
        let clock = ContinuousClock()
        let start = clock.now
        var backoff = Duration.milliseconds(500)
        while true {
            if await self.attempt(url: url, id: id, body: body, logger: logger) {
                return true
            }
            if Task.isCancelled || clock.now + backoff - start > self.retryWindow {
                await self.book.tally(.gaveUp)
                logger.warning("webhook given up", metadata: ["webhook.id": "\(id)"])
                return false
            }
            try? await Task.sleep(for: backoff)
            backoff *= 2
        }
    }
}
