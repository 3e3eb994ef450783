import Foundation
import Logging
import ReelayCore
@testable import ReelayHTTPClient
import ReelayTestSupport
import Testing

/// A client that is always shut down, even when the test body throws.
private func withClient<T>(threads: Int = 2, _ body: (HTTPClient) async throws -> T) async throws -> T {
    let client = HTTPClient(threads: threads, connectTimeout: .seconds(2), logger: Logger(label: "reelay.test.http"))
    return try await withTearDown(client, tearDown: { await $0.shutdown() }, body)
}

private func temporaryPath(_ name: String) -> String {
    NSTemporaryDirectory() + "reelay-http-\(UUID().uuidString)-\(name)"
}

/// Rules that trust the test server's origins (plain http on loopback), as the stand-in is trusted in development.
private func trusting(_ origins: String..., maxBytes: Int64 = 1 << 30, requiresVideo: Bool = false) throws -> DownloadRules {
    DownloadRules(
        sources: OutputSourcePolicy(hostSuffixes: [], trustedOrigins: try origins.map { try TrustedOrigin($0) }), maxBytes: maxBytes,
        requiresVideo: requiresVideo)
}

@Suite("HTTPClientRequests")
struct HTTPClientRequestTests {
    @Test("GET sends the method, path and headers")
    func get() async throws {
        try await HTTPClientTestServer.with { server in
            try await withClient { client in
                let response = try await client.request(
                    method: "GET", url: server.base + "/echo", headers: [("X-Custom", "hello world"), ("Authorization", "Bearer t0ken")])
                #expect(response.status == 200)
                let echoed = String(decoding: response.body, as: UTF8.self)
                #expect(echoed.hasPrefix("GET /echo HTTP/1.1\r\n"))
                #expect(echoed.contains("\r\nX-Custom: hello world\r\n"))
                #expect(echoed.contains("\r\nUser-Agent: reelay/1\r\n"))
                let seen = try #require(server.log.last(path: "/echo"))
                #expect(seen.header("authorization") == "Bearer t0ken")
                #expect(seen.body.isEmpty)
            }
        }
    }

    @Test("POST and PUT send the body exactly, without Expect: 100-continue")
    func postAndPut() async throws {
        try await HTTPClientTestServer.with { server in
            try await withClient { client in
                let body = Array("{\"prompt\":\"a cat\",\"bytes\":\"\u{00}\u{FF}\"}".utf8) + [0, 255, 13, 10]
                let response = try await client.request(
                    method: "POST", url: server.base + "/echo", headers: [("Content-Type", "application/json")], body: body)
                #expect(response.status == 200)
                let seen = try #require(server.log.last(path: "/echo"))
                #expect(seen.method == "POST")
                #expect(seen.body == body)
                #expect(seen.header("expect") == nil)
                #expect(seen.header("content-type") == "application/json")
                #expect(Array(response.body.suffix(body.count)) == body)

                // A large body, and another method.
                let large = HTTPClientTestServer.payload(200_000)
                _ = try await client.request(method: "PUT", url: server.base + "/echo", body: large)
                let put = try #require(server.log.last(path: "/echo"))
                #expect(put.method == "PUT")
                #expect(put.body == large)
                #expect(put.header("expect") == nil)
                #expect(put.header("content-type") == nil, "no invented form content type")

                // POST without a body still sends Content-Length: 0.
                _ = try await client.request(method: "POST", url: server.base + "/echo")
                let empty = try #require(server.log.last(path: "/echo"))
                #expect(empty.method == "POST")
                #expect(empty.header("content-length") == "0")
                _ = try await client.request(method: "DELETE", url: server.base + "/echo")
                #expect(server.log.last(path: "/echo")?.method == "DELETE")
            }
        }
    }

    @Test("status codes pass through with their bodies", arguments: [201, 422, 500])
    func statusCodes(status: Int) async throws {
        try await HTTPClientTestServer.with { server in
            try await withClient { client in
                let response = try await client.request(method: "GET", url: server.base + "/status/\(status)")
                #expect(response.status == status)
                #expect(String(decoding: response.body, as: UTF8.self) == "{\"status\":\(status)}")
            }
        }
    }

    @Test("response headers are kept in order and looked up case-insensitively")
    func headers() async throws {
        try await HTTPClientTestServer.with { server in
            try await withClient { client in
                let response = try await client.request(method: "GET", url: server.base + "/headers")
                #expect(response.header("x-request-id") == "abc-123")
                #expect(response.header("X-REQUEST-ID") == "abc-123")
                #expect(response.header("content-length") == "2")
                #expect(response.header("SET-COOKIE") == "a=1", "first match wins")
                #expect(response.headers.filter { $0.0.lowercased() == "set-cookie" }.map(\.1) == ["a=1", "b=2"])
                #expect(response.header("x-empty") == "")
                #expect(response.header("x-missing") == nil)
                #expect(!response.headers.contains { $0.0.hasPrefix("HTTP/") }, "the status line is not a header")
            }
        }
    }

    @Test("a server that never answers gives .timeout, and the request may have been sent")
    func timeout() async throws {
        try await HTTPClientTestServer.with { server in
            try await withClient { client in
                let started = ContinuousClock.now
                let error = try await #require(throws: HTTPClientError.self) {
                    try await client.request(method: "POST", url: server.base + "/slow", body: [1, 2, 3], timeout: .milliseconds(300))
                }
                #expect(error.code == .timeout)
                #expect(error.mayHaveBeenSent)
                #expect(ContinuousClock.now - started < .seconds(10), "the 300 ms timeout, with wide slack for a busy machine")
            }
        }
    }

    @Test("connection refused gives .connect, and the request was not sent")
    func connectionRefused() async throws {
        // Bind, learn the port, close: nothing listens there any more.
        let server = try await HTTPClientTestServer.start()
        let port = server.port
        await server.stop()
        try await withClient { client in
            let error = try await #require(throws: HTTPClientError.self) {
                try await client.request(method: "POST", url: "http://127.0.0.1:\(port)/predictions", body: [1])
            }
            #expect(error.code == .connect)
            #expect(!error.mayHaveBeenSent)
            #expect(!error.description.isEmpty)
        }
    }

    @Test("a body over maxResponseBytes gives .tooLarge, with or without Content-Length")
    func tooLarge() async throws {
        try await HTTPClientTestServer.with { server in
            try await withClient { client in
                for path in ["/bytes/100000", "/chunked/100000"] {
                    let error = try await #require(throws: HTTPClientError.self) {
                        try await client.request(method: "GET", url: server.base + path, maxResponseBytes: 50_000)
                    }
                    #expect(error.code == .tooLarge, "\(path)")
                }
                let fits = try await client.request(method: "GET", url: server.base + "/chunked/50000", maxResponseBytes: 50_000)
                #expect(fits.body == HTTPClientTestServer.payload(50_000))
            }
        }
    }

    @Test("header values with CR or LF are refused before anything is sent")
    func headerInjection() async throws {
        try await HTTPClientTestServer.with { server in
            try await withClient { client in
                let error = try await #require(throws: HTTPClientError.self) {
                    try await client.request(
                        method: "GET", url: server.base + "/echo", headers: [("X-Bad", "secret-value\r\nX-Injected: 1")])
                }
                #expect(error.code == .other)
                #expect(!error.mayHaveBeenSent)
                #expect(!error.description.contains("secret-value"))
                #expect(server.log.all.isEmpty)
            }
        }
    }

    @Test("cancelling the task aborts a transfer in flight")
    func cancellation() async throws {
        try await HTTPClientTestServer.with { server in
            try await withClient { client in
                let started = ContinuousClock.now
                let request = Task { try await client.request(method: "GET", url: server.base + "/slow", timeout: .seconds(120)) }
                try await Task.sleep(for: .milliseconds(200))
                request.cancel()
                let result = await request.result
                #expect(throws: CancellationError.self) { try result.get() }
                #expect(ContinuousClock.now - started < .seconds(20), "cancellation, not the 120 s timeout, ended the transfer")
            }
        }
    }

    @Test("sequential requests reuse one kept-alive connection")
    func keepAlive() async throws {
        try await HTTPClientTestServer.with { server in
            try await withClient(threads: 1) { client in
                for _ in 0..<3 {
                    _ = try await client.request(method: "GET", url: server.base + "/status/201")
                }
                let connections = Set(server.log.all.map(\.connection))
                #expect(server.log.all.count == 3)
                #expect(connections.count == 1)
            }
        }
    }

    @Test("concurrent requests on more tasks than threads all complete")
    func concurrency() async throws {
        try await HTTPClientTestServer.with { server in
            try await withClient(threads: 3) { client in
                let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                    for index in 0..<30 {
                        group.addTask {
                            let response = try await client.request(method: "GET", url: server.base + "/bytes/\(1000 + index)")
                            return response.body == HTTPClientTestServer.payload(1000 + index) ? response.status : -1
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(statuses.count == 30)
                #expect(statuses.allSatisfy { $0 == 200 })
            }
        }
    }

    @Test("a shut-down client refuses requests")
    func shutDown() async throws {
        let client = HTTPClient(threads: 1, logger: Logger(label: "reelay.test.http"))
        await client.shutdown()
        let error = try await #require(throws: HTTPClientError.self) {
            try await client.request(method: "GET", url: "http://127.0.0.1:1/")
        }
        #expect(error.code == .other)
        #expect(!error.mayHaveBeenSent)
    }
}

@Suite("HTTPClientDownloads")
struct HTTPClientDownloadTests {
    @Test("download writes the exact bytes, then renames the .part file", arguments: ["/bytes/3000000", "/chunked/3000000", "/bytes/0"])
    func download(path: String) async throws {
        try await HTTPClientTestServer.with { server in
            try await withClient { client in
                let target = temporaryPath("video.mp4")
                defer { try? FileManager.default.removeItem(atPath: target) }
                let expected = HTTPClientTestServer.payload(Int(path.split(separator: "/").last!)!)
                let result = try await client.download(url: server.base + path, to: target, rules: try trusting(server.base))
                #expect(result.status == 200)
                #expect(result.bytes == Int64(expected.count))
                #expect(FileManager.default.contents(atPath: target) == Data(expected))
                #expect(!FileManager.default.fileExists(atPath: target + ".part"))
            }
        }
    }

    @Test("a 404 download writes nothing and returns the status")
    func notFound() async throws {
        try await HTTPClientTestServer.with { server in
            try await withClient { client in
                let target = temporaryPath("missing.mp4")
                let result = try await client.download(url: server.base + "/missing", to: target, rules: try trusting(server.base))
                #expect(result.status == 404)
                #expect(result.bytes == 0)
                #expect(!FileManager.default.fileExists(atPath: target))
                #expect(!FileManager.default.fileExists(atPath: target + ".part"))
            }
        }
    }

    @Test("a same-host redirect keeps the headers; a cross-host one drops them")
    func redirects() async throws {
        try await HTTPClientTestServer.with { server in
            try await withClient { client in
                let auth = [("Authorization", "Bearer r8_secret")]
                let rules = try trusting(server.base, "http://localhost:\(server.port)")
                let target = temporaryPath("redirected.mp4")
                defer { try? FileManager.default.removeItem(atPath: target) }

                let sameHost = server.base + "/redirect?to=" + "/bytes/1234"
                let same = try await client.download(url: sameHost, headers: auth, to: target, rules: rules)
                #expect(same.status == 200)
                #expect(same.bytes == 1234)
                #expect(server.log.last(path: "/bytes/1234")?.header("authorization") == "Bearer r8_secret")

                // "localhost" is another host name than "127.0.0.1", even if it reaches the same server.
                let otherHost = "http://localhost:\(server.port)/bytes/4321"
                let cross = try await client.download(
                    url: server.base + "/redirect?to=" + otherHost.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!,
                    headers: auth, to: target, rules: rules)
                #expect(cross.status == 200)
                #expect(cross.bytes == 4321)
                let seen = try #require(server.log.last(path: "/bytes/4321"))
                #expect(seen.header("authorization") == nil)
                #expect(seen.header("host")?.hasPrefix("localhost") == true)
                #expect(FileManager.default.contents(atPath: target) == Data(HTTPClientTestServer.payload(4321)))
            }
        }
    }

    @Test("a redirect loop stops after five hops")
    func redirectLoop() async throws {
        try await HTTPClientTestServer.with { server in
            try await withClient { client in
                let target = temporaryPath("loop.mp4")
                await #expect(throws: HTTPClientError.self) {
                    try await client.download(url: server.base + "/loop", to: target, rules: try trusting(server.base))
                }
                #expect(server.log.all.count == 1 + HTTPClient.maxRedirects)
                #expect(!FileManager.default.fileExists(atPath: target))
            }
        }
    }
}
