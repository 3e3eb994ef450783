import Foundation
import Synchronization
import Testing

@testable import ReelayAMQP

extension AMQPIntegrationTests {
    /// Restarts the broker's app (`rabbitmqctl stop_app` / `start_app`), so it runs inside the serialized parent suite and
    /// tolerates a slow broker. Disabled with REELAY_SKIP_BROKER_RESTART=1.
    @Suite(
        .serialized, .disabled(if: ProcessInfo.processInfo.environment["REELAY_SKIP_BROKER_RESTART"] == "1", "broker restart disabled"))
    struct AMQPBrokerRestartTests {
        /// Invariants: publisher and consumer reconnect by themselves; nothing confirmed is lost; publishes in flight when the
        /// connection dies are republished and confirmed; an unacked delivery comes back redelivered; a publish pending
        /// during the outage is confirmed and delivered after it; a stale ack is dropped.
        @Test(.timeLimit(.minutes(3)))
        func publisherAndConsumerSurviveABrokerRestart() async throws {
            try await AMQPTestSupport.withContext { context in
                let exchange = context.exchange("ex")
                let queue = context.queue("q")
                let topology = AMQPTopology(
                    exchanges: [AMQPExchange(name: exchange, type: .direct)], queues: [.quorum(queue)],
                    bindings: [AMQPBinding(queue: queue, exchange: exchange, routingKey: "rk")])
                let publisher = try context.publisher(topology)
                let consumer = try context.consumer(topology, queues: [queue])
                let collector = await AMQPDeliveryCollector.start(consumer) { $0.amqpTestText.hasPrefix("stream-") }

                // Before: one delivery left unacked, one acked.
                try await publisher.publish(exchange: exchange, routingKey: "rk", body: Array("unacked".utf8))
                let unacked = try #require(await collector.waitFor { $0.amqpTestText == "unacked" })
                try await publisher.publish(exchange: exchange, routingKey: "rk", body: Array("acked".utf8))
                let acked = try #require(await collector.waitFor { $0.amqpTestText == "acked" })
                consumer.ack(acked)
                try await Task.sleep(for: .seconds(1))
                #expect(publisher.isConnected && consumer.isConnected)

                // A steady stream of concurrent publishes, so some are sent but unconfirmed when the broker goes away.
                let streamed = Mutex<Set<String>>([])
                let streaming = Mutex(true)
                let stream = Task {
                    var batch = 0
                    while streaming.withLock({ $0 }) {
                        try await withThrowingTaskGroup(of: String.self) { group in
                            for index in 0..<10 {
                                let text = "stream-\(batch)-\(index)"
                                group.addTask {
                                    try await publisher.publish(exchange: exchange, routingKey: "rk", body: Array(text.utf8), timeout: .seconds(90))
                                    return text
                                }
                            }
                            for try await text in group {
                                streamed.withLock { _ = $0.insert(text) }
                            }
                        }
                        batch += 1
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }

                let pendingDone = Mutex(false)
                do {
                    #expect(try await AMQPTestSupport.rabbitmqctl("stop_app") == 0)
                    let down = await AMQPTestSupport.eventually(timeout: .seconds(30)) {
                        !publisher.isConnected && !consumer.isConnected
                    }
                    #expect(down, "both clients notice the broker going away")

                    // Published while the broker is down: must wait, then be confirmed after the restart.
                    let pending = Task {
                        try await publisher.publish(exchange: exchange, routingKey: "rk", body: Array("during".utf8), timeout: .seconds(120))
                        pendingDone.withLock { $0 = true }
                    }
                    try await Task.sleep(for: .seconds(1))
                    #expect(!pendingDone.withLock { $0 }, "nothing can confirm while the broker is down")

                    #expect(try await AMQPTestSupport.rabbitmqctl("start_app") == 0)
                    try await pending.value
                } catch {
                    _ = try? await AMQPTestSupport.rabbitmqctl("start_app")
                    streaming.withLock { $0 = false }
                    throw error
                }
                streaming.withLock { $0 = false }
                try await stream.value
                let confirmed = streamed.withLock { $0 }
                #expect(confirmed.count >= 10, "the stream published across the restart")
                #expect(pendingDone.withLock { $0 })
                try await publisher.publish(exchange: exchange, routingKey: "rk", body: Array("after".utf8), timeout: .seconds(60))

                let up = await AMQPTestSupport.eventually(timeout: .seconds(60)) { publisher.isConnected && consumer.isConnected }
                #expect(up, "both clients reconnect by themselves")

                let redelivered = try #require(
                    await collector.waitFor(timeout: .seconds(60)) { $0.amqpTestText == "unacked" && $0.generation > unacked.generation })
                #expect(redelivered.redelivered)
                let during = try #require(await collector.waitFor(timeout: .seconds(30)) { $0.amqpTestText == "during" })
                let after = try #require(await collector.waitFor(timeout: .seconds(30)) { $0.amqpTestText == "after" })

                let allStreamed = await AMQPTestSupport.eventually(timeout: .seconds(30)) {
                    confirmed.isSubset(of: Set(await collector.deliveries.map(\.amqpTestText)))
                }
                #expect(allStreamed, "every confirmed message is delivered")

                // The old delivery's ack is stale (its channel died) and must be dropped, not sent on the new channel.
                consumer.ack(unacked)
                for delivery in [redelivered, during, after] {
                    consumer.ack(delivery)
                }
                try await Task.sleep(for: .seconds(1))
                let texts = await collector.deliveries.map(\.amqpTestText)
                #expect(texts.filter { $0 == "acked" }.count == 1, "an acked message does not come back")
                #expect(texts.filter { $0 == "during" }.count == 1)
                #expect(texts.filter { $0 == "after" }.count == 1)
                #expect(consumer.isConnected, "acks on the new channel (and the dropped stale one) keep it open")
                #expect(try await AMQPTestSupport.eventually { try await AMQPTestSupport.messageCount(queue) == 0 })
            }
        }
    }
}
