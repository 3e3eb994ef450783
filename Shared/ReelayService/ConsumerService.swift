import Logging
import ReelayAMQP
import ReelayMessaging
import ServiceLifecycle

/// Runs a handler for every delivery of an AMQP consumer, at most `concurrency` at once. A delivery is acked after its
/// handler returned (its effect committed), and rejected with requeue when the handler threw, so it comes back
/// redelivered; the queue's delivery limit dead-letters a message that keeps failing. On graceful shutdown it stops taking
/// deliveries, lets running handlers finish, and closes the connection (unacked deliveries return to the queue).
public struct ConsumerService: Service {
    public typealias Handler = @Sendable (AMQPDelivery) async throws -> Void

    let consumer: AMQPConsumer
    let concurrency: Int
    let logger: Logger
    let redelivery: Redelivery?
    let handler: Handler

    /// - Parameter redelivery: where failed messages go to wait before their retry, and to die. Without it a failed
    ///   message is requeued at once (fine for a private reply queue).
    public init(consumer: AMQPConsumer, concurrency: Int, logger: Logger, redelivery: Redelivery? = nil, handler: @escaping Handler) {
        self.consumer = consumer
        self.concurrency = max(1, concurrency)
        self.logger = logger
        self.redelivery = redelivery
        self.handler = handler
    }

    public func run() async throws {
        self.consumer.start()
        let consumer = self.consumer
        try await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                var running = 0
                for await delivery in consumer.deliveries {
                    if running >= self.concurrency {
                        await group.next()
                        running -= 1
                    }
                    running += 1
                    group.addTask {
                        await self.handle(delivery)
                    }
                }
                await group.waitForAll()
            }
        } onGracefulShutdown: {
            Task { await consumer.shutdown() }
        }
        await consumer.shutdown()
    }

    private func handle(_ delivery: AMQPDelivery) async {
        var metadata: Logger.Metadata = [
            "amqp.queue": "\(delivery.queue)", "amqp.routing_key": "\(delivery.routingKey)", "amqp.redelivered": "\(delivery.redelivered)",
        ]
        do {
            try await self.handler(delivery)
            self.consumer.ack(delivery)
            return
        } catch let poison as PoisonMessage {
            metadata["reason"] = "\(poison.reason)"
            self.logger.error("dead-lettering a message that can never be handled", metadata: metadata)
            await self.deadLetter(delivery, reason: poison.reason)
        } catch {
            metadata["error"] = "\(error)"
            guard let redelivery = self.redelivery else {
                self.logger.warning("handler failed; requeueing", metadata: metadata)
                // A short pause keeps a failing dependency from turning redelivery into a hot loop.
                try? await Task.sleep(for: .milliseconds(500))
                self.consumer.reject(delivery, requeue: true)
                return
            }
            let retries = Int(delivery.properties.headers[Topology.retriesHeader] ?? "0") ?? 0
            switch Redelivery.next(retries: retries, maxRetries: redelivery.maxRetries) {
            case .deadLetter:
                self.logger.error("handler failed \(retries + 1) times; dead-lettering", metadata: metadata)
                await self.deadLetter(delivery, reason: "failed \(retries + 1) times, last: \(error)")
            case .delay(let level):
                var properties = delivery.properties
                properties.headers[Topology.retriesHeader] = String(retries + 1)
                let delayQueue = Topology.delayQueue(for: delivery.queue, level: level)
                do {
                    try await redelivery.publisher.publish(
                        exchange: "", routingKey: delayQueue, body: delivery.body, properties: properties)
                    metadata["amqp.delay_queue"] = "\(delayQueue)"
                    self.logger.warning("handler failed; retrying after a delay", metadata: metadata)
                    self.consumer.ack(delivery)
                } catch {
                    try? await Task.sleep(for: .milliseconds(500))
                    self.consumer.reject(delivery, requeue: true)
                }
            }
        }
    }

    /// Keeps a message that will never succeed in the dead-letter queue, with where it came from and why.
    private func deadLetter(_ delivery: AMQPDelivery, reason: String) async {
        guard let redelivery = self.redelivery else {
            self.consumer.reject(delivery, requeue: false)
            return
        }
        var properties = delivery.properties
        properties.headers[Topology.deadQueueHeader] = delivery.queue
        properties.headers[Topology.deadReasonHeader] = String(reason.prefix(500))
        do {
            try await redelivery.publisher.publish(
                exchange: Topology.deadExchange, routingKey: delivery.routingKey, body: delivery.body, properties: properties)
            self.consumer.ack(delivery)
        } catch {
            // The queue's own dead-letter exchange keeps it (without our headers).
            self.consumer.reject(delivery, requeue: false)
        }
    }
}

/// Where failed deliveries wait and die: the delay queues and the dead-letter exchange of `Topology`.
public struct Redelivery: Sendable {
    public enum Next: Equatable, Sendable {
        case delay(level: Int)
        case deadLetter
    }

    let publisher: AMQPPublisher
    let maxRetries: Int

    public init(publisher: AMQPPublisher, maxRetries: Int = 10) {
        self.publisher = publisher
        self.maxRetries = maxRetries
    }

    /// A message that failed `retries` times before waits at a growing delay level, until `maxRetries`.
    public static func next(retries: Int, maxRetries: Int) -> Next {
        retries >= maxRetries ? .deadLetter : .delay(level: min(retries, Topology.delays.count - 1))
    }
}

/// Runs `body` on a fixed period until graceful shutdown (the scheduler's sweeps). Errors are logged, never fatal.
public struct PeriodicService: Service {
    let name: String
    let period: Duration
    let logger: Logger
    let body: @Sendable () async throws -> Void

    public init(name: String, period: Duration, logger: Logger, body: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.period = period
        self.logger = logger
        self.body = body
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await self.body()
                } catch is CancellationError {
                    return
                } catch {
                    self.logger.warning("periodic task failed", metadata: ["task": "\(self.name)", "error": "\(error)"])
                }
                try await Task.sleep(for: self.period)
            }
        }
    }
}

/// Closes a resource when the service group shuts down (after the services that use it, by ordering).
public struct CloseOnShutdown: Service {
    let close: @Sendable () async -> Void

    public init(_ close: @escaping @Sendable () async -> Void) {
        self.close = close
    }

    public func run() async throws {
        try? await gracefulShutdown()
        await self.close()
    }
}

/// Thrown by a handler for a message that no retry can fix (undecodable, unknown version): it goes to the dead-letter
/// queue at once instead of being redelivered.
public struct PoisonMessage: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "poison message: \(self.reason)" }
}
