import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import ReelayConfig
import ReelayCore
import ServiceLifecycle

/// What every Reelay HTTP server does at its edge, whatever its routes: answers a wrong method with 405 and `Allow`, HEAD
/// wherever GET is, OPTIONS with `Allow`; makes every error application/problem+json; puts security headers on every
/// response; and closes idle connections and connections whose request head or body trickles in too slowly.
public enum HTTPEdge {
    /// Timeouts of every connection.
    public struct Timeouts: Sendable {
        /// A connection without a request in progress for this long is closed.
        public var idle: Duration
        /// A request head must arrive within this from its first byte, and its body within this from the head.
        public var read: Duration

        public init(idle: Duration, read: Duration) {
            self.idle = idle
            self.read = read
        }

        /// The defaults of HTTP_IDLE_TIMEOUT_MS and HTTP_READ_TIMEOUT_MS.
        public static let standard = Timeouts(idle: .seconds(60), read: .seconds(10))

        /// HTTP_IDLE_TIMEOUT_MS and HTTP_READ_TIMEOUT_MS of this process's environment (`standard` when it has none
        /// valid; a service has checked its configuration at start).
        public static var fromEnvironment: Timeouts {
            (try? ReelayConfiguration.fromProcessEnvironment()).map(Timeouts.init) ?? .standard
        }

        /// HTTP_IDLE_TIMEOUT_MS and HTTP_READ_TIMEOUT_MS of `configuration`.
        public init(_ configuration: ReelayConfiguration) {
            self.init(idle: configuration.httpIdleTimeout, read: configuration.httpReadTimeout)
        }
    }

    /// Set on every response. Nothing Reelay serves is a page: JSON and videos need no scripts, frames or referrers, and no
    /// cache may keep a user's task.
    public static let securityHeaders: [(HTTPField.Name, String)] = [
        (.xContentTypeOptions, "nosniff"),
        (.cacheControl, "no-store"),
        (.contentSecurityPolicy, "default-src 'none'; frame-ancestors 'none'"),
        (.referrerPolicy, "no-referrer"),
        (.xFrameOptions, "DENY"),
    ]

    /// The application serving `router` at host:port with the edge's behaviour and timeouts.
    /// - Parameter documentation: a sentence appended to 404/405 details, e.g. where the API is described.
    public static func application(
        router: Router<BasicRequestContext>, host: String, port: Int, serverName: String? = nil, timeouts: Timeouts,
        documentation: String = "", logger: Logger
    ) -> some Service {
        Application(
            responder: EdgeResponder(router: router, documentation: documentation, logger: logger), server: Self.server(timeouts: timeouts),
            configuration: .init(address: .hostname(host, port: port), serverName: serverName), logger: logger)
    }

    /// An HTTP/1 server whose connections close when idle for `timeouts.idle`, or when a request head (from its first
    /// byte) or body takes longer than `timeouts.read`.
    public static func server(timeouts: Timeouts) -> HTTPServerBuilder {
        let idle = TimeAmount(timeouts.idle)
        let read = TimeAmount(timeouts.read)
        return HTTPServerBuilder { responder in
            ReadDeadlineChannel(
                base: HTTP1Channel(
                    responder: responder, configuration: .init(additionalChannelHandlers: [RequestProgressWatcher()], idleTimeout: idle)),
                readTimeout: read)
        }
    }

    /// Fills in what every response carries; existing values win (a handler may know better).
    static func decorate(_ response: inout Response) {
        for (name, value) in Self.securityHeaders where response.headers[name] == nil {
            response.headers[name] = value
        }
    }
}

/// Wraps a router: decides 404/405/HEAD/OPTIONS from the router's own route list before any handler runs, turns every error
/// into problem+json, and adds the security headers.
public struct EdgeResponder<Context: RequestContext>: HTTPResponder {
    let base: RouterResponder<Context>
    let table: RouteTable
    let documentation: String
    let logger: Logger

    public init(router: Router<Context>, documentation: String = "", logger: Logger) {
        self.documentation = documentation.isEmpty ? "" : " " + documentation
        self.table = RouteTable(router.routes.map { RouteTable.Route(method: $0.method.rawValue, pattern: $0.path.description) })
        self.base = router.buildResponder()
        self.logger = logger
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        var response: Response
        do {
            response = try await self.route(request, context: context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        } catch {
            self.logger.error("unhandled error", metadata: ["error": "\(error)", "http.path": "\(request.uri.path)"])
            response = try Problem(
                .internalServerError, title: "Internal Server Error",
                detail: "Something went wrong on our side; try again. If it persists, report request id \(context.id)."
            ).response(from: request, context: context)
        }
        response = try self.asProblemWhenError(response, request: request, context: context)
        HTTPEdge.decorate(&response)
        return response
    }

    private func route(_ request: Request, context: Context) async throws -> Response {
        let path = Self.clip(request.uri.path)
        switch self.table.decide(method: request.method.rawValue, path: request.uri.path) {
        case .route:
            return try await self.base.respond(to: request, context: context)
        case .headAsGet:
            var head = request.head
            head.method = .get
            let response = try await self.base.respond(to: Request(head: head, body: request.body), context: context)
            var headers = response.headers
            if headers[.contentLength] == nil, let length = response.body.contentLength {
                headers[.contentLength] = String(length)
            }
            return Response(status: response.status, headers: headers, body: ResponseBody())
        case .options(let allow):
            return Response(status: .noContent, headers: [.allow: allow.joined(separator: ", ")])
        case .methodNotAllowed(let allow):
            throw Problem(
                .methodNotAllowed, title: "Method Not Allowed",
                detail: "\(Self.clip(request.method.rawValue)) is not supported on \(path); use \(allow.joined(separator: ", "))."
                    + self.documentation,
                headers: [.allow: allow.joined(separator: ", ")])
        case .notFound:
            throw Problem(
                .notFound, title: "Not Found",
                detail: "No route \(Self.clip(request.method.rawValue)) \(path); check the path." + self.documentation)
        }
    }

    /// A 4xx/5xx that is not JSON (an error the framework answered itself) becomes a problem with the same status.
    private func asProblemWhenError(_ response: Response, request: Request, context: Context) throws -> Response {
        guard response.status.code >= 400 else {
            return response
        }
        let type = response.headers[.contentType]?.lowercased() ?? ""
        if type.hasPrefix("application/problem+json") || type.hasPrefix("application/json") {
            return response
        }
        var headers = response.headers
        headers[.contentType] = nil
        headers[.contentLength] = nil
        return try Problem(
            response.status, title: response.status.reasonPhrase,
            detail: "The request could not be handled (\(response.status.code)); check it and try again." + self.documentation,
            headers: headers
        ).response(from: request, context: context)
    }

    /// Paths and methods are client input: echo a bounded piece of them.
    static func clip(_ text: String) -> String {
        text.count > 200 ? String(text.prefix(200)) + "..." : text
    }
}

extension HTTPField.Name {
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let contentSecurityPolicy = Self("Content-Security-Policy")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let xFrameOptions = Self("X-Frame-Options")!
}

// MARK: - Slow clients

/// Where a connection is in its request, as seen by `RequestProgressWatcher` (after HTTP decoding) and told to
/// `ReadDeadlineHandler` (before it, where bytes arrive) as an outbound user event.
enum RequestProgress: Sendable {
    case headReceived
    case bodyReceived
    case responseSent
}

/// The read deadline's decisions, without IO: bytes, request parts and responses in, whether to start or stop the timer out.
struct ReadDeadlineState: Sendable, Equatable {
    enum Phase: Sendable, Equatable {
        /// No request in progress: the next byte starts a head.
        case idle
        /// Bytes of a head arrived, the head is not complete.
        case head
        /// The head is complete, the body is not.
        case body
        /// The request is read; the server is answering (no deadline: the handler's own time).
        case responding
    }

    enum Action: Sendable, Equatable {
        case startTimer
        case stopTimer
        case restartTimer
        case none
    }

    private(set) var phase: Phase = .idle

    mutating func bytesArrived() -> Action {
        guard self.phase == .idle else {
            return .none
        }
        self.phase = .head
        return .startTimer
    }

    mutating func progressed(_ progress: RequestProgress) -> Action {
        switch progress {
        case .headReceived:
            self.phase = .body
            return .restartTimer
        case .bodyReceived:
            self.phase = .responding
            return .stopTimer
        case .responseSent:
            self.phase = .idle
            return .stopTimer
        }
    }
}

/// Byte level, first in the pipeline: closes the connection when a request head (from its first byte) or its body takes
/// longer than `timeout`, so a client sending a byte a minute cannot hold a connection. The idle timeout does not catch
/// that: it only sees complete request parts.
final class ReadDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private let timeout: TimeAmount
    private let logger: Logger
    private var state = ReadDeadlineState()
    private var timer: Scheduled<Void>?

    init(timeout: TimeAmount, logger: Logger) {
        self.timeout = timeout
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.apply(self.state.bytesArrived(), context: context)
        context.fireChannelRead(data)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard let progress = event as? RequestProgress else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        self.apply(self.state.progressed(progress), context: context)
        promise?.succeed()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.stopTimer()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.stopTimer()
    }

    private func apply(_ action: ReadDeadlineState.Action, context: ChannelHandlerContext) {
        switch action {
        case .startTimer, .restartTimer:
            self.stopTimer()
            let phase = self.state.phase
            self.timer = context.eventLoop.assumeIsolated().scheduleTask(in: self.timeout) {
                self.timer = nil
                self.logger.debug("closing a connection whose request is too slow", metadata: ["http.phase": "\(phase)"])
                context.close(promise: nil)
            }
        case .stopTimer:
            self.stopTimer()
        case .none:
            break
        }
    }

    private func stopTimer() {
        self.timer?.cancel()
        self.timer = nil
    }
}

/// After HTTP decoding: tells `ReadDeadlineHandler` when a request's head and end arrived and when its response went out.
final class RequestProgressWatcher: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head:
            context.triggerUserOutboundEvent(RequestProgress.headReceived, promise: nil)
        case .end:
            context.triggerUserOutboundEvent(RequestProgress.bodyReceived, promise: nil)
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = self.unwrapOutboundIn(data) {
            context.triggerUserOutboundEvent(RequestProgress.responseSent, promise: nil)
        }
        context.write(data, promise: promise)
    }
}

/// Hummingbird's HTTP/1 channel with `ReadDeadlineHandler` in front of its HTTP decoder.
struct ReadDeadlineChannel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value

    let base: HTTP1Channel
    let readTimeout: TimeAmount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let timeout = self.readTimeout
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ReadDeadlineHandler(timeout: timeout, logger: logger))
        }.flatMap {
            self.base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await self.base.handle(value: value, logger: logger)
    }
}
