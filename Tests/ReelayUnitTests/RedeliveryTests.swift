import ReelayMessaging
import ReelayService
import Testing

/// Guards the redelivery ladder, the pure part of redelivery: a failing message waits longer at each level (the last
/// level repeats), and once its retries are spent it goes to the dead-letter queue. (The delay queues and the
/// dead-letter queue against the real broker: ReelayIntegrationTests' RedeliveryTests.)
@Suite("Redelivery")
struct RedeliveryTests {
    @Test func ladderGrowsThenDeadLetters() {
        #expect(Redelivery.next(retries: 0, maxRetries: 3) == .delay(level: 0))
        #expect(Redelivery.next(retries: 1, maxRetries: 3) == .delay(level: 1))
        #expect(Redelivery.next(retries: 2, maxRetries: 9) == .delay(level: 2))
        #expect(Redelivery.next(retries: 7, maxRetries: 9) == .delay(level: 2), "the last level repeats")
        #expect(Redelivery.next(retries: 3, maxRetries: 3) == .deadLetter)
        #expect(Topology.delayQueue(for: Topology.Queue.dispatch, level: 1) == "reelay.dispatch.delay.5s")
    }
}
