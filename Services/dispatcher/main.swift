import ReelayAMQP
import ReelayHTTPClient
import ReelayMessaging
import ReelayPostgres
import ReelayService
import ReelayStore

// dispatcher: every outbound call to Replicate (create, cancel, get). Scale these out; they compete for commands.
let (configuration, logger) = Bootstrap.start(service: "dispatcher")
let amqpURL = Bootstrap.require("dispatcher") { try AMQPURL(configuration.amqpURL) }
let token = Bootstrap.require("dispatcher") { try configuration.requireReplicateToken() }
let pool = PostgresPool(configuration: configuration, size: 8, name: "dispatcher", logger: logger)
let http = HTTPClient(threads: 8, connectTimeout: .seconds(5), userAgent: "reelay-dispatcher/1", logger: logger)
let publisher = AMQPPublisher(url: amqpURL, topology: Topology.all, name: "dispatcher.publish", logger: logger)
publisher.start()
let redelivery = Redelivery(publisher: publisher)

let dispatcher = Dispatcher(
    configuration: configuration, store: TaskStore(pool: pool), bus: MessageBus(publisher: publisher),
    replicate: ReplicateClient(
        http: http, baseURL: configuration.replicateAPIBaseURL, token: token, timeout: configuration.replicateTimeout),
    rateLimits: RateLimitStore(pool: pool), logger: logger)
let commands = AMQPConsumer(
    url: amqpURL, topology: Topology.all, queues: [Topology.Queue.dispatch], prefetch: 16, name: "dispatcher.commands", logger: logger)

try await ServiceRunner.run(
    [
        CloseOnShutdown { await publisher.shutdown(); await http.shutdown(); await pool.shutdown() },
        ConsumerService(consumer: commands, concurrency: 16, logger: logger, redelivery: redelivery, handler: dispatcher.handle),
    ] + HealthServer.make(host: configuration.gatewayHost, port: configuration.healthPort, checks: [("postgres", { await pool.ping() }), ("rabbitmq", { publisher.isConnected })], logger: logger),
    logger: logger)
