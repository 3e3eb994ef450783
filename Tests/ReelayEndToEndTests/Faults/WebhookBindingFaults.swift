import Foundation
import ReelayCore
import ReelayHTTPClient
import ReelayTestSupport
import Testing

/// A webhook's signature covers its body, not the query string of the URL it was posted to. These tests post correctly
/// signed webhooks whose unsigned query lies about the task, and check that only the signed body (its `webhook` URL) or
/// the task's own recorded prediction decides which task a webhook may change.
@Suite("WebhookBindingFaults", .serialized)
struct WebhookBindingFaults {
    /// Guards: (1) a task still waiting for its create's answer (no prediction recorded) accepts no unsigned claim: a
    /// signed body without `webhook` and a query naming that task changes nothing (before, it completed the task with
    /// the webhook's output); (2) a query that names another task than the signed body is refused with a problem; (3) a
    /// query claim for a task that recorded another prediction is not matched to any task; (4) a query claim for the
    /// task that recorded this very prediction is applied; (5) the signed body alone, without any query, is applied.
    @Test func webhooksChangeOnlyTheTaskTheirSignedBodyNames() async throws {
        try await Faulty.withSystem(
            "webhook-binding", overrides: ["REPLICATE_HTTP_TIMEOUT_MS": "10000"],
            // Every create's answer is withheld 3 s (the task stays dispatching meanwhile); runs outlast the test.
            standin: ["STANDIN_FAULT_CREATE_TIMEOUT": "100", "STANDIN_FAULT_TIMEOUT_MS": "3000", "STANDIN_RUN_MS": "120000"]
        ) { system in
            let user = try FaultUser(system)
            let video = system.standin.baseURL + "/_standin/blob?bytes=5000&kind=mp4"

            // (1) A dispatching task and an unsigned claim on it.
            let victim = try await user.submit("victim")
            try await eventually("the victim's create sent", timeout: .seconds(60), every: .milliseconds(20)) {
                try await system.standin.stats()["creates"].int == 1
            }
            #expect(try await system.row(victim)["status"] == "dispatching")
            let forged = try await system.postSignedWebhook(
                for: victim, status: "succeeded", output: video, predictionID: "forgedprediction00000000000", includeWebhook: false,
                webhookID: "msg_e2e_unsigned_dispatching")
            #expect(forged.status == 200, "accepted at the edge (no signed webhook URL to compare): \(forged.text)")
            let forgedDelivery = try await system.waitForDelivery("msg_e2e_unsigned_dispatching")
            #expect(forgedDelivery.taskID == nil, "matched to no task: \(forgedDelivery)")
            let started = try await user.waitFor(victim, status: "processing", timeout: .seconds(60))
            #expect(started["output_video_url"].isNull)
            let victimPrediction = try #require(try await user.predictions(of: victim).first?["id"].string)
            #expect(try await system.row(victim)["replicate_task_id"] == victimPrediction, "the victim keeps its own prediction")
            #expect(try await system.transitions(victim).allSatisfy { !$0.reason.contains("forged") })

            // (2) A signed body for my own task, posted with a query naming the victim.
            let own = try await user.submit("own")
            try await user.waitFor(own, status: "processing", timeout: .seconds(60))
            let ownPrediction = try #require(try await system.row(own)["replicate_task_id"])
            let victimQuery = "task=\(victim.lowercased())&attempt=1"
            let conflict = try await system.postSignedWebhook(
                for: own, status: "succeeded", output: video, query: victimQuery, webhookID: "msg_e2e_conflict")
            #expect(conflict.status == 400, "\(conflict.text)")
            #expect(conflict.header("Content-Type")?.hasPrefix("application/problem+json") == true)
            #expect(conflict.json["title"].string == "Webhook URL mismatch")
            let detail = conflict.json["detail"].string ?? ""
            #expect(detail.contains(victim.lowercased()) && detail.contains(own.lowercased()), "\(detail)")
            #expect(detail.contains("Post it to the webhook URL the prediction was created with"), "\(detail)")

            // (3) No signed webhook URL, my own prediction, a query naming the victim (which recorded another one).
            let lie = try await system.postSignedWebhook(
                for: own, status: "succeeded", output: video, includeWebhook: false, query: victimQuery, webhookID: "msg_e2e_lie")
            #expect(lie.status == 200, "\(lie.text)")
            #expect(try await system.waitForDelivery("msg_e2e_lie").taskID == nil)
            #expect(try await system.delivery("msg_e2e_conflict") == nil, "a refused webhook is not even queued")
            for id in [victim, own] {
                #expect(try await user.task(id)["status"].string == "processing", "\(id) unchanged")
            }

            // (4) The same unsigned body with a query naming the task that recorded this prediction: applied.
            let truthful = try await system.postSignedWebhook(
                for: own, status: "succeeded", output: video, includeWebhook: false, webhookID: "msg_e2e_truthful")
            #expect(truthful.status == 200, "\(truthful.text)")
            try await user.waitFor(own, status: "completed", timeout: .seconds(60))
            #expect(try await system.row(own)["replicate_task_id"] == ownPrediction)
            #expect(try await user.video(own).body.count == 5000)
            #expect(try await system.delivery("msg_e2e_truthful")?.taskID == own.lowercased())

            // (5) A signed body naming the victim, posted without any query: the body is the authority.
            let signed = try await system.postSignedWebhook(for: victim, status: "succeeded", output: video, query: "")
            #expect(signed.status == 200, "\(signed.text)")
            try await user.waitFor(victim, status: "completed", timeout: .seconds(60))
            #expect(try await system.row(victim)["replicate_task_id"] == victimPrediction)
            #expect(try await system.slotsHeld() == 0)
        }
    }

    /// Guards: every refusal of the webhook service is problem+json saying what was wrong and what to do.
    @Test func refusalsAreProblemsThatSayWhatToDo() async throws {
        try await Faulty.withSystem("webhook-problems") { system in
            let body = Array(#"{"id": "abc", "status": "succeeded"}"#.utf8)
            let url = system.webhookURL + "/webhooks/replicate"
            var cases: [(label: String, response: JSONResponse, status: Int, title: String, words: [String])] = []

            let unsigned = try await testHTTPClient.request(method: "POST", url: url, headers: [], body: body, timeout: .seconds(10))
            cases.append(("no headers", Self.json(unsigned), 401, "Invalid signature", ["Missing webhook-id", "Send the Standard Webhooks headers"]))

            let otherSecret = "whsec_" + Data("another-secret-for-tests-only!!!".utf8).base64EncodedString()
            let wrongKey = try await system.postWebhook(body, query: nil, secret: otherSecret)
            cases.append(("wrong secret", wrongKey, 401, "Invalid signature", ["No v1 webhook signature matches", "REPLICATE_WEBHOOK_SECRET"]))

            let old = try await system.postWebhook(body, query: nil, timestamp: Int(Date().timeIntervalSince1970) - 3600)
            cases.append(("old timestamp", old, 401, "Invalid signature", ["5 minutes", "clock"]))

            let notText = try await system.postWebhook([0xFF, 0xFE, 0x00, 0x7B], query: nil)
            cases.append(("not UTF-8", notText, 400, "Bad body", ["UTF-8 JSON"]))

            let large = try await testHTTPClient.request(
                method: "POST", url: url, headers: [("Content-Type", "application/json")], body: [UInt8](repeating: 0x20, count: 2 << 20),
                timeout: .seconds(10))
            cases.append(("too large", Self.json(large), 413, "Payload too large", ["limited to 1048576 bytes"]))

            for entry in cases {
                let response = entry.response
                #expect(response.status == entry.status, "\(entry.label): \(response.status) \(response.text)")
                #expect(response.header("Content-Type")?.hasPrefix("application/problem+json") == true, "\(entry.label)")
                #expect(response.json["status"].int == entry.status, "\(entry.label): \(response.text)")
                #expect(response.json["title"].string == entry.title, "\(entry.label): \(response.text)")
                let detail = response.json["detail"].string ?? ""
                for words in entry.words {
                    #expect(detail.contains(words), "\(entry.label): \(detail)")
                }
            }
            let accepted = try await system.postWebhook(body, query: nil)
            #expect(accepted.status == 200, "a correctly signed body is accepted: \(accepted.text)")
        }
    }

    static func json(_ response: HTTPClientResponse) -> JSONResponse {
        JSONResponse(response)
    }
}

extension RunningSystem {
    /// The `webhook_deliveries` row of a webhook id: the task it was matched to (nil: none) and the prediction status.
    func delivery(_ webhookID: String) async throws -> (taskID: String?, status: String?)? {
        let result = try await self.pool.withConnection {
            try await $0.query(
                "SELECT task_id::text AS task_id, prediction_status FROM webhook_deliveries WHERE webhook_id = $1", [webhookID])
        }
        return result.rows.first.map { ($0["task_id"], $0["prediction_status"]) }
    }

    /// Waits until the finalizer recorded a webhook id (handled, whatever it changed).
    func waitForDelivery(_ webhookID: String) async throws -> (taskID: String?, status: String?) {
        var found: (taskID: String?, status: String?)?
        try await eventually("webhook \(webhookID) recorded", timeout: .seconds(60), every: .milliseconds(50)) {
            found = try await self.delivery(webhookID)
            return found != nil
        }
        return try #require(found)
    }
}
