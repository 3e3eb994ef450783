import Foundation
import ReelayCore
import ReelayTestSupport
import Testing

/// Signed webhooks, their retries and duplicates, and the output they point at.
extension StandinTests {
    // MARK: Webhooks and output

    /// Guards: the terminal webhook is Standard-Webhooks signed, its body is the prediction exactly as GET returns it,
    /// and the output URL serves the fake MP4 (the same bytes every time).
    @Test func terminalWebhookIsSignedAndOutputDownloads() async throws {
        let receiver = try await WebhookReceiver.start()
        defer { Task { await receiver.stop() } }
        try await self.withStandin("webhook") { standin in
            let task = UUID()
            let hookURL = WebhookURL.make(base: receiver.baseURL, taskID: task, attempt: 1)
            let created = try await self.create(
                standin, body: ["input": Self.input, "webhook": hookURL, "webhook_events_filter": ["start", "completed"]])
            #expect(created.status == 201)
            let id = try #require(created.json["id"].string)

            let terminal = try await receiver.waitFor { $0.json["status"].string == "succeeded" }
            let hook = try #require(terminal.first)
            #expect(hook.method == "POST")
            #expect(WebhookURL.parse(hook.target)?.taskID == task)
            #expect(hook.header("content-type") == "application/json")
            let verifier = try StandardWebhook(secret: RunningStandin.secret)
            #expect(throws: Never.self) {
                try verifier.verify(
                    id: hook.header("webhook-id"), timestamp: hook.header("webhook-timestamp"),
                    signatureHeader: hook.header("webhook-signature"), body: hook.body, now: Date())
            }
            // A signature over other bytes must not pass: the check above is meaningful.
            #expect(throws: WebhookVerificationError.self) {
                try verifier.verify(
                    id: hook.header("webhook-id"), timestamp: hook.header("webhook-timestamp"),
                    signatureHeader: hook.header("webhook-signature"), body: hook.body + [0x20], now: Date())
            }
            #expect(hook.json["id"].string == id)
            // As Replicate does, the signed body names the webhook URL the prediction was created with: Reelay binds the
            // delivery to the task and attempt in it, not to the unsigned query the request arrived with.
            #expect(hook.json["webhook"].string == hookURL)
            #expect(hook.json["webhook_events_filter"].array?.compactMap(\.string) == ["start", "completed"])
            let fetched = try await self.get(standin, id)
            #expect(fetched.body == hook.body, "webhook body differs from GET:\n\(hook.json)\n\(fetched.json)")

            let starts = receiver.requests.filter { $0.json["status"].string == "processing" }
            #expect(starts.count == 1, "one start webhook (filter has start)")
            #expect(starts.first?.header("webhook-id") != hook.header("webhook-id"))

            let output = try #require(hook.json["output"].string)
            #expect(output == "\(standin.baseURL)/files/\(id).mp4")
            let video = try await testHTTPClient.request(method: "GET", url: output, headers: [], body: nil, timeout: .seconds(5))
            #expect(video.status == 200)
            #expect(video.header("content-type") == "video/mp4")
            #expect(video.body.count > 1000)
            #expect(Array(video.body[4..<8]) == Array("ftyp".utf8))
            let again = try await testHTTPClient.request(method: "GET", url: output, headers: [], body: nil, timeout: .seconds(5))
            #expect(again.body == video.body)

            // The sender counts a delivery after the receiver has answered, so give the counter a moment.
            try await eventually("webhooks_sent reaches 2 (start + completed)") {
                try await standin.stats()["webhooks_sent"].int == 2
            }
            #expect(try await standin.stats()["webhooks_failed"].int == 0)
        }
    }

    /// Guards: a terminal webhook answered with 5xx is retried with the same webhook-id and a fresh signature.
    @Test func terminalWebhookIsRetriedWithSameID() async throws {
        let receiver = try await WebhookReceiver.start()
        defer { Task { await receiver.stop() } }
        receiver.script(statuses: [500, 503])
        try await self.withStandin("webhook-retry") { standin in
            let hookURL = WebhookURL.make(base: receiver.baseURL, taskID: UUID(), attempt: 2)
            let created = try await self.create(
                standin, body: ["input": Self.input, "webhook": hookURL, "webhook_events_filter": ["completed"]])
            #expect(created.status == 201)
            let deliveries = try await receiver.waitFor(count: 3, timeout: .seconds(15))
            #expect(deliveries.map(\.answeredStatus) == [500, 503, 200])
            #expect(Set(deliveries.compactMap { $0.header("webhook-id") }).count == 1)
            let verifier = try StandardWebhook(secret: RunningStandin.secret)
            for delivery in deliveries {
                #expect(throws: Never.self) {
                    try verifier.verify(
                        id: delivery.header("webhook-id"), timestamp: delivery.header("webhook-timestamp"),
                        signatureHeader: delivery.header("webhook-signature"), body: delivery.body, now: Date())
                }
            }
            try await eventually("webhooks_sent reaches 1") { try await standin.stats()["webhooks_sent"].int == 1 }
            #expect(try await standin.stats()["webhooks_failed"].int == 2)
        }
    }

    /// Guards: the duplicate fault sends the terminal webhook twice under one webhook-id (receivers must dedupe).
    @Test func duplicateFaultSendsTwiceWithSameID() async throws {
        let receiver = try await WebhookReceiver.start()
        defer { Task { await receiver.stop() } }
        try await self.withStandin("webhook-duplicate", environment: ["STANDIN_FAULT_WEBHOOK_DUPLICATE": "100"]) { standin in
            let hookURL = WebhookURL.make(base: receiver.baseURL, taskID: UUID(), attempt: 1)
            let created = try await self.create(
                standin, body: ["input": Self.input, "webhook": hookURL, "webhook_events_filter": ["completed"]])
            #expect(created.status == 201)
            let deliveries = try await receiver.waitFor(count: 2)
            #expect(deliveries.count == 2)
            #expect(deliveries[0].header("webhook-id") == deliveries[1].header("webhook-id"))
            #expect(deliveries[0].body == deliveries[1].body)
        }
    }
}
