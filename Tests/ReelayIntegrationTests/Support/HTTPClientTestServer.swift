import Foundation
import ReelayTestSupport

/// Requests seen so far and connections accepted (event-loop threads append, the test reads).
final class HTTPClientTestLog: Sendable {
    private let requests = Locked<[LoopbackHTTPRequest]>([])
    private let accepted = Locked(0)

    func append(_ request: LoopbackHTTPRequest) { self.requests.withLock { $0.append(request) } }
    func connected() { self.accepted.withLock { $0 += 1 } }
    /// TCP connections accepted so far (a refused download must not even connect).
    var connections: Int { self.accepted.withLock { $0 } }
    var all: [LoopbackHTTPRequest] { self.requests.withLock { $0 } }
    func last(path: String) -> LoopbackHTTPRequest? { self.all.last { $0.target == path } }
}

/// A tiny HTTP/1.1 server that answers with canned raw responses, chosen by path.
///
/// Routes: /echo (the raw request back), /status/N, /headers, /slow (never answers), /bytes/N (N deterministic bytes),
/// /chunked/N (the same, chunked), /missing (404), /redirect?to=URL (302), /loop (301 to itself), /video/N and
/// /video-chunked/N (N bytes that start like an MP4), /html/N (an N-byte web page).
final class HTTPClientTestServer: Sendable {
    let server: LoopbackHTTPServer
    let log: HTTPClientTestLog

    var port: Int { self.server.port }
    var base: String { self.server.baseURL }

    private init(server: LoopbackHTTPServer, log: HTTPClientTestLog) {
        self.server = server
        self.log = log
    }

    static func start() async throws -> HTTPClientTestServer {
        let log = HTTPClientTestLog()
        let server = try await LoopbackHTTPServer.start(connected: log.connected) { request in
            log.append(request)
            return Self.respond(to: request)
        }
        return HTTPClientTestServer(server: server, log: log)
    }

    func stop() async {
        await self.server.stop()
    }

    /// Runs `body` with a fresh server, stopping it afterwards.
    static func with<T>(_ body: (HTTPClientTestServer) async throws -> T) async throws -> T {
        try await withTearDown(try await Self.start(), tearDown: { await $0.stop() }, body)
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

    private static func respond(to request: LoopbackHTTPRequest) -> [UInt8]? {
        let path = request.target
        if path == "/echo" {
            return Self.response(200, headers: [("Content-Type", "text/plain")], body: request.raw)
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
        LoopbackHTTPServer.response(status, headers: headers, body: body)
    }
}
