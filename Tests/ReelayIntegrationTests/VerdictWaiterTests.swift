import Foundation
import Logging
import ReelayAMQP
import ReelayMessaging
import ReelayService
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

    @Test func replyUsesCorrelationIDOrTaskIDAndAcceptsJunk() async {
        let v = verdict()
        self.waiter.expect(v.taskID.uuidString)
        self.waiter.handleReply(reply(MessageCodec.encode(v), correlationID: nil))
        #expect(await self.waiter.wait(for: v.taskID.uuidString, timeout: .seconds(30)) == v)
        self.waiter.handleReply(reply(Array("junk".utf8), correlationID: "x"))
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

func reply(_ body: [UInt8], correlationID: String?) -> AMQPDelivery {
    AMQPDelivery(
        body: body, exchange: "", routingKey: "reelay.replies.test", queue: "reelay.replies.test", redelivered: false,
        properties: AMQPProperties(correlationID: correlationID), deliveryTag: 1, generation: 1)
}
