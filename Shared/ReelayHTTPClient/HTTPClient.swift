import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ReelayCCurl
import ReelayCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// curl_global_init, once per process, before the first easy handle (Swift runs a global's initializer exactly once).
private let curlGlobalInitCode: UInt32 = reelay_curl_global_init().rawValue

/// HTTP(S) over libcurl. Blocking curl calls run on the client's own threads; easy handles are reused (keep-alive,
/// TLS sessions).
public final class HTTPClient: Sendable {
    private let threadPool: NIOThreadPool
    /// Idle easy handles. A handle is taken by one worker thread for one request and put back after it.
    private let handles = NIOLockedValueBox<[EasyHandle]>([])
    private let isShutdown = NIOLockedValueBox(false)
    private let connectTimeout: Duration
    private let userAgent: String
    private let logger: Logger

    /// Redirects `download` follows before giving up.
    public static let maxRedirects = 5

    public init(threads: Int = 4, connectTimeout: Duration = .seconds(5), userAgent: String = "reelay/1", logger: Logger) {
        precondition(threads > 0, "an HTTP client needs at least one thread")
        let initCode = curlGlobalInitCode
        precondition(initCode == CURLE_OK.rawValue, "curl_global_init failed (\(initCode))")
        self.threadPool = NIOThreadPool(numberOfThreads: threads)
        self.threadPool.start()
        self.connectTimeout = connectTimeout
        self.userAgent = userAgent
        self.logger = logger
    }

    deinit {
        // Only reached without `shutdown()`: no request can be running (each one holds the client).
        if !self.isShutdown.withLockedValue({ $0 }) {
            self.threadPool.shutdownGracefully { _ in }
            for handle in self.handles.withLockedValue({ $0 }) {
                handle.cleanup()
            }
        }
    }

    /// Sends one request and collects the whole response. Redirects are not followed (a 3xx is returned as is).
    /// - Parameters:
    ///   - timeout: for the whole exchange, counted from this call (time queued for a free thread included).
    ///   - maxResponseBytes: a longer body fails with `.tooLarge`.
    public func request(
        method: String, url: String, headers: [(String, String)] = [], body: [UInt8]? = nil,
        timeout: Duration = .seconds(30), maxResponseBytes: Int = 16 << 20
    ) async throws -> HTTPClientResponse {
        let headerLines = try Self.headerLines(headers)
        let deadline = ContinuousClock.now + timeout
        let start = ContinuousClock.now
        let cancelled = NIOLockedValueBox(false)
        let response = try await self.onWorker(cancelled: cancelled) { easy in
            let sink = TransferSink(memoryLimit: maxResponseBytes)
            let outcome = try easy.perform(
                TransferRequest(
                    method: method, url: url, headerLines: headerLines, body: body, deadline: deadline,
                    connectTimeout: self.connectTimeout, userAgent: self.userAgent, maxBytes: Int64(maxResponseBytes)),
                sink: sink, cancelled: cancelled)
            return HTTPClientResponse(status: outcome.status, headers: sink.headers, body: sink.body)
        }
        self.logger.debug(
            "http request",
            metadata: [
                "http.method": "\(method)", "http.host": "\(EasyHandle.host(of: url) ?? "?")",
                "http.status": "\(response.status)", "http.duration_ms": "\((ContinuousClock.now - start).milliseconds)",
            ])
        return response
    }

    /// Streams a response body into `path` (written to path + ".part", then renamed) when status is 2xx, under `rules`:
    /// the URL and every redirect target (max 5 hops) must pass `rules.sources` before anything connects to them; a
    /// host name is resolved here, every address it resolves to is checked, and the connection is pinned to those
    /// addresses (CURLOPT_RESOLVE, and an open-socket check), so a DNS answer that changes meanwhile cannot pass.
    /// Sends `headers` only while every hop stays on the URL's own scheme, host and port.
    ///
    /// - Returns: the status and bytes written; for non-2xx it writes nothing and returns the status.
    /// - Throws: `OutputRefusal` when the rules refuse the URL, a redirect, an address, the size or the content (the
    ///   partial file is removed; retrying gives the same answer), `HTTPClientError` for network trouble.
    public func download(
        url: String, headers: [(String, String)] = [], to path: String, rules: DownloadRules, timeout: Duration = .seconds(300)
    ) async throws -> (status: Int, bytes: Int64) {
        try await self.download(url: url, headers: headers, to: path, rules: rules, timeout: timeout, network: .system)
    }

    /// `download` with its name resolution and address check replaceable: a test seam, so a name no DNS knows can be
    /// pinned to a local test server.
    func download(
        url: String, headers: [(String, String)], to path: String, rules: DownloadRules, timeout: Duration, network: DownloadNetwork
    ) async throws -> (status: Int, bytes: Int64) {
        let headerLines = try Self.headerLines(headers)
        let deadline = ContinuousClock.now + timeout
        let cancelled = NIOLockedValueBox(false)
        let partPath = path + ".part"
        // Checked here as well, so a refused URL costs no worker thread and never reaches curl.
        let first = try rules.sources.check(url)
        // A handle of its own: pinned addresses live in a handle's DNS cache, and no connection of another request may
        // be reused for a checked one.
        let result = try await self.onWorker(cancelled: cancelled, freshHandle: true) { easy -> (status: Int, bytes: Int64) in
            let origin = first.url.origin
            var source = first
            var currentHeaders = headerLines
            var redirects = 0
            while true {
                let pin = try Self.pin(source, rules: rules, network: network)
                let sink = TransferSink(filePath: partPath, limit: rules.maxBytes, requiresVideo: rules.requiresVideo)
                var request = TransferRequest(
                    method: "GET", url: source.url.normalized, headerLines: currentHeaders, body: nil, deadline: deadline,
                    connectTimeout: self.connectTimeout, userAgent: self.userAgent, maxBytes: rules.maxBytes)
                request.protocols = source.isTrusted ? source.url.scheme : "https"
                request.resolve = pin.entries
                request.allowedAddresses = pin.addresses
                let outcome: TransferOutcome
                do {
                    outcome = try easy.perform(request, sink: sink, cancelled: cancelled)
                } catch let error as HTTPClientError where error.code == .tooLarge {
                    sink.abandonFile()
                    throw OutputRefusal.tooLarge(limit: rules.maxBytes)
                } catch {
                    sink.abandonFile()
                    throw error
                }
                if (300..<400).contains(outcome.status), let location = outcome.redirectURL {
                    sink.abandonFile()
                    redirects += 1
                    guard redirects <= Self.maxRedirects else {
                        throw HTTPClientError(
                            code: .other, description: "more than \(Self.maxRedirects) redirects", mayHaveBeenSent: true)
                    }
                    let next: DownloadRules.Source
                    do throws(OutputRefusal) {
                        next = try rules.sources.check(location)
                    } catch {
                        throw OutputRefusal.redirect(from: source.url.origin, error)
                    }
                    if next.url.origin != origin {
                        // Credentials are for the URL's own host only; once dropped they stay dropped.
                        currentHeaders = []
                    }
                    source = next
                    continue
                }
                guard (200..<300).contains(outcome.status) else {
                    sink.abandonFile()
                    return (outcome.status, 0)
                }
                if let refusal = sink.finishVideoCheck() {
                    sink.abandonFile()
                    throw refusal
                }
                try sink.finishFile(renamingTo: path)
                return (outcome.status, sink.bytesWritten)
            }
        }
        self.logger.debug(
            "http download",
            metadata: ["http.host": "\(first.url.host)", "http.status": "\(result.status)", "http.bytes": "\(result.bytes)"])
        return result
    }

    /// Resolves a source's host (on the calling worker thread), checks every address, and returns the pin: CURLOPT_RESOLVE
    /// entries and the addresses a socket may be opened to. A trusted origin is neither checked nor pinned.
    static func pin(
        _ source: DownloadRules.Source, rules: DownloadRules, network: DownloadNetwork
    ) throws -> (entries: [String], addresses: Set<IPAddress>?) {
        // curl must read the URL as the rules did, or the pin would be for another host.
        let curlView = EasyHandle.origin(of: source.url.normalized).flatMap { try? OutputURL($0 + "/") }
        guard let curlView, curlView.scheme == source.url.scheme, curlView.host == source.url.host, curlView.port == source.url.port
        else {
            throw OutputRefusal(.malformed, "the output URL \(source.url.origin) is read differently by the HTTP library; it is never fetched")
        }
        if source.isTrusted {
            return ([], nil)
        }
        switch source.url.host {
        case .address(let address):
            // Only reachable if a rule allowed a literal address: then that address is the only one.
            try network.check(rules.sources, [address], source)
            return ([], [address])
        case .name(let name):
            let addresses = try network.resolve(name, source.url.port)
            guard !addresses.isEmpty else {
                throw HTTPClientError(code: .connect, description: "\(name) resolved to no address", mayHaveBeenSent: false)
            }
            try network.check(rules.sources, addresses, source)
            return ([Self.resolveEntry(host: name, port: source.url.port, addresses: addresses)], Set(addresses))
        }
    }

    /// "host:port:addr[,addr]", IPv6 addresses in brackets (CURLOPT_RESOLVE).
    static func resolveEntry(host: String, port: Int, addresses: [IPAddress]) -> String {
        "\(host):\(port):" + addresses.map { $0.isIPv4 ? $0.description : "[\($0)]" }.joined(separator: ",")
    }

    /// getaddrinfo (blocking: runs on a worker thread): every address of `host`, without duplicates, in its order.
    static func resolve(_ host: String, port: Int) throws -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG
        var list: UnsafeMutablePointer<addrinfo>?
        let code = getaddrinfo(host, String(port), &hints, &list)
        guard code == 0 else {
            let message = gai_strerror(code).map { String(cString: $0) } ?? "error \(code)"
            throw HTTPClientError(code: .connect, description: "could not resolve \(host): \(message)", mayHaveBeenSent: false)
        }
        defer { freeaddrinfo(list) }
        var addresses: [IPAddress] = []
        var entry = list
        while let current = entry {
            if let socketAddress = current.pointee.ai_addr {
                var address: IPAddress?
                if current.pointee.ai_family == AF_INET {
                    let ipv4 = UnsafeRawPointer(socketAddress).loadUnaligned(as: sockaddr_in.self)
                    address = withUnsafeBytes(of: ipv4.sin_addr) { IPAddress(bytes: Array($0)) }
                } else if current.pointee.ai_family == AF_INET6 {
                    let ipv6 = UnsafeRawPointer(socketAddress).loadUnaligned(as: sockaddr_in6.self)
                    address = withUnsafeBytes(of: ipv6.sin6_addr) { IPAddress(bytes: Array($0)) }
                }
                if let address, !addresses.contains(address) {
                    addresses.append(address)
                }
            }
            entry = current.pointee.ai_next
        }
        return addresses
    }

    /// Waits for running requests, then frees every easy handle and stops the threads. Later requests fail.
    public func shutdown() async {
        let wasShutdown = self.isShutdown.withLockedValue { isShutdown in
            defer { isShutdown = true }
            return isShutdown
        }
        guard !wasShutdown else { return }
        try? await self.threadPool.shutdownGracefully()
        let handles = self.handles.withLockedValue { handles in
            defer { handles = [] }
            return handles
        }
        for handle in handles {
            handle.cleanup()
        }
    }

    // MARK: - Workers

    /// Runs `body` on a worker thread with an easy handle. Cancelling the task before it starts skips it; during the
    /// transfer it sets `cancelled`, which the progress callback turns into an abort.
    /// - Parameter freshHandle: use a new easy handle and free it afterwards (no shared DNS cache or connections).
    private func onWorker<T: Sendable>(
        cancelled: NIOLockedValueBox<Bool>, freshHandle: Bool = false, _ body: @escaping @Sendable (EasyHandle) throws -> T
    ) async throws -> T {
        guard !self.isShutdown.withLockedValue({ $0 }) else {
            throw Self.shutDownError
        }
        do {
            return try await withTaskCancellationHandler {
                try await self.threadPool.runIfActive {
                    if freshHandle {
                        guard let easy = EasyHandle() else {
                            throw HTTPClientError(code: .other, description: "curl_easy_init failed", mayHaveBeenSent: false)
                        }
                        defer { easy.cleanup() }
                        return try body(easy)
                    }
                    let easy = try self.takeHandle()
                    defer { self.returnHandle(easy) }
                    return try body(easy)
                }
            } onCancel: {
                cancelled.withLockedValue { $0 = true }
            }
        } catch is NIOThreadPoolError.ThreadPoolInactive {
            throw Self.shutDownError
        } catch is CancellationError where !Task.isCancelled {
            // The pool drops queued work with CancellationError when it stops, not only when the task is cancelled.
            throw Self.shutDownError
        }
    }

    private static let shutDownError = HTTPClientError(code: .other, description: "the HTTP client is shut down", mayHaveBeenSent: false)

    private func takeHandle() throws -> EasyHandle {
        if let handle = self.handles.withLockedValue({ $0.popLast() }) {
            return handle
        }
        guard let handle = EasyHandle() else {
            throw HTTPClientError(code: .other, description: "curl_easy_init failed", mayHaveBeenSent: false)
        }
        return handle
    }

    private func returnHandle(_ handle: EasyHandle) {
        self.handles.withLockedValue { $0.append(handle) }
    }

    /// "Name: value" lines for curl. CR/LF would let a value inject headers, so they are refused.
    private static func headerLines(_ headers: [(String, String)]) throws -> [String] {
        try headers.map { name, value in
            // Checked on bytes: "\r\n" is a single Character, so a Character test would miss it.
            let forbidden: (UInt8) -> Bool = { $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") || $0 == 0 }
            guard !name.isEmpty, !name.utf8.contains(where: { forbidden($0) || $0 == UInt8(ascii: ":") || $0 <= 32 }),
                !value.utf8.contains(where: forbidden)
            else {
                throw HTTPClientError(code: .other, description: "invalid header \"\(name)\"", mayHaveBeenSent: false)
            }
            // "Name:" would tell curl to remove the header; "Name;" sends it empty.
            return value.isEmpty ? "\(name);" : "\(name): \(value)"
        }
    }
}

extension Duration {
    /// Whole milliseconds, rounded up so a tiny positive duration never becomes "no timeout" (0 for curl).
    var milliseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    }
}

/// How a download resolves a host and checks the addresses (the system resolver and `OutputSourcePolicy`); replaceable
/// only inside this module and its tests.
struct DownloadNetwork: Sendable {
    var resolve: @Sendable (String, Int) throws -> [IPAddress]
    var check: @Sendable (OutputSourcePolicy, [IPAddress], DownloadRules.Source) throws -> Void

    static let system = DownloadNetwork(
        resolve: { try HTTPClient.resolve($0, port: $1) },
        check: { policy, addresses, source in try policy.check(resolved: addresses, for: source) })
}
