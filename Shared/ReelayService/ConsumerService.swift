import Logging
import NIOConcurrencyHelpers
import ReelayAMQP
import ReelayMessaging
import ServiceLifecycle

/// Runs a handler for every delivery of an AMQP consumer, at most `concurrency` at once. A delivery is acked after its
/// handler returned (its effect committed), and rejected with requeue when the handler threw, so it comes back
/// redelivered; the queue's delivery limit dead-letters a message that keeps failing.
///
/// On graceful shutdown it stops taking deliveries (those already prefetched go back to the queue), gives the running
/// handlers `drainLimit` to finish and ack, then cancels the rest: a cancelled handler (an HTTP call that hangs, a long
/// download) is abandoned as a crash would abandon it, and its delivery returns to the queue for another replica. Every
/// handler is idempotent, so that costs at most a repeat of work whose effect never committed.
public struct ConsumerService: Service {
    public typealias Handler = @Sendable (AMQPDelivery) async throws -> Void

    let consumer: AMQPConsumer
    let concurrency: Int
    let drainLimit: Duration
    let logger: Logger
    let redelivery: Redelivery?
    let handler: Handler

    /// How long running handlers may take to finish once shutdown begins, unless a service says otherwise.
    public static let defaultDrainLimit: Duration = .seconds(2)

    /// - Parameters:
    ///   - redelivery: where failed messages go to wait before their retry, and to die. Without it a failed message is
    ///     requeued at once (fine for a private reply queue).
    ///   - drainLimit: how long running handlers may finish after shutdown begins before they are cancelled.
    public init(
        consumer: AMQPConsumer, concurrency: Int, drainLimit: Duration = Self.defaultDrainLimit, logger: Logger,
        redelivery: Redelivery? = nil, handler: @escaping Handler
    ) {
        self.consumer = consumer
        self.concurrency = max(1, concurrency)
        self.drainLimit = drainLimit
        self.logger = logger
        self.redelivery = redelivery
        self.handler = handler
    }

    public func run() async throws {
        self.consumer.start()
        let consumer = self.consumer
        let stopping = NIOLockedValueBox(false)
        // Children answer whether they were a handler (true) or the drain timer (false).
        await withTaskGroup(of: Bool.self) { group in
            var running = 0
            await withGracefulShutdownHandler {
                for await delivery in consumer.deliveries {
                    while running >= self.concurrency, await group.next() != nil {
                        running -= 1
                    }
                    // Checked after waiting for a free handler: shutdown may have begun meanwhile.
                    if stopping.withLockedValue({ $0 }) {
                        consumer.reject(delivery, requeue: true)
                        continue
                    }
                    running += 1
                    group.addTask {
                        await self.handle(delivery)
                        return true
                    }
                }
            } onGracefulShutdown: {
                stopping.withLockedValue { $0 = true }
                consumer.stopIntake()
            }
            guard running > 0 else { return }
            let drainLimit = self.drainLimit
            group.addTask {
                try? await Task.sleep(for: drainLimit)
                return false
            }
            var abandoned = false
            while let wasHandler = await group.next() {
                if wasHandler {
                    running -= 1
                    if running == 0 {
                        group.cancelAll()  // the drain timer
                    }
                } else if running > 0, !abandoned {
                    abandoned = true
                    self.logger.notice(
                        "handlers still running after the drain limit; abandoning them (their messages return to the queue)",
                        metadata: ["handlers": "\(running)", "drain_limit": "\(drainLimit)"])
                    group.cancelAll()
                }
            }
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
        } catch where Task.isCancelled {
            // Abandoned at shutdown, whatever the cancellation made the handler throw: not a failure of the message.
            self.logger.notice("handler abandoned at shutdown; the message returns to its queue", metadata: metadata)
            self.consumer.reject(delivery, requeue: true)
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
