import ReelayAMQP

/// Every exchange, queue and routing key of Reelay, named once.
public enum Topology {
    /// Commands: direct exchange, one durable quorum queue per kind of work.
    public static let commandsExchange = "reelay.commands"
    /// Notifications of row changes: topic exchange, routing key `task.<status>`.
    public static let eventsExchange = "reelay.events"
    /// Poison or exhausted messages, kept for inspection and replay.
    public static let deadExchange = "reelay.dead"

    public enum Queue {
        public static let submit = "reelay.submit"
        public static let control = "reelay.control"
        public static let dispatch = "reelay.dispatch"
        public static let completions = "reelay.completions"
        /// The scheduler's view of task events (competing consumers across scheduler replicas).
        public static let schedulerEvents = "reelay.scheduler.events"
        public static let dead = "reelay.dead"
    }

    public enum RoutingKey {
        public static let submit = "task.submit"
        public static let cancel = "task.cancel"
        public static let predictionCreate = "prediction.create"
        public static let predictionCancel = "prediction.cancel"
        public static let predictionGet = "prediction.get"
        public static let predictionCompleted = "prediction.completed"
        /// `task.<status>` on the events exchange.
        public static func event(_ status: String) -> String { "task.\(status)" }
        public static let allEvents = "task.#"
    }

    /// A message redelivered this many times is dead-lettered instead of looping forever.
    public static let deliveryLimit: Int64 = 20

    /// The length limits (`x-max-length`) of the queues the outside world fills through the gateway. With
    /// `x-overflow=reject-publish` a publish beyond the limit is refused (basic.nack) and the gateway answers 503
    /// "Queue full", so a flood or a scheduler outage cannot grow the broker's memory and disk without bound.
    ///
    /// (A quorum queue takes one message beyond the limit before it refuses, and may overshoot a little under concurrent
    /// publishers: RabbitMQ's documented behaviour.)
    ///
    /// Generous on purpose: the scheduler keeps the submit queue near empty (it admits up to 200 per transaction), and
    /// MAX_QUEUE_SIZE bounds the tasks waiting in PostgreSQL (1000 by default), so 10 000 queued submissions mean the
    /// scheduler is down or far behind. The internal queues (dispatch, completions, events) have no limit: their
    /// producers are Reelay's own services, bounded by the tasks that exist, and a refused internal publish would only
    /// turn into retries. A constant rather than a setting, because a queue's arguments cannot change once declared
    /// (see `AMQPLimitMismatch` and deploy/README.md for brokers that already have the queues).
    public static let maxLength: [String: Int64] = [Queue.submit: 10_000, Queue.control: 10_000]

    /// A work queue: quorum, dead-lettered at least once, refusing publishes when full.
    /// - Parameter maxLength: its length limit; nil for none.
    public static func workQueue(_ name: String, maxLength: Int64?) -> AMQPQueue {
        var arguments: [String: AMQPArgument] = [
            "x-dead-letter-exchange": .string(Self.deadExchange),
            "x-dead-letter-strategy": .string("at-least-once"),
            "x-overflow": .string("reject-publish"),
            "x-delivery-limit": .int(Self.deliveryLimit),
        ]
        if let maxLength {
            arguments["x-max-length"] = .int(maxLength)
        }
        return .quorum(name, arguments: arguments)
    }

    /// Delays before a failed message is tried again: the n-th retry waits `delays[min(n, count - 1)]`.
    public static let delays: [Duration] = [.seconds(1), .seconds(5), .seconds(30)]
    /// Header counting how often a message went through the delay route.
    public static let retriesHeader = "x-reelay-retries"
    /// Headers of a dead-lettered message: where it came from and why it died.
    public static let deadQueueHeader = "x-reelay-queue"
    public static let deadReasonHeader = "x-reelay-reason"

    /// Queues whose messages are retried through delay queues.
    public static let workQueues = [Queue.submit, Queue.control, Queue.dispatch, Queue.completions, Queue.schedulerEvents]

    /// The delay queue for `queue` at `level`: messages wait there for the level's TTL, then dead-letter back into `queue`
    /// through the default exchange.
    public static func delayQueue(for queue: String, level: Int) -> String {
        let delay = Self.delays[min(max(level, 0), Self.delays.count - 1)]
        return "\(queue).delay.\(delay.components.seconds)s"
    }

    private static var delayQueues: [AMQPQueue] {
        Self.workQueues.flatMap { queue in
            Self.delays.indices.map { level in
                AMQPQueue(
                    name: Self.delayQueue(for: queue, level: level), durable: true, exclusive: false, autoDelete: false,
                    arguments: [
                        "x-message-ttl": .int(Int64(Self.delays[level].components.seconds) * 1000),
                        "x-dead-letter-exchange": .string(""),
                        "x-dead-letter-routing-key": .string(queue),
                    ])
            }
        }
    }

    /// The whole topology; every connection declares it (idempotently) so start order never matters.
    public static let all = Self.make(maxLength: Self.maxLength)

    /// The topology with other length limits (tests declare tiny ones in a vhost of their own; `[:]` is the topology of
    /// versions before the limits).
    public static func make(maxLength: [String: Int64]) -> AMQPTopology {
        AMQPTopology(
            exchanges: [
                AMQPExchange(name: Self.commandsExchange, type: .direct),
                AMQPExchange(name: Self.eventsExchange, type: .topic),
                AMQPExchange(name: Self.deadExchange, type: .fanout),
            ],
            queues: [
                Self.workQueue(Queue.submit, maxLength: maxLength[Queue.submit]),
                Self.workQueue(Queue.control, maxLength: maxLength[Queue.control]),
                Self.workQueue(Queue.dispatch, maxLength: maxLength[Queue.dispatch]),
                Self.workQueue(Queue.completions, maxLength: maxLength[Queue.completions]),
                Self.workQueue(Queue.schedulerEvents, maxLength: maxLength[Queue.schedulerEvents]),
                .quorum(Queue.dead),
            ] + Self.delayQueues,
            bindings: [
                AMQPBinding(queue: Queue.submit, exchange: Self.commandsExchange, routingKey: RoutingKey.submit),
                AMQPBinding(queue: Queue.control, exchange: Self.commandsExchange, routingKey: RoutingKey.cancel),
                AMQPBinding(queue: Queue.dispatch, exchange: Self.commandsExchange, routingKey: RoutingKey.predictionCreate),
                AMQPBinding(queue: Queue.dispatch, exchange: Self.commandsExchange, routingKey: RoutingKey.predictionCancel),
                AMQPBinding(queue: Queue.dispatch, exchange: Self.commandsExchange, routingKey: RoutingKey.predictionGet),
                AMQPBinding(queue: Queue.completions, exchange: Self.commandsExchange, routingKey: RoutingKey.predictionCompleted),
                AMQPBinding(queue: Queue.schedulerEvents, exchange: Self.eventsExchange, routingKey: RoutingKey.allEvents),
                AMQPBinding(queue: Queue.dead, exchange: Self.deadExchange, routingKey: ""),
            ]
        )
    }

    /// The topology plus a process-private reply queue (the gateway's, for admission verdicts).
    public static func withReplyQueue(_ name: String) -> AMQPTopology {
        var topology = Self.all
        topology.queues.append(.exclusive(name))
        return topology
    }
}
