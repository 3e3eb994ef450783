import Hummingbird
import ReelayAMQP
import ReelayCore
import ReelayHTTPClient
import ReelayMessaging
import ReelayPostgres
import ReelayService
import ReelayStore

// webhook: receives Replicate's signed webhooks (HTTP) and finalizes them (stores the video, completes the task).
let (configuration, logger) = Bootstrap.start(service: "webhook")
let amqpURL = Bootstrap.require("webhook") { try AMQPURL(configuration.amqpURL) }
let secret = Bootstrap.require("webhook") { try configuration.requireWebhookSecret() }
let verifier = Bootstrap.require("webhook") { try StandardWebhook(secret: secret) }
let storage = Bootstrap.require("webhook") { try FileStorage(directory: configuration.storageDirectory) }
let pool = PostgresPool(configuration: configuration, size: 6, name: "webhook", logger: logger)
let http = HTTPClient(threads: 4, connectTimeout: .seconds(10), userAgent: "reelay-webhook/1", logger: logger)
let publisher = AMQPPublisher(url: amqpURL, topology: Topology.all, name: "webhook.publish", logger: logger)
publisher.start()
let redelivery = Redelivery(publisher: publisher)
let bus = MessageBus(publisher: publisher)

let router = Router()
WebhookRoutes(verifier: verifier, bus: bus, logger: logger).add(to: router)
HealthRoutes.add(to: router, checks: [("postgres", { await pool.ping() }), ("rabbitmq", { publisher.isConnected })])
let app = HTTPEdge.application(
    router: router, host: configuration.webhookHost, port: configuration.webhookPort, serverName: "reelay-webhook",
    timeouts: .init(configuration), logger: logger)

let finalizer = Finalizer(
    configuration: configuration, store: TaskStore(pool: pool), bus: bus, http: http, storage: storage, logger: logger)
let completions = AMQPConsumer(
    url: amqpURL, topology: Topology.all, queues: [Topology.Queue.completions], prefetch: 8, name: "webhook.completions", logger: logger)

try await ServiceRunner.run(
    [
        CloseOnShutdown { await publisher.shutdown(); await http.shutdown(); await pool.shutdown() },
        ConsumerService(consumer: completions, concurrency: 8, logger: logger, redelivery: redelivery, handler: finalizer.handle),
        app,
    ],
    logger: logger)
