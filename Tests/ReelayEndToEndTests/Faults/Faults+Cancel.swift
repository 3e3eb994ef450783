import Foundation
import ReelayTestSupport
import Testing

/// Cancels: of a pending task, of a running one, and of one whose create is still in flight.
extension Faults {
    // MARK: 1. cancel of a pending task

    /// Guards: a pending task is canceled at once (202 with status canceled, no round trip to Replicate); the task that
    /// holds the only slot is not disturbed; a second cancel of the now terminal task is a 409 problem.
    @Test func cancelOfAPendingTask() async throws {
        try await Faulty.withSystem(
            "cancel-pending", overrides: ["MAX_CONCURRENT_TASKS": "1"], standin: ["STANDIN_RUN_MS": "15000"]
        ) { system in
            let user = try FaultUser(system)
            let holder = try await user.submit("holder")
            try await user.waitFor(holder, status: "processing")
            let waiting = try await user.submit("waiting")
            let queued = try await user.task(waiting)
            #expect(queued["status"].string == "pending")
            #expect(queued["queue_position"].int == 1)

            let cancel = try await user.cancel(waiting)
            #expect(cancel.status == 202, "\(cancel.text)")
            #expect(cancel.json["status"].string == "canceled", "canceled in the answer itself: \(cancel.text)")
            // At once: read straight back, no waiting for any service.
            let canceled = try await user.task(waiting)
            #expect(canceled["status"].string == "canceled")
            #expect(canceled["error_message"].string == "Canceled by the user")
            #expect(canceled["completed_at"].string != nil)
            #expect(try await user.task(holder)["status"].string == "processing", "the slot holder runs on")

            let again = try await user.cancel(waiting)
            #expect(again.status == 409, "\(again.text)")
            #expect(again.header("Content-Type")?.hasPrefix("application/problem+json") == true)
            #expect(again.json["status"].int == 409)
            #expect(again.json["detail"].string?.contains("already canceled") == true, "\(again.text)")

            let done = try await user.waitFor(holder, status: "completed", timeout: .seconds(60))
            #expect(done["retry_count"].int == 0)
            #expect(done["error_message"].isNull)
            #expect(try await user.video(holder).status == 200)

            // History: the canceled task never got a slot or an attempt; the holder ran straight through.
            let waitingHistory = try await system.transitions(waiting)
            #expect(waitingHistory.map(\.to) == ["pending", "canceled"], "\(waitingHistory)")
            #expect(try await system.row(waiting).int("attempt") == 0)
            let holderHistory = try await system.transitions(holder)
            #expect(holderHistory.map(\.to) == ["pending", "dispatching", "processing", "completed"], "\(holderHistory)")
            #expect(try await system.row(holder)["cancel_requested_at"] == nil)
            #expect(try await system.slotsHeld() == 0)

            let stats = try await system.standin.stats()
            expectStandin(stats, predictions: [holder: 1, waiting: 0], maxRunning: 1)
            #expect(try await user.predictions(of: holder).map { $0["status"].string } == ["succeeded"])
        }
    }

    // MARK: 2. cancel of a running task

    /// Guards: canceling a running task cancels its prediction at Replicate, the task ends canceled once Replicate
    /// confirms, and its slot is freed: the task waiting for that slot then runs and completes.
    @Test func cancelOfARunningTask() async throws {
        try await Faulty.withSystem(
            "cancel-running", overrides: ["MAX_CONCURRENT_TASKS": "1"], standin: ["STANDIN_RUN_MS": "15000"]
        ) { system in
            let user = try FaultUser(system)
            let running = try await user.submit("running")
            try await user.waitFor(running, status: "processing")
            let waiting = try await user.submit("waiting")
            #expect(try await user.task(waiting)["status"].string == "pending")

            let cancel = try await user.cancel(running)
            #expect(cancel.status == 202, "\(cancel.text)")
            // Accepted; the task ends canceled when Replicate confirms.
            #expect(["processing", "canceled"].contains(cancel.json["status"].string ?? ""), "\(cancel.text)")
            let canceled = try await user.waitFor(running, status: "canceled", timeout: .seconds(60))
            #expect(canceled["output_video_url"].isNull)
            #expect(try await user.video(running).status == 409)

            // The freed slot goes to the waiting task, which completes.
            try await user.waitFor(waiting, status: "completed", timeout: .seconds(60))
            #expect(try await user.video(waiting).status == 200)

            let runningHistory = try await system.transitions(running)
            #expect(runningHistory.map(\.to) == ["pending", "dispatching", "processing", "canceled"], "\(runningHistory)")
            let waitingHistory = try await system.transitions(waiting)
            #expect(waitingHistory.map(\.to) == ["pending", "dispatching", "processing", "completed"], "\(waitingHistory)")
            if let canceledAt = runningHistory.last?.at, let slotAt = waitingHistory.first(where: { $0.to == "dispatching" })?.at {
                #expect(slotAt >= canceledAt, "the waiting task got the slot only after the cancel freed it")
            }
            #expect(try await system.row(running)["cancel_requested_at"] != nil)
            #expect(try await system.slotsHeld() == 0)

            // Replicate's cancel was called: only a cancel ends a stand-in prediction "canceled" (no deadline was sent).
            let predictions = try await user.predictions(of: running)
            #expect(predictions.map { $0["status"].string } == ["canceled"], "\(predictions)")
            #expect(predictions.first?["id"].string == (try await system.row(running)["replicate_task_id"]))
            let stats = try await system.standin.stats()
            expectStandin(stats, predictions: [running: 1, waiting: 1], maxRunning: 1)
        }
    }

    /// Guards: a cancel requested while the task is still `dispatching` (the create was sent, its answer is slow, and the
    /// prediction's "start" webhook arrives before that answer) is not lost: the prediction is canceled at Replicate and
    /// the task ends canceled. The create answer is withheld 10 s; the start webhook comes at 10% of the 30 s run, so the
    /// test has 3 s to see the task still dispatching and cancel it.
    @Test
    func cancelWhileTheCreateIsInFlight() async throws {
        try await Faulty.withSystem(
            "cancel-in-flight", overrides: ["REPLICATE_HTTP_TIMEOUT_MS": "30000"],
            standin: ["STANDIN_FAULT_CREATE_TIMEOUT": "100", "STANDIN_FAULT_TIMEOUT_MS": "10000", "STANDIN_RUN_MS": "30000"]
        ) { system in
            let user = try FaultUser(system)
            let id = try await user.submit("in-flight")
            try await eventually("the create sent to Replicate", timeout: .seconds(60), every: .milliseconds(20)) {
                try await system.standin.stats()["creates"].int == 1
            }
            let before = try await system.row(id)
            #expect(before["status"] == "dispatching", "cancel lands before the prediction is known: \(before)")
            let cancel = try await user.cancel(id)
            #expect(cancel.status == 202, "\(cancel.text)")

            try await user.waitFor(id, status: "canceled", timeout: .seconds(60))
            let history = try await system.transitions(id)
            #expect(history.last?.to == "canceled", "\(history)")
            #expect(try await system.slotsHeld() == 0)
            // Canceled at Replicate, not left running (and billed) to the end of its run.
            #expect(try await user.predictions(of: id).map { $0["status"].string } == ["canceled"])
            let stats = try await system.standin.stats()
            expectStandin(stats, predictions: [id: 1], maxRunning: 1)
        }
    }
}
