import Foundation
import Hummingbird
import Logging
import ReelayAMQP
import ReelayConfig
import ReelayMessaging
import ReelayPostgres
import ReelayService
import ReelayStore

/// Everything the gateway's routes use, built once by `main`.
struct Gateway: Sendable {
    let config: ReelayConfiguration
    let tasks: TaskStore
    let auth: Authenticator
    /// Which task and submission each Idempotency-Key stands for.
    let idempotency: IdempotencyStore
    /// The per-key submission rate (SUBMIT_RATE_PER_MIN), as token buckets shared by every gateway replica.
    let rateLimits: RateLimitStore
    let publisher: AMQPPublisher
    let waiter: VerdictWaiter
    /// This process's exclusive reply queue; the scheduler answers submissions there.
    let replyQueue: String
    let storage: FileStorage
    /// Reads stored videos on NIO's blocking-IO thread pool, never on Swift's cooperative threads.
    let files: FileIO
    let logger: Logger

    /// Largest accepted submission body.
    static let maxBodyBytes = 64 * 1024
    /// How long a publish may wait for the broker's confirm before the request gives up with 503.
    static let publishTimeout: Duration = .seconds(5)

    /// Registers every route of the public API and the ops routes on `router`.
    func addRoutes(to router: Router<BasicRequestContext>, readiness: [(name: String, check: @Sendable () async -> Bool)]) {
        router.add(middleware: ProblemMiddleware(logger: self.logger))
        router.post("/v1/tasks") { request, context in
            try await self.submit(request, context: context)
        }
        router.get("/v1/tasks") { request, context in
            try await self.list(request, context: context)
        }
        router.get("/v1/tasks/{id}") { request, context in
            try await self.show(request, context: context)
        }
        router.post("/v1/tasks/{id}/cancel") { request, context in
            try await self.cancel(request, context: context)
        }
        router.get("/v1/tasks/{id}/video") { request, context in
            try await self.video(request, context: context)
        }
        router.get("/v1/queue/stats") { request, _ in
            try await self.stats(request)
        }
        let openAPI = OpenAPIDocument.json(publicBaseURL: self.config.publicBaseURL)
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: openAPI)))
        }
        HealthRoutes.add(to: router, checks: readiness)
    }

    /// The task JSON of a stored task, with its queue position while it is pending. Links start with PUBLIC_BASE_URL:
    /// the Host header is client input and never makes a link.
    func representation(_ task: TaskRecord, history: [TaskHistoryEntry]? = nil) async throws -> [String: Any] {
        let position = try await self.tasks.queuePosition(of: task, agingSeconds: self.config.priorityAgingSeconds)
        return TaskJSON.object(task, baseURL: self.config.publicBaseURL, queuePosition: position, history: history)
    }

    /// The task `id` names when `caller` may see it; 404 otherwise (also for a malformed id), so ids of other users'
    /// tasks cannot be probed.
    func visibleTask(_ idText: String?, caller: Caller) async throws -> TaskRecord {
        guard let idText, let id = UUID(uuidString: idText), let task = try await self.tasks.task(id: id),
            caller.canRead(ownerID: task.userID)
        else {
            throw Self.taskNotFound(idText)
        }
        return task
    }

    static func taskNotFound(_ idText: String?) -> Problem {
        Problem(
            .notFound, title: "Task not found",
            detail: "No task with id '\(Self.clip(idText ?? ""))' is visible to this API key. Check the id; "
                + "tasks are visible only to the user who submitted them. A task answered with status 'submitted' "
                + "appears once the scheduler admits it: retry in a few seconds.")
    }

    /// Publishes a command with confirms; a broker that cannot confirm in time becomes 503 (the client may retry).
    func publish<M: BusMessage>(_ message: M, properties: AMQPProperties, logger: Logger) async throws {
        do {
            try await self.publisher.publish(
                exchange: M.exchange, routingKey: message.routingKey, body: MessageCodec.encode(message), properties: properties,
                timeout: Self.publishTimeout)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            logger.error("publish failed", metadata: ["amqp.routing_key": "\(message.routingKey)", "error": "\(error)"])
            // A full queue (nack) or an unreachable broker: 503 either way, each with its own detail.
            throw Problem.publishFailed(error)
        }
    }

    static func clip(_ text: String) -> String {
        text.count > 64 ? String(text.prefix(64)) + "..." : text
    }
}
