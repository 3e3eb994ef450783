import Foundation
import Hummingbird
import ReelayAMQP
import ReelayMessaging
import ReelayPostgres
import ReelayService
import ReelayStore

// gateway: the public HTTP API. Validates and authenticates submissions, publishes them to the scheduler and waits
// (bounded) for the verdict on this process's own reply queue; serves tasks, cancels, videos and stats from PostgreSQL.

let (config, logger) = Bootstrap.start(service: "gateway")
let amqpURL = Bootstrap.require("gateway") { try AMQPURL(config.amqpURL) }
let storage = Bootstrap.require("gateway") { try FileStorage(directory: config.storageDirectory) }

let pool = PostgresPool(configuration: config, size: 8, name: "gateway", logger: logger)
await SchemaCheck.refuseOldSchema(pool: pool, logger: logger)

let publisher = AMQPPublisher(url: amqpURL, topology: Topology.all, name: "gateway", logger: logger)
publisher.start()
let replyQueue = "reelay.replies.\(UUID().uuidString.lowercased())"
let replies = AMQPConsumer(
    url: amqpURL, topology: Topology.withReplyQueue(replyQueue), queues: [replyQueue], prefetch: 100, name: "gateway.replies",
    logger: logger)
let waiter = VerdictWaiter(logger: logger, onLateRejection: LateRejections.store(in: TaskStore(pool: pool), configuration: config))

let gateway = Gateway(
    config: config, tasks: TaskStore(pool: pool), auth: Authenticator(users: UserStore(pool: pool), opsToken: config.queueProcessorToken),
    idempotency: IdempotencyStore(pool: pool), rateLimits: RateLimitStore(pool: pool), publisher: publisher, waiter: waiter,
    replyQueue: replyQueue, storage: storage, files: FileIO(), logger: logger)
let router = Router()
gateway.addRoutes(
    to: router,
    readiness: [
        (name: "postgres", check: { await pool.ping() }),
        (name: "rabbitmq", check: { publisher.isConnected }),
    ])
let app = HTTPEdge.application(
    router: router, host: config.gatewayHost, port: config.gatewayPort, serverName: "reelay-gateway", timeouts: .init(config),
    documentation: "The API is described at /openapi.json.", logger: logger)

// Shutdown runs in reverse order: HTTP stops first (in-flight requests finish), then the reply consumer, then the broker
// and database connections.
try await ServiceRunner.run(
    [
        CloseOnShutdown {
            await publisher.shutdown()
            await pool.shutdown()
        },
        ConsumerService(consumer: replies, concurrency: 16, logger: logger) { try await waiter.handleReply($0) },
        app,
    ],
    logger: logger)
