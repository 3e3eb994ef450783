import Foundation
import NIOCore
import NIOPosix

/// One request as the test server saw it.
struct HTTPClientTestRequest: Sendable {
    var method: String
    var path: String
    var headers: [(String, String)]
    var body: [UInt8]
    /// Which TCP connection carried it, to see keep-alive at work.
    var connection: ObjectIdentifier

    func header(_ name: String) -> String? {
        self.headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// Requests seen so far. `lock` guards `requests`; event-loop threads append, the test reads.
final class HTTPClientTestLog: @unchecked Sendable {
    private let lock = NSLock()
    private var requests: [HTTPClientTestRequest] = []
    private var accepted = 0

    func append(_ request: HTTPClientTestRequest) { self.lock.withLock { self.requests.append(request) } }
    func connected() { self.lock.withLock { self.accepted += 1 } }
    /// TCP connections accepted so far (a refused download must not even connect).
    var connections: Int { self.lock.withLock { self.accepted } }
    var all: [HTTPClientTestRequest] { self.lock.withLock { self.requests } }
    func last(path: String) -> HTTPClientTestRequest? { self.all.last { $0.path == path } }
}

/// A tiny HTTP/1.1 server: parses request bytes itself and answers with canned raw responses, chosen by path.
///
/// Routes: /echo (the raw request back), /status/N, /headers, /slow (never answers), /bytes/N (N deterministic bytes),
/// /chunked/N (the same, chunked), /missing (404), /redirect?to=URL (302), /loop (301 to itself), /video/N and
/// /video-chunked/N (N bytes that start like an MP4), /html/N (an N-byte web page).
final class HTTPClientTestServer: Sendable {
    let channel: Channel
    let log: HTTPClientTestLog
    let port: Int

    var base: String { "http://127.0.0.1:\(self.port)" }

    private init(channel: Channel, log: HTTPClientTestLog) {
        self.channel = channel
        self.log = log
        self.port = channel.localAddress?.port ?? 0
    }

    static func start() async throws -> HTTPClientTestServer {
        let log = HTTPClientTestLog()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RawHTTPHandler(log: log))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return HTTPClientTestServer(channel: channel, log: log)
    }

    func stop() async {
        try? await self.channel.close()
    }

    /// Runs `body` with a fresh server, stopping it afterwards.
    static func with<T>(_ body: (HTTPClientTestServer) async throws -> T) async throws -> T {
        let server = try await Self.start()
        do {
            let result = try await body(server)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    /// The body /bytes/N and /chunked/N send: every byte value, in a pattern that would show a shifted or lost chunk.
    static func payload(_ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 / 251) }
    }

    /// N bytes (N >= 24) that start like an MP4: an ftyp box, then `payload` bytes.
    static func video(_ count: Int) -> [UInt8] {
        let ftyp: [UInt8] = [0, 0, 0, 24] + Array("ftypisom".utf8) + [0, 0, 2, 0] + Array("isommp41".utf8)
        return Array((ftyp + Self.payload(max(0, count - ftyp.count))).prefix(count))
    }
}

private final class RawHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let log: HTTPClientTestLog
    private var pending: [UInt8] = []

    init(log: HTTPClientTestLog) {
        self.log = log
    }

    func channelActive(context: ChannelHandlerContext) {
        self.log.connected()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.pending += buffer.readBytes(length: buffer.readableBytes) ?? []
        while let request = self.nextRequest(connection: ObjectIdentifier(context.channel)) {
            self.log.append(request)
            if let response = self.respond(to: request) {
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(bytes: response)), promise: nil)
            }
        }
    }

    /// Takes one complete request (head and Content-Length body) off `pending`, if there is one.
    private func nextRequest(connection: ObjectIdentifier) -> HTTPClientTestRequest? {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let headEnd = self.pending.indices.first(where: { self.pending[$0...].starts(with: separator) }) else { return nil }
        let head = String(decoding: self.pending[..<headEnd], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        let headers: [(String, String)] = lines.compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
        let bodyStart = headEnd + separator.count
        guard self.pending.count >= bodyStart + length else { return nil }
        let body = Array(self.pending[bodyStart..<(bodyStart + length)])
        self.rawRequest = Array(self.pending[..<(bodyStart + length)])
        self.pending.removeFirst(bodyStart + length)
        return HTTPClientTestRequest(
            method: requestLine.first.map(String.init) ?? "", path: requestLine.dropFirst().first.map(String.init) ?? "",
            headers: headers, body: body, connection: connection)
    }

    private var rawRequest: [UInt8] = []

    private func respond(to request: HTTPClientTestRequest) -> [UInt8]? {
        let path = request.path
        if path == "/echo" {
            return Self.response(200, headers: [("Content-Type", "text/plain")], body: self.rawRequest)
        }
        if path.hasPrefix("/status/"), let status = Int(path.dropFirst("/status/".count)) {
            return Self.response(status, headers: [("Content-Type", "application/json")], body: Array("{\"status\":\(status)}".utf8))
        }
        if path == "/headers" {
            return Self.response(
                200, headers: [("X-Request-Id", "abc-123"), ("set-cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-Empty", "")],
                body: Array("ok".utf8))
        }
        if path == "/slow" {
            return nil
        }
        if path.hasPrefix("/bytes/"), let count = Int(path.dropFirst("/bytes/".count)) {
            return Self.response(200, headers: [("Content-Type", "video/mp4")], body: HTTPClientTestServer.payload(count))
        }
        if path.hasPrefix("/video/"), let count = Int(path.dropFirst("/video/".count)) {
            return Self.response(200, headers: [("Content-Type", "video/mp4")], body: HTTPClientTestServer.video(count))
        }
        if path.hasPrefix("/html/"), let count = Int(path.dropFirst("/html/".count)) {
            let page = Array("<!DOCTYPE html><html><body>secret</body></html>".utf8)
            let body = (0..<count).map { page[$0 % page.count] }
            return Self.response(200, headers: [("Content-Type", "text/html")], body: body)
        }
        if path.hasPrefix("/chunked/") || path.hasPrefix("/video-chunked/"), let count = Int(path.split(separator: "/").last ?? "") {
            var raw = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            let payload = path.hasPrefix("/video-") ? HTTPClientTestServer.video(count) : HTTPClientTestServer.payload(count)
            var offset = 0
            while offset < payload.count {
                let chunk = payload[offset..<min(offset + 10_000, payload.count)]
                raw += Array("\(String(chunk.count, radix: 16))\r\n".utf8) + chunk + Array("\r\n".utf8)
                offset += chunk.count
            }
            return raw + Array("0\r\n\r\n".utf8)
        }
        if path == "/loop" {
            return Self.response(301, headers: [("Location", "/loop")], body: [])
        }
        if path.hasPrefix("/redirect?to=") {
            let target = String(path.dropFirst("/redirect?to=".count)).removingPercentEncoding ?? ""
            return Self.response(302, headers: [("Location", target)], body: Array("moved".utf8))
        }
        return Self.response(404, headers: [], body: Array("not found".utf8))
    }

    private static func response(_ status: Int, headers: [(String, String)], body: [UInt8]) -> [UInt8] {
        var head = "HTTP/1.1 \(status) Canned\r\nContent-Length: \(body.count)\r\n"
        for (name, value) in headers {
            head += "\(name): \(value)\r\n"
        }
        return Array((head + "\r\n").utf8) + body
    }
}
