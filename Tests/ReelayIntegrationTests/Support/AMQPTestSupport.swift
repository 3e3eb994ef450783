import Foundation
import Logging
import ReelayTestSupport
import Synchronization
import Testing

@testable import ReelayAMQP

/// Broker settings and helpers for the AMQP integration tests (broker from `scripts/servers.sh up test`); the generic
/// parts (polling, rabbitmqctl, threads, teardown) are ReelayTestSupport's.
enum AMQPTestSupport {
    static var url: AMQPURL {
        get throws {
            try AMQPURL(TestServers.amqpURL)
        }
    }

    static func logger(_ label: String) -> Logger {
        var logger = Logger(label: "amqp-test.\(label)")
        logger.logLevel = .notice
        return logger
    }

    /// A name no other test (or test run) uses.
    static func unique(_ role: String) -> String {
        "amqp-test.\(role).\(UUID().uuidString.lowercased())"
    }

    /// Runs `body` on a fresh admin connection to `url` (default: the test broker's default vhost), on its own thread.
    static func admin<T: Sendable>(
        _ url: AMQPURL? = nil, _ body: @escaping @Sendable (AMQPConnection) throws -> T
    ) async throws -> T {
        let url = try url ?? self.url
        return try await onOwnThread {
            let connection = try AMQPConnection(url: url, name: "amqp-test-admin")
            defer { connection.close() }
            return try body(connection)
        }
    }

    /// Ready messages in `queue`.
    static func messageCount(_ queue: String) async throws -> UInt32 {
        try await self.admin { try $0.messageCount(queue: queue) }
    }

    /// Polls `condition` every 50 ms until it holds or `timeout` passes; returns whether it held (`waitUntil`).
    static func eventually(
        timeout: Duration = .seconds(10), isolation: isolated (any Actor)? = #isolation, _ condition: () async throws -> Bool
    ) async rethrows -> Bool {
        try await waitUntil(timeout: timeout, condition)
    }

    /// Runs `rabbitmqctl -n <node> <arguments>`; returns its exit status.
    @discardableResult
    static func rabbitmqctl(_ arguments: String...) async throws -> Int32 {
        try await Rabbitmqctl.status(arguments)
    }

    /// Creates clients and names for one test, and always shuts the clients down (first) and deletes what the test created.
    static func withContext<T: Sendable>(_ body: (AMQPTestContext) async throws -> T) async throws -> T {
        try await withTearDown(AMQPTestContext(), tearDown: { await $0.tearDown() }, body)
    }
}

/// What one test created; torn down by `AMQPTestSupport.withContext`.
final class AMQPTestContext: Sendable {
    private struct Registry {
        var publishers: [AMQPPublisher] = []
        var consumers: [AMQPConsumer] = []
        var queues: [String] = []
        var exchanges: [String] = []
    }

    private let registry = Mutex(Registry())

    /// A unique queue name, deleted at teardown.
    func queue(_ role: String) -> String {
        let name = AMQPTestSupport.unique(role)
        self.registry.withLock { $0.queues.append(name) }
        return name
    }

    /// A unique exchange name, deleted at teardown.
    func exchange(_ role: String) -> String {
        let name = AMQPTestSupport.unique(role)
        self.registry.withLock { $0.exchanges.append(name) }
        return name
    }

    /// A started publisher, shut down at teardown.
    func publisher(
        _ topology: AMQPTopology, url: AMQPURL? = nil, name: String = "publisher", heartbeat: Duration = .seconds(30)
    ) throws -> AMQPPublisher {
        let publisher = AMQPPublisher(
            url: try url ?? AMQPTestSupport.url, topology: topology, name: "amqp-test-\(name)", logger: AMQPTestSupport.logger(name),
            heartbeat: heartbeat)
        publisher.start()
        self.registry.withLock { $0.publishers.append(publisher) }
        return publisher
    }

    /// A started consumer, shut down at teardown.
    func consumer(
        _ topology: AMQPTopology, queues: [String], prefetch: UInt16 = 10, name: String = "consumer", heartbeat: Duration = .seconds(30)
    ) throws -> AMQPConsumer {
        let consumer = AMQPConsumer(
            url: try AMQPTestSupport.url, topology: topology, queues: queues, prefetch: prefetch, name: "amqp-test-\(name)",
            logger: AMQPTestSupport.logger(name), heartbeat: heartbeat)
        consumer.start()
        self.registry.withLock { $0.consumers.append(consumer) }
        return consumer
    }

    func tearDown() async {
        let registry = self.registry.withLock { registry in
            defer { registry = Registry() }
            return registry
        }
        // Clients first: a live consumer would redeclare a deleted queue on its reconnect.
        for publisher in registry.publishers {
            await publisher.shutdown()
        }
        for consumer in registry.consumers {
            await consumer.shutdown()
        }
        let queues = registry.queues
        let exchanges = registry.exchanges
        _ = try? await AMQPTestSupport.admin { connection in
            for queue in queues {
                try? connection.deleteQueue(queue)
            }
            for exchange in exchanges {
                try? connection.deleteExchange(exchange)
            }
        }
    }
}

/// Collects a consumer's deliveries as they arrive.
actor AMQPDeliveryCollector {
    private(set) var deliveries: [AMQPDelivery] = []
    private var task: Task<Void, Never>?

    /// - Parameter autoAck: deliveries to ack as soon as they arrive (the rest are left to the test).
    static func start(
        _ consumer: AMQPConsumer, autoAck: @escaping @Sendable (AMQPDelivery) -> Bool = { _ in false }
    ) async -> AMQPDeliveryCollector {
        let collector = AMQPDeliveryCollector()
        await collector.listen(to: consumer, autoAck: autoAck)
        return collector
    }

    private func listen(to consumer: AMQPConsumer, autoAck: @escaping @Sendable (AMQPDelivery) -> Bool) {
        self.task = Task {
            for await delivery in consumer.deliveries {
                if autoAck(delivery) {
                    consumer.ack(delivery)
                }
                self.append(delivery)
            }
        }
    }

    private func append(_ delivery: AMQPDelivery) {
        self.deliveries.append(delivery)
    }

    var count: Int { self.deliveries.count }

    /// Waits until at least `count` deliveries arrived (or `timeout`); returns all so far.
    func waitFor(count: Int, timeout: Duration = .seconds(15)) async -> [AMQPDelivery] {
        _ = await waitUntil(timeout: timeout, every: .milliseconds(20)) { self.deliveries.count >= count }
        return self.deliveries
    }

    /// Waits until a delivery matching `predicate` arrived (or `timeout`).
    func waitFor(timeout: Duration = .seconds(15), _ predicate: (AMQPDelivery) -> Bool) async -> AMQPDelivery? {
        _ = await waitUntil(timeout: timeout, every: .milliseconds(20)) { self.deliveries.contains(where: predicate) }
        return self.deliveries.first(where: predicate)
    }
}

extension AMQPDelivery {
    var amqpTestText: String { String(decoding: self.body, as: UTF8.self) }
}
