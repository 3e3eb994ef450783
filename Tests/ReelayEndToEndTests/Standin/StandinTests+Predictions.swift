import Foundation
import ReelayCore
import ReelayTestSupport
import Testing

/// Predictions created, read, counted and canceled.
extension StandinTests {
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
}
