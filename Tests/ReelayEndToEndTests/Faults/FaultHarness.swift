import Foundation
import Logging
import ReelayPostgres
import ReelayTestSupport
import Testing

/// Helpers for the fault tests: a system with fast timings, users, submissions, and readers of the three truths a fault
/// test checks (the task as the user sees it, its history in PostgreSQL, and what the Replicate stand-in saw).
enum Faulty {
    /// Timings that make sweeps, leases and retries happen within seconds instead of minutes.
    static let fastTimings = [
        "SCHEDULER_TICK_MS": "200",
        "DISPATCH_LEASE_SECONDS": "3",
        "PROCESSING_RECONCILE_SECONDS": "2",
        "RETRY_BASE_MS": "100",
        "MAX_RETRIES": "3",
    ]

    /// Starts a system with `fastTimings` overridden by `overrides`, runs `body`, and always stops the system. An error
    /// thrown by `body` is recorded with the tails of every service's log, so a failure says where to look.
    static func withSystem(
        _ name: String, overrides: [String: String] = [:], standin: [String: String] = [:],
        _ body: (RunningSystem) async throws -> Void
    ) async throws {
        var environment = Self.fastTimings
        environment.merge(overrides) { $1 }
        try await RunningSystem.run(name: "faults-\(name)", overrides: environment, standinEnvironment: standin, logLines: 30, body)
    }
}

/// A user with an API key, who submits and reads tasks through the gateway as the frontend would.
struct FaultUser {
    let system: RunningSystem
    let id: UUID
    let key: String

    init(_ system: RunningSystem, tier: String = "pro") throws {
        self.system = system
        self.id = UUID()
        self.key = try system.createKey(user: self.id, tier: tier)
    }

    /// Submits a task with a prompt unique to it (the stand-in's list is matched by prompt) and returns its id.
    func submit(_ label: String) async throws -> String {
        let prompt = "fault test \(label) \(UUID().uuidString.prefix(8))"
        let response = try await sendJSON(
            "POST", self.system.gatewayURL + "/v1/tasks", token: self.key,
            body: ["prompt": prompt, "input_image_url": "https://example.com/frames/\(label).png"])
        guard response.status == 202, let id = response.json["id"].string else {
            throw HarnessError("submitting \(label) answered \(response.status): \(response.text)")
        }
        return id
    }

    /// GET /v1/tasks/{id} as this user (the task with its history).
    func task(_ id: String) async throws -> JSON {
        let response = try await sendJSON("GET", self.system.gatewayURL + "/v1/tasks/\(id)", token: self.key)
        guard response.status == 200 else {
            throw HarnessError("GET /v1/tasks/\(id) answered \(response.status): \(response.text)")
        }
        return response.json
    }

    /// The predictions the stand-in made for this task (matched by the task's prompt).
    func predictions(of id: String) async throws -> [JSON] {
        guard let prompt = try await self.task(id)["prompt"].string else { throw HarnessError("task \(id) has no prompt") }
        return try await self.system.standin.predictions(prompt: prompt)
    }

    /// POST /v1/tasks/{id}/cancel as this user.
    func cancel(_ id: String) async throws -> JSONResponse {
        try await sendJSON("POST", self.system.gatewayURL + "/v1/tasks/\(id)/cancel", token: self.key)
    }

    /// GET /v1/tasks/{id}/video as this user.
    func video(_ id: String) async throws -> (status: Int, body: [UInt8]) {
        let response = try await testHTTPClient.request(
            method: "GET", url: self.system.gatewayURL + "/v1/tasks/\(id)/video", headers: [("Authorization", "Bearer \(self.key)")],
            body: nil, timeout: .seconds(10))
        return (response.status, response.body)
    }

    /// Polls the API until the task has `status`; fails early when it reaches another terminal state.
    @discardableResult
    func waitFor(_ id: String, status: String, timeout: Duration = .seconds(30)) async throws -> JSON {
        let terminal: Set<String> = ["completed", "failed", "canceled", "rejected"]
        var last = JSON(nil)
        try await eventually("task \(id) to be \(status); last seen: \(last)", timeout: timeout, every: .milliseconds(100)) {
            last = try await self.task(id)
            let now = last["status"].string ?? ""
            if now != status && terminal.contains(now) {
                throw HarnessError("task \(id) ended \(now) while waiting for \(status): \(last)")
            }
            return now == status
        }
        return last
    }
}

/// Columns of a `video_tasks` row as PostgreSQL prints them.
struct TaskRow: CustomStringConvertible {
    let row: PostgresRow

    /// The text value; nil for NULL.
    subscript(_ column: String) -> String? { self.row[column] }
    func int(_ column: String) -> Int? { self.row[column].flatMap { Int($0) } }

    var description: String {
        zip(self.row.columnNames, self.row.values).map { "\($0)=\($1 ?? "NULL")" }.joined(separator: " ")
    }
}

/// One row of `task_events`.
struct Transition: CustomStringConvertible {
    var from: String?
    var to: String
    var attempt: Int
    var reason: String
    /// When the transition became visible: its transaction's commit (track_commit_timestamp), so "B after A" holds exactly
    /// whenever B's transaction depended on A's, however busy the machine.
    var at: Double

    var description: String { "\(self.from ?? "-")->\(self.to)#\(self.attempt) (\(self.reason))" }
}

extension RunningSystem {
    /// The task's history from `task_events`, oldest first.
    func transitions(_ id: String) async throws -> [Transition] {
        let result = try await self.pool.withConnection {
            try await $0.query(
                """
                SELECT from_status, to_status, attempt, coalesce(reason, '') AS reason,
                       extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS at
                FROM task_events WHERE task_id = $1 ORDER BY id
                """, [id])
        }
        return try result.rows.map {
            Transition(
                from: $0["from_status"], to: try $0.string("to_status"), attempt: try $0.int("attempt"), reason: try $0.string("reason"),
                at: Double(try $0.string("at")) ?? 0)
        }
    }

    /// Selected columns of the task's row.
    func row(_ id: String) async throws -> TaskRow {
        let result = try await self.pool.withConnection {
            try await $0.query(
                """
                SELECT status, attempt, retry_count, replicate_task_id, error_message, output_storage_key, cancel_requested_at,
                       create_attempted_at
                FROM video_tasks WHERE id = $1
                """, [id])
        }
        guard let row = result.rows.first else { throw HarnessError("no row for task \(id)") }
        return TaskRow(row: row)
    }

    /// `webhook_deliveries` of a task: (webhook id, prediction status), in arrival order.
    func deliveries(_ id: String) async throws -> [(id: String, status: String)] {
        let result = try await self.pool.withConnection {
            try await $0.query(
                "SELECT webhook_id, coalesce(prediction_status, '') AS status FROM webhook_deliveries WHERE task_id = $1 ORDER BY received_at",
                [id])
        }
        return try result.rows.map { (try $0.string("webhook_id"), try $0.string("status")) }
    }

    /// Tasks holding a slot right now (dispatching or processing).
    func slotsHeld() async throws -> Int {
        let result = try await self.pool.withConnection {
            try await $0.query("SELECT count(*) AS n FROM video_tasks WHERE status IN ('dispatching', 'processing')")
        }
        return try result.rows.first?.int("n") ?? -1
    }
}

extension RunningStandin {
    /// Every prediction the stand-in holds (`GET /v1/predictions`, all pages), newest first, as Replicate renders them.
    func predictions() async throws -> [JSON] {
        var all: [JSON] = []
        var url: String? = self.apiBaseURL + "/predictions"
        while let next = url {
            let response = try await sendJSON("GET", next, token: Self.token)
            guard response.status == 200 else {
                throw HarnessError("listing predictions answered \(response.status): \(response.text)")
            }
            all += response.json["results"].array ?? []
            url = response.json["next"].string
        }
        return all
    }

    /// The predictions made for a task, recognised by the task's prompt (unique per task in these tests).
    func predictions(prompt: String) async throws -> [JSON] {
        try await self.predictions().filter { $0["input"]["prompt"].string == prompt }
    }
}

extension JSON {
    /// `predictions_by_task[id]` of the stand-in's stats (0 when the task never got a prediction).
    func predictionCount(task id: String) -> Int {
        self["predictions_by_task"][id.lowercased()].int ?? 0
    }
}

/// The stand-in's view every fault test checks: exactly `expected` predictions per task (and no others), never two
/// predictions of one task running at once, never more than `maxRunning` predictions running at once.
func expectStandin(_ stats: JSON, predictions expected: [String: Int], maxRunning: Int, sourceLocation: SourceLocation = #_sourceLocation) {
    for (task, count) in expected {
        #expect(stats.predictionCount(task: task) == count, "predictions of task \(task): \(stats)", sourceLocation: sourceLocation)
    }
    #expect(
        stats["creates"].int == expected.values.reduce(0, +), "creates in total match the tasks' predictions: \(stats)",
        sourceLocation: sourceLocation)
    #expect(stats["overlapping_tasks"].array?.isEmpty == true, "no task ever ran twice at once: \(stats)", sourceLocation: sourceLocation)
    #expect(
        (stats["peak_running"].int ?? Int.max) <= maxRunning, "at most \(maxRunning) running at Replicate: \(stats)",
        sourceLocation: sourceLocation)
}
