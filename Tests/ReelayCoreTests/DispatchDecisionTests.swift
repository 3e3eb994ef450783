import Foundation
import ReelayCore
import Testing

private typealias Decide = DispatchDecision

/// The dispatcher's decisions, one line per case. Promises: never run twice at Replicate (a create that may exist is
/// looked up, never sent again), never leak a slot (every path ends in a transition, a retry or a known wait), and
/// Replicate's answers are honoured (REPLICATE.md "Errors and rate limits").
@Suite("DispatchDecision")
struct DispatchDecisionTests {
    // MARK: a create command arrives

    @Test("a create for a task that is gone does nothing")
    func createForAGoneTask() { #expect(Decide.createCommand(task: nil, attempt: 2) == .ignoreStale) }

    @Test("a create command for an older attempt changes nothing (attempt fences it)")
    func createForAnOlderAttempt() { #expect(Decide.createCommand(task: Given.task(.dispatching), attempt: 1) == .ignoreStale) }

    @Test("a create command for a newer attempt than the row changes nothing")
    func createForANewerAttempt() { #expect(Decide.createCommand(task: Given.task(.dispatching), attempt: 3) == .ignoreStale) }

    @Test(
        "a create command for a task not dispatching does nothing",
        arguments: [TaskStatus.pending, .processing, .completed, .failed, .canceled, .rejected])
    func createForATaskNotDispatching(status: TaskStatus) { #expect(Decide.createCommand(task: Given.task(status), attempt: 2) == .ignoreStale) }

    @Test("a create already attempted (redelivered or re-sent) is never sent again: reconcile")
    func createAlreadyAttempted() { #expect(Decide.createCommand(task: Given.attempted(), attempt: 2) == .reconcile(fallbackReason: nil)) }

    @Test("a fresh dispatching attempt takes a token and records the create before sending it")
    func createFresh() { #expect(Decide.createCommand(task: Given.task(.dispatching), attempt: 2) == .beginCreate) }

    // MARK: the create is recorded as attempted

    @Test("another dispatcher recorded this attempt's create first: this one never creates")
    func createTakenByAnother() { #expect(Decide.createBegun(task: nil) == .ignoreStale) }

    @Test("a cancel requested before the create was sent: canceled, nothing reaches Replicate")
    func cancelBeforeCreate() {
        #expect(Decide.createBegun(task: Given.task(.dispatching, createAttempted: 0, cancelRequested: true)) == .cancelBeforeCreate(
            reason: "canceled before it reached Replicate", message: "Canceled by the user"))
    }

    @Test("a recorded create with no cancel is sent")
    func sendCreate() { #expect(Decide.createBegun(task: Given.attempted(0)) == .sendCreate) }

    // MARK: Replicate answers the create

    @Test("a created prediction is recorded on the attempt")
    func created() { #expect(Decide.createAnswered(.prediction(Given.prediction(.starting))) == .recordCreated(predictionID: "p1")) }

    @Test("400/404/422 fail the task at once with Replicate's message, no alert", arguments: [400, 404, 422])
    func permanentRefusalFails(status: Int) {
        #expect(Decide.createAnswered(Given.answered(status, body: #"{"detail":"bad"}"#)) == .fail(
            reason: "Replicate refused the create (\(status))", message: Self.message(status, body: #"{"detail":"bad"}"#), alert: false))
    }

    @Test("401/402 fail the task at once and alert an operator", arguments: [401, 402])
    func accountRefusalFailsAndAlerts(status: Int) {
        #expect(Decide.createAnswered(Given.answered(status)) == .fail(
            reason: "Replicate refused the create (\(status))", message: Self.message(status), alert: true))
    }

    @Test("a 429 pauses every dispatcher until the reset and retries the task no sooner")
    func rateLimited() {
        #expect(Decide.createAnswered(.refused(.rateLimited(retryAfter: .seconds(30)), status: 429)) == .pauseCreatesAndRetry(
            pause: .seconds(30), reason: "Replicate rate limit (429), resets in 30.0 s"))
    }

    @Test("a 429 with its reset in the body's detail waits that long")
    func rateLimitedFromDetail() {
        #expect(Decide.createAnswered(Given.answered(429, body: #"{"detail":"Your rate limit resets in ~7s."}"#)) == .pauseCreatesAndRetry(
            pause: .seconds(7), reason: "Replicate rate limit (429), resets in 7.0 s"))
    }

    @Test("a 429 that names no reset waits the default pause")
    func rateLimitedWithoutReset() {
        #expect(Decide.createAnswered(.refused(.rateLimited(retryAfter: nil), status: 429)) == .pauseCreatesAndRetry(
            pause: Decide.defaultRateLimitPause, reason: "Replicate rate limit (429), resets in 10.0 s"))
    }

    @Test("a create answered 5xx or 408 may exist: never sent again, reconciled", arguments: [500, 502, 503, 504, 408])
    func serverErrorReconciles(status: Int) {
        #expect(Decide.createAnswered(Given.answered(status)) == .reconcile(fallbackReason: Self.message(status)))
    }

    @Test("a create whose outcome is unknown (timeout, connection lost) is never sent again: reconcile")
    func unknownOutcomeReconciles() {
        #expect(Decide.createAnswered(.unreachable("timeout", mayHaveBeenSent: true)) == .reconcile(
            fallbackReason: "Replicate did not answer the create (timeout)"))
    }

    @Test("a create that never left (connection refused) is retried with backoff: nothing can exist")
    func neverSentRetries() {
        #expect(Decide.createAnswered(.unreachable("refused", mayHaveBeenSent: false)) == .retry(
            reason: "Replicate could not be reached (refused)", notBefore: nil))
    }

    @Test("a 2xx classified as an error (never produced by the client) changes nothing")
    func successAsRefusal() { #expect(Decide.createAnswered(.refused(.success, status: 200)) == .nothing) }

    // MARK: cancel

    @Test("a cancel for a task that is gone does nothing")
    func cancelForAGoneTask() { #expect(Decide.cancelCommand(task: nil, attempt: 2) == .ignoreStale) }

    @Test("a cancel for an older attempt does not cancel the new attempt's prediction")
    func cancelForAnOlderAttempt() { #expect(Decide.cancelCommand(task: Given.task(.processing, prediction: "p1"), attempt: 1) == .ignoreStale) }

    @Test("a cancel for a task holding no slot does nothing", arguments: [TaskStatus.pending, .completed, .failed, .canceled])
    func cancelWithoutSlot(status: TaskStatus) {
        #expect(Decide.cancelCommand(task: Given.task(status, prediction: "p1"), attempt: 2) == .ignoreStale)
    }

    @Test("a cancel before any prediction is recorded waits for the record (which re-sends it)")
    func cancelWithoutPrediction() { #expect(Decide.cancelCommand(task: Given.attempted(), attempt: 2) == .ignoreStale) }

    @Test("a cancel of a running prediction is sent to Replicate", arguments: [TaskStatus.dispatching, .processing])
    func cancelRunning(status: TaskStatus) {
        #expect(Decide.cancelCommand(task: Given.task(status, prediction: "p1"), attempt: 2) == .cancelAtReplicate(predictionID: "p1"))
    }

    @Test("a cancel Replicate confirms is finished like its webhook")
    func cancelConfirmed() {
        let canceled = Given.prediction(.canceled)
        #expect(Decide.cancelAnswered(.prediction(canceled), predictionID: "p1") == .forwardTerminal(canceled))
    }

    @Test("a prediction that finished before the cancel is finished as it ended")
    func cancelTooLate() { #expect(Decide.cancelAnswered(.prediction(Given.succeeded), predictionID: "p1") == .forwardTerminal(Given.succeeded)) }

    @Test("a cancel not yet effective waits for its webhook or the scheduler's re-send")
    func cancelPending() { #expect(Decide.cancelAnswered(.prediction(Given.running), predictionID: "p1") == .awaitCancelConfirmation) }

    @Test("a cancel Replicate refuses is re-sent by the scheduler, not here")
    func cancelRefused() { #expect(Decide.cancelAnswered(Given.answered(404), predictionID: "p1") == .awaitCancelConfirmation) }

    @Test("a cancel that did not reach Replicate comes back later (cancel is safe to repeat)")
    func cancelUnreachable() {
        #expect(Decide.cancelAnswered(.unreachable("reset", mayHaveBeenSent: true), predictionID: "p1") == .redeliver(
            "cancel of p1 failed: reset"))
    }

    // MARK: reconcile

    @Test("a reconcile for a task that is gone does nothing")
    func reconcileForAGoneTask() { #expect(Decide.reconcileCommand(task: nil, attempt: 2) == .ignoreStale) }

    @Test("a reconcile for an older attempt changes nothing")
    func reconcileForAnOlderAttempt() {
        #expect(Decide.reconcileCommand(task: Given.task(.processing, prediction: "p1"), attempt: 1) == .ignoreStale)
    }

    @Test("a reconcile for a task holding no slot does nothing", arguments: [TaskStatus.pending, .completed, .failed, .canceled, .rejected])
    func reconcileWithoutSlot(status: TaskStatus) {
        #expect(Decide.reconcileCommand(task: Given.task(status, prediction: "p1"), attempt: 2) == .ignoreStale)
    }

    @Test("a recorded prediction is looked up by its id")
    func reconcileByID() {
        #expect(Decide.reconcileCommand(task: Given.task(.processing, prediction: "p1"), attempt: 2) == .getPrediction(predictionID: "p1"))
    }

    @Test("without a recorded id, recent predictions are searched from just before the create was recorded")
    func reconcileBySearch() {
        #expect(Decide.reconcileCommand(task: Given.attempted(20), attempt: 2) == .searchPredictions(since: Given.now.addingTimeInterval(-25)))
    }

    @Test("a search starts before the dispatch when no create was recorded")
    func searchStartFromDispatch() { #expect(Decide.searchStart(for: Given.task(.dispatching)) == Given.now.addingTimeInterval(-65)) }

    @Test("a search starts before the submission when nothing else is known")
    func searchStartFromSubmission() {
        #expect(Decide.searchStart(for: Given.task(.dispatching, dispatched: false)) == Given.now.addingTimeInterval(-605))
    }

    @Test("a get that fails comes back later (a get is safe to repeat)")
    func getUnreachable() {
        #expect(Self.get(.unreachable("reset", mayHaveBeenSent: true), task: Self.processing) == [.redeliver("get p1 failed: reset")])
    }

    @Test("a get Replicate refuses comes back later")
    func getRefused() {
        #expect(Self.get(Given.answered(503), task: Self.processing) == [
            .redeliver("get p1 answered 503: \(ReplicateOutcomeClass.transient(message: Self.message(503)))")
        ])
    }

    @Test("a get answered with a terminal prediction finishes the task like its webhook")
    func getTerminal() {
        #expect(Self.get(.prediction(Given.succeeded), task: Self.processing) == [.forwardTerminal(Given.succeeded)])
    }

    @Test("a silent prediction still running is noted as checked, so the sweep waits another period")
    func getRunning() { #expect(Self.get(.prediction(Given.running), task: Self.processing) == [.keepWaiting]) }

    // MARK: a lookup ends

    @Test("a create that may still be in flight at another dispatcher is neither sent again nor retried")
    func inFlightCreateWaits() { #expect(Self.lookedUp(nil, task: Given.attempted(10)) == [.waitForInFlightCreate]) }

    @Test("a create is in flight until its timeout plus the grace has passed")
    func inFlightUntilTimeoutAndGrace() { #expect(Self.lookedUp(nil, task: Given.attempted(34.9)) == [.waitForInFlightCreate]) }

    @Test("no prediction once any create must have ended: retried with backoff, slot released")
    func lostCreateRetries() {
        #expect(Self.lookedUp(nil, task: Given.attempted(35)) == [.retry(reason: "the create never reached Replicate", notBefore: nil)])
    }

    @Test("no prediction after this dispatcher's own create ended: retried with that create's reason")
    func ownCreateEndedRetries() {
        #expect(Self.lookedUp(nil, task: Given.attempted(1), fallbackReason: "Replicate had a server error (500)") == [
            .retry(reason: "Replicate had a server error (500)", notBefore: nil)
        ])
    }

    @Test("no prediction for an attempt that never recorded a create: retried")
    func neverAttemptedRetries() {
        #expect(Self.lookedUp(nil, task: Given.task(.dispatching)) == [.retry(reason: "the create never reached Replicate", notBefore: nil)])
    }

    @Test("no prediction for a processing task changes nothing (its recorded id is authoritative)")
    func notFoundWhileProcessing() { #expect(Self.lookedUp(nil, task: Given.task(.processing, prediction: "p1"), fallbackReason: "x").isEmpty) }

    @Test("a found running prediction is recorded and then waited for: the create is never sent again")
    func foundRunningIsRecorded() {
        #expect(Self.lookedUp(Given.running, task: Given.attempted(60)) == [.recordCreated(predictionID: "p1"), .keepWaiting])
    }

    @Test("a found finished prediction is recorded and finished like its webhook")
    func foundFinishedIsRecordedAndForwarded() {
        #expect(Self.lookedUp(Given.succeeded, task: Given.attempted(1), fallbackReason: "x") == [
            .recordCreated(predictionID: "p1"), .forwardTerminal(Given.succeeded),
        ])
    }

    // MARK: helpers

    static let processing = Given.task(.processing, prediction: "p1")

    static func message(_ status: Int, body: String = "") -> String {
        switch ReplicateErrors.classify(status: status, headers: [], body: Array(body.utf8), now: Given.now) {
        case .permanent(let message), .transient(let message): message
        case .rateLimited, .success: ""
        }
    }

    fileprivate static func get(_ result: ReplicateCallResult, task: TaskSnapshot) -> [Decide.Action] {
        Decide.getAnswered(result, predictionID: "p1", task: task, fallbackReason: nil, now: Given.now, createTimeout: Given.createTimeout)
    }

    fileprivate static func lookedUp(_ prediction: ReplicatePrediction?, task: TaskSnapshot, fallbackReason: String? = nil) -> [Decide.Action] {
        Decide.predictionLookedUp(prediction, task: task, fallbackReason: fallbackReason, now: Given.now, createTimeout: Given.createTimeout)
    }
}

/// Finding an attempt's prediction among Replicate's recent ones. Promise: never run twice at Replicate: a create
/// whose answer was lost is found (by its webhook URL, or by its input since the create), and never confused with
/// another attempt's prediction.
@Suite("PredictionSearch")
struct PredictionSearchTests {
    static let since = Given.now.addingTimeInterval(-30)
    static let search = PredictionSearch(
        target: WebhookTarget(taskID: Given.taskID, attempt: Given.attempt), prompt: "a fox", imageURL: "https://e.com/fox.png",
        imageInput: "image", since: Self.since)

    static func listed(
        _ id: String, webhook: String? = nil, ago: TimeInterval = 10, prompt: String = "a fox", image: String = "https://e.com/fox.png"
    ) -> PredictionSearch.Listed {
        PredictionSearch.Listed(
            prediction: Given.prediction(.processing, id: id, webhook: webhook), createdAt: Given.now.addingTimeInterval(-ago),
            input: ["prompt": prompt, "image": image])
    }

    @Test("a prediction whose webhook URL names this task and attempt is this attempt's, whatever its input")
    func byWebhookURL() {
        let ours = Self.listed("b", webhook: Given.webhookURL(), prompt: "edited")
        #expect(Self.search.scan([Self.listed("x", prompt: "a cat"), ours], next: nil) == .found(ours.prediction))
    }

    @Test("another attempt's prediction is never taken for this one, even with the same input")
    func otherAttemptIsSkipped() { #expect(Self.search.scan([Self.listed("old", webhook: Given.webhookURL(attempt: 1))], next: nil) == .notFound) }

    @Test("another task's prediction is never taken for this one, even with the same input")
    func otherTaskIsSkipped() {
        #expect(Self.search.scan([Self.listed("x", webhook: Given.webhookURL(task: Given.otherTaskID))], next: nil) == .notFound)
    }

    @Test("without a webhook URL, the same input created since the create was recorded is this attempt's")
    func byInput() { #expect(Self.search.scan([Self.listed("a", ago: 29)], next: nil) == .found(Self.listed("a").prediction)) }

    @Test("a webhook URL that is not Reelay's says nothing: the input decides")
    func foreignWebhookFallsBackToInput() {
        #expect(Self.search.scan([Self.listed("a", webhook: "https://other.example.com/hook")], next: nil) == .found(
            Self.listed("a", webhook: "https://other.example.com/hook").prediction))
    }

    @Test("the same input created before the create was recorded is an older attempt's")
    func inputBeforeTheCreate() { #expect(Self.search.scan([Self.listed("a", ago: 31)], next: nil) == .notFound) }

    @Test("another prompt is another task's")
    func otherPrompt() { #expect(Self.search.scan([Self.listed("a", prompt: "a cat")], next: "page2") == .nextPage("page2")) }

    @Test("another image is another task's")
    func otherImage() { #expect(Self.search.scan([Self.listed("a", image: "https://e.com/cat.png")], next: nil) == .notFound) }

    @Test("a listing without a parseable creation time is not matched by input")
    func noCreationTime() {
        let undated = PredictionSearch.Listed(
            prediction: Given.running, createdAt: nil, input: ["prompt": "a fox", "image": "https://e.com/fox.png"])
        #expect(Self.search.scan([undated], next: "page2") == .notFound)
    }

    @Test("a page that still reaches back after the create is followed by the next")
    func readsOn() { #expect(Self.search.scan([Self.listed("a", ago: 5, prompt: "a cat")], next: "page2") == .nextPage("page2")) }

    @Test("once a page reaches back before the create, older pages cannot hold it")
    func stopsAtTheCreate() { #expect(Self.search.scan([Self.listed("a", ago: 40, prompt: "a cat")], next: "page2") == .notFound) }

    @Test("the last page ends the search")
    func lastPage() { #expect(Self.search.scan([Self.listed("a", prompt: "a cat")], next: nil) == .notFound) }

    @Test("an empty page ends the search")
    func emptyPage() { #expect(Self.search.scan([], next: "page2") == .notFound) }
}
