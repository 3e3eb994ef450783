import Foundation
import ReelayCore

/// Tasks, predictions and Replicate answers for the decision tests: one fixed task at attempt 2, one fixed clock, so
/// each test is one line that names its case.
enum Given {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
    static let taskID = UUID(uuidString: "7C1D1E9A-3B9C-4F55-9B7E-0A8E2C4F6D11")!
    static let otherTaskID = UUID(uuidString: "1F0C5B2E-8D4A-4C3B-A1E2-5D6F7A8B9C0D")!
    static let attempt = 2
    /// The create call's HTTP timeout (`REPLICATE_HTTP_TIMEOUT_MS` default).
    static let createTimeout: Duration = .seconds(30)

    /// The task at `Given.attempt`, submitted 10 minutes and dispatched 1 minute before `now`.
    /// - Parameters:
    ///   - createAttempted: seconds before `now` its create was recorded as attempted (nil: not attempted).
    static func task(
        _ status: TaskStatus, prediction: String? = nil, createAttempted: TimeInterval? = nil, cancelRequested: Bool = false,
        retryCount: Int = 0, dispatched: Bool = true
    ) -> TaskSnapshot {
        TaskSnapshot(
            id: Self.taskID, status: status, attempt: Self.attempt, retryCount: retryCount, replicateTaskID: prediction,
            createAttemptedAt: createAttempted.map { Self.now.addingTimeInterval(-$0) },
            cancelRequestedAt: cancelRequested ? Self.now.addingTimeInterval(-2) : nil,
            dispatchedAt: dispatched ? Self.now.addingTimeInterval(-60) : nil, createdAt: Self.now.addingTimeInterval(-600))
    }

    /// A dispatching task whose create was recorded `ago` seconds before `now`, no prediction recorded yet.
    static func attempted(_ ago: TimeInterval = 1) -> TaskSnapshot {
        Self.task(.dispatching, createAttempted: ago)
    }

    static func prediction(
        _ status: PredictionStatus, id: String = "p1", error: String? = nil, output: PredictionOutput? = nil, dataRemoved: Bool? = nil,
        webhook: String? = nil
    ) -> ReplicatePrediction {
        ReplicatePrediction(id: id, status: status, error: error, output: output, dataRemoved: dataRemoved, webhook: webhook)
    }

    static let output = "https://replicate.delivery/xezq/abc/output.mp4"
    static let succeeded = Self.prediction(.succeeded, output: .url(Self.output))
    static let running = Self.prediction(.processing)

    /// Replicate's answer to an HTTP status, classified as the client classifies it.
    static func answered(_ status: Int, body: String = "") -> ReplicateCallResult {
        .refused(ReplicateErrors.classify(status: status, headers: [], body: Array(body.utf8), now: Self.now), status: status)
    }

    static func webhookURL(task: UUID = Given.taskID, attempt: Int = Given.attempt) -> String {
        WebhookURL.make(base: "https://hooks.example.com", taskID: task, attempt: attempt)
    }
}

/// A generator that always returns the same word: with the standard library's bounded draw (Lemire's multiply, which
/// rejects a zero word forever), 1 makes full jitter pick no wait and `.max` the whole ceiling.
struct FixedGenerator: RandomNumberGenerator {
    var word: UInt64

    mutating func next() -> UInt64 {
        self.word
    }
}
