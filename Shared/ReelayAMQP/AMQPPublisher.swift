import Foundation
import Logging
import NIOConcurrencyHelpers

/// A connection dedicated to publishing with publisher confirms, on a thread of its own.
///
/// The thread owns the librabbitmq connection; callers only touch the lock-protected `State` (outbox, pending confirms,
/// continuations) and wake the thread. It is kept apart from consumers because a consumer's poll would swallow its acks.
public final class AMQPPublisher: Sendable {
    private let url: AMQPURL
    private let topology: AMQPTopology
    private let name: String
    private let logger: Logger
    private let heartbeat: Duration
    private let waker = Waker()
    private let state = NIOLockedValueBox(State())

    /// How long `shutdown()` waits for outstanding confirms.
    static let shutdownGrace: Duration = .seconds(5)
    /// A message in flight when the broker closes the channel this many times is failed, not republished forever
    /// (e.g. a publish to an exchange that does not exist closes the channel every time).
    static let maximumChannelFailures = 3
    /// Publishes sent per loop turn before the thread reads confirms and heartbeats again.
    static let batchSize = 256
    /// The header naming a mandatory publish, so its basic.return can be matched to it.
    static let publishIDHeader = "x-reelay-publish-id"

    /// Creates a publisher; nothing connects until `start()`.
    /// - Parameter name: names the thread, the broker-side connection and the `amqp.connection` log metadata.
    public convenience init(url: AMQPURL, topology: AMQPTopology, name: String, logger: Logger) {
        self.init(url: url, topology: topology, name: name, logger: logger, heartbeat: .seconds(30))
    }

    /// - Parameter heartbeat: the heartbeat interval asked of the broker (tests shorten it).
    init(url: AMQPURL, topology: AMQPTopology, name: String, logger: Logger, heartbeat: Duration) {
        self.heartbeat = heartbeat
        self.url = url
        self.topology = topology
        self.name = name
        var logger = logger
        logger[metadataKey: "amqp.connection"] = .string(name)
        self.logger = logger
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
        thread.name = "amqp-publisher-\(self.name)"
        thread.start()
    }

    /// Whether the connection is up, with topology declared and confirms selected.
    public var isConnected: Bool {
        self.state.withLockedValue { $0.connected }
    }

    /// Successful connects so far; more than one means it reconnected.
    var connectionCount: Int {
        self.state.withLockedValue { $0.connections }
    }

    /// Returns once the broker confirmed (basic.ack) the message. Waits across reconnects: a message not yet confirmed when
    /// the connection drops is republished on the new connection (at-least-once).
    ///
    /// - Throws: `AMQPError` `.nacked` on basic.nack, `.shutdown` after shutdown, `.timeout` if not confirmed within
    ///   `timeout`, `.channelClosed` if the broker keeps closing the channel over this message, `.returned` if it is
    ///   `mandatory` and no queue took it; `CancellationError` when the calling task is cancelled (the message may still
    ///   be delivered).
    ///   Publishes made before `start()` wait for it: the connection thread is also what enforces `timeout`.
    /// - Parameter mandatory: the broker returns the message when no queue takes it (a reply queue that is gone), and
    ///   the publish fails with `.returned` instead of succeeding silently.
    public func publish(
        exchange: String, routingKey: String, body: [UInt8], properties: AMQPProperties = AMQPProperties(),
        timeout: Duration = .seconds(30), mandatory: Bool = false
    ) async throws {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        let id = self.state.withLockedValue { state in
            state.nextID += 1
            state.unregistered[state.nextID] = false
            return state.nextID
        }
        var properties = properties
        if mandatory {
            // A returned message is matched to its publish by this header (basic.return carries no delivery tag).
            properties.headers[Self.publishIDHeader] = String(id)
        }
        let message = Message(exchange: exchange, routingKey: routingKey, body: body, properties: properties, mandatory: mandatory)
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let refusal: (any Error)? = self.state.withLockedValue { state in
                    if state.unregistered.removeValue(forKey: id) == true {
                        return CancellationError()
                    }
                    switch state.lifecycle {
                    case .idle, .running:
                        state.pending[id] = Pending(message: message, continuation: continuation, deadline: deadline)
                        state.outbox.append(id)
                        return nil
                    case .stopping, .stopped:
                        return AMQPError(code: .shutdown, description: "the publisher \(self.name) is shut down")
                    }
                }
                if let refusal {
                    continuation.resume(throwing: refusal)
                } else {
                    self.waker.wake()
                }
            }
        } onCancel: {
            let continuation = self.state.withLockedValue { state -> CheckedContinuation<Void, any Error>? in
                if state.unregistered[id] != nil {
                    state.unregistered[id] = true
                    return nil
                }
                return state.pending.removeValue(forKey: id)?.continuation
            }
            continuation?.resume(throwing: CancellationError())
        }
    }

    /// Stops accepting publishes, waits up to 5 s for outstanding confirms, closes the channel and connection, joins the thread.
    public func shutdown() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let (waitForThread, abandoned) = self.state.withLockedValue { state -> (Bool, [Pending]) in
                switch state.lifecycle {
                case .idle:
                    state.lifecycle = .stopped
                    let abandoned = Array(state.pending.values)
                    state.pending = [:]
                    state.outbox = []
                    return (false, abandoned)
                case .running:
                    state.lifecycle = .stopping(deadline: ContinuousClock.now.advanced(by: Self.shutdownGrace))
                    state.exitWaiters.append(continuation)
                    return (true, [])
                case .stopping:
                    state.exitWaiters.append(continuation)
                    return (true, [])
                case .stopped:
                    return (false, [])
                }
            }
            for pending in abandoned {
                pending.continuation.resume(throwing: AMQPError(code: .shutdown, description: "the publisher \(self.name) is shut down"))
            }
            if waitForThread {
                self.waker.wake()
            } else {
                continuation.resume()
            }
        }
    }

    // MARK: The connection thread

    private func run() {
        var loop = PublisherLoop()
        while true {
            let now = ContinuousClock.now
            if self.settleExpired(now: now) {
                break
            }
            guard let connection = loop.connection else {
                if let wait = loop.reconnect.waitBeforeAttempt {
                    self.waker.wait(socket: nil, timeout: min(.milliseconds(100), wait))
                    continue
                }
                self.connect(&loop)
                continue
            }
            do {
                let more = try self.publishBatch(on: connection, loop: &loop)
                if !more && !connection.hasBufferedData {
                    self.waker.wait(socket: connection.socket, timeout: .milliseconds(100))
                }
                while let frame = try connection.nextFrame() {
                    try self.handle(frame, loop: &loop)
                }
            } catch let error as AMQPError {
                self.disconnect(&loop, error: error)
            } catch {
                self.disconnect(&loop, error: AMQPError(code: .protocolError, description: "\(error)"))
            }
        }
        loop.connection?.close()
        loop.connection = nil
        let waiters = self.state.withLockedValue { state in
            state.connected = false
            state.lifecycle = .stopped
            defer { state.exitWaiters = [] }
            return state.exitWaiters
        }
        self.logger.debug("AMQP publisher stopped")
        for waiter in waiters {
            waiter.resume()
        }
    }

    /// Fails expired publishes with `.timeout`; at the end of a shutdown, fails the rest with `.shutdown`.
    /// - Returns: whether the thread should stop.
    private func settleExpired(now: ContinuousClock.Instant) -> Bool {
        let (expired, abandoned, stop) = self.state.withLockedValue { state -> ([Pending], [Pending], Bool) in
            var expired: [Pending] = []
            for (id, pending) in state.pending where pending.deadline <= now {
                expired.append(pending)
                state.pending[id] = nil
            }
            guard case .stopping(let deadline) = state.lifecycle, state.pending.isEmpty || now >= deadline else {
                return (expired, [], false)
            }
            let abandoned = Array(state.pending.values)
            state.pending = [:]
            state.outbox = []
            return (expired, abandoned, true)
        }
        for pending in expired {
            pending.continuation.resume(throwing: AMQPError(code: .timeout, description: "publish was not confirmed in time"))
        }
        for pending in abandoned {
            pending.continuation.resume(throwing: AMQPError(code: .shutdown, description: "the publisher \(self.name) is shut down"))
        }
        return stop
    }

    private func connect(_ loop: inout PublisherLoop) {
        do {
            let connection = try AMQPConnection(url: self.url, name: self.name, heartbeat: self.heartbeat)
            do {
                for mismatch in try connection.declare(self.topology, includeExclusive: false) {
                    mismatch.log(to: self.logger)
                }
                try connection.confirmSelect()
            } catch {
                connection.close()
                throw error
            }
            loop.connection = connection
            loop.reconnect.connected()
            self.state.withLockedValue { state in
                state.connected = true
                state.connections += 1
            }
            self.logger.info("AMQP publisher connected", metadata: ["amqp.url": .string(self.url.redacted)])
        } catch {
            let delay = loop.reconnect.failed()
            self.logger.warning(
                "AMQP publisher cannot connect",
                metadata: [
                    "amqp.url": .string(self.url.redacted), "amqp.error": .string("\(error)"),
                    "amqp.retry_in_ms": .stringConvertible(delay.milliseconds),
                ])
        }
    }

    /// Sends up to `batchSize` queued messages. Returns whether more are waiting.
    private func publishBatch(on connection: AMQPConnection, loop: inout PublisherLoop) throws -> Bool {
        let (batch, more) = self.state.withLockedValue { state -> ([(UInt64, Message)], Bool) in
            var batch: [(UInt64, Message)] = []
            var taken = 0
            while taken < state.outbox.count && batch.count < Self.batchSize {
                let id = state.outbox[taken]
                taken += 1
                if let pending = state.pending[id] {  // absent: timed out or cancelled meanwhile
                    batch.append((id, pending.message))
                }
            }
            state.outbox.removeFirst(taken)
            return (batch, !state.outbox.isEmpty)
        }
        for (index, (id, message)) in batch.enumerated() {
            do {
                try connection.publish(
                    exchange: message.exchange, routingKey: message.routingKey, body: message.body, properties: message.properties,
                    mandatory: message.mandatory)
                loop.tracker.published(id: id)
            } catch {
                // Unsent messages go back to the front, before anything queued since, to keep publish order.
                let unsent = batch[index...].map(\.0)
                self.state.withLockedValue { $0.outbox.insert(contentsOf: unsent, at: 0) }
                throw error
            }
        }
        return more
    }

    private func handle(_ frame: AMQPFrame, loop: inout PublisherLoop) throws {
        switch frame {
        case .ack(let tag, let multiple):
            let ids = loop.tracker.settle(tag: tag, multiple: multiple)
            let settled = self.state.withLockedValue { state in ids.compactMap { state.pending.removeValue(forKey: $0) } }
            for pending in settled {
                if pending.returned {
                    // The broker confirms an unroutable message too, after returning it.
                    pending.continuation.resume(
                        throwing: AMQPError(
                            code: .returned,
                            description: "no queue took the message (basic.return to \(pending.message.routingKey))"))
                } else {
                    pending.continuation.resume()
                }
            }
        case .returned(let headers):
            if let id = headers[Self.publishIDHeader].flatMap(UInt64.init) {
                self.state.withLockedValue { state in state.pending[id]?.returned = true }
            }
        case .nack(let tag, let multiple):
            let ids = loop.tracker.settle(tag: tag, multiple: multiple)
            let settled = self.state.withLockedValue { state in ids.compactMap { state.pending.removeValue(forKey: $0) } }
            for pending in settled {
                pending.continuation.resume(throwing: AMQPError(code: .nacked, description: "the broker refused the message (basic.nack)"))
            }
        case .channelClosed(let error), .connectionClosed(let error):
            throw error
        case .consumerCancelled, .other:
            break
        }
    }

    private func disconnect(_ loop: inout PublisherLoop, error: AMQPError) {
        loop.connection?.close()
        loop.connection = nil
        let unconfirmed = loop.tracker.reset()
        let failed = self.state.withLockedValue { state -> [Pending] in
            state.connected = false
            var failed: [Pending] = []
            var republish: [UInt64] = []
            for id in unconfirmed {
                guard var pending = state.pending[id] else {
                    continue
                }
                if error.code == .channelClosed {
                    pending.channelFailures += 1
                }
                // Sent again: only a return of the new copy counts.
                pending.returned = false
                if pending.channelFailures >= Self.maximumChannelFailures {
                    state.pending[id] = nil
                    failed.append(pending)
                } else {
                    state.pending[id] = pending
                    republish.append(id)
                }
            }
            state.outbox.insert(contentsOf: republish, at: 0)
            return failed
        }
        for pending in failed {
            pending.continuation.resume(throwing: error)
        }
        let delay = loop.reconnect.failed()
        self.logger.warning(
            "AMQP publisher lost its connection",
            metadata: [
                "amqp.error": .string(error.description), "amqp.unconfirmed": .stringConvertible(unconfirmed.count),
                "amqp.retry_in_ms": .stringConvertible(delay.milliseconds),
            ])
    }
}

extension AMQPPublisher {
    struct Message: Sendable {
        var exchange: String
        var routingKey: String
        var body: [UInt8]
        var properties: AMQPProperties
        var mandatory = false
    }

    struct Pending: Sendable {
        var message: Message
        var continuation: CheckedContinuation<Void, any Error>
        var deadline: ContinuousClock.Instant
        var channelFailures = 0
        /// The broker returned it (mandatory, no queue took it); its ack then fails the publish with `.returned`.
        var returned = false
    }

    enum Lifecycle: Sendable {
        case idle
        case running
        case stopping(deadline: ContinuousClock.Instant)
        case stopped
    }

    /// Shared between callers and the connection thread, always under the lock.
    struct State: Sendable {
        var lifecycle: Lifecycle = .idle
        var connected = false
        /// Successful connects so far (a reconnect makes it > 1).
        var connections = 0
        var nextID: UInt64 = 0
        /// Publishes between id allocation and registration; `true` once cancelled in that window.
        var unregistered: [UInt64: Bool] = [:]
        /// Messages not yet confirmed, by id; removed exactly when their continuation is resumed.
        var pending: [UInt64: Pending] = [:]
        /// Ids waiting to be sent (again), in order.
        var outbox: [UInt64] = []
        var exitWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Owned by the connection thread alone.
    struct PublisherLoop {
        var connection: AMQPConnection?
        var tracker = ConfirmTracker()
        var reconnect = ReconnectSchedule()
    }
}
