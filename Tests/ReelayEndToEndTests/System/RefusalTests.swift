import Foundation
import Logging
import ReelayAMQP
import ReelayMessaging
import ReelayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Refusals", .serialized)
struct RefusalTests {
    /// Guards: a refusal answered in time (429 within ADMISSION_TIMEOUT_MS) leaves no row, only a count by user and
    /// reason, which `GET /v1/queue/stats` and `reelay stats` include; a refusal decided after the gateway answered 202
    /// "submitted" (the scheduler was frozen past the deadline) is a `rejected` row that the user reads with GET; and so
    /// is a refusal decided in time whose verdict cannot be delivered (its reply queue is gone, as when the gateway or
    /// the broker restarted).
    @Test func refusalsCostACounterUnlessTheClientWasToldSubmitted() async throws {
        try await RunningSystem.run(
            name: "refusals", overrides: ["MAX_USER_ACTIVE_TASKS": "1", "ADMISSION_TIMEOUT_MS": "1500"],
            standinEnvironment: ["STANDIN_RUN_MS": "120000"]
        ) { system in
            defer { system.process("scheduler")?.signal(SIGCONT) }
            try await self.refuseInTimeThenLate(system)
        }
    }

    /// Guards: when the submit queue is at its length limit (the scheduler is gone and the queue filled up), the broker
    /// refuses the publish and the gateway answers 503 "Queue full" with Retry-After, instead of 202 for a submission
    /// that was never queued. The limit is applied here as the policy deploy/README.md describes for existing brokers.
    @Test func aFullSubmitQueueIsAnswered503() async throws {
        try await RunningSystem.run(name: "queue-full", overrides: ["ADMISSION_TIMEOUT_MS": "300"]) { system in
            let key = try system.createKey(user: UUID(), tier: "pro")
            _ = await system.process("scheduler")?.terminate()
            let vhost = try #require(system.environment["AMQP_URL"]?.split(separator: "/").last.map(String.init))
            try Rabbitmqctl.check([
                "set_policy", "-p", vhost, "--apply-to", "queues", "reelay-queue-limits", #"^reelay\.submit$"#, #"{"max-length": 1}"#,
            ])
            var statuses: [Int] = []
            var full: JSONResponse?
            for index in 0..<6 where full == nil {
                let response = try await sendJSON(
                    "POST", system.gatewayURL + "/v1/tasks", token: key,
                    body: ["prompt": "a kite over dunes \(index)", "input_image_url": "https://example.com/kite.png"])
                statuses.append(response.status)
                if response.status == 503 { full = response }
            }
            let refused = try #require(full, "a submission beyond the queue's limit is refused; statuses: \(statuses)")
            #expect(statuses.dropLast().allSatisfy { $0 == 202 }, "queued ones were answered 202 submitted: \(statuses)")
            #expect(statuses.count >= 2, "the first submission fits: \(statuses)")
            #expect(refused.json["title"].string == "Queue full")
            #expect(refused.json["detail"].string?.contains("try again") == true, "\(refused.text)")
            #expect(refused.header("Retry-After") == "30")
            #expect(refused.header("Content-Type")?.hasPrefix("application/problem+json") == true)
        }
    }

    private func refuseInTimeThenLate(_ system: RunningSystem) async throws {
        let user = UUID()
        let key = try system.createKey(user: user, tier: "free")
        let body = ["prompt": "a heron takes off", "input_image_url": "https://example.com/heron.png"]
        let first = try await sendJSON("POST", system.gatewayURL + "/v1/tasks", token: key, body: body)
        #expect(first.status == 202, "\(first.text)")

        // In time: 429, and the refusal is a count, not a row.
        let refused = try await sendJSON("POST", system.gatewayURL + "/v1/tasks", token: key, body: body)
        #expect(refused.status == 429, "\(refused.text)")
        #expect(refused.json["detail"].string?.hasPrefix("You can only have 1 video tasks in progress at once") == true)
        #expect(try await self.rows(system, user: user) == 1)
        #expect(try await self.counted(system, user: user) == 1)
        #expect(try await self.statsRejected(system) == 1)

        // Late: the scheduler is frozen, so the gateway answers 202 "submitted" at its deadline; the refusal the scheduler
        // decides afterwards is kept as a row.
        let scheduler = try #require(system.process("scheduler"))
        scheduler.signal(SIGSTOP)
        let submitted: JSONResponse
        do {
            submitted = try await sendJSON("POST", system.gatewayURL + "/v1/tasks", token: key, body: body)
        } catch {
            scheduler.signal(SIGCONT)
            throw error
        }
        scheduler.signal(SIGCONT)
        #expect(submitted.status == 202, "\(submitted.text)")
        #expect(submitted.json["status"].string == "submitted")
        let id = try #require(submitted.json["id"].string)
        var task = JSONResponse(status: 0, headers: [], body: [], json: JSON(nil))
        try await eventually("the late refusal can be read", timeout: .seconds(30), every: .milliseconds(200)) {
            task = try await sendJSON("GET", system.gatewayURL + "/v1/tasks/\(id)", token: key)
            return task.status == 200
        }
        #expect(task.json["status"].string == "rejected")
        #expect(task.json["error_message"].string == "You can only have 1 video tasks in progress at once")
        #expect(try await self.rows(system, user: user) == 2)
        #expect(try await self.counted(system, user: user) == 1, "kept as a row, not counted as well")
        #expect(try await self.statsRejected(system) == 2)
        let cli = try RunningSystem.runTool(["stats", "--json"], environment: system.environment)
        #expect(JSON(bytes: Array(cli.stdout.utf8))["rejected"].int == 2, "\(cli.output)")

        // Undeliverable: decided well before the deadline (only counted), but the reply queue does not exist.
        let orphan = SubmitTaskCommand(
            taskID: UUID(), userID: user, prompt: "a heron lands", inputImageURL: "https://example.com/heron.png", inputJSON: nil,
            idempotencyKey: nil, submittedAt: Date(), replyBy: Date().addingTimeInterval(60))
        let url = try AMQPURL(try #require(system.environment["AMQP_URL"]))
        let publisher = AMQPPublisher(url: url, topology: Topology.all, name: "e2e.orphan", logger: Logger(label: "e2e.orphan"))
        publisher.start()
        do {
            try await publisher.publish(
                exchange: SubmitTaskCommand.exchange, routingKey: orphan.routingKey, body: MessageCodec.encode(orphan),
                properties: AMQPProperties(correlationID: orphan.taskID.uuidString, replyTo: "reelay.replies.gone-\(UUID())"))
        } catch {
            await publisher.shutdown()
            throw error
        }
        await publisher.shutdown()
        try await eventually("the undeliverable refusal is kept as a row", timeout: .seconds(30), every: .milliseconds(200)) {
            try await sendJSON("GET", system.gatewayURL + "/v1/tasks/\(orphan.taskID.uuidString.lowercased())", token: key).status == 200
        }
        let kept = try await sendJSON("GET", system.gatewayURL + "/v1/tasks/\(orphan.taskID.uuidString.lowercased())", token: key)
        #expect(kept.json["status"].string == "rejected")
        #expect(try await self.counted(system, user: user) == 1, "counted, then moved from the counter to the row")
        let schedulerLog = String(decoding: FileManager.default.contents(atPath: scheduler.logPath) ?? Data(), as: UTF8.self)
        #expect(schedulerLog.contains("verdict undeliverable; kept the refusal as a rejected row"))
        #expect(try await self.statsRejected(system) == 3)
    }

    private func rows(_ system: RunningSystem, user: UUID) async throws -> Int? {
        try await system.pool.withConnection { connection in
            try await connection.query("SELECT count(*) AS n FROM video_tasks WHERE user_uuid = $1", [user.uuidString]).rows.first?.int("n")
        }
    }

    private func counted(_ system: RunningSystem, user: UUID) async throws -> Int? {
        try await system.pool.withConnection { connection in
            try await connection.query(
                "SELECT coalesce(sum(refusals), 0) AS n FROM admission_refusals WHERE user_uuid = $1 AND reason = 'user_limit'",
                [user.uuidString]
            ).rows.first?.int("n")
        }
    }

    private func statsRejected(_ system: RunningSystem) async throws -> Int? {
        let stats = try await sendJSON("GET", system.gatewayURL + "/v1/queue/stats", token: RunningSystem.opsToken)
        return stats.json["rejected"].int
    }
}
