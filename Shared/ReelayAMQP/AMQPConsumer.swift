import Foundation
import Logging
import NIOConcurrencyHelpers

/// A connection consuming one or more queues with manual acks and a prefetch limit, on a thread of its own.
///
/// The thread owns the librabbitmq connection and yields copied deliveries into `deliveries`; `ack` / `reject` queue a
/// job for that thread. Delivery tags belong to one channel, so each delivery carries the connection `generation` and
/// acks of an older generation are dropped (acking a stale tag would close the new channel with PRECONDITION_FAILED).
public final class AMQPConsumer: Sendable {
    private let url: AMQPURL
    private let topology: AMQPTopology
    private let queues: [String]
    private let prefetch: UInt16
    private let name: String
    private let logger: Logger
    private let heartbeat: Duration
    private let waker = Waker()
    private let state = NIOLockedValueBox(State())
    private let continuation: AsyncStream<AMQPDelivery>.Continuation

    /// Every delivery, in order, across reconnects (an unacked delivery of a dead connection comes back redelivered).
    /// Finishes after shutdown. Iterate it once.
    public let deliveries: AsyncStream<AMQPDelivery>

    /// Deliveries read per loop turn before the thread sends queued acks and checks for shutdown again.
    static let batchSize = 64

    /// Creates a consumer of `queues` (declared by `topology` or already existing); nothing connects until `start()`.
    /// - Parameter prefetch: the most unacked deliveries the broker sends this consumer (per queue).
    public convenience init(url: AMQPURL, topology: AMQPTopology, queues: [String], prefetch: UInt16, name: String, logger: Logger) {
        self.init(url: url, topology: topology, queues: queues, prefetch: prefetch, name: name, logger: logger, heartbeat: .seconds(30))
    }

    /// - Parameter heartbeat: the heartbeat interval asked of the broker (tests shorten it).
    init(url: AMQPURL, topology: AMQPTopology, queues: [String], prefetch: UInt16, name: String, logger: Logger, heartbeat: Duration) {
        self.heartbeat = heartbeat
        self.url = url
        self.topology = topology
        self.queues = queues
        self.prefetch = prefetch
        self.name = name
        var logger = logger
        logger[metadataKey: "amqp.connection"] = .string(name)
        self.logger = logger
        (self.deliveries, self.continuation) = AsyncStream.makeStream(of: AMQPDelivery.self)
    }

    /// Starts the connection thread; connects lazily and reconnects forever with jittered backoff (250 ms .. 10 s).
    public func start() {
        let start = self.state.withLockedValue { state -> Bool in
            guard case .idle = state.lifecycle else {
                return false
            }
            state.lifecycle = .running
            return true
        }
        guard start else {
            return
        }
        let thread = Thread { [self] in
            self.run()
        }
        thread.name = "amqp-consumer-\(self.name)"
        thread.start()
    }

    /// Whether the connection is up and every queue is being consumed.
    public var isConnected: Bool {
        self.state.withLockedValue { $0.connected }
    }

    /// Acknowledges a delivery: queued to the connection thread; dropped if its connection is gone.
    public func ack(_ delivery: AMQPDelivery) {
        self.enqueue(Job(tag: delivery.deliveryTag, generation: delivery.generation, action: .ack))
    }

    /// Rejects a delivery (basic.reject). Without `requeue`, the broker dead-letters it when the queue has a
    /// dead-letter exchange, and drops it otherwise.
    public func reject(_ delivery: AMQPDelivery, requeue: Bool) {
        self.enqueue(Job(tag: delivery.deliveryTag, generation: delivery.generation, action: .reject(requeue: requeue)))
    }

    /// Stops taking deliveries (basic.cancel) but keeps the connection, so the handlers still running can ack what they
    /// finish. The stream finishes after the deliveries already in it; a delivery still arriving is rejected with requeue.
    public func stopIntake() {
        let changed = self.state.withLockedValue { state -> Bool in
            defer { state.intakeStopped = true }
            return !state.intakeStopped
        }
        guard changed else { return }
        self.continuation.finish()
        self.waker.wake()
    }

    /// Cancels consumers, stops reading, closes, joins, finishes the stream. Unacked deliveries return to the queue.
    public func shutdown() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let waitForThread = self.state.withLockedValue { state -> Bool in
                switch state.lifecycle {
                case .idle:
                    state.lifecycle = .stopped
                    return false
                case .running, .stopping:
                    state.lifecycle = .stopping
                    state.exitWaiters.append(continuation)
                    return true
                case .stopped:
                    return false
                }
            }
            if waitForThread {
                self.waker.wake()
            } else {
                self.continuation.finish()
                continuation.resume()
            }
        }
    }

    private func enqueue(_ job: Job) {
        let queued = self.state.withLockedValue { state -> Bool in
            guard case .running = state.lifecycle, job.generation == state.generation, state.connected else {
                return false
            }
            state.jobs.append(job)
            return true
        }
        if queued {
            self.waker.wake()
        } else {
            self.logger.debug("AMQP ack dropped: its connection is gone", metadata: ["amqp.delivery_tag": .stringConvertible(job.tag)])
        }
    }

    // MARK: The connection thread

    private func run() {
        var loop = ConsumerLoop()
        while self.isRunning {
            guard let connection = loop.connection else {
                if let wait = loop.reconnect.waitBeforeAttempt {
                    self.waker.wait(socket: nil, timeout: min(.milliseconds(100), wait))
                    continue
                }
                self.connect(&loop)
                continue
            }
            do {
                try self.sendJobs(on: connection, generation: loop.generation)
                try self.cancelIntakeIfStopped(on: connection, loop: &loop)
                if !connection.hasBufferedData {
                    self.waker.wait(socket: connection.socket, timeout: .milliseconds(100))
                }
                try self.readDeliveries(from: connection, loop: loop)
            } catch let error as AMQPError {
                self.disconnect(&loop, error: error)
            } catch {
                self.disconnect(&loop, error: AMQPError(code: .protocolError, description: "\(error)"))
            }
        }
        if let connection = loop.connection {
            // Acks queued before shutdown still count; then stop the flow and let unacked deliveries return.
            do {
                try self.sendJobs(on: connection, generation: loop.generation)
                for tag in loop.consumerTags.keys.sorted() {
                    try connection.cancel(tag: tag)
                }
            } catch {
                self.logger.debug("AMQP consumer could not cancel cleanly", metadata: ["amqp.error": .string("\(error)")])
            }
            connection.close()
            loop.connection = nil
        }
        let waiters = self.state.withLockedValue { state in
            state.connected = false
            state.jobs = []
            state.lifecycle = .stopped
            defer { state.exitWaiters = [] }
            return state.exitWaiters
        }
        self.continuation.finish()
        self.logger.debug("AMQP consumer stopped")
        for waiter in waiters {
            waiter.resume()
        }
    }

    private var intakeStopped: Bool {
        self.state.withLockedValue { $0.intakeStopped }
    }

    /// Once intake stops, cancels every consumer of the connection (once); acks keep flowing on it.
    private func cancelIntakeIfStopped(on connection: AMQPConnection, loop: inout ConsumerLoop) throws {
        guard !loop.consumerTags.isEmpty, self.intakeStopped else { return }
        for tag in loop.consumerTags.keys.sorted() {
            try connection.cancel(tag: tag)
        }
        loop.consumerTags = [:]
        self.logger.debug("AMQP consumer stopped its intake")
    }

    private var isRunning: Bool {
        self.state.withLockedValue { state in
            if case .running = state.lifecycle {
                return true
            }
            return false
        }
    }

    private func connect(_ loop: inout ConsumerLoop) {
        do {
            let connection = try AMQPConnection(url: self.url, name: self.name, heartbeat: self.heartbeat)
            var tags: [String: String] = [:]
            do {
                for mismatch in try connection.declare(self.topology, includeExclusive: true) {
                    mismatch.log(to: self.logger)
                }
                try connection.qos(prefetch: self.prefetch)
                for (index, queue) in self.queues.enumerated() where !self.intakeStopped {
                    let tag = "\(self.name).\(index)"
                    try connection.consume(queue: queue, tag: tag)
                    tags[tag] = queue
                }
            } catch {
                connection.close()
                throw error
            }
            loop.connection = connection
            loop.consumerTags = tags
            loop.generation += 1
            loop.reconnect.connected()
            let generation = loop.generation
            self.state.withLockedValue { state in
                state.generation = generation
                state.connected = true
                state.jobs = []
            }
            self.logger.info(
                "AMQP consumer connected",
                metadata: [
                    "amqp.url": .string(self.url.redacted), "amqp.queues": .string(self.queues.joined(separator: ",")),
                    "amqp.generation": .stringConvertible(generation),
                ])
        } catch {
            let delay = loop.reconnect.failed()
            self.logger.warning(
                "AMQP consumer cannot connect",
                metadata: [
                    "amqp.url": .string(self.url.redacted), "amqp.error": .string("\(error)"),
                    "amqp.retry_in_ms": .stringConvertible(delay.milliseconds),
                ])
        }
    }

    private func sendJobs(on connection: AMQPConnection, generation: UInt64) throws {
        let jobs = self.state.withLockedValue { state in
            defer { state.jobs = [] }
            return state.jobs
        }
        for job in jobs where job.generation == generation {
            switch job.action {
            case .ack:
                try connection.ack(tag: job.tag)
            case .reject(let requeue):
                try connection.reject(tag: job.tag, requeue: requeue)
            }
        }
    }

    private func readDeliveries(from connection: AMQPConnection, loop: ConsumerLoop) throws {
        for _ in 0..<Self.batchSize {
            switch try connection.consumeMessage() {
            case .nothing:
                return
            case .delivery(let raw):
                guard !loop.consumerTags.isEmpty else {
                    // Sent before the broker processed our basic.cancel: back to the queue for another consumer.
                    try connection.reject(tag: raw.deliveryTag, requeue: true)
                    continue
                }
                let delivery = AMQPDelivery(
                    body: raw.body, exchange: raw.exchange, routingKey: raw.routingKey, queue: loop.consumerTags[raw.consumerTag] ?? "",
                    redelivered: raw.redelivered, properties: raw.properties, deliveryTag: raw.deliveryTag, generation: loop.generation)
                self.continuation.yield(delivery)
            case .frame(.channelClosed(let error)), .frame(.connectionClosed(let error)):
                throw error
            case .frame(.consumerCancelled(let tag)):
                // Reconnecting redeclares the topology and consumes again (or keeps retrying while the queue is missing).
                let queue = loop.consumerTags[tag] ?? tag
                throw AMQPError(code: .channelClosed, description: "the broker cancelled the consumer of queue \(queue)")
            case .frame:
                continue
            }
        }
    }

    private func disconnect(_ loop: inout ConsumerLoop, error: AMQPError) {
        loop.connection?.close()
        loop.connection = nil
        loop.consumerTags = [:]
        self.state.withLockedValue { state in
            state.connected = false
            state.jobs = []
        }
        let delay = loop.reconnect.failed()
        self.logger.warning(
            "AMQP consumer lost its connection",
            metadata: ["amqp.error": .string(error.description), "amqp.retry_in_ms": .stringConvertible(delay.milliseconds)])
    }
}

extension AMQPConsumer {
    struct Job: Sendable {
        enum Action: Sendable {
            case ack
            case reject(requeue: Bool)
        }

        var tag: UInt64
        var generation: UInt64
        var action: Action
    }

    enum Lifecycle: Sendable {
        case idle, running, stopping, stopped
    }

    /// Shared between callers and the connection thread, always under the lock.
    struct State: Sendable {
        var lifecycle: Lifecycle = .idle
        var connected = false
        /// `stopIntake()` was called: consume nothing more.
        var intakeStopped = false
        /// The current connection incarnation; 0 before the first connect.
        var generation: UInt64 = 0
        var jobs: [Job] = []
        var exitWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Owned by the connection thread alone.
    struct ConsumerLoop {
        var connection: AMQPConnection?
        /// Consumer tag -> queue name, for `AMQPDelivery.queue`.
        var consumerTags: [String: String] = [:]
        var generation: UInt64 = 0
        var reconnect = ReconnectSchedule()
    }
}
