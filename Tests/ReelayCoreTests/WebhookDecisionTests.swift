import Foundation
import ReelayCore
import Testing

private typealias Decide = WebhookDecision

/// The finalizer's decisions, one line per case. Promises: exactly one final state (only the webhook's own attempt of a
/// task holding a slot takes news; late, duplicate and reordered webhooks change nothing), the video is kept before the
/// task completes, and an output that can never be stored fails at once instead of spending retries.
@Suite("WebhookDecision")
struct WebhookDecisionTests {
    static let mine = WebhookTarget(taskID: Given.taskID, attempt: Given.attempt)
    static let other = WebhookTarget(taskID: Given.otherTaskID, attempt: 1)
    static let processing = Given.task(.processing, prediction: "p1")
    static let dispatching = Given.attempted(5)

    // MARK: which row a claim reads

    @Test("a signed claim reads the task it names")
    func lookupSigned() { #expect(Decide.lookup(for: .signed(Self.mine)) == .task(Given.taskID)) }

    @Test("an unsigned claim reads the task it names (to check it recorded this prediction)")
    func lookupUnsigned() { #expect(Decide.lookup(for: .unsigned(Self.other)) == .task(Given.otherTaskID)) }

    @Test("no claim reads the task that recorded the prediction")
    func lookupNone() { #expect(Decide.lookup(for: .none) == .taskRecordingPrediction) }

    @Test("a conflicting claim reads nothing")
    func lookupConflict() { #expect(Decide.lookup(for: .conflict(signed: Self.mine, query: Self.other)) == .none) }

    // MARK: binding

    @Test("a signed webhook posted with another task's query is not applied")
    func bindConflict() {
        #expect(Decide.bind(.conflict(signed: Self.mine, query: Self.other), task: Self.processing, predictionID: "p1") == .conflict(
            signed: Self.mine, query: Self.other))
    }

    @Test("the signed body's attempt binds the delivery, whatever the row's attempt (the outcome decides staleness)")
    func bindSigned() {
        let older = WebhookTarget(taskID: Given.taskID, attempt: 1)
        #expect(Decide.bind(.signed(older), task: Self.processing, predictionID: "p9") == .bound(attempt: 1))
    }

    @Test("a signed webhook for a task that does not exist changes nothing")
    func bindSignedUnknown() { #expect(Decide.bind(.signed(Self.mine), task: nil, predictionID: "p1") == .unknownTask) }

    @Test("an unsigned query holds for a task that recorded this very prediction")
    func bindUnsignedRecorded() { #expect(Decide.bind(.unsigned(Self.mine), task: Self.processing, predictionID: "p1") == .bound(attempt: 2)) }

    @Test("an unsigned query cannot redirect another prediction's news to a task")
    func bindUnsignedOtherPrediction() {
        #expect(Decide.bind(.unsigned(Self.mine), task: Self.processing, predictionID: "p2") == .unrecordedPrediction(claimed: Self.mine))
    }

    @Test("an unsigned query is not trusted by a task with no prediction recorded yet")
    func bindUnsignedNoneRecorded() {
        #expect(Decide.bind(.unsigned(Self.mine), task: Self.dispatching, predictionID: "p1") == .unrecordedPrediction(claimed: Self.mine))
    }

    @Test("an unsigned query naming a task that does not exist binds nothing")
    func bindUnsignedUnknown() {
        #expect(Decide.bind(.unsigned(Self.mine), task: nil, predictionID: "p1") == .unrecordedPrediction(claimed: Self.mine))
    }

    @Test("without a claim, the attempt that recorded the prediction takes it")
    func bindByPrediction() { #expect(Decide.bind(.none, task: Self.processing, predictionID: "p1") == .bound(attempt: 2)) }

    @Test("without a claim, a prediction recorded nowhere changes nothing")
    func bindByPredictionUnknown() { #expect(Decide.bind(.none, task: nil, predictionID: "p1") == .unknownTask) }

    // MARK: what the prediction means: stale news

    @Test("a webhook for an older attempt changes nothing")
    func olderAttempt() { #expect(Decide.predictionArrived(Given.succeeded, task: Self.processing, attempt: 1) == .ignoreStale) }

    @Test("a webhook naming a newer attempt than the row changes nothing")
    func newerAttempt() { #expect(Decide.predictionArrived(Given.succeeded, task: Self.processing, attempt: 3) == .ignoreStale) }

    @Test("a finished task's webhook changes nothing: one final state", arguments: [TaskStatus.completed, .failed, .canceled, .rejected])
    func finishedTask(status: TaskStatus) {
        let finished = Given.task(status, prediction: "p1")
        #expect(Decide.predictionArrived(Given.prediction(.failed, error: "x"), task: finished, attempt: 2) == .ignoreStale)
    }

    @Test("a webhook for a task waiting to retry (slot released) changes nothing")
    func pendingTask() { #expect(Decide.predictionArrived(Given.succeeded, task: Given.task(.pending), attempt: 2) == .ignoreStale) }

    @Test("another prediction's webhook does not change a task that recorded its own")
    func otherPrediction() {
        #expect(Decide.predictionArrived(Given.prediction(.canceled, id: "p2"), task: Self.processing, attempt: 2) == .ignoreStale)
    }

    // MARK: what the prediction means: succeeded

    @Test("a success is completed only after its video is stored")
    func succeededStoresFirst() {
        #expect(Decide.predictionArrived(Given.succeeded, task: Self.processing, attempt: 2) == .storeOutput(url: Given.output))
    }

    @Test("a success that overtook the record of its create is taken too")
    func succeededWhileDispatching() {
        #expect(Decide.predictionArrived(Given.succeeded, task: Self.dispatching, attempt: 2) == .storeOutput(url: Given.output))
    }

    @Test("an output given as a list stores its first file")
    func succeededWithList() {
        let listed = Given.prediction(.succeeded, output: .urls([Given.output, "https://replicate.delivery/b.mp4"]))
        #expect(Decide.predictionArrived(listed, task: Self.processing, attempt: 2) == .storeOutput(url: Given.output))
    }

    @Test("a success without an output file fails the task with that reason")
    func succeededWithoutOutput() {
        let reason = "Replicate reported success without an output file"
        #expect(Decide.predictionArrived(Given.prediction(.succeeded), task: Self.processing, attempt: 2) == .fail(reason: reason, message: reason))
    }

    @Test("an output Replicate already deleted fails the task with that reason")
    func succeededButRemoved() {
        let reason = "Replicate deleted the output before it could be stored"
        #expect(Decide.predictionArrived(Given.prediction(.succeeded, dataRemoved: true), task: Self.processing, attempt: 2) == .fail(
            reason: reason, message: reason))
    }

    // MARK: what the prediction means: failed, canceled, running

    @Test("a failure that looks transient counts a retry (backoff, slot released)")
    func transientFailureRetries() {
        #expect(Decide.predictionArrived(Given.prediction(.failed, error: "CUDA out of memory"), task: Self.processing, attempt: 2) == .retry(
            reason: "Replicate: CUDA out of memory", eventReason: "CUDA out of memory"))
    }

    @Test("an aborted prediction with a transient error counts a retry")
    func transientAbortRetries() {
        #expect(Decide.predictionArrived(Given.prediction(.aborted, error: "timed out"), task: Self.dispatching, attempt: 2) == .retry(
            reason: "Replicate: timed out", eventReason: "timed out"))
    }

    @Test("a failure about the input fails the task at once with Replicate's message")
    func permanentFailureFails() {
        #expect(Decide.predictionArrived(Given.prediction(.failed, error: "NSFW content detected"), task: Self.processing, attempt: 2) == .fail(
            reason: "Replicate: NSFW content detected", message: "Replicate: NSFW content detected"))
    }

    @Test("a failure without an error text fails: no evidence of a passing fault", arguments: [PredictionStatus.failed, .aborted])
    func silentFailureFails(status: PredictionStatus) {
        let reason = "Replicate: the prediction \(status.rawValue) without an error message"
        #expect(Decide.predictionArrived(Given.prediction(status), task: Self.processing, attempt: 2) == .fail(reason: reason, message: reason))
    }

    @Test("a prediction canceled at Replicate finishes the task canceled")
    func canceled() {
        #expect(Decide.predictionArrived(Given.prediction(.canceled), task: Self.processing, attempt: 2) == .finishCanceled(
            reason: "canceled at Replicate", message: "Canceled"))
    }

    @Test("a start webhook that overtook the record of its create records the prediction", arguments: [
        PredictionStatus.starting, .processing, .unknown("queued"),
    ])
    func startedWhileDispatching(status: PredictionStatus) {
        #expect(Decide.predictionArrived(Given.prediction(status), task: Self.dispatching, attempt: 2) == .markProcessing(predictionID: "p1"))
    }

    @Test("a non-terminal webhook for a processing task changes nothing (an unknown status is not terminal)", arguments: [
        PredictionStatus.starting, .processing, .unknown("queued"),
    ])
    func runningWhileProcessing(status: PredictionStatus) {
        #expect(Decide.predictionArrived(Given.prediction(status), task: Self.processing, attempt: 2) == .keepWaiting)
    }

    // MARK: the output's download

    @Test("an output stored completes the task")
    func stored() {
        #expect(Decide.downloaded(.answered(status: 200, bytes: 4096), prediction: Given.succeeded) == .complete(
            reason: "output stored (4096 bytes)"))
    }

    @Test("an output refused by the output rules fails at once, no retry: the same URL gets the same answer")
    func refused() {
        let refusal = OutputRefusal.tooLarge(limit: 1024)
        let message = refusal.taskMessage
        #expect(Decide.downloaded(.refused(refusal), prediction: Given.succeeded) == .fail(reason: message, message: message))
    }

    @Test("a download that failed in transit is retried (the delivery comes back)")
    func transferFailed() {
        #expect(Decide.downloaded(.failed("connection reset"), prediction: Given.succeeded) == .redeliver(
            "downloading the output of p1 failed: connection reset"))
    }

    @Test("an output Replicate already deleted (404, 410) fails the task with that reason", arguments: [404, 410])
    func deleted(status: Int) {
        let reason = "Replicate deleted the output before it could be stored (\(status))"
        #expect(Decide.downloaded(.answered(status: status, bytes: 0), prediction: Given.succeeded) == .fail(reason: reason, message: reason))
    }

    @Test("any other answer of the output host is retried", arguments: [403, 500, 503])
    func otherAnswerRetried(status: Int) {
        #expect(Decide.downloaded(.answered(status: status, bytes: 0), prediction: Given.succeeded) == .redeliver(
            "downloading the output of p1 answered \(status)"))
    }

    @Test("an error answer for an output marked removed fails: it will never come back")
    func errorOnRemovedOutput() {
        let removed = Given.prediction(.succeeded, output: .url(Given.output), dataRemoved: true)
        let reason = "Replicate deleted the output before it could be stored (500)"
        #expect(Decide.downloaded(.answered(status: 500, bytes: 0), prediction: removed) == .fail(reason: reason, message: reason))
    }
}
