import Foundation
import ReelayCore
import ReelayTestSupport
import Testing

/// The built replicate-standin, driven over HTTP as Reelay's dispatcher and webhook service would, checked against
/// Replicate's contract (REPLICATE.md). Each test runs its own stand-in process on a free port, so tests stay independent.
@Suite("Standin")
struct StandinTests {
    static let model = "wan-video/wan-2.2-i2v-fast"
    static var input: [String: Any] { ["prompt": "a cat surfing a wave", "image": "https://example.com/cat.png"] }
    static let versionID = String(repeating: "5c7d5dc6dd8bf75c", count: 4)

    /// Runs `body` against a fresh stand-in; on an error, the stand-in's log tail goes into the failure.
    func withStandin(
        _ name: String, environment: [String: String] = [:], _ body: (RunningStandin) async throws -> Void
    ) async throws {
        let folder = try BuiltProducts.testFolder("standin-\(name)")
        let standin = try await RunningStandin.start(folder: folder, environment: environment)
        do {
            try await body(standin)
        } catch {
            let tail = standin.process.logTail()
            await standin.stop()
            throw HarnessError("\(error)\n\(tail)\n(logs kept in \(folder))")
        }
        await standin.stop()
        try? FileManager.default.removeItem(atPath: folder)
    }

    func create(
        _ standin: RunningStandin, body: [String: Any], token: String? = RunningStandin.token, path: String? = nil
    ) async throws -> JSONResponse {
        try await sendJSON("POST", standin.apiBaseURL + (path ?? "/models/\(Self.model)/predictions"), token: token, body: body)
    }

    func get(_ standin: RunningStandin, _ id: String) async throws -> JSONResponse {
        try await sendJSON("GET", standin.apiBaseURL + "/predictions/\(id)", token: RunningStandin.token)
    }

    /// Polls GET until the prediction reaches `status`.
    func waitForStatus(_ standin: RunningStandin, _ id: String, _ status: String) async throws -> JSONResponse {
        var last = try await self.get(standin, id)
        try await eventually("prediction \(id) never became \(status); last \(last.json)") {
            last = try await self.get(standin, id)
            return last.json["status"].string == status
        }
        return last
    }

    // MARK: Authentication and validation

    /// Guards: every /v1 route demands the bearer token and answers Replicate's exact 401 problem.
    @Test func missingOrWrongTokenIs401() async throws {
        try await self.withStandin("auth") { standin in
            for token in [nil, "r8_wrong"] as [String?] {
                let response = try await self.create(standin, body: ["input": Self.input], token: token)
                #expect(response.status == 401)
                #expect(response.json["title"].string == "Unauthenticated")
                #expect(response.json["detail"].string == "You did not pass a valid authentication token")
                #expect(response.json["status"].int == 401)
            }
            let list = try await sendJSON("GET", standin.apiBaseURL + "/predictions")
            #expect(list.status == 401)
            let stats = try await standin.stats()
            #expect(stats["creates"].int == 0)
        }
    }

    /// Guards: additionalProperties false, an unknown top-level field is a 422 naming the field.
    @Test func unknownFieldIs422WithInvalidFields() async throws {
        try await self.withStandin("unknown-field") { standin in
            let response = try await self.create(standin, body: ["input": Self.input, "wait": true])
            #expect(response.status == 422)
            let fields = try #require(response.json["invalid_fields"].array)
            #expect(fields.contains { $0["field"].string == "wait" })
            #expect(response.header("content-type")?.hasPrefix("application/problem+json") == true)
            #expect(try await standin.stats()["creates"].int == 0)
        }
    }

    /// Guards: the official-model endpoint takes no `version`, the way Replicate refuses it.
    @Test func versionOnModelsEndpointIs422() async throws {
        try await self.withStandin("version-on-model") { standin in
            let response = try await self.create(standin, body: ["version": Self.versionID, "input": Self.input])
            #expect(response.status == 422)
            let fields = try #require(response.json["invalid_fields"].array)
            #expect(fields.map { $0["field"].string } == ["version"])
        }
    }

    /// Guards: input must be an object holding the model's required keys (STANDIN_REQUIRED_INPUT).
    @Test func missingRequiredInputIs422() async throws {
        try await self.withStandin("required-input") { standin in
            let response = try await self.create(standin, body: ["input": ["prompt": "only a prompt"]])
            #expect(response.status == 422)
            #expect(response.json["detail"].string?.contains("image is required") == true)
            let notObject = try await self.create(standin, body: ["input": "a cat"])
            #expect(notObject.status == 422)
            let badHook = try await self.create(standin, body: ["input": Self.input, "webhook": "/relative/path"])
            #expect(badHook.status == 422)
            let badFilter = try await self.create(standin, body: ["input": Self.input, "webhook_events_filter": ["done"]])
            #expect(badFilter.status == 422)
        }
    }

    /// Guards: POST /v1/predictions demands a well-formed version and reports it back.
    @Test func versionEndpointRequiresVersion() async throws {
        try await self.withStandin("version-endpoint") { standin in
            let missing = try await self.create(standin, body: ["input": Self.input], path: "/predictions")
            #expect(missing.status == 422)
            let malformed = try await self.create(standin, body: ["version": "abc", "input": Self.input], path: "/predictions")
            #expect(malformed.status == 422)
            let created = try await self.create(
                standin, body: ["version": "someone/model:\(Self.versionID)", "input": Self.input], path: "/predictions")
            #expect(created.status == 201)
            #expect(created.json["version"].string == Self.versionID)
            #expect(created.json["model"].string == "someone/model")
        }
    }

    // MARK: Creating and reading

    /// Guards: create answers 201 with Replicate's prediction object in `starting`.
    @Test func createAnswers201Starting() async throws {
        try await self.withStandin("create") { standin in
            let response = try await self.create(standin, body: ["input": Self.input])
            #expect(response.status == 201)
            let prediction = response.json
            let id = try #require(prediction["id"].string)
            #expect(prediction["status"].string == "starting")
            #expect(prediction["version"].string == "hidden")
            #expect(prediction["model"].string == Self.model)
            #expect(prediction["output"].isNull)
            #expect(prediction["error"].isNull)
            #expect(prediction["data_removed"].bool == false)
            #expect(prediction["source"].string == "api")
            #expect(prediction["input"]["prompt"].string == Self.input["prompt"] as? String)
            #expect(prediction["urls"]["get"].string == "\(standin.apiBaseURL)/predictions/\(id)")
            #expect(prediction["urls"]["cancel"].string == "\(standin.apiBaseURL)/predictions/\(id)/cancel")
            #expect(prediction["urls"]["web"].string != nil)
            let createdAt = try #require(prediction["created_at"].string)
            #expect(createdAt.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z/) != nil, "created_at \(createdAt)")

            let fetched = try await self.get(standin, id)
            #expect(fetched.status == 200)
            #expect(fetched.json["id"].string == id)
            let list = try await sendJSON("GET", standin.apiBaseURL + "/predictions", token: RunningStandin.token)
            #expect(list.json["results"].array?.map { $0["id"].string } == [id])
            #expect(list.json["next"].isNull)
            let unknown = try await self.get(standin, "doesnotexist")
            #expect(unknown.status == 404)
            let secret = try await sendJSON("GET", standin.apiBaseURL + "/webhooks/default/secret", token: RunningStandin.token)
            #expect(secret.json["key"].string == RunningStandin.secret)
        }
    }

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

    // MARK: Counters

    /// Guards: stats count creates, peak concurrency and per-task predictions, and flag tasks with two running at once.
    @Test func statsCountCreatesAndPeakRunning() async throws {
        // Runs of 15 s so all three predictions surely overlap, however slowly the three creates go through.
        try await self.withStandin("stats", environment: ["STANDIN_RUN_MS": "15000"]) { standin in
            let task = UUID()
            let hookURL = WebhookURL.make(base: "http://127.0.0.1:9", taskID: task, attempt: 1)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<3 {
                    group.addTask {
                        try await self.create(
                            standin, body: ["input": Self.input, "webhook": hookURL, "webhook_events_filter": ["completed"]]
                        ).status
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses == [201, 201, 201])
            let stats = try await standin.stats()
            #expect(stats["creates"].int == 3)
            #expect(stats["create_attempts"].int == 3)
            #expect(stats["running"].int == 3)
            #expect(stats["peak_running"].int == 3)
            #expect(stats["predictions_by_task"][task.uuidString.lowercased()].int == 3)
            #expect(stats["overlapping_tasks"].array?.map { $0.string } == [task.uuidString.lowercased()])
            try await eventually("all predictions finish", timeout: .seconds(90)) {
                try await standin.stats()["running"].int == 0
            }
            #expect(try await standin.stats()["peak_running"].int == 3)
        }
    }

    // MARK: Cancel

    /// Guards: cancel ends a running prediction `canceled` (with its terminal webhook); a finished one is unchanged.
    @Test func cancelRunningPredictionEndsCanceled() async throws {
        let receiver = try await WebhookReceiver.start()
        defer { Task { await receiver.stop() } }
        // A 60 s run, so the cancel surely lands while it runs (the cancel ends it; nothing waits for the run).
        try await self.withStandin("cancel", environment: ["STANDIN_RUN_MS": "60000"]) { standin in
            let hookURL = WebhookURL.make(base: receiver.baseURL, taskID: UUID(), attempt: 1)
            let created = try await self.create(
                standin, body: ["input": Self.input, "webhook": hookURL, "webhook_events_filter": ["completed"]])
            let id = try #require(created.json["id"].string)
            let canceled = try await sendJSON(
                "POST", standin.apiBaseURL + "/predictions/\(id)/cancel", token: RunningStandin.token)
            #expect(canceled.status == 200)
            #expect(canceled.json["status"].string == "canceled")
            #expect(canceled.json["completed_at"].string != nil)
            #expect(try await self.get(standin, id).json["status"].string == "canceled")

            let hooks = try await receiver.waitFor()
            #expect(hooks.first?.json["status"].string == "canceled")
            let again = try await sendJSON("POST", standin.apiBaseURL + "/predictions/\(id)/cancel", token: RunningStandin.token)
            #expect(again.status == 200)
            #expect(again.body == canceled.body, "a finished prediction comes back unchanged")
            #expect(try await standin.stats()["running"].int == 0)
            let missing = try await sendJSON("POST", standin.apiBaseURL + "/predictions/nope/cancel", token: RunningStandin.token)
            #expect(missing.status == 404)
        }
    }

    // MARK: Faults

    /// Guards: with create_500 at 100% every create answers 500 and nothing is created.
    @Test func create500FaultCreatesNothing() async throws {
        try await self.withStandin("fault-500") { standin in
            try await standin.setFaults(["create_500": 100])
            let response = try await self.create(standin, body: ["input": Self.input])
            #expect(response.status == 500)
            let stats = try await standin.stats()
            #expect(stats["creates"].int == 0)
            #expect(stats["create_attempts"].int == 1)
            #expect(stats["running"].int == 0)
            let list = try await sendJSON("GET", standin.apiBaseURL + "/predictions", token: RunningStandin.token)
            #expect(list.json["results"].array?.count == 0)

            try await standin.setFaults(["create_500": 0])
            #expect(try await self.create(standin, body: ["input": Self.input]).status == 201)
        }
    }

    /// Guards: the create_429 fault answers 429 with a wait a client can read, and creates nothing.
    @Test func create429FaultThrottles() async throws {
        try await self.withStandin("fault-429", environment: ["STANDIN_FAULT_CREATE_429": "100"]) { standin in
            let response = try await self.create(standin, body: ["input": Self.input])
            #expect(response.status == 429)
            #expect(response.header("retry-after") == "1")
            #expect(response.json["detail"].string?.contains("~1s") == true)
            let stats = try await standin.stats()
            #expect(stats["creates"].int == 0)
            #expect(stats["rate_limited"].int == 1)
        }
    }

    /// Guards: above STANDIN_CREATE_RATE_PER_MIN creates are refused with 429 and a Retry-After, and not created.
    @Test func createRateLimitThrottles() async throws {
        try await self.withStandin("rate", environment: ["STANDIN_CREATE_RATE_PER_MIN": "2"]) { standin in
            var statuses: [Int] = []
            for _ in 0..<3 {
                statuses.append(try await self.create(standin, body: ["input": Self.input]).status)
            }
            #expect(statuses == [201, 201, 429])
            let refused = try await self.create(standin, body: ["input": Self.input])
            let wait = try #require(refused.header("retry-after").flatMap { Int($0) })
            #expect((1...60).contains(wait))
            let stats = try await standin.stats()
            #expect(stats["creates"].int == 2)
            #expect(stats["create_attempts"].int == 4)
            #expect(stats["rate_limited"].int == 2)
        }
    }

    /// Guards: create_timeout creates the prediction but withholds the answer, so the client sees a timeout (an ambiguous
    /// create) while the prediction exists and can be found by listing.
    @Test func createTimeoutFaultIsAmbiguous() async throws {
        try await self.withStandin(
            "fault-timeout", environment: ["STANDIN_FAULT_CREATE_TIMEOUT": "100", "STANDIN_FAULT_TIMEOUT_MS": "60000"]
        ) { standin in
            await #expect(throws: (any Error).self) {
                _ = try await sendJSON(
                    "POST", standin.apiBaseURL + "/models/\(Self.model)/predictions", token: RunningStandin.token,
                    body: ["input": Self.input], timeout: .seconds(3))
            }
            // The client gave up long before the answer; the prediction exists all the same.
            try await eventually("the withheld create is counted", timeout: .seconds(30), every: .milliseconds(50)) {
                try await standin.stats()["creates"].int == 1
            }
            let stats = try await standin.stats()
            #expect(stats["creates"].int == 1)
            #expect(stats["withheld_creates"].int == 1)
            let list = try await sendJSON("GET", standin.apiBaseURL + "/predictions", token: RunningStandin.token)
            #expect(list.json["results"].array?.count == 1)
        }
    }

    /// Guards: webhook_drop never sends the terminal webhook (the reconciler must find the outcome by polling).
    @Test func dropFaultSendsNoTerminalWebhook() async throws {
        let receiver = try await WebhookReceiver.start()
        defer { Task { await receiver.stop() } }
        try await self.withStandin("fault-drop", environment: ["STANDIN_FAULT_WEBHOOK_DROP": "100"]) { standin in
            let hookURL = WebhookURL.make(base: receiver.baseURL, taskID: UUID(), attempt: 1)
            let created = try await self.create(
                standin, body: ["input": Self.input, "webhook": hookURL, "webhook_events_filter": ["completed"]])
            let id = try #require(created.json["id"].string)
            _ = try await self.waitForStatus(standin, id, "succeeded")
            try await Task.sleep(for: .milliseconds(500))
            #expect(receiver.requests.isEmpty)
            #expect(try await standin.stats()["webhooks_dropped"].int == 1)
        }
    }

    /// Guards: output_missing succeeds with an output URL that answers 404.
    @Test func outputMissingFaultServes404() async throws {
        try await self.withStandin("fault-output", environment: ["STANDIN_FAULT_OUTPUT_MISSING": "100"]) { standin in
            let created = try await self.create(standin, body: ["input": Self.input])
            let id = try #require(created.json["id"].string)
            let succeeded = try await self.waitForStatus(standin, id, "succeeded")
            let output = try #require(succeeded.json["output"].string)
            let file = try await testHTTPClient.request(method: "GET", url: output, headers: [], body: nil, timeout: .seconds(5))
            #expect(file.status == 404)
        }
    }

    /// Guards: the prediction_fail fault ends the prediction failed with a transient-looking error.
    @Test func predictionFailFaultEndsFailed() async throws {
        try await self.withStandin("fault-fail", environment: ["STANDIN_FAULT_PREDICTION_FAIL": "100"]) { standin in
            let created = try await self.create(standin, body: ["input": Self.input])
            let id = try #require(created.json["id"].string)
            let failed = try await self.waitForStatus(standin, id, "failed")
            #expect(failed.json["error"].string == "CUDA error: out of memory (transient)")
            #expect(failed.json["output"].isNull)
        }
    }

    /// Guards: outputs expire: after the TTL `output` is null, `data_removed` true, and the file answers 404.
    @Test func outputExpiresAfterTTL() async throws {
        // A 3 s TTL: the poll that sees `succeeded` must come before the output expires, even on a busy machine.
        try await self.withStandin("ttl", environment: ["STANDIN_OUTPUT_TTL_SECONDS": "3"]) { standin in
            let created = try await self.create(standin, body: ["input": Self.input])
            let id = try #require(created.json["id"].string)
            let succeeded = try await self.waitForStatus(standin, id, "succeeded")
            let output = try #require(succeeded.json["output"].string)
            #expect(succeeded.json["data_removed"].bool == false)
            try await Task.sleep(for: .milliseconds(3300))
            let expired = try await self.get(standin, id)
            #expect(expired.json["data_removed"].bool == true)
            #expect(expired.json["output"].isNull)
            #expect(expired.json["status"].string == "succeeded")
            let file = try await testHTTPClient.request(method: "GET", url: output, headers: [], body: nil, timeout: .seconds(5))
            #expect(file.status == 404)
        }
    }

    /// Guards: the stand-in's hostile file routes, which the output-download tests rely on, do what they say: a
    /// redirect to any URL, and blobs of a given size and kind, with a Content-Length or chunked.
    @Test func hostileFileRoutes() async throws {
        try await self.withStandin("hostile") { standin in
            let redirect = try await testHTTPClient.request(
                method: "GET", url: standin.baseURL + "/_standin/redirect?to=http%3A%2F%2F169.254.169.254%2Flatest%2F", headers: [],
                body: nil, timeout: .seconds(5))
            #expect(redirect.status == 302)
            #expect(redirect.header("location") == "http://169.254.169.254/latest/")
            for chunked in [false, true] {
                let url = standin.baseURL + "/_standin/blob?bytes=200000&kind=mp4" + (chunked ? "&chunked=1" : "")
                let video = try await testHTTPClient.request(method: "GET", url: url, headers: [], body: nil, timeout: .seconds(5))
                #expect(video.status == 200)
                #expect(video.body.count == 200_000)
                #expect(Array(video.body[4..<8]) == Array("ftyp".utf8))
                #expect((video.header("content-length") == nil) == chunked, "chunked=\(chunked): \(video.headers)")
            }
            let page = try await testHTTPClient.request(
                method: "GET", url: standin.baseURL + "/_standin/blob?bytes=5000&kind=html", headers: [], body: nil, timeout: .seconds(5))
            #expect(page.header("content-type") == "text/html")
            #expect(page.body.count == 5000)
            #expect(String(decoding: page.body.prefix(15), as: UTF8.self) == "<!DOCTYPE html>")
            let bad = try await sendJSON("GET", standin.baseURL + "/_standin/blob?bytes=-1")
            #expect(bad.status == 400)
        }
    }

    // MARK: Configuration

    /// Guards: a bad setting stops the stand-in at once with one line naming the variable.
    @Test func badSettingExitsNamingTheVariable() async throws {
        let folder = try BuiltProducts.testFolder("standin-bad-env")
        let process = try ManagedProcess(
            name: "standin", executable: BuiltProducts.path("replicate-standin"),
            environment: ["STANDIN_PORT": String(freePort()), "STANDIN_FAULT_CREATE_500": "150"], logFolder: folder)
        #expect(await process.waitForExit(timeout: .seconds(10)))
        #expect(process.exitCode != 0)
        #expect(process.logTail().contains("STANDIN_FAULT_CREATE_500"))
        try? FileManager.default.removeItem(atPath: folder)
    }
}
