import Logging
import ReelayAMQP
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
    let handler: Handler

    public init(consumer: AMQPConsumer, concurrency: Int, logger: Logger, handler: @escaping Handler) {
        self.consumer = consumer
        self.concurrency = max(1, concurrency)
        self.logger = logger
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
        do {
            try await self.handler(delivery)
            self.consumer.ack(delivery)
        } catch let poison as PoisonMessage {
            self.logger.error(
                "dead-lettering a message that can never be handled",
                metadata: ["amqp.queue": "\(delivery.queue)", "amqp.routing_key": "\(delivery.routingKey)", "reason": "\(poison.reason)"])
            self.consumer.reject(delivery, requeue: false)
        } catch {
            self.logger.warning(
                "handler failed; the message will be redelivered",
                metadata: [
                    "amqp.queue": "\(delivery.queue)", "amqp.routing_key": "\(delivery.routingKey)",
                    "amqp.redelivered": "\(delivery.redelivered)", "error": "\(error)",
                ])
            // A short pause keeps a failing dependency from turning redelivery into a hot loop.
            try? await Task.sleep(for: .milliseconds(500))
            self.consumer.reject(delivery, requeue: true)
        }
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
