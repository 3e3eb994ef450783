import Logging

/// The kind of an exchange.
public enum AMQPExchangeType: String, Sendable {
    case direct, topic, fanout
}

/// A durable exchange.
public struct AMQPExchange: Sendable {
    public var name: String
    public var type: AMQPExchangeType

    public init(name: String, type: AMQPExchangeType) {
        self.name = name
        self.type = type
    }
}

/// A value of a queue argument (`x-...`). Integers go on the wire as signed 64-bit (`l`), which RabbitMQ accepts everywhere.
public enum AMQPArgument: Sendable, Equatable {
    case string(String)
    case int(Int64)
    case bool(Bool)
}

/// A queue to declare.
public struct AMQPQueue: Sendable {
    public var name: String
    public var durable: Bool
    public var exclusive: Bool
    public var autoDelete: Bool
    public var arguments: [String: AMQPArgument]

    public init(name: String, durable: Bool, exclusive: Bool = false, autoDelete: Bool = false, arguments: [String: AMQPArgument] = [:]) {
        self.name = name
        self.durable = durable
        self.exclusive = exclusive
        self.autoDelete = autoDelete
        self.arguments = arguments
    }

    /// A durable quorum queue (`x-queue-type=quorum`) plus extra arguments.
    public static func quorum(_ name: String, arguments: [String: AMQPArgument] = [:]) -> AMQPQueue {
        var arguments = arguments
        arguments["x-queue-type"] = .string("quorum")
        // Quorum queues must be durable, non-exclusive and non-auto-delete, or the broker refuses the declaration.
        return AMQPQueue(name: name, durable: true, exclusive: false, autoDelete: false, arguments: arguments)
    }

    /// A non-durable, exclusive, auto-delete classic queue with a fixed name (e.g. a per-process reply queue).
    ///
    /// Only consumers declare exclusive queues: the broker ties such a queue to the connection that declared it.
    public static func exclusive(_ name: String) -> AMQPQueue {
        AMQPQueue(name: name, durable: false, exclusive: true, autoDelete: true)
    }
}

/// A binding of a queue to an exchange.
public struct AMQPBinding: Sendable {
    public var queue: String
    public var exchange: String
    public var routingKey: String

    public init(queue: String, exchange: String, routingKey: String) {
        self.queue = queue
        self.exchange = exchange
        self.routingKey = routingKey
    }
}

/// Exchanges, queues and bindings declared (idempotently) on every (re)connect by publishers and consumers.
///
/// Publishers skip exclusive queues (and their bindings): those belong to the consumer connection that declares them.
public struct AMQPTopology: Sendable {
    public var exchanges: [AMQPExchange]
    public var queues: [AMQPQueue]
    public var bindings: [AMQPBinding]

    public init(exchanges: [AMQPExchange] = [], queues: [AMQPQueue] = [], bindings: [AMQPBinding] = []) {
        self.exchanges = exchanges
        self.queues = queues
        self.bindings = bindings
    }
}

/// Message properties (the subset Reelay uses).
public struct AMQPProperties: Sendable, Equatable {
    public var contentType: String?
    public var correlationID: String?
    public var replyTo: String?
    public var messageID: String?
    /// `delivery_mode = 2`: the broker writes the message to disk.
    public var persistent: Bool
    /// String headers. On receipt, numeric and boolean headers (e.g. `x-delivery-count`) appear in decimal / `true`/`false`.
    public var headers: [String: String]
    /// Per-message TTL in milliseconds, as AMQP wants it (a decimal string).
    public var expiration: String?

    public init(
        contentType: String? = "application/json", correlationID: String? = nil, replyTo: String? = nil, messageID: String? = nil,
        persistent: Bool = true, headers: [String: String] = [:], expiration: String? = nil
    ) {
        self.contentType = contentType
        self.correlationID = correlationID
        self.replyTo = replyTo
        self.messageID = messageID
        self.persistent = persistent
        self.headers = headers
        self.expiration = expiration
    }
}

/// An error of the AMQP client. `description` never contains credentials.
public struct AMQPError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable {
        /// TCP connect, login, channel open or topology declaration failed.
        case connectionFailed
        /// The broker closed the channel (e.g. 404 NOT_FOUND, 406 PRECONDITION_FAILED).
        case channelClosed
        /// The broker or the network closed the connection.
        case connectionClosed
        /// The broker answered a publish with basic.nack.
        case nacked
        /// A mandatory publish reached no queue (basic.return): e.g. a reply queue that no longer exists.
        case returned
        /// The client was shut down.
        case shutdown
        /// Not done within the allowed time.
        case timeout
        /// Unexpected or malformed protocol data, or an invalid AMQP URL.
        case protocolError
    }

    public var code: Code
    public var description: String

    public init(code: Code, description: String) {
        self.code = code
        self.description = description
    }
}

/// A message received by an `AMQPConsumer`.
public struct AMQPDelivery: Sendable {
    public var body: [UInt8]
    public var exchange: String
    public var routingKey: String
    /// The queue it was consumed from.
    public var queue: String
    public var redelivered: Bool
    public var properties: AMQPProperties
    public var deliveryTag: UInt64
    /// The connection incarnation that delivered it; acks for an older incarnation are dropped (tags are per channel).
    public var generation: UInt64

    public init(
        body: [UInt8], exchange: String, routingKey: String, queue: String, redelivered: Bool, properties: AMQPProperties,
        deliveryTag: UInt64, generation: UInt64
    ) {
        self.body = body
        self.exchange = exchange
        self.routingKey = routingKey
        self.queue = queue
        self.redelivered = redelivered
        self.properties = properties
        self.deliveryTag = deliveryTag
        self.generation = generation
    }
}

/// A queue that exists on the broker with another length limit than the topology declares (406 PRECONDITION_FAILED on
/// `x-max-length` or `x-max-length-bytes`): usually a queue declared by an older version, before the limit existed.
/// `AMQPConnection.declare` tolerates it, keeps the existing queue, and returns this so the caller can say what to do.
public struct AMQPLimitMismatch: Sendable, Equatable, CustomStringConvertible {
    /// The arguments whose mismatch is tolerated: limits only; the queue works the same without them.
    static let limitArguments = ["x-max-length", "x-max-length-bytes"]

    public var queue: String
    public var argument: String
    /// The value this version declares.
    public var wanted: String

    init?(_ error: AMQPError, queue: AMQPQueue) {
        guard error.code == .channelClosed, error.description.contains("406") else { return nil }
        guard
            let argument = Self.limitArguments.first(where: { error.description.contains("inequivalent arg '\($0)'") }),
            let wanted = queue.arguments[argument]
        else { return nil }
        self.queue = queue.name
        self.argument = argument
        switch wanted {
        case .int(let value): self.wanted = String(value)
        case .string(let value): self.wanted = value
        case .bool(let value): self.wanted = String(value)
        }
    }

    public var description: String {
        "queue \(self.queue) exists with another \(self.argument) than this version declares (\(self.wanted))"
    }

    /// Logs the mismatch once per connect, with what to do about it.
    func log(to logger: Logger) {
        logger.error(
            """
            a queue exists with another length limit than this version declares; it keeps its old arguments (and works), \
            but the new limit is not in force until applied as a policy: see deploy/README.md, 'Queue length limits'
            """,
            metadata: ["amqp.queue": .string(self.queue), "amqp.argument": .string(self.argument), "amqp.wanted": .string(self.wanted)])
    }
}
