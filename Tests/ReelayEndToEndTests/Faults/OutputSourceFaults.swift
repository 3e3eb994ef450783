import Foundation
import ReelayCore
import ReelayTestSupport
import Testing

/// A signed webhook is trusted to say what happened to a prediction, not to choose what Reelay fetches: whatever its
/// `output` names, the finalizer fetches only videos over https from Replicate's file hosts (or the exactly trusted
/// stand-in), never anything inside the network, never more than OUTPUT_MAX_BYTES. Each refusal ends the task `failed`
/// with the reason in its history, and nothing is stored.
@Suite("OutputSourceFaults", .serialized)
struct OutputSourceFaults {
    /// Guards: the SSRF matrix against the real finalizer. Internal addresses (loopback in several spellings, a name that
    /// resolves to loopback, private, link-local, metadata), other hosts, plain http, redirects from the trusted origin
    /// to internal addresses, an oversized output (with and without Content-Length) and a web page: each task fails at
    /// once (no retry) with a reason naming the refusal, nothing is stored, and the internal "secret page" server is
    /// never contacted.
    @Test func refusedOutputsFailTheTaskAndKeepNothing() async throws {
        let secretPage = try await WebhookReceiver.start()
        try await Faulty.withSystem(
            "output-ssrf",
            overrides: [
                "MAX_CONCURRENT_TASKS": "20", "MAX_USER_ACTIVE_TASKS": "20", "OUTPUT_MAX_BYTES": "2097152",
                "OUTPUT_ALLOWED_HOST_SUFFIXES": "replicate.delivery,localhost",
            ],
            // Long runs: only the webhooks this test signs finish these predictions.
            standin: ["STANDIN_RUN_MS": "600000"]
        ) { system in
            let secret = secretPage.port
            let standin = system.standin.baseURL
            func redirect(_ target: String) -> String {
                standin + "/_standin/redirect?to=" + target.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            }
            let cases: [(label: String, output: String, words: String)] = [
                ("loopback-http", "http://127.0.0.1:\(secret)/secret", "only over https"),
                ("loopback", "https://127.0.0.1:\(secret)/secret", "127.0.0.1, a loopback address"),
                ("loopback-hex", "https://0x7f000001:\(secret)/secret", "127.0.0.1, a loopback address"),
                ("loopback-decimal", "https://2130706433:\(secret)/secret", "127.0.0.1, a loopback address"),
                ("loopback-short", "https://127.1:\(secret)/secret", "127.0.0.1, a loopback address"),
                ("loopback-mapped", "https://[::ffff:127.0.0.1]:\(secret)/secret", "a loopback address"),
                ("resolves-to-loopback", "https://localhost:\(secret)/secret", "localhost resolves to"),
                ("private", "https://10.0.0.7/out.mp4", "10.0.0.7, a private network address"),
                ("link-local", "https://169.254.10.20/out.mp4", "169.254.10.20, a link-local address"),
                ("metadata", "https://169.254.169.254/latest/meta-data/iam/", "169.254.169.254, a cloud metadata address"),
                ("metadata-http", "http://169.254.169.254/latest/meta-data/iam/", "only over https"),
                ("other-host", "https://evil.example.com/out.mp4", "evil.example.com is not allowed"),
                ("redirect-loopback", redirect("https://127.0.0.1:\(secret)/secret"), "redirected elsewhere"),
                ("redirect-metadata", redirect("http://169.254.169.254/latest/meta-data/"), "redirected elsewhere"),
                ("oversized", standin + "/_standin/blob?bytes=3000000&kind=mp4", "2 MiB limit"),
                ("oversized-chunked", standin + "/_standin/blob?bytes=3000000&kind=mp4&chunked=1", "2 MiB limit"),
                ("not-video", standin + "/_standin/blob?bytes=70000&kind=html", "not a video: it is an HTML"),
            ]
            let user = try FaultUser(system)
            var ids: [String] = []
            for entry in cases {
                ids.append(try await user.submit(entry.label))
            }
            for id in ids {
                try await user.waitFor(id, status: "processing", timeout: .seconds(30))
            }
            for (entry, id) in zip(cases, ids) {
                let response = try await system.postSignedWebhook(for: id, status: "succeeded", output: entry.output)
                #expect(response.status == 200, "\(entry.label): \(response.text)")
            }
            for (entry, id) in zip(cases, ids) {
                let task = try await user.waitFor(id, status: "failed", timeout: .seconds(30))
                let message = task["error_message"].string ?? ""
                #expect(message.hasPrefix("The output could not be stored: "), "\(entry.label): \(message)")
                #expect(message.contains(entry.words), "\(entry.label): \(message)")
                #expect(message.contains("Nothing was kept"), "\(entry.label): \(message)")
                #expect(!message.contains("/secret") && !message.contains("meta-data"), "no path in the message: \(message)")
                #expect(task["retry_count"].int == 0, "a refusal is not retried: \(entry.label)")
                #expect(task["output_video_url"].isNull)
                let history = try await system.transitions(id)
                #expect(history.map(\.to) == ["pending", "dispatching", "processing", "failed"], "\(entry.label): \(history)")
                #expect(history.last?.reason == message, "the reason is in the history: \(history)")
                #expect(try await system.row(id)["output_storage_key"] == nil, "\(entry.label)")
                #expect(try await user.video(id).status == 409, "\(entry.label)")
                let stored = system.folder + "/storage/\(id.lowercased()).mp4"
                #expect(!FileManager.default.fileExists(atPath: stored), "\(entry.label): nothing stored")
                #expect(!FileManager.default.fileExists(atPath: stored + ".part"), "\(entry.label): no partial file left")
            }
            #expect(secretPage.connections == 0, "the internal page was contacted: \(secretPage.requests.map(\.target))")
            #expect(try await system.slotsHeld() == 0)
            let storage = (try? FileManager.default.contentsOfDirectory(atPath: system.folder + "/storage")) ?? []
            #expect(storage.isEmpty, "nothing at all in storage: \(storage)")
        }
        await secretPage.stop()
    }

    /// Guards: the same path still stores a real output: a signed webhook whose output is a video on the trusted
    /// origin completes the task (the refusals above are not a finalizer that refuses everything).
    @Test func anAllowedVideoIsStored() async throws {
        try await Faulty.withSystem("output-allowed", standin: ["STANDIN_RUN_MS": "600000"]) { system in
            let user = try FaultUser(system)
            let id = try await user.submit("allowed")
            try await user.waitFor(id, status: "processing", timeout: .seconds(30))
            let output = system.standin.baseURL + "/_standin/blob?bytes=200000&kind=mp4&chunked=1"
            let response = try await system.postSignedWebhook(for: id, status: "succeeded", output: output)
            #expect(response.status == 200, "\(response.text)")
            try await user.waitFor(id, status: "completed", timeout: .seconds(30))
            let video = try await user.video(id)
            #expect(video.status == 200)
            #expect(video.body.count == 200_000)
            #expect(Array(video.body[4..<8]) == Array("ftyp".utf8))
        }
    }
}

extension RunningSystem {
    /// Posts a webhook for the task's recorded prediction (or `predictionID`), signed as Replicate signs it, its body's
    /// `webhook` naming `webhook` (default: the task and its attempt) unless `includeWebhook` is false; `query` is the
    /// request's query string (default: the task's own).
    func postSignedWebhook(
        for id: String, status: String, output: String? = nil, predictionID: String? = nil, webhook: WebhookTarget? = nil,
        includeWebhook: Bool = true, query: String? = nil, webhookID: String = "msg_e2e_\(UUID().uuidString.prefix(12))"
    ) async throws -> JSONResponse {
        let row = try await self.row(id)
        let taskID = try #require(UUID(uuidString: id))
        let attempt = row.int("attempt") ?? 1
        let target = webhook ?? WebhookTarget(taskID: taskID, attempt: attempt)
        var body: [String: Any] = [
            "id": predictionID ?? row["replicate_task_id"] ?? "no-prediction-recorded",
            "status": status,
            "output": output ?? NSNull(),
            "error": NSNull(),
            "data_removed": false,
        ]
        if includeWebhook {
            body["webhook"] = WebhookURL.make(base: self.webhookURL, taskID: target.taskID, attempt: target.attempt)
        }
        let bytes = try JSON.encode(body, sortedKeys: true)
        let queryString = query ?? "task=\(id.lowercased())&attempt=\(attempt)"
        return try await self.postWebhook(bytes, query: queryString, webhookID: webhookID)
    }

    /// Posts raw bytes to the webhook service with a valid Standard Webhooks signature (RunningStandin.secret).
    func postWebhook(
        _ body: [UInt8], query: String?, webhookID: String = "msg_e2e_\(UUID().uuidString.prefix(12))", timestamp: Int? = nil,
        secret: String = RunningStandin.secret
    ) async throws -> JSONResponse {
        let signer = try StandardWebhook(secret: secret)
        let timestamp = timestamp ?? Int(Date().timeIntervalSince1970)
        let headers = [
            ("webhook-id", webhookID), ("webhook-timestamp", String(timestamp)),
            ("webhook-signature", signer.sign(id: webhookID, timestamp: timestamp, body: body)), ("Content-Type", "application/json"),
        ]
        let url = self.webhookURL + "/webhooks/replicate" + (query.map { "?" + $0 } ?? "")
        let response = try await testHTTPClient.request(method: "POST", url: url, headers: headers, body: body, timeout: .seconds(10))
        return JSONResponse(response)
    }
}
