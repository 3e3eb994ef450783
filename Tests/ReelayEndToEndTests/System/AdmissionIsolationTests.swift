import Foundation
import Logging
import ReelayAMQP
import ReelayMessaging
import ReelayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Submissions sent straight to the scheduler over AMQP, as a gateway would (bypassing the gateway's own validation).
@Suite("AdmissionIsolation", .serialized)
struct AdmissionIsolationTests {
    /// Guards: one submission the database refuses (a NUL in `input`, which jsonb cannot hold: SQLSTATE 22P05) is answered
    /// alone with a 422 rejection, and the 30 valid submissions that reach the scheduler with it, in the same admission
    /// batch, are all admitted on their first delivery (no retry through a delay queue), each verdict within the admission
    /// timeout.
    @Test func onePoisonedSubmissionFailsAloneAndDelaysNoValidOne() async throws {
        let timeout = Duration.milliseconds(6000)
        try await RunningSystem.run(
            name: "poison-batch", overrides: ["ADMISSION_TIMEOUT_MS": String(timeout.components.seconds * 1000)], logLines: 30
        ) { system in
            try await self.sendPoisonWithThirtyValid(system, admissionTimeout: timeout)
        }
    }

    /// Guards: through the gateway, a submission whose input the database cannot store is answered with a 422 problem
    /// (never 202 for a task that will not exist), and no task row is left behind. (The gateway may refuse it before the
    /// scheduler does; either way the answer is a 4xx naming the problem.)
    @Test func aNulInTheInputIsAnswered422() async throws {
        try await RunningSystem.run(name: "nul-input") { system in
            let user = UUID()
            let key = try system.createKey(user: user, tier: "pro")
            let response = try await sendJSON(
                "POST", system.gatewayURL + "/v1/tasks", token: key,
                body: [
                    "prompt": "a lighthouse in a storm", "input_image_url": "https://example.com/lighthouse.png",
                    "input": ["negative_prompt": "\u{0}"],
                ])
            #expect(response.status == 422, "\(response.text)")
            #expect(response.header("Content-Type")?.hasPrefix("application/problem+json") == true)
            // The gateway names it in the field's message; the scheduler's refusal, in the detail.
            let messages = [response.json["detail"].string ?? ""]
                + (response.json["invalid_fields"].array ?? []).map { $0["message"].string ?? "" }
            #expect(messages.contains { $0.contains("NUL") }, "names the problem: \(response.text)")
            let rows = try await system.pool.withConnection { connection in
                try await connection.query("SELECT count(*) AS n FROM video_tasks WHERE user_uuid = $1", [user.uuidString])
            }
            #expect(try rows.rows.first?.int("n") == 0)
        }
    }

    private func sendPoisonWithThirtyValid(_ system: RunningSystem, admissionTimeout: Duration) async throws {
        var users: [UUID] = []
        for index in 0..<11 {
            let user = UUID()
            _ = try system.createKey(user: user, tier: index % 2 == 0 ? "pro" : "free")
            users.append(user)
        }
        // 3 valid submissions from each of 10 users (their limit), and the poison from an 11th.
        var valid: [SubmitTaskCommand] = []
        for round in 0..<3 {
            for user in users.prefix(10) {
                valid.append(
                    SubmitTaskCommand(
                        taskID: UUID(), userID: user, prompt: "A lighthouse in a storm, take \(round)",
                        inputImageURL: "https://example.com/lighthouse.png", inputJSON: #"{"seed":\#(round)}"#, idempotencyKey: nil,
                        submittedAt: Date()))
            }
        }
        let poison = SubmitTaskCommand(
            taskID: UUID(), userID: users[10], prompt: "A lighthouse in a storm", inputImageURL: "https://example.com/lighthouse.png",
            inputJSON: #"{"negative_prompt":"\u0000"}"#, idempotencyKey: nil, submittedAt: Date())
        var commands = valid
        commands.insert(poison, at: 15)

        let url = try AMQPURL(try #require(system.environment["AMQP_URL"]))
        let logger = Logger(label: "e2e.poison")
        let replyQueue = "reelay.replies.e2e-\(UUID().uuidString.lowercased())"
        let replies = AMQPConsumer(
            url: url, topology: Topology.withReplyQueue(replyQueue), queues: [replyQueue], prefetch: 100, name: "e2e.replies",
            logger: logger)
        let publisher = AMQPPublisher(url: url, topology: Topology.all, name: "e2e.publish", logger: logger)
        replies.start()
        publisher.start()
        let arrivals = Locked<[UUID: (AdmissionVerdict, ContinuousClock.Instant)]>([:])
        let listener = Task {
            for await delivery in replies.deliveries {
                replies.ack(delivery)
                if let verdict = try? MessageCodec.decode(AdmissionVerdict.self, from: delivery.body) {
                    arrivals.withLock { $0[verdict.taskID] = (verdict, ContinuousClock.now) }
                }
            }
        }
        let scheduler = try #require(system.process("scheduler"))
        let released: ContinuousClock.Instant
        do {
            released = try await Self.publishTogether(commands, publisher: publisher, replyQueue: replyQueue, scheduler: scheduler)
            // Generous: on today's code the valid ones come back from the delay queues (1 s, 5 s, 30 s) with the poison.
            try? await eventually("all 31 verdicts arrive", timeout: .seconds(20), every: .milliseconds(100)) {
                arrivals.withLock { $0.count } == commands.count
            }
        } catch {
            listener.cancel()
            await publisher.shutdown()
            await replies.shutdown()
            throw error
        }
        listener.cancel()
        await publisher.shutdown()
        await replies.shutdown()
        let got = arrivals.withLock { $0 }

        let poisonVerdict = got[poison.taskID]?.0
        #expect(poisonVerdict != nil, "the poisoned submission is answered")
        #expect(poisonVerdict?.outcome == .rejected)
        #expect(poisonVerdict?.httpStatus == 422)
        #expect(poisonVerdict?.message?.contains("NUL") == true, "the message names the problem: \(poisonVerdict?.message ?? "-")")

        var slowest = Duration.zero
        for command in valid {
            guard let (verdict, at) = got[command.taskID] else {
                Issue.record("no verdict for valid submission \(command.taskID)")
                continue
            }
            #expect(verdict.outcome == .admitted, "valid submission \(command.taskID): \(verdict.outcome) \(verdict.message ?? "")")
            slowest = max(slowest, at - released)
        }
        print("poison batch: slowest valid verdict \(slowest) after the scheduler resumed (admission timeout \(admissionTimeout))")
        #expect(slowest < admissionTimeout, "every valid verdict within ADMISSION_TIMEOUT_MS")

        // Nothing was retried: no handler failure sent any message of the batch through a delay queue.
        let schedulerLog = String(decoding: FileManager.default.contents(atPath: scheduler.logPath) ?? Data(), as: UTF8.self)
        #expect(!schedulerLog.contains("retrying after a delay"), "the scheduler retried messages of the batch")

        // All 30 valid tasks exist and were admitted as pending; the poison never became a task that could run.
        let ids = valid.map { $0.taskID.uuidString.lowercased() }
        let admitted = try await system.pool.withConnection { connection in
            try await connection.query(
                "SELECT count(DISTINCT task_id) AS n FROM task_events WHERE to_status = 'pending' AND task_id = ANY($1::uuid[])",
                ["{" + ids.joined(separator: ",") + "}"])
        }
        #expect(try admitted.rows.first?.int("n") == 30)
        let poisonRows = try await system.pool.withConnection { connection in
            try await connection.query("SELECT status FROM video_tasks WHERE id = $1", [poison.taskID.uuidString])
        }
        #expect(try poisonRows.rows.allSatisfy { try $0.string("status") == "rejected" })
    }

    /// Publishes every command (confirmed) while the scheduler is frozen, so they reach it together and are batched
    /// together; returns when the scheduler was let go.
    private static func publishTogether(
        _ commands: [SubmitTaskCommand], publisher: AMQPPublisher, replyQueue: String, scheduler: ManagedProcess
    ) async throws -> ContinuousClock.Instant {
        scheduler.signal(SIGSTOP)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for command in commands {
                    group.addTask {
                        var properties = AMQPProperties(correlationID: command.taskID.uuidString, replyTo: replyQueue)
                        properties.messageID = command.taskID.uuidString.lowercased()
                        try await publisher.publish(
                            exchange: SubmitTaskCommand.exchange, routingKey: command.routingKey, body: MessageCodec.encode(command),
                            properties: properties, timeout: .seconds(20))
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            scheduler.signal(SIGCONT)
            throw error
        }
        let released = ContinuousClock.now
        scheduler.signal(SIGCONT)
        return released
    }
}
