import Foundation
import NIOCore
import NIOPosix

/// One HTTP/1.1 request as a `LoopbackHTTPServer` parsed it (Content-Length bodies only).
public struct LoopbackHTTPRequest: Sendable {
    public var method: String
    /// Path and query, e.g. "/webhooks/replicate?task=...&attempt=1".
    public var target: String
    /// Header names as sent, values without surrounding blanks, in order.
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// The request's bytes as they arrived, head and body.
    public var raw: [UInt8]
    /// Which TCP connection carried it, to see keep-alive at work.
    public var connection: ObjectIdentifier

    /// The first value of the header `name`, whatever its case.
    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return self.headers.first { $0.0.lowercased() == lower }?.1
    }

    /// One complete request from the front of `bytes`, and how many bytes it took; nil until the request is complete.
    static func parse(_ bytes: [UInt8], connection: ObjectIdentifier) -> (LoopbackHTTPRequest, Int)? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard bytes.count >= 4, let headEnd = (0...(bytes.count - 4)).first(where: { bytes[$0..<($0 + 4)].elementsEqual(separator) })
        else { return nil }
        var lines = String(decoding: bytes[0..<headEnd], as: UTF8.self).components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        let headers: [(String, String)] = lines.compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (
                line[..<colon].trimmingCharacters(in: .whitespaces), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            )
        }
        let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
        let bodyStart = headEnd + 4
        guard bytes.count >= bodyStart + length else { return nil }
        let request = LoopbackHTTPRequest(
            method: requestLine.first.map(String.init) ?? "", target: requestLine.count > 1 ? String(requestLine[1]) : "/",
            headers: headers, body: Array(bytes[bodyStart..<(bodyStart + length)]), raw: Array(bytes[..<(bodyStart + length)]),
            connection: connection)
        return (request, bodyStart + length)
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 and a free port that parses requests itself and answers each with the raw bytes
/// `respond` returns (nil: never answer), so a test controls every byte a client gets, keep-alive included.
public final class LoopbackHTTPServer: Sendable {
    public let port: Int
    private let channel: any Channel

    /// The base URL, e.g. "http://127.0.0.1:40123".
    public var baseURL: String { "http://127.0.0.1:\(self.port)" }

    private init(channel: any Channel, port: Int) {
        self.channel = channel
        self.port = port
    }

    /// Starts listening. `connected` runs for each TCP connection accepted, whether or not it carries a request;
    /// `respond` runs for each complete request, in arrival order per connection (both on an event loop).
    public static func start(
        connected: @escaping @Sendable () -> Void = {}, respond: @escaping @Sendable (LoopbackHTTPRequest) -> [UInt8]?
    ) async throws -> LoopbackHTTPServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Handler(connected: connected, respond: respond))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        guard let port = channel.localAddress?.port else {
            try await channel.close()
            throw HarnessError("the loopback HTTP server has no local port")
        }
        return LoopbackHTTPServer(channel: channel, port: port)
    }

    public func stop() async {
        try? await self.channel.close()
    }

    /// A complete response: status line, Content-Length, `headers`, then `body`.
    public static func response(_ status: Int, reason: String = "Canned", headers: [(String, String)] = [], body: [UInt8] = []) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason)\r\nContent-Length: \(body.count)\r\n"
        for (name, value) in headers {
            head += "\(name): \(value)\r\n"
        }
        return Array((head + "\r\n").utf8) + body
    }

    /// Parses requests off one connection and writes what `respond` returns for each.
    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        private let connected: @Sendable () -> Void
        private let respond: @Sendable (LoopbackHTTPRequest) -> [UInt8]?
        private var pending: [UInt8] = []

        init(connected: @escaping @Sendable () -> Void, respond: @escaping @Sendable (LoopbackHTTPRequest) -> [UInt8]?) {
            self.connected = connected
            self.respond = respond
        }

        func channelActive(context: ChannelHandlerContext) {
            self.connected()
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            self.pending += self.unwrapInboundIn(data).readableBytesView
            while let (request, consumed) = LoopbackHTTPRequest.parse(self.pending, connection: ObjectIdentifier(context.channel)) {
                self.pending.removeFirst(consumed)
                if let response = self.respond(request) {
                    context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(bytes: response)), promise: nil)
                }
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
