import ReelayAMQP
import ReelayMessaging
import ReelayPostgres
import ReelayService
import ReelayStore

// scheduler: admission, priority, slots, retries-due, leases and reconciliation sweeps.
let (configuration, logger) = Bootstrap.start(service: "scheduler")
let amqpURL = Bootstrap.require("scheduler") { try AMQPURL(configuration.amqpURL) }
let pool = PostgresPool(configuration: configuration, size: 6, name: "scheduler", logger: logger)
let publisher = AMQPPublisher(url: amqpURL, topology: Topology.all, name: "scheduler.publish", logger: logger)
publisher.start()
let redelivery = Redelivery(publisher: publisher)

let scheduler = Scheduler(configuration: configuration, store: TaskStore(pool: pool), bus: MessageBus(publisher: publisher), logger: logger)
let submissions = AMQPConsumer(
    url: amqpURL, topology: Topology.all, queues: [Topology.Queue.submit], prefetch: 200, name: "scheduler.submit", logger: logger)
let events = AMQPConsumer(
    url: amqpURL, topology: Topology.all, queues: [Topology.Queue.schedulerEvents, Topology.Queue.control], prefetch: 50,
    name: "scheduler.events", logger: logger)

try await ServiceRunner.run(
    [
        CloseOnShutdown { await publisher.shutdown(); await pool.shutdown() },
        ConsumerService(consumer: submissions, concurrency: 200, logger: logger, redelivery: redelivery, handler: scheduler.handleSubmit),
        ConsumerService(consumer: events, concurrency: 8, logger: logger, redelivery: redelivery, handler: scheduler.handleEventOrControl),
        PeriodicService(name: "tick", period: configuration.schedulerTick, logger: logger, body: scheduler.tick),
    ] + HealthServer.make(host: configuration.gatewayHost, port: configuration.healthPort, checks: [("postgres", { await pool.ping() }), ("rabbitmq", { publisher.isConnected })], logger: logger),
    logger: logger)
