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

    private static func workQueue(_ name: String) -> AMQPQueue {
        .quorum(
            name,
            arguments: [
                "x-dead-letter-exchange": .string(Self.deadExchange),
                "x-dead-letter-strategy": .string("at-least-once"),
                "x-overflow": .string("reject-publish"),
                "x-delivery-limit": .int(Self.deliveryLimit),
            ])
    }

    /// The whole topology; every connection declares it (idempotently) so start order never matters.
    public static let all = AMQPTopology(
        exchanges: [
            AMQPExchange(name: Self.commandsExchange, type: .direct),
            AMQPExchange(name: Self.eventsExchange, type: .topic),
            AMQPExchange(name: Self.deadExchange, type: .fanout),
        ],
        queues: [
            Self.workQueue(Queue.submit),
            Self.workQueue(Queue.control),
            Self.workQueue(Queue.dispatch),
            Self.workQueue(Queue.completions),
            Self.workQueue(Queue.schedulerEvents),
            .quorum(Queue.dead),
        ],
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

    /// The topology plus a process-private reply queue (the gateway's, for admission verdicts).
    public static func withReplyQueue(_ name: String) -> AMQPTopology {
        var topology = Self.all
        topology.queues.append(.exclusive(name))
        return topology
    }
}
