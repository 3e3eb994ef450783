import Foundation
import Logging
import ReelayMessaging
import ReelayService
import ReelayTestSupport
import Synchronization
import Testing

func verdict(_ id: UUID = UUID()) -> AdmissionVerdict {
    AdmissionVerdict(taskID: id, outcome: .admitted, httpStatus: 202, message: nil)
}

@Suite("VerdictWaiter") struct VerdictWaiterTests {
    let waiter = VerdictWaiter(logger: Logger(label: "test"))

    @Test func verdictBeforeWaitIsReturnedAtOnce() async {
        let v = verdict()
        self.waiter.expect("a")
        #expect(self.waiter.deliver(v, correlationID: "a") == false)  // nobody suspended yet: kept, not "delivered"
        let start = ContinuousClock.now
        let got = await self.waiter.wait(for: "a", timeout: .seconds(60))
        #expect(got == v)
        // At once rather than at the timeout: the bound sits far from both.
        #expect(ContinuousClock.now - start < .seconds(20))
        #expect(self.waiter.pendingCount == 0)
    }

    @Test func verdictDuringWaitResumesPromptly() async {
        let v = verdict()
        self.waiter.expect("b")
        let waiter = self.waiter
        Task {
            try await Task.sleep(for: .milliseconds(100))
            #expect(waiter.deliver(v, correlationID: "b"))
        }
        let start = ContinuousClock.now
        let got = await self.waiter.wait(for: "b", timeout: .seconds(60))
        #expect(got == v)
        #expect(ContinuousClock.now - start < .seconds(20))
        #expect(self.waiter.pendingCount == 0)
    }

    @Test func timeoutGivesNilAndLateVerdictIsDropped() async {
        self.waiter.expect("c")
        let start = ContinuousClock.now
        let got = await self.waiter.wait(for: "c", timeout: .milliseconds(200))
        #expect(got == nil)
        #expect(ContinuousClock.now - start >= .milliseconds(200))
        #expect(self.waiter.pendingCount == 0)
        #expect(self.waiter.deliver(verdict(), correlationID: "c") == false)
        #expect(self.waiter.pendingCount == 0)
    }

    @Test func cancellationGivesNilPromptly() async {
        self.waiter.expect("d")
        let waiter = self.waiter
        let task = Task { await waiter.wait(for: "d", timeout: .seconds(60)) }
        try? await Task.sleep(for: .milliseconds(100))
        let start = ContinuousClock.now
        task.cancel()
        let got = await task.value
        #expect(got == nil)
        #expect(ContinuousClock.now - start < .seconds(20), "cancellation, not the 60 s timeout, ended the wait")
        #expect(self.waiter.pendingCount == 0)
    }

    @Test func forgetLeavesNothingBehind() async {
        self.waiter.expect("e")
        _ = self.waiter.deliver(verdict(), correlationID: "e")
        self.waiter.forget("e")
        #expect(self.waiter.pendingCount == 0)
        self.waiter.expect("f")
        self.waiter.forget("f")
        #expect(await self.waiter.wait(for: "f", timeout: .seconds(5)) == nil)
        #expect(self.waiter.pendingCount == 0)
    }

    @Test func waitWithoutExpectReturnsNil() async {
        #expect(await self.waiter.wait(for: "never", timeout: .seconds(5)) == nil)
    }

    @Test func replyUsesCorrelationIDOrTaskIDAndAcceptsJunk() async throws {
        let v = verdict()
        self.waiter.expect(v.taskID.uuidString)
        try await self.waiter.handleReply(reply(MessageCodec.encode(v), correlationID: nil))
        #expect(await self.waiter.wait(for: v.taskID.uuidString, timeout: .seconds(30)) == v)
        try await self.waiter.handleReply(reply(Array("junk".utf8), correlationID: "x"))
        #expect(self.waiter.pendingCount == 0)
    }

    /// Every waiter resumes exactly once (a double resume of a CheckedContinuation traps) and gets its verdict whenever
    /// `deliver` reported a hand-over, under racing deliveries, timeouts and cancellations.
    @Test func stressExactlyOnce() async {
        let waiter = self.waiter
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<3000 {
                group.addTask {
                    let id = "s\(i)"
                    let v = verdict()
                    waiter.expect(id)
                    let mode = i % 4
                    let deliverer = Task {
                        try? await Task.sleep(for: .microseconds(Int.random(in: 0...40_000)))
                        return waiter.deliver(v, correlationID: id)
                    }
                    let waiting = Task { await waiter.wait(for: id, timeout: .milliseconds(20)) }
                    if mode == 3 {
                        try? await Task.sleep(for: .microseconds(Int.random(in: 0...20_000)))
                        waiting.cancel()
                    }
                    let got = await waiting.value
                    let handedOver = await deliverer.value
                    if handedOver {
                        #expect(got == v)
                    }
                    if let got {
                        #expect(got == v)
                    }
                    waiter.forget(id)  // as the gateway would never do after wait, but must be harmless
                }
            }
        }
        #expect(waiter.pendingCount == 0)
    }
}

/// What a waiter's `onLateRejection` was handed; fails the first `failures` calls.
final class LateRejectionLog: Sendable {
    private let state: Mutex<(calls: [(UUID, AdmissionVerdict)], failures: Int)>

    init(failures: Int = 0) {
        self.state = Mutex(([], failures))
    }

    var calls: [(UUID, AdmissionVerdict)] { self.state.withLock { $0.calls } }

    func handle(_ command: SubmitTaskCommand, _ verdict: AdmissionVerdict) throws {
        try self.state.withLock { state in
            if state.failures > 0 {
                state.failures -= 1
                throw CancellationError()
            }
            state.calls.append((command.taskID, verdict))
        }
    }
}

@Suite("VerdictWaiterLate") struct VerdictWaiterLateTests {
    func command() -> SubmitTaskCommand {
        SubmitTaskCommand(
            taskID: UUID(), userID: UUID(), prompt: "p", inputImageURL: "https://example.com/a.png", inputJSON: nil, idempotencyKey: nil,
            submittedAt: Date(), replyBy: Date())
    }

    func rejection(_ command: SubmitTaskCommand, persisted: Bool?) -> AdmissionVerdict {
        AdmissionVerdict(
            taskID: command.taskID, outcome: .rejected, httpStatus: 429, message: "too many", reason: "user_limit", persisted: persisted)
    }

    /// Answers 202 "submitted" for `command`: expect with the submission, then let the wait time out.
    func timeOut(_ waiter: VerdictWaiter, _ command: SubmitTaskCommand) async {
        waiter.expect(command.taskID.uuidString, submission: command)
        #expect(await waiter.wait(for: command.taskID.uuidString, timeout: .milliseconds(20)) == nil)
    }

    /// Invariant: a rejection that arrives after its request answered 202 "submitted" and that the scheduler only
    /// counted (`persisted == false`) is handed over with its submission exactly once, so it can be stored and read.
    @Test func lateCountedRejectionIsHandedOverOnce() async throws {
        let log = LateRejectionLog()
        let waiter = VerdictWaiter(logger: Logger(label: "test")) { try log.handle($0, $1) }
        let command = self.command()
        await self.timeOut(waiter, command)
        #expect(waiter.lateCount == 1)
        let verdict = self.rejection(command, persisted: false)
        try await waiter.handleReply(reply(MessageCodec.encode(verdict), correlationID: command.taskID.uuidString))
        #expect(log.calls.map(\.0) == [command.taskID])
        #expect(log.calls.first?.1 == verdict)
        #expect(waiter.lateCount == 0)
        // A redelivered copy finds nothing left to do.
        try await waiter.handleReply(reply(MessageCodec.encode(verdict), correlationID: command.taskID.uuidString))
        #expect(log.calls.count == 1)
    }

    /// Nothing to store: the scheduler stored the rejection (or is older and stores every one), the task was admitted,
    /// or the verdict came in time (the client got it in the response).
    @Test func storedAdmittedOrTimelyVerdictsAreNotHandedOver() async throws {
        let log = LateRejectionLog()
        let waiter = VerdictWaiter(logger: Logger(label: "test")) { try log.handle($0, $1) }
        for verdict in [
            { self.rejection($0, persisted: true) }, { self.rejection($0, persisted: nil) },
            { AdmissionVerdict(taskID: $0.taskID, outcome: .admitted, httpStatus: 202, message: nil, persisted: true) },
        ] as [(SubmitTaskCommand) -> AdmissionVerdict] {
            let command = self.command()
            await self.timeOut(waiter, command)
            try await waiter.handleReply(reply(MessageCodec.encode(verdict(command)), correlationID: command.taskID.uuidString))
        }
        let timely = self.command()
        waiter.expect(timely.taskID.uuidString, submission: timely)
        #expect(waiter.deliver(self.rejection(timely, persisted: false), correlationID: timely.taskID.uuidString) == false)
        #expect(await waiter.wait(for: timely.taskID.uuidString, timeout: .seconds(30))?.outcome == .rejected)
        try await waiter.handleReply(
            reply(MessageCodec.encode(self.rejection(timely, persisted: false)), correlationID: timely.taskID.uuidString))
        #expect(log.calls.isEmpty)
        #expect(waiter.lateCount == 0)
        #expect(waiter.pendingCount == 0)
    }

    /// A late rejection that cannot be stored yet (the database is down) throws, so the reply comes back, and is kept
    /// for that retry.
    @Test func aFailedStoreIsTriedAgain() async throws {
        let log = LateRejectionLog(failures: 1)
        let waiter = VerdictWaiter(logger: Logger(label: "test")) { try log.handle($0, $1) }
        let command = self.command()
        await self.timeOut(waiter, command)
        let delivery = reply(MessageCodec.encode(self.rejection(command, persisted: false)), correlationID: command.taskID.uuidString)
        await #expect(throws: CancellationError.self) { try await waiter.handleReply(delivery) }
        #expect(waiter.lateCount == 1)
        try await waiter.handleReply(delivery)
        #expect(log.calls.map(\.0) == [command.taskID])
    }

    /// The kept submissions are bounded: the oldest go first beyond `lateCapacity`, or beyond `lateByteBudget`.
    @Test func keptSubmissionsAreBounded() async {
        let waiter = VerdictWaiter(logger: Logger(label: "test"), lateCapacity: 3) { _, _ in }
        for _ in 0..<5 {
            await self.timeOut(waiter, self.command())
        }
        #expect(waiter.lateCount == 3)
        let small = VerdictWaiter(logger: Logger(label: "test"), lateByteBudget: 10_000) { _, _ in }
        for _ in 0..<5 {
            var command = self.command()
            command.inputJSON = "{\"seed\": \"" + String(repeating: "x", count: 4000) + "\"}"
            await self.timeOut(small, command)
        }
        #expect(small.lateCount == 2, "about 4 KB each within 10 KB")
    }
}
