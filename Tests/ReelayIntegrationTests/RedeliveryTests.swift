import Foundation
import Logging
import ReelayAMQP
import ReelayMessaging
import ReelayService
import ReelayTestSupport
import ServiceLifecycle
import Testing

/// Guards: a message whose handler fails is retried through the delay queues (not hot-looped, not lost), and a message
/// that can never be handled ends in the dead-letter queue with where it came from and why.
@Suite("Redelivery", .serialized)
struct RedeliveryTests {
    @Test func failingHandlerIsRetriedAfterADelayAndPoisonIsDeadLettered() async throws {
        let vhost = try await ScratchVhost.create("reelay-it-redelivery")
        defer { vhost.drop() }
        let url = try AMQPURL(vhost.url)
        let logger = Logger(label: "it.redelivery")
        let publisher = AMQPPublisher(url: url, topology: Topology.all, name: "it.publish", logger: logger)
        publisher.start()
        let consumer = AMQPConsumer(
            url: url, topology: Topology.all, queues: [Topology.Queue.dispatch], prefetch: 4, name: "it.consume", logger: logger)
        let seen = Locked<[(Date, String?, String)]>([])
        let service = ConsumerService(
            consumer: consumer, concurrency: 2, logger: logger, redelivery: Redelivery(publisher: publisher, maxRetries: 3)
        ) { delivery in
            let text = String(decoding: delivery.body, as: UTF8.self)
            let count = seen.withLock { list -> Int in
                list.append((Date(), delivery.properties.headers[Topology.retriesHeader], text))
                return list.filter { $0.2 == text }.count
            }
            if text == "poison" { throw PoisonMessage("cannot parse") }
            if text == "flaky" && count < 3 { throw HarnessError("transient #\(count)") }
        }
        let group = ServiceGroup(services: [service], logger: logger)
        let running = Task { try await group.run() }
        try await publisher.publish(exchange: Topology.commandsExchange, routingKey: Topology.RoutingKey.predictionCreate, body: Array("flaky".utf8))
        try await publisher.publish(exchange: Topology.commandsExchange, routingKey: Topology.RoutingKey.predictionCreate, body: Array("poison".utf8))

        _ = await waitUntil(timeout: .seconds(30), every: .milliseconds(100)) { seen.withLock { $0.filter { $0.2 == "flaky" }.count } >= 3 }
        let flaky = seen.withLock { $0.filter { $0.2 == "flaky" } }
        #expect(flaky.map(\.1) == [nil, "1", "2"], "retries are counted in a header")
        if flaky.count == 3 {
            #expect(flaky[1].0.timeIntervalSince(flaky[0].0) >= 0.9, "first retry waits about 1 s")
            #expect(flaky[2].0.timeIntervalSince(flaky[1].0) >= 4.5, "second retry waits about 5 s")
        }
        #expect(seen.withLock { $0.filter { $0.2 == "poison" }.count } == 1, "poison is never retried")

        // The poison message waits in the dead-letter queue with its origin and reason.
        let dead = AMQPConsumer(url: url, topology: Topology.all, queues: [Topology.Queue.dead], prefetch: 10, name: "it.dead", logger: logger)
        dead.start()
        var iterator = dead.deliveries.makeAsyncIterator()
        let letter = try #require(await iterator.next())
        #expect(String(decoding: letter.body, as: UTF8.self) == "poison")
        #expect(letter.properties.headers[Topology.deadQueueHeader] == Topology.Queue.dispatch)
        #expect(letter.properties.headers[Topology.deadReasonHeader]?.contains("cannot parse") == true)
        dead.ack(letter)
        await dead.shutdown()
        await group.triggerGracefulShutdown()
        _ = try? await running.value
        await publisher.shutdown()
    }

    /// Guards: graceful shutdown of a consumer stops its intake, lets a handler that finishes within the drain limit ack
    /// its message, cancels a handler that hangs past it, and loses nothing: the hung message and the prefetched ones that
    /// never started go back to the queue, and the finished one does not come back.
    @Test func shutdownDrainsThenAbandonsAndLosesNothing() async throws {
        let vhost = try await ScratchVhost.create("reelay-it-drain")
        defer { vhost.drop() }
        let url = try AMQPURL(vhost.url)
        let logger = Logger(label: "it.drain")
        let publisher = AMQPPublisher(url: url, topology: Topology.all, name: "it.drain.publish", logger: logger)
        publisher.start()
        for text in ["quick", "hang", "later-1", "later-2"] {
            try await publisher.publish(exchange: Topology.commandsExchange, routingKey: Topology.RoutingKey.predictionCreate, body: Array(text.utf8))
        }

        let started = Locked<[String]>([])
        let outcome = Locked<[String: String]>([:])
        let releaseQuick = Locked(false)
        let consumer = AMQPConsumer(
            url: url, topology: Topology.all, queues: [Topology.Queue.dispatch], prefetch: 10, name: "it.drain.consume", logger: logger)
        let service = ConsumerService(
            consumer: consumer, concurrency: 2, drainLimit: .milliseconds(500), logger: logger, redelivery: Redelivery(publisher: publisher)
        ) { delivery in
            let text = String(decoding: delivery.body, as: UTF8.self)
            started.withLock { $0.append(text) }
            do {
                if text == "quick" {
                    while !releaseQuick.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
                } else if text == "hang" {
                    try await Task.sleep(for: .seconds(3600))
                }
                outcome.withLock { $0[text] = "finished" }
            } catch {
                outcome.withLock { $0[text] = "cancelled" }
                throw error
            }
        }
        let group = ServiceGroup(services: [service], logger: logger)
        let running = Task { try await group.run() }
        let bothStarted = await AMQPTestSupport.eventually(timeout: .seconds(30)) { started.withLock { Set($0) == ["quick", "hang"] } }
        #expect(bothStarted, "concurrency 2: the first two start, the rest wait prefetched: \(started.withLock { $0 })")

        await group.triggerGracefulShutdown()
        try await Task.sleep(for: .milliseconds(50))
        releaseQuick.withLock { $0 = true }
        try await running.value

        #expect(outcome.withLock { $0 } == ["quick": "finished", "hang": "cancelled"])
        #expect(started.withLock { $0 }.sorted() == ["hang", "quick"], "nothing new starts once shutdown begins")

        // What did not finish is back in the queue, redelivered where it had been delivered; what finished is gone.
        let again = AMQPConsumer(
            url: url, topology: Topology.all, queues: [Topology.Queue.dispatch], prefetch: 10, name: "it.drain.again", logger: logger)
        again.start()
        let back = Locked<[String: Bool]>([:])
        let reading = Task {
            for await delivery in again.deliveries {
                back.withLock { $0[String(decoding: delivery.body, as: UTF8.self), default: false] = delivery.redelivered }
                again.ack(delivery)
            }
        }
        _ = await AMQPTestSupport.eventually(timeout: .seconds(30)) { back.withLock { $0.count >= 3 } }
        // A moment more, in case the finished message were to come back too.
        try await Task.sleep(for: .seconds(1))
        #expect(back.withLock { $0 } == ["hang": true, "later-1": true, "later-2": true], "the finished message does not come back")
        await again.shutdown()
        await reading.value
        await publisher.shutdown()
    }
}
