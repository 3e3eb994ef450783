import Foundation
import ReelayCore
import Testing

/// The scheduler's sweeps and the cancel re-sends, one line per case. Promises: never leak a slot (a dispatching task
/// whose dispatcher died, or a processing one whose webhook was lost, is moved on), never run twice at Replicate (a
/// lease sweep re-sends a create only when none was attempted), and a running task's cancel is sent until confirmed.
@Suite("SweepDecision")
struct SweepDecisionTests {
    @Test("a lost create command (no create attempted) is sent again: safe, nothing was created")
    func expiredLeaseBeforeCreate() { #expect(SweepDecision.swept(.expiredLease, task: Given.task(.dispatching)) == .resendCreate) }

    @Test("a dispatcher that died after recording its create: the prediction is looked for, the create never re-sent")
    func expiredLeaseAfterCreate() { #expect(SweepDecision.swept(.expiredLease, task: Given.attempted(90)) == .reconcile) }

    @Test("a cancel Replicate has not confirmed is sent again")
    func unconfirmedCancel() {
        #expect(SweepDecision.swept(.unconfirmedCancel, task: Given.task(.processing, prediction: "p1", cancelRequested: true)) == .resendCancel)
    }

    @Test("a terminal webhook that never came: the prediction is fetched and finished from the answer")
    func silentPrediction() { #expect(SweepDecision.swept(.silentPrediction, task: Given.task(.processing, prediction: "p1")) == .reconcile) }

    @Test("a move into a slot frees none: no pass", arguments: [TaskStatus.dispatching, .processing])
    func eventIntoASlot(status: TaskStatus) { #expect(SweepDecision.taskEvent(status: status) == .nothing) }

    @Test("anything else may have freed a slot or queued work: a pass fills it", arguments: [
        TaskStatus.pending, .completed, .failed, .canceled, .rejected,
    ])
    func eventThatMayFreeASlot(status: TaskStatus) { #expect(SweepDecision.taskEvent(status: status) == .runPass) }
}

/// When a cancel of a running task is (re-)sent, one line per case. Promise: a running task canceled by its user is
/// canceled at Replicate, even when the cancel arrived while its create was in flight.
@Suite("CancelDecision")
struct CancelDecisionTests {
    @Test("a cancel for a task that is gone does nothing")
    func gone() { #expect(CancelDecision.cancelRequested(task: nil) == .nothing) }

    @Test("a running task with a cancel requested is canceled at Replicate", arguments: [TaskStatus.dispatching, .processing])
    func running(status: TaskStatus) { #expect(CancelDecision.cancelRequested(task: Given.task(status, cancelRequested: true)) == .sendCancel) }

    @Test("a task no longer holding a slot has nothing to cancel at Replicate", arguments: [
        TaskStatus.pending, .completed, .failed, .canceled, .rejected,
    ])
    func notRunning(status: TaskStatus) { #expect(CancelDecision.cancelRequested(task: Given.task(status, cancelRequested: true)) == .nothing) }

    @Test("a running task whose cancel was not recorded is not canceled")
    func notRequested() { #expect(CancelDecision.cancelRequested(task: Given.task(.processing, prediction: "p1")) == .nothing) }

    @Test("a cancel requested while the create was in flight is sent once the prediction is recorded")
    func recordedAfterCancel() {
        #expect(CancelDecision.predictionRecorded(task: Given.task(.processing, prediction: "p1", cancelRequested: true)) == .sendCancel)
    }

    @Test("recording a prediction with no cancel requested sends none")
    func recordedWithoutCancel() { #expect(CancelDecision.predictionRecorded(task: Given.task(.processing, prediction: "p1")) == .nothing) }

    @Test("an unconfirmed cancel is re-sent after 5 s")
    func resendAfter() { #expect(CancelDecision.resendAfter == .seconds(5)) }
}

/// What a transient failure does to its task, one line per case. Promises: never leak a slot (a retry goes back to
/// pending, a task out of retries fails: either releases the slot), a 429 is honoured, and a retried task keeps its
/// place (ARCHITECTURE.md "Retries", "Priority").
@Suite("RetryDecision")
struct RetryDecisionTests {
    static let backoff = Backoff(base: .seconds(2), cap: .seconds(300))

    static func decide(retryCount: Int, maxRetries: Int = 3, atLeast: Duration? = nil, word: UInt64 = 1) -> RetryDecision {
        var rng = FixedGenerator(word: word)
        return RetryDecision.decide(
            retryCount: retryCount, maxRetries: maxRetries, reason: "boom", backoff: Self.backoff, atLeast: atLeast, using: &rng)
    }

    @Test("a task with retries left goes back to pending and gains the retry bonus")
    func retries() {
        #expect(Self.decide(retryCount: 0) == .retry(after: .zero, reason: "retry 1 of 3 in 0.0 s: boom", message: "boom", priorityBonus: 10))
    }

    @Test("the retry bonus is Priority.retryBonus, the one the priority formula counts")
    func bonusIsThePriorityRule() {
        #expect(Self.decide(retryCount: 1) == .retry(
            after: .zero, reason: "retry 2 of 3 in 0.0 s: boom", message: "boom", priorityBonus: Priority.retryBonus))
    }

    @Test("the wait is the backoff's full jitter, up to its ceiling for the retry number")
    func backoffCeiling() {
        #expect(Self.decide(retryCount: 2, word: .max) == .retry(
            after: .seconds(8), reason: "retry 3 of 3 in 8.0 s: boom", message: "boom", priorityBonus: 10))
    }

    @Test("a 429 counts a retry and waits at least the reset")
    func rateLimitWaitsTheReset() {
        #expect(Self.decide(retryCount: 0, atLeast: .seconds(30)) == .retry(
            after: .seconds(30), reason: "retry 1 of 3 in 30.0 s: boom", message: "boom", priorityBonus: 10))
    }

    @Test("a backoff longer than the reset is kept")
    func backoffBeyondTheReset() {
        #expect(Self.decide(retryCount: 2, atLeast: .seconds(3), word: .max) == .retry(
            after: .seconds(8), reason: "retry 3 of 3 in 8.0 s: boom", message: "boom", priorityBonus: 10))
    }

    @Test("a task out of retries fails with a message saying so")
    func givesUp() {
        #expect(Self.decide(retryCount: 3) == .giveUp(reason: "retries exhausted (3): boom", message: "Gave up after 3 retries: boom"))
    }

    @Test("a task beyond its retries (MAX_RETRIES lowered) fails too")
    func beyondRetries() {
        #expect(Self.decide(retryCount: 5) == .giveUp(reason: "retries exhausted (3): boom", message: "Gave up after 3 retries: boom"))
    }

    @Test("MAX_RETRIES = 0 fails at the first transient failure")
    func noRetries() {
        #expect(Self.decide(retryCount: 0, maxRetries: 0) == .giveUp(
            reason: "retries exhausted (0): boom", message: "Gave up after 0 retries: boom"))
    }
}
