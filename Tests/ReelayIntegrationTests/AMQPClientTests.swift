import Foundation
import Synchronization
import Testing

@testable import ReelayAMQP

/// Every AMQP test that talks to the broker lives under this serialized suite, so the broker-restart test never runs
/// while another AMQP test counts deliveries. Set REELAY_SKIP_BROKER_RESTART=1 to skip the restart (it disturbs any
/// other suite using the same broker at that moment).
@Suite(.serialized) struct AMQPIntegrationTests {}

extension AMQPIntegrationTests {
    @Suite struct AMQPClientTests {
        /// A direct exchange and a quorum queue bound to it with routing key "rk".
        private func simpleTopology(_ context: AMQPTestContext) -> (AMQPTopology, exchange: String, queue: String) {
            let exchange = context.exchange("ex")
            let queue = context.queue("q")
            let topology = AMQPTopology(
                exchanges: [AMQPExchange(name: exchange, type: .direct)], queues: [.quorum(queue)],
                bindings: [AMQPBinding(queue: queue, exchange: exchange, routingKey: "rk")])
            return (topology, exchange, queue)
        }

        @Test func confirmedPublishArrivesWithTheSameBytesAndProperties() async throws {
            try await AMQPTestSupport.withContext { context in
                let (topology, exchange, queue) = self.simpleTopology(context)
                let publisher = try context.publisher(topology)
                let consumer = try context.consumer(topology, queues: [queue])
                let collector = await AMQPDeliveryCollector.start(consumer)

                let body = Array("{\"prompt\":\"a cat, in 4k – ünïcode\"}".utf8) + [0, 255, 10]
                let properties = AMQPProperties(
                    contentType: "application/json", correlationID: "corr-42", replyTo: "reply.gateway-1", messageID: "msg-1",
                    persistent: true, headers: ["x-reelay-schema": "1", "trace-id": "abc-def"], expiration: "600000")
                try await publisher.publish(exchange: exchange, routingKey: "rk", body: body, properties: properties)
                #expect(publisher.isConnected)

                let delivery = try #require(await collector.waitFor(count: 1).first)
                #expect(delivery.body == body)
                #expect(delivery.exchange == exchange)
                #expect(delivery.routingKey == "rk")
                #expect(delivery.queue == queue)
                #expect(!delivery.redelivered)
                #expect(delivery.generation == 1)
                #expect(delivery.properties.contentType == "application/json")
                #expect(delivery.properties.correlationID == "corr-42")
                #expect(delivery.properties.replyTo == "reply.gateway-1")
                #expect(delivery.properties.messageID == "msg-1")
                #expect(delivery.properties.persistent)
                #expect(delivery.properties.expiration == "600000")
                #expect(delivery.properties.headers["x-reelay-schema"] == "1")
                #expect(delivery.properties.headers["trace-id"] == "abc-def")
                #expect(consumer.isConnected)
                consumer.ack(delivery)

                // Defaults: no content type set explicitly still means JSON; transient stays transient.
                try await publisher.publish(
                    exchange: exchange, routingKey: "rk", body: [], properties: AMQPProperties(contentType: nil, persistent: false))
                let second = try #require(await collector.waitFor(count: 2).dropFirst().first)
                #expect(second.body.isEmpty)
                #expect(second.properties.contentType == nil)
                #expect(!second.properties.persistent)
                #expect(second.properties.headers.isEmpty)
                consumer.ack(second)
                #expect(try await AMQPTestSupport.eventually { try await AMQPTestSupport.messageCount(queue) == 0 })
            }
        }

        /// Invariant: a consumer never holds more unacked deliveries than its prefetch.
        @Test func prefetchLimitsUnackedDeliveries() async throws {
            try await AMQPTestSupport.withContext { context in
                let (topology, exchange, queue) = self.simpleTopology(context)
                let publisher = try context.publisher(topology)
                for index in 0..<5 {
                    try await publisher.publish(exchange: exchange, routingKey: "rk", body: Array("m\(index)".utf8))
                }
                let consumer = try context.consumer(topology, queues: [queue], prefetch: 2)
                let collector = await AMQPDeliveryCollector.start(consumer)

                let first = await collector.waitFor(count: 2)
                #expect(first.count == 2)
                try await Task.sleep(for: .seconds(1))
                #expect(await collector.count == 2, "prefetch 2 without acks must stop the flow at 2")

                consumer.ack(first[0])
                let afterAck = await collector.waitFor(count: 3)
                #expect(afterAck.count == 3)
                try await Task.sleep(for: .milliseconds(500))
                #expect(await collector.count == 3, "one ack frees exactly one slot")
                #expect(afterAck.map(\.amqpTestText) == ["m0", "m1", "m2"])
            }
        }

        /// Invariant: a delivery that was never acked is not lost when its consumer goes away.
        @Test func unackedDeliveryIsRedeliveredToTheNextConsumer() async throws {
            try await AMQPTestSupport.withContext { context in
                let (topology, exchange, queue) = self.simpleTopology(context)
                let publisher = try context.publisher(topology)
                try await publisher.publish(exchange: exchange, routingKey: "rk", body: Array("only-once-acked".utf8))

                let first = try context.consumer(topology, queues: [queue], name: "first")
                let firstCollector = await AMQPDeliveryCollector.start(first)
                let original = try #require(await firstCollector.waitFor(count: 1).first)
                #expect(!original.redelivered)
                await first.shutdown()

                let second = try context.consumer(topology, queues: [queue], name: "second")
                let secondCollector = await AMQPDeliveryCollector.start(second)
                let again = try #require(await secondCollector.waitFor(count: 1).first)
                #expect(again.amqpTestText == "only-once-acked")
                #expect(again.redelivered)
                second.ack(again)
                #expect(try await AMQPTestSupport.eventually { try await AMQPTestSupport.messageCount(queue) == 0 })
            }
        }

        /// Invariant: a rejected (not requeued) message reaches the dead-letter queue instead of vanishing.
        @Test func rejectWithoutRequeueDeadLetters() async throws {
            try await AMQPTestSupport.withContext { context in
                let exchange = context.exchange("ex")
                let deadExchange = context.exchange("dead")
                let queue = context.queue("work")
                let deadQueue = context.queue("dlq")
                let topology = AMQPTopology(
                    exchanges: [AMQPExchange(name: exchange, type: .direct), AMQPExchange(name: deadExchange, type: .fanout)],
                    queues: [
                        .quorum(queue, arguments: ["x-dead-letter-exchange": .string(deadExchange), "x-delivery-limit": .int(5)]),
                        .quorum(deadQueue),
                    ],
                    bindings: [
                        AMQPBinding(queue: queue, exchange: exchange, routingKey: "rk"),
                        AMQPBinding(queue: deadQueue, exchange: deadExchange, routingKey: ""),
                    ])
                let publisher = try context.publisher(topology)
                let worker = try context.consumer(topology, queues: [queue], name: "worker")
                let dead = try context.consumer(topology, queues: [deadQueue], name: "dead")
                let workerCollector = await AMQPDeliveryCollector.start(worker)
                let deadCollector = await AMQPDeliveryCollector.start(dead)

                try await publisher.publish(
                    exchange: exchange, routingKey: "rk", body: Array("poison".utf8), properties: AMQPProperties(correlationID: "c-9"))
                let delivery = try #require(await workerCollector.waitFor(count: 1).first)
                worker.reject(delivery, requeue: false)

                let deadLettered = try #require(await deadCollector.waitFor(count: 1).first)
                #expect(deadLettered.amqpTestText == "poison")
                #expect(deadLettered.queue == deadQueue)
                #expect(deadLettered.exchange == deadExchange)
                #expect(deadLettered.properties.correlationID == "c-9")
                #expect(deadLettered.properties.headers["x-first-death-reason"] == "rejected")
                #expect(deadLettered.properties.headers["x-first-death-queue"] == queue)
                dead.ack(deadLettered)
                try await Task.sleep(for: .milliseconds(300))
                #expect(await workerCollector.count == 1, "a rejected message must not come back to the worker")
            }
        }

        /// Invariant: idle connections are kept alive. rabbitmq-c answers heartbeats only inside library calls, and the
        /// broker drops a peer that stays silent for about two intervals; here the interval is 1 s and the clients idle 5 s.
        @Test func idleConnectionsOutliveSeveralHeartbeatIntervals() async throws {
            try await AMQPTestSupport.withContext { context in
                let (topology, exchange, queue) = self.simpleTopology(context)
                let publisher = try context.publisher(topology, heartbeat: .seconds(1))
                let consumer = try context.consumer(topology, queues: [queue], heartbeat: .seconds(1))
                let collector = await AMQPDeliveryCollector.start(consumer)
                #expect(await AMQPTestSupport.eventually { publisher.isConnected && consumer.isConnected })

                var stayedUp = true
                for _ in 0..<100 {
                    stayedUp = stayedUp && publisher.isConnected && consumer.isConnected
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(stayedUp)
                #expect(publisher.connectionCount == 1, "the publisher never had to reconnect")
                try await publisher.publish(exchange: exchange, routingKey: "rk", body: Array("still here".utf8))
                let delivery = try #require(await collector.waitFor(count: 1).first)
                #expect(delivery.generation == 1, "the consumer never had to reconnect")
                consumer.ack(delivery)
            }
        }

        /// Invariant: every confirmed message is consumed, and with acks exactly once.
        @Test func fiveHundredConfirmedPublishesAreConsumedExactlyOnce() async throws {
            try await AMQPTestSupport.withContext { context in
                let (topology, exchange, queue) = self.simpleTopology(context)
                let publisher = try context.publisher(topology)
                let consumer = try context.consumer(topology, queues: [queue], prefetch: 50)
                let total = 500
                let acked = Mutex<[String: Int]>([:])
                let consuming = Task {
                    for await delivery in consumer.deliveries {
                        consumer.ack(delivery)
                        let count = acked.withLock { seen in
                            seen[delivery.amqpTestText, default: 0] += 1
                            return seen.values.reduce(0, +)
                        }
                        if count >= total {
                            break
                        }
                    }
                }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<total {
                        group.addTask {
                            try await publisher.publish(exchange: exchange, routingKey: "rk", body: Array("n-\(index)".utf8))
                        }
                    }
                    try await group.waitForAll()
                }
                let allSeen = await AMQPTestSupport.eventually(timeout: .seconds(30)) {
                    acked.withLock { $0.values.reduce(0, +) } >= total
                }
                #expect(allSeen)
                consuming.cancel()
                try await Task.sleep(for: .milliseconds(500))
                let seen = acked.withLock { $0 }
                #expect(seen.count == total)
                #expect(seen.values.allSatisfy { $0 == 1 }, "no duplicates")
                #expect(Set(seen.keys) == Set((0..<total).map { "n-\($0)" }))
                #expect(try await AMQPTestSupport.eventually { try await AMQPTestSupport.messageCount(queue) == 0 })
            }
        }

        /// basic.nack from the broker surfaces as `.nacked`. A full classic queue with reject-publish nacks at once
        /// (a quorum queue applies its length limit asynchronously, so it may accept one more).
        @Test func brokerNackThrowsNacked() async throws {
            try await AMQPTestSupport.withContext { context in
                let queue = context.queue("full")
                let full = AMQPQueue(name: queue, durable: true, arguments: ["x-max-length": .int(1), "x-overflow": .string("reject-publish")])
                let topology = AMQPTopology(queues: [full])
                let publisher = try context.publisher(topology)
                try await publisher.publish(exchange: "", routingKey: queue, body: Array("fits".utf8))
                let error = await #expect(throws: AMQPError.self) {
                    try await publisher.publish(exchange: "", routingKey: queue, body: Array("overflows".utf8))
                }
                #expect(error?.code == .nacked)
                // The channel survives a nack.
                #expect(publisher.isConnected)
                #expect(try await AMQPTestSupport.messageCount(queue) == 1)
            }
        }

        /// A publish the broker answers with channel.close every time is failed, not retried forever; the publisher recovers.
        @Test func publishToAMissingExchangeFailsWithChannelClosed() async throws {
            try await AMQPTestSupport.withContext { context in
                let queue = context.queue("q")
                let publisher = try context.publisher(AMQPTopology(queues: [.quorum(queue)]))
                let missing = AMQPTestSupport.unique("missing")
                let error = await #expect(throws: AMQPError.self) {
                    try await publisher.publish(exchange: missing, routingKey: "rk", body: [1], timeout: .seconds(20))
                }
                #expect(error?.code == .channelClosed)
                #expect(error?.description.contains("404") == true)
                try await publisher.publish(exchange: "", routingKey: queue, body: [2])
                #expect(try await AMQPTestSupport.messageCount(queue) == 1)
            }
        }

        @Test func publishTimesOutWhenTheBrokerIsUnreachable() async throws {
            try await AMQPTestSupport.withContext { context in
                // Port 1 on loopback refuses connections: the publisher keeps backing off.
                let publisher = try context.publisher(AMQPTopology(), url: AMQPURL(host: "127.0.0.1", port: 1), name: "unreachable")
                let started = ContinuousClock.now
                let error = await #expect(throws: AMQPError.self) {
                    try await publisher.publish(exchange: "", routingKey: "nowhere", body: [1], timeout: .milliseconds(400))
                }
                #expect(error?.code == .timeout)
                // Bounds in these tests tell "on time" from "never" with wide slack (a busy machine stretches time).
                #expect(ContinuousClock.now - started < .seconds(10))
                #expect(!publisher.isConnected)
            }
        }

        @Test func cancellingThePublishingTaskThrowsCancellationError() async throws {
            try await AMQPTestSupport.withContext { context in
                let publisher = try context.publisher(AMQPTopology(), url: AMQPURL(host: "127.0.0.1", port: 1), name: "unreachable")
                let task = Task {
                    try await publisher.publish(exchange: "", routingKey: "nowhere", body: [1], timeout: .seconds(120))
                }
                try await Task.sleep(for: .milliseconds(200))
                task.cancel()
                let started = ContinuousClock.now
                await #expect(throws: CancellationError.self) { try await task.value }
                #expect(ContinuousClock.now - started < .seconds(20), "cancellation, not the 120 s timeout, ended the publish")
            }
        }

        @Test func publishAfterShutdownThrowsShutdown() async throws {
            try await AMQPTestSupport.withContext { context in
                let queue = context.queue("q")
                let publisher = try context.publisher(AMQPTopology(queues: [.quorum(queue)]))
                try await publisher.publish(exchange: "", routingKey: queue, body: [1])
                await publisher.shutdown()
                #expect(!publisher.isConnected)
                let error = await #expect(throws: AMQPError.self) {
                    try await publisher.publish(exchange: "", routingKey: queue, body: [2])
                }
                #expect(error?.code == .shutdown)
                await publisher.shutdown()  // idempotent
            }
        }

        /// Request/reply: an exclusive reply queue in a shared topology is declared by the consumer only.
        @Test func exclusiveReplyQueueWorksWithASharedTopology() async throws {
            try await AMQPTestSupport.withContext { context in
                let replyQueue = context.queue("reply")
                let topology = AMQPTopology(queues: [.exclusive(replyQueue)])
                let consumer = try context.consumer(topology, queues: [replyQueue])
                let collector = await AMQPDeliveryCollector.start(consumer)
                #expect(await AMQPTestSupport.eventually { consumer.isConnected })
                let publisher = try context.publisher(topology)
                try await publisher.publish(
                    exchange: "", routingKey: replyQueue, body: Array("verdict".utf8), properties: AMQPProperties(correlationID: "r-1"),
                    timeout: .seconds(10))
                let reply = try #require(await collector.waitFor(count: 1).first)
                #expect(reply.properties.correlationID == "r-1")
                consumer.ack(reply)
            }
        }

        /// Invariant: an ack for a delivery of an earlier connection is dropped, never applied to the new channel's
        /// delivery that reuses the same tag. Deleting the queue makes the broker cancel the consumer, which reconnects.
        @Test func staleAckAfterReconnectIsDropped() async throws {
            try await AMQPTestSupport.withContext { context in
                let (topology, exchange, queue) = self.simpleTopology(context)
                let publisher = try context.publisher(topology)
                let consumer = try context.consumer(topology, queues: [queue])
                let collector = await AMQPDeliveryCollector.start(consumer)
                try await publisher.publish(exchange: exchange, routingKey: "rk", body: Array("old".utf8))
                let old = try #require(await collector.waitFor(count: 1).first)
                #expect(old.generation == 1)

                try await AMQPTestSupport.admin { try $0.deleteQueue(queue) }
                // The consumer reconnects and redeclares the queue (and its binding) from its topology.
                let reconnected = await AMQPTestSupport.eventually(timeout: .seconds(15)) {
                    guard consumer.isConnected else {
                        return false
                    }
                    return (try? await AMQPTestSupport.messageCount(queue)) != nil
                }
                #expect(reconnected)
                try await Task.sleep(for: .milliseconds(300))

                try await publisher.publish(exchange: exchange, routingKey: "rk", body: Array("new".utf8))
                let new = try #require(await collector.waitFor { $0.amqpTestText == "new" })
                #expect(new.generation > old.generation)
                #expect(new.deliveryTag == old.deliveryTag, "the test relies on the new channel reusing tag 1")

                consumer.ack(old)  // stale: must not ack "new"
                try await Task.sleep(for: .milliseconds(300))
                await consumer.shutdown()
                #expect(try await AMQPTestSupport.eventually { try await AMQPTestSupport.messageCount(queue) == 1 })
            }
        }
    }
}
