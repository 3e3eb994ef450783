import Foundation
import Logging
import ReelayCore
@testable import ReelayHTTPClient
import ReelayTestSupport
import Testing

/// The download of an output against a real local server: what the rules refuse never reaches the network, what they
/// allow is pinned to the checked addresses, and size and content are enforced while the body streams.
@Suite("GuardedDownloads")
struct GuardedDownloadTests {
    /// Runs `body` with a fresh client and server and a target path; always shuts both down.
    static func with(_ body: (HTTPClient, HTTPClientTestServer, String) async throws -> Void) async throws {
        let client = HTTPClient(threads: 2, connectTimeout: .seconds(2), logger: Logger(label: "reelay.test.download"))
        let target = NSTemporaryDirectory() + "reelay-guarded-\(UUID().uuidString).mp4"
        try await withTearDown(client, tearDown: { await $0.shutdown() }) { client in
            try await HTTPClientTestServer.with { server in try await body(client, server, target) }
        }
        try? FileManager.default.removeItem(atPath: target)
    }

    /// Production rules (replicate.delivery only), plus the given trusted origins.
    static func rules(trusting origins: [String] = [], suffixes: [String] = ["replicate.delivery"], maxBytes: Int64 = 1 << 20)
        throws -> DownloadRules
    {
        DownloadRules(
            sources: OutputSourcePolicy(hostSuffixes: suffixes, trustedOrigins: try origins.map { try TrustedOrigin($0) }), maxBytes: maxBytes)
    }

    static func expectNothingKept(_ target: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!FileManager.default.fileExists(atPath: target), "no file kept", sourceLocation: sourceLocation)
        #expect(!FileManager.default.fileExists(atPath: target + ".part"), "no partial file kept", sourceLocation: sourceLocation)
    }

    // MARK: Refused before any connection

    /// Guards: a URL the rules refuse (http, an internal address in any spelling, a host outside the allowlist, an
    /// invalid port) fails with an OutputRefusal before anything connects: the server accepts no connection.
    @Test(arguments: [
        "http://127.0.0.1:PORT/video/100", "https://127.0.0.1:PORT/video/100", "https://0x7f000001:PORT/video/100",
        "https://2130706433:PORT/video/100", "https://017700000001:PORT/video/100", "https://127.1:PORT/video/100",
        "https://[::ffff:127.0.0.1]:PORT/video/100", "https://[::1]:PORT/video/100", "https://localhost:PORT/video/100",
        "https://replicate.delivery:99999/video/100", "https://replicate.delivery@127.0.0.1:PORT/video/100",
        "file:///etc/passwd", "https://169.254.169.254/latest/meta-data/",
    ])
    func refusedBeforeAnyConnection(template: String) async throws {
        try await Self.with { client, server, target in
            let url = template.replacingOccurrences(of: "PORT", with: String(server.port))
            let refusal = await #expect(throws: OutputRefusal.self, "\(url)") {
                try await client.download(url: url, to: target, rules: try Self.rules())
            }
            #expect(refusal?.description.contains("/video/100") == false, "the refusal never shows the path: \(refusal.map { "\($0)" } ?? "")")
            #expect(server.log.connections == 0, "\(url) reached the server")
            Self.expectNothingKept(target)
        }
    }

    /// Guards: addresses are checked after resolution: a name under an allowed suffix that resolves to loopback is
    /// refused (every address of it is checked), and nothing connects.
    @Test func aNameThatResolvesInsideIsRefused() async throws {
        try await Self.with { client, server, target in
            let refusal = await #expect(throws: OutputRefusal.self) {
                try await client.download(
                    url: "https://localhost:\(server.port)/video/100", to: target, rules: try Self.rules(suffixes: ["localhost"]))
            }
            #expect(refusal?.reason == .address)
            #expect(refusal?.description.contains("localhost resolves to") == true, "\(refusal.map { "\($0)" } ?? "")")
            #expect(refusal?.description.contains("loopback") == true)
            #expect(server.log.connections == 0)
            Self.expectNothingKept(target)
        }
    }

    /// Guards: the connection goes to the address that was resolved and checked, not to whatever DNS says when curl
    /// connects (a rebinding answer): a name no DNS knows, pinned to the test server, reaches the test server. (The
    /// server speaks plain HTTP, so the TLS handshake then fails; the connection is what this test is about.)
    @Test func theConnectionIsPinnedToTheCheckedAddress() async throws {
        try await Self.with { client, server, target in
            let checked = Locked<[String]>([])
            let network = DownloadNetwork(
                resolve: { name, _ in
                    checked.withLock { $0.append(name) }
                    return [IPAddress(127, 0, 0, 1)]
                },
                check: { _, _, _ in })
            let error = await #expect(throws: HTTPClientError.self) {
                try await client.download(
                    url: "https://cdn.rebind.invalid:\(server.port)/video/100", headers: [], to: target,
                    rules: try Self.rules(suffixes: ["rebind.invalid"]), timeout: .seconds(10), network: network)
            }
            #expect(checked.withLock { $0 } == ["cdn.rebind.invalid"])
            // The kernel completes the TCP handshake before the server's event loop accepts: on a busy machine curl may give
            // up on the TLS handshake first, and the accept be counted a moment later.
            let connected = await waitUntil(timeout: .seconds(30)) { server.log.connections >= 1 }
            #expect(connected && server.log.connections == 1, "curl connected to the pinned address: \(error.map { "\($0)" } ?? "")")
            #expect(error?.description.contains("resolve") == false, "curl never resolved the name itself: \(error.map { "\($0)" } ?? "")")
            Self.expectNothingKept(target)
        }
    }

    @Test func resolveEntriesBracketIPv6() {
        let entry = HTTPClient.resolveEntry(
            host: "pbxt.replicate.delivery", port: 443, addresses: [IPAddress(34, 1, 2, 3), IPAddress.parseIPv6("2606:4700::1")!])
        #expect(entry == "pbxt.replicate.delivery:443:34.1.2.3,[2606:4700::1]")
    }

    /// Guards: the open-socket check lets curl open sockets only to the checked addresses.
    @Test func socketsOpenOnlyToCheckedAddresses() {
        let sink = TransferSink(memoryLimit: 10)
        #expect(sink.mayConnect(to: IPAddress(10, 0, 0, 1)), "no restriction without a checked set")
        sink.allowedAddresses = [IPAddress(34, 1, 2, 3)]
        #expect(sink.mayConnect(to: IPAddress(34, 1, 2, 3)))
        #expect(!sink.mayConnect(to: IPAddress(127, 0, 0, 1)))
        #expect(sink.refusal?.reason == .address)
        #expect(!sink.mayConnect(to: nil))
    }

    @Test func theSystemResolverAnswersForLocalhost() throws {
        let addresses = try HTTPClient.resolve("localhost", port: 443)
        #expect(addresses.contains(IPAddress(127, 0, 0, 1)) || addresses.contains(IPAddress.parseIPv6("::1")!), "\(addresses)")
        #expect(throws: HTTPClientError.self) { try HTTPClient.resolve("no-such-host.invalid", port: 443) }
    }

    // MARK: Redirects

    /// Guards: every redirect hop is checked like the first URL: the trusted origin redirecting to an internal address
    /// is refused before the second server is contacted.
    @Test(arguments: ["https://127.0.0.1:OTHER/video/100", "http://127.0.0.1:OTHER/video/100", "https://10.0.0.1/x.mp4",
        "http://169.254.169.254/latest/meta-data/", "https://localhost:OTHER/video/100"])
    func redirectsAreCheckedEveryHop(template: String) async throws {
        try await Self.with { client, trusted, target in
            try await HTTPClientTestServer.with { inside in
                let location = template.replacingOccurrences(of: "OTHER", with: String(inside.port))
                let url = trusted.base + "/redirect?to=" + location.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                let refusal = await #expect(throws: OutputRefusal.self) {
                    try await client.download(url: url, to: target, rules: try Self.rules(trusting: [trusted.base]))
                }
                #expect(refusal?.description.contains("redirected") == true, "\(refusal.map { "\($0)" } ?? "")")
                #expect(trusted.log.all.count == 1, "the first hop was fetched")
                #expect(inside.log.connections == 0, "the redirect target was never contacted")
                Self.expectNothingKept(target)
            }
        }
    }

    @Test func redirectsWithinTheTrustedOriginAreFollowed() async throws {
        try await Self.with { client, server, target in
            let result = try await client.download(
                url: server.base + "/redirect?to=%2Fvideo%2F5000", to: target, rules: try Self.rules(trusting: [server.base]))
            #expect(result.status == 200)
            #expect(FileManager.default.contents(atPath: target) == Data(HTTPClientTestServer.video(5000)))
        }
    }

    // MARK: Size and content

    /// Guards: a body over the limit is refused, whether its length is announced (Content-Length) or not (chunked),
    /// and the partial file is removed; a body at the limit is kept whole.
    @Test(arguments: ["/video/", "/video-chunked/"])
    func sizeCap(route: String) async throws {
        try await Self.with { client, server, target in
            let rules = try Self.rules(trusting: [server.base], maxBytes: 100_000)
            let refusal = await #expect(throws: OutputRefusal.self) {
                try await client.download(url: server.base + route + "300000", to: target, rules: rules)
            }
            #expect(refusal?.reason == .tooLarge)
            #expect(refusal?.description.contains("97.7 KiB limit") == true, "\(refusal.map { "\($0)" } ?? "")")
            Self.expectNothingKept(target)

            let exact = try await client.download(url: server.base + route + "100000", to: target, rules: rules)
            #expect(exact.bytes == 100_000)
            #expect(FileManager.default.contents(atPath: target) == Data(HTTPClientTestServer.video(100_000)))
        }
    }

    /// Guards: only a body that starts like a video is kept: a web page, arbitrary bytes and an empty body are refused
    /// and nothing is left behind.
    @Test(arguments: [("/html/70000", "HTML"), ("/bytes/70000", "neither an MP4"), ("/chunked/70000", "neither an MP4"), ("/bytes/0", "empty"),
        ("/bytes/5", "only 5 bytes")])
    func onlyVideosAreKept(path: String, words: String) async throws {
        try await Self.with { client, server, target in
            let refusal = await #expect(throws: OutputRefusal.self) {
                try await client.download(url: server.base + path, to: target, rules: try Self.rules(trusting: [server.base]))
            }
            #expect(refusal?.reason == .notVideo)
            #expect(refusal?.description.contains(words) == true, "\(refusal.map { "\($0)" } ?? "")")
            Self.expectNothingKept(target)
        }
    }

    @Test func aVideoIsKept() async throws {
        try await Self.with { client, server, target in
            let rules = try Self.rules(trusting: [server.base], maxBytes: 4 << 20)
            for path in ["/video/3000000", "/video-chunked/3000000"] {
                let result = try await client.download(url: server.base + path, to: target, rules: rules)
                #expect(result.bytes == 3_000_000)
                #expect(FileManager.default.contents(atPath: target) == Data(HTTPClientTestServer.video(3_000_000)))
            }
            // A 404 is still a status, not a refusal (the finalizer tells a deleted output from a refused one).
            #expect(try await client.download(url: server.base + "/missing", to: target + ".missing", rules: rules).status == 404)
        }
    }
}
