import Foundation
import ReelayTestSupport
import Testing

/// Predictions that fail, and outputs that are gone before they are stored.
extension Faults {
    // MARK: 9. failed predictions

    /// Guards: a prediction that fails with a transient-looking error is retried with a new prediction up to MAX_RETRIES
    /// (3), then the task fails with the reason; never more failed predictions than attempts, never two at once.
    @Test func transientPredictionFailuresExhaustRetries() async throws {
        try await Faulty.withSystem(
            "prediction-fail", standin: ["STANDIN_FAULT_PREDICTION_FAIL": "100", "STANDIN_RUN_MS": "500"]
        ) { system in
            let user = try FaultUser(system)
            let id = try await user.submit("fail")
            let task = try await user.waitFor(id, status: "failed", timeout: .seconds(60))
            #expect(task["retry_count"].int == 3, "\(task)")
            let message = task["error_message"].string ?? ""
            #expect(message.contains("Gave up after 3 retries"), "\(message)")
            #expect(message.contains("CUDA error: out of memory"), "the reason from Replicate: \(message)")

            let row = try await system.row(id)
            #expect(row.int("attempt") == 4, "\(row)")
            let history = try await system.transitions(id)
            let retried: [String] = Array(repeating: ["dispatching", "processing", "pending"], count: 3).flatMap { $0 }
            let expected: [String] = ["pending"] + retried + ["dispatching", "processing", "failed"]
            #expect(history.map(\.to) == expected, "\(history)")
            #expect(history.last?.reason.contains("retries exhausted") == true, "\(history)")

            let predictions = try await user.predictions(of: id)
            #expect(predictions.count == 4, "one prediction per attempt: \(predictions.map { $0["id"] })")
            #expect(predictions.allSatisfy { $0["status"].string == "failed" })
            #expect(predictions.filter { $0["status"].string == "failed" }.count <= row.int("attempt") ?? 0)
            #expect(try await system.slotsHeld() == 0)
            let stats = try await system.standin.stats()
            expectStandin(stats, predictions: [id: 4], maxRunning: 1)
        }
    }

    // MARK: 10. output missing

    /// Guards: a prediction that succeeded but whose output file is gone (404) fails the task at once with a message
    /// saying the output was deleted before it could be stored (Finalizer.succeeded: a 404/410 is final, not retried).
    @Test func missingOutputFailsTheTask() async throws {
        try await Faulty.withSystem("output-missing", standin: ["STANDIN_FAULT_OUTPUT_MISSING": "100"]) { system in
            let user = try FaultUser(system)
            let id = try await user.submit("missing")
            let task = try await user.waitFor(id, status: "failed", timeout: .seconds(60))
            #expect(task["retry_count"].int == 0)
            #expect(
                task["error_message"].string?.contains("Replicate deleted the output before it could be stored") == true, "\(task)")
            #expect(task["output_video_url"].isNull)
            #expect(try await user.video(id).status == 409)

            let row = try await system.row(id)
            #expect(row.int("attempt") == 1)
            #expect(row["output_storage_key"] == nil, "nothing stored: \(row)")
            let history = try await system.transitions(id)
            #expect(history.map(\.to) == ["pending", "dispatching", "processing", "failed"], "\(history)")
            #expect(try await system.slotsHeld() == 0)
            #expect(try await user.predictions(of: id).map { $0["status"].string } == ["succeeded"])
            let stats = try await system.standin.stats()
            expectStandin(stats, predictions: [id: 1], maxRunning: 1)
        }
    }
}
