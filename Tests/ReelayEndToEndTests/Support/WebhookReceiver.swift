import Foundation
import NIOCore
import NIOPosix

/// One HTTP request as the receiver saw it: raw body bytes (signatures are over these), header names lower-cased.
struct ReceivedRequest: Sendable {
    var method: String
    /// Path and query, e.g. "/webhooks/replicate?task=...&attempt=1".
    var target: String
    var headers: [(String, String)]
    var body: [UInt8]
    /// The status the receiver answered with.
    var answeredStatus: Int
    var receivedAt: Date

    func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return self.headers.first { $0.0 == lower }?.1
    }

    var json: JSON { JSON(bytes: self.body) }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that records every request and answers with a status the test chooses
/// (plays the Reelay webhook endpoint for the Replicate stand-in, or Replicate's CDN for downloads).
final class WebhookReceiver: Sendable {
    private struct State {
        var requests: [ReceivedRequest] = []
        /// Statuses for the next requests, in order; 200 once they run out.
        var scriptedStatuses: [Int] = []
        var connections = 0
    }

    let port: Int
    private let channel: any Channel
    private let state: Locked<State>

    /// The base URL, e.g. "http://127.0.0.1:40123".
    var baseURL: String { "http://127.0.0.1:\(self.port)" }

    private init(channel: any Channel, port: Int, state: Locked<State>) {
        self.channel = channel
        self.port = port
        self.state = state
    }

    /// Starts listening on a free port.
    static func start() async throws -> WebhookReceiver {
        let state = Locked(State())
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RequestHandler(state: state))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        guard let port = channel.localAddress?.port else {
            try await channel.close()
            throw HarnessError("webhook receiver has no local port")
        }
        return WebhookReceiver(channel: channel, port: port, state: state)
    }

    /// Answers the next requests with these statuses (e.g. [500, 500] makes the sender retry twice).
    func script(statuses: [Int]) {
        self.state.withLock { $0.scriptedStatuses = statuses }
    }

    /// TCP connections accepted so far, whether or not they carried a request (a TLS handshake does not).
    var connections: Int {
        self.state.withLock { $0.connections }
    }

    /// Everything received so far, oldest first.
    var requests: [ReceivedRequest] {
        self.state.withLock { $0.requests }
    }

    /// Waits until at least `count` requests matching `filter` arrived; returns the matching ones.
    @discardableResult
    func waitFor(
        count: Int = 1, timeout: Duration = .seconds(10), where filter: @Sendable (ReceivedRequest) -> Bool = { _ in true }
    ) async throws -> [ReceivedRequest] {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            let matching = self.requests.filter(filter)
            if matching.count >= count {
                return matching
            }
            if clock.now >= deadline {
                throw HarnessError("webhook receiver got \(matching.count) of \(count) expected requests within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    func stop() async {
        try? await self.channel.close()
    }

    /// Parses requests off one connection (keep-alive) and answers each with an empty body.
    private final class RequestHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        private let state: Locked<State>
        private var pending: [UInt8] = []

        init(state: Locked<State>) {
            self.state = state
        }

        func channelActive(context: ChannelHandlerContext) {
            self.state.withLock { $0.connections += 1 }
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let chunk = self.unwrapInboundIn(data)
            self.pending += chunk.readableBytesView
            while let (request, consumed) = Self.parse(self.pending) {
                self.pending.removeFirst(consumed)
                let status = self.state.withLock { state -> Int in
                    let status = state.scriptedStatuses.isEmpty ? 200 : state.scriptedStatuses.removeFirst()
                    var recorded = request
                    recorded.answeredStatus = status
                    state.requests.append(recorded)
                    return status
                }
                let head = "HTTP/1.1 \(status) \(status < 300 ? "OK" : "Error")\r\nContent-Length: 0\r\n\r\n"
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: head)), promise: nil)
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }

        /// One complete request from the front of `bytes` (Content-Length bodies only), or nil if more bytes are needed.
        static func parse(_ bytes: [UInt8]) -> (ReceivedRequest, Int)? {
            let separator: [UInt8] = [13, 10, 13, 10]
            guard bytes.count >= 4,
                let headEnd = (0...(bytes.count - 4)).first(where: { bytes[$0..<($0 + 4)].elementsEqual(separator) })
            else { return nil }
            let headText = String(decoding: bytes[0..<headEnd], as: UTF8.self)
            var lines = headText.components(separatedBy: "\r\n")
            let requestLine = lines.removeFirst().split(separator: " ")
            var headers: [(String, String)] = []
            for line in lines {
                guard let colon = line.firstIndex(of: ":") else { continue }
                let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
                let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                headers.append((name, value))
            }
            let length = headers.first { $0.0 == "content-length" }.flatMap { Int($0.1) } ?? 0
            let bodyStart = headEnd + 4
            guard bytes.count >= bodyStart + length else { return nil }
            let request = ReceivedRequest(
                method: requestLine.first.map(String.init) ?? "",
                target: requestLine.count > 1 ? String(requestLine[1]) : "/",
                headers: headers, body: Array(bytes[bodyStart..<(bodyStart + length)]), answeredStatus: 0, receivedAt: Date())
            return (request, bodyStart + length)
        }
    }
}
