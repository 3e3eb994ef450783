import Foundation
import ReelayTestSupport
import Testing

/// Replicate's webhooks lost, duplicated or late.
extension Faults {
    // MARK: 3. lost terminal webhook

    /// Guards: when Replicate's terminal webhook never comes, the processing sweep asks Replicate (GET) and the task still
    /// completes with its video stored, from exactly one prediction.
    @Test func lostTerminalWebhook() async throws {
        try await Faulty.withSystem("webhook-drop", standin: ["STANDIN_FAULT_WEBHOOK_DROP": "100"]) { system in
            let user = try FaultUser(system)
            let ids = [try await user.submit("lost-1"), try await user.submit("lost-2")]
            for id in ids {
                let task = try await user.waitFor(id, status: "completed", timeout: .seconds(60))
                #expect(task["retry_count"].int == 0)
                let video = try await user.video(id)
                #expect(video.status == 200)
                #expect(video.body.count > 16 && Array(video.body[4..<8]) == Array("ftyp".utf8), "the stored output is an MP4")

                let history = try await system.transitions(id)
                #expect(history.map(\.to) == ["pending", "dispatching", "processing", "completed"], "\(history)")
                // The completion came from the reconciler's GET, never from a Replicate webhook.
                let deliveries = try await system.deliveries(id)
                let row = try await system.row(id)
                let prediction = try #require(row["replicate_task_id"])
                #expect(deliveries.contains { $0.id == "reconcile-\(prediction)-succeeded" }, "\(deliveries)")
                #expect(!deliveries.contains { $0.id.hasPrefix("msg_") && $0.status == "succeeded" }, "\(deliveries)")
                #expect(row.int("attempt") == 1)
            }
            let stats = try await system.standin.stats()
            #expect(stats["webhooks_dropped"].int == 2, "\(stats)")
            expectStandin(stats, predictions: Dictionary(uniqueKeysWithValues: ids.map { ($0, 1) }), maxRunning: 2)
        }
    }

    // MARK: 4. duplicated and late webhooks

    /// Guards: every terminal webhook delivered twice (same webhook-id) and late (1.5 s after the prediction ended, after
    /// the reconciler may already have finished the task) changes nothing twice: each task completes once, with exactly one
    /// transition into completed, and its stored video is intact.
    @Test func duplicatedAndLateWebhooks() async throws {
        try await Faulty.withSystem(
            "webhook-dup-late",
            standin: ["STANDIN_FAULT_WEBHOOK_DUPLICATE": "100", "STANDIN_FAULT_WEBHOOK_DELAY": "100", "STANDIN_FAULT_DELAY_MS": "1500"]
        ) { system in
            let users = [try FaultUser(system), try FaultUser(system)]
            var tasks: [(user: FaultUser, id: String)] = []
            for (index, user) in users.enumerated() {
                for round in 0..<2 {
                    tasks.append((user, try await user.submit("dup-\(index)-\(round)")))
                }
            }
            for (user, id) in tasks {
                try await user.waitFor(id, status: "completed", timeout: .seconds(60))
            }
            // Wait for every webhook to be delivered (a start webhook plus the terminal one twice per task) and for the
            // late terminal ones to be seen by the finalizer (recorded even when they came after the task finished).
            try await eventually("every duplicated webhook delivered", timeout: .seconds(60), every: .milliseconds(200)) {
                try await system.standin.stats()["webhooks_sent"].int ?? 0 >= 3 * tasks.count
            }
            for (_, id) in tasks {
                try await eventually("the late terminal webhook of \(id) recorded", timeout: .seconds(60), every: .milliseconds(100)) {
                    try await system.deliveries(id).contains { $0.id.hasPrefix("msg_") && $0.status == "succeeded" }
                }
            }
            // The second copy of each follows 100 ms after the first: give the finalizer time to (not) apply it.
            try await Task.sleep(for: .seconds(1))

            for (user, id) in tasks {
                let task = try await user.task(id)
                #expect(task["status"].string == "completed")
                #expect(task["retry_count"].int == 0)
                let history = try await system.transitions(id)
                #expect(history.filter { $0.to == "completed" }.count == 1, "exactly one transition into completed: \(history)")
                #expect(history.map(\.to) == ["pending", "dispatching", "processing", "completed"], "\(history)")
                let deliveries = try await system.deliveries(id)
                #expect(deliveries.filter { $0.id.hasPrefix("msg_") && $0.status == "succeeded" }.count == 1, "\(deliveries)")
                let video = try await user.video(id)
                #expect(video.status == 200)
                #expect(video.body.count > 16 && Array(video.body[4..<8]) == Array("ftyp".utf8), "the stored output is an MP4")
            }
            let stats = try await system.standin.stats()
            #expect(stats["webhooks_sent"].int == 3 * tasks.count, "\(stats)")
            expectStandin(stats, predictions: Dictionary(uniqueKeysWithValues: tasks.map { ($0.id, 1) }), maxRunning: tasks.count)
        }
    }
}
