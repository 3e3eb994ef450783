import Foundation
import Logging
import ReelayHTTPClient
import ReelayPostgres
import ReelayTestSupport
import Testing

/// The built executables as processes, driven over HTTP as a frontend and as Replicate would.
@Suite("System", .serialized)
struct SystemTests {
    static let tiers = ["pro", "pro", "pro", "premium", "premium", "premium", "free", "free", "free", "free"]
    static let tierRank = ["pro": 2, "premium": 1, "free": 0]

    /// Guards: every admitted task completes with its video stored; the global limit (MAX_CONCURRENT_TASKS) holds at
    /// Replicate; no user exceeds MAX_USER_ACTIVE_TASKS; a 4th submission over the user limit gets 429; among tasks waiting
    /// at the same time, higher tiers are dispatched first; each task ran exactly one prediction.
    @Test func thirtyTasksFromTenUsersOfMixedTiers() async throws {
        try await RunningSystem.run(name: "thirty-tasks", overrides: ["MAX_CONCURRENT_TASKS": "5", "MAX_USER_ACTIVE_TASKS": "3"]) {
            try await self.runThirtyTasks($0)
        }
    }

    private func runThirtyTasks(_ system: RunningSystem) async throws {
        var keys: [(user: UUID, tier: String, key: String)] = []
        for tier in Self.tiers {
            let user = UUID()
            keys.append((user, tier, try system.createKey(user: user, tier: tier)))
        }

        // 3 tasks from each user, all at once, tiers interleaved; prompts of equal length so tier decides priority.
        // A client with a thread per request, so 30 submissions really are in flight together.
        let client = HTTPClient(threads: 30, connectTimeout: .seconds(2), logger: Logger(label: "e2e.submit"))
        let accepted = try await withThrowingTaskGroup(of: (String, String).self) { group in
            for round in 0..<3 {
                for (index, entry) in keys.enumerated() {
                    group.addTask {
                        let body: [String: Any] = [
                            "prompt": "A calm lake at dawn, camera \(round) pans slowly, user \(index)",
                            "input_image_url": "https://example.com/frames/\(index)-\(round).png",
                        ]
                        let raw = try await client.request(
                            method: "POST", url: system.gatewayURL + "/v1/tasks",
                            headers: [("Authorization", "Bearer \(entry.key)"), ("Content-Type", "application/json")],
                            body: try JSON.encode(body), timeout: .seconds(20))
                        let response = JSONResponse(raw)
                        guard response.status == 202, let id = response.json["id"].string else {
                            throw HarnessError("submission answered \(response.status): \(response.text)")
                        }
                        #expect(response.header("Location") == "/v1/tasks/\(id)")
                        return (id, entry.tier)
                    }
                }
            }
            var all: [(String, String)] = []
            for try await item in group { all.append(item) }
            return all
        }
        await client.shutdown()
        #expect(accepted.count == 30)

        // A free user (dispatched last) still has 3 active tasks: the 4th is refused with the configured limit.
        let freeUser = keys.last!
        let fourth = try await sendJSON(
            "POST", system.gatewayURL + "/v1/tasks", token: freeUser.key,
            body: ["prompt": "one too many", "input_image_url": "https://example.com/frames/extra.png"])
        #expect(fourth.status == 429)
        #expect(fourth.json["detail"].string?.hasPrefix("You can only have 3 video tasks in progress at once") == true)
        #expect(fourth.header("Content-Type")?.hasPrefix("application/problem+json") == true)

        // Everything completes.
        try await eventually("all 30 tasks completed", timeout: .seconds(180), every: .milliseconds(500)) {
            let result = try await system.pool.withConnection {
                try await $0.query("SELECT count(*) AS n FROM video_tasks WHERE status = 'completed'")
            }
            return try result.rows.first?.int("n") == 30
        }

        for (id, _) in accepted {
            let (task, video) = try await (
                sendJSON("GET", system.gatewayURL + "/v1/tasks/\(id)", token: RunningSystem.opsToken),
                testHTTPClient.request(
                    method: "GET", url: system.gatewayURL + "/v1/tasks/\(id)/video",
                    headers: [("Authorization", "Bearer \(RunningSystem.opsToken)")], body: nil, timeout: .seconds(10))
            )
            #expect(task.json["status"].string == "completed")
            #expect(task.json["output_video_url"].string?.hasSuffix("/v1/tasks/\(id)/video") == true)
            #expect(video.status == 200)
            #expect(video.body.count > 16 && Array(video.body[4..<8]) == Array("ftyp".utf8), "stored output of \(id) is an MP4")
        }

        // What Replicate saw.
        let stats = try await system.standin.stats()
        #expect(stats["creates"].int == 30, "one prediction per task: \(stats)")
        #expect((stats["peak_running"].int ?? 99) <= 5, "never more than MAX_CONCURRENT_TASKS running at Replicate: \(stats)")
        #expect(stats["overlapping_tasks"].array?.isEmpty == true)
        for (id, _) in accepted {
            #expect(stats["predictions_by_task"][id.lowercased()].int ?? stats["predictions_by_task"][id.uppercased()].int == 1)
        }

        let timeline = try await Timeline.load(system.pool)
        // No user ever had more than 3 active tasks.
        for (user, peak) in timeline.peakActivePerUser() {
            #expect(peak <= 3, "user \(user) had \(peak) active tasks")
        }
        // Priority: a lower tier never got a slot in a pass that could see a higher tier waiting (exact, from commit times).
        let inversions = timeline.priorityInversions(rank: Self.tierRank)
        #expect(inversions.isEmpty, "priority inversions: \(inversions.prefix(5))")
        // Freed slots are refilled by the completion event, not by the 500 ms tick.
        let refill = timeline.refillLatencies()
        #expect(!refill.isEmpty)
        let sorted = refill.sorted()
        let median = sorted[sorted.count / 2]
        print(
            "measured: completion webhook -> next dispatch over \(sorted.count) refills: median \(Int(median * 1000)) ms, "
                + "p90 \(Int(sorted[sorted.count * 9 / 10] * 1000)) ms, max \(Int(sorted.last! * 1000)) ms")
    }
}

/// The task history of a run, for invariants over time.
struct Timeline {
    struct Event {
        /// The start of the transaction that wrote the event (`now()`).
        var at: Double
        /// When that transaction committed (PostgreSQL's track_commit_timestamp, on in servers.sh), and its id.
        var committed: Double
        var transaction: String
        var task: String
        var user: String
        var tier: String
        var from: String?
        var to: String
    }
    var events: [Event]
    /// Arrival times of terminal `succeeded` webhooks (seconds since 1970).
    var completionWebhooks: [Double]

    static func load(_ pool: PostgresPool) async throws -> Timeline {
        let rows = try await pool.withConnection {
            try await $0.query(
                """
                SELECT extract(epoch FROM e.at)::float8 AS at, e.xmin::text AS transaction,
                       extract(epoch FROM pg_xact_commit_timestamp(e.xmin))::float8 AS committed,
                       e.task_id::text AS task, t.user_uuid::text AS user_id, t.tier, e.from_status, e.to_status
                FROM task_events e JOIN video_tasks t ON t.id = e.task_id
                ORDER BY pg_xact_commit_timestamp(e.xmin), e.id
                """)
        }
        let hooks = try await pool.withConnection {
            try await $0.query(
                "SELECT extract(epoch FROM received_at)::float8 AS at FROM webhook_deliveries WHERE prediction_status = 'succeeded'")
        }
        return Timeline(
            events: try rows.rows.map {
                guard let committed: String = $0["committed"] else {
                    throw HarnessError("no commit timestamps: the test PostgreSQL needs track_commit_timestamp=on (scripts/servers.sh)")
                }
                return Event(
                    at: Double(try $0.string("at")) ?? 0, committed: Double(committed) ?? 0, transaction: try $0.string("transaction"),
                    task: try $0.string("task"), user: try $0.string("user_id"),
                    tier: try $0.string("tier"), from: $0["from_status"], to: try $0.string("to_status"))
            },
            completionWebhooks: try hooks.rows.map { Double(try $0.string("at")) ?? 0 })
    }

    func peakActivePerUser() -> [String: Int] {
        var active: [String: Int] = [:]
        var peak: [String: Int] = [:]
        let terminal: Set<String> = ["completed", "failed", "canceled", "rejected"]
        for event in self.events {
            if event.from == nil && event.to == "pending" { active[event.user, default: 0] += 1 }
            if terminal.contains(event.to) && event.from != nil { active[event.user, default: 0] -= 1 }
            peak[event.user] = max(peak[event.user] ?? 0, active[event.user] ?? 0)
        }
        return peak
    }

    /// Pairs (lower, higher) where the lower-tier task got a slot in a dispatch pass that began after the higher-tier
    /// task's admission had committed (so the pass saw it pending), while the higher-tier task got no slot in that pass or
    /// before it. Exact, from commit timestamps: no timing margin, so a busy machine cannot fake or hide an inversion.
    func priorityInversions(rank: [String: Int]) -> [String] {
        var admitted: [String: Double] = [:]
        var dispatched: [String: Event] = [:]
        var tier: [String: String] = [:]
        for event in self.events {
            tier[event.task] = event.tier
            if event.to == "pending" && event.from == nil { admitted[event.task] = event.committed }
            if event.to == "dispatching" && dispatched[event.task] == nil { dispatched[event.task] = event }
        }
        var inversions: [String] = []
        for (low, lowPass) in dispatched {
            for (high, highAdmitted) in admitted where (rank[tier[high] ?? ""] ?? 0) > (rank[tier[low] ?? ""] ?? 0) {
                guard highAdmitted < lowPass.at else { continue }  // not yet visible to that pass
                if let highPass = dispatched[high], highPass.transaction == lowPass.transaction || highPass.committed < lowPass.committed {
                    continue
                }
                inversions.append("\(tier[low]!) \(low) before \(tier[high]!) \(high)")
            }
        }
        return inversions
    }

    /// For each completion webhook that arrived while tasks were waiting, the time until the next dispatch.
    func refillLatencies() -> [Double] {
        let dispatches = self.events.filter { $0.to == "dispatching" }.map(\.at).sorted()
        guard let lastDispatch = dispatches.last else { return [] }
        return self.completionWebhooks.sorted().compactMap { arrival in
            guard arrival < lastDispatch, let next = dispatches.first(where: { $0 >= arrival }) else { return nil }
            return next - arrival
        }
    }
}
