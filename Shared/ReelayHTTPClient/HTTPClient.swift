import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ReelayCCurl

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

    /// Streams the response body into `path` (written to path + ".part", then renamed) when status is 2xx; follows
    /// redirects (max 5) but sends `headers` only while every hop stays on the URL's own scheme, host and port.
    /// Returns the status and bytes written; for non-2xx it writes nothing and returns the status.
    public func download(
        url: String, headers: [(String, String)] = [], to path: String, timeout: Duration = .seconds(300)
    ) async throws -> (status: Int, bytes: Int64) {
        let headerLines = try Self.headerLines(headers)
        let deadline = ContinuousClock.now + timeout
        let cancelled = NIOLockedValueBox(false)
        let partPath = path + ".part"
        let result = try await self.onWorker(cancelled: cancelled) { easy -> (status: Int, bytes: Int64) in
            guard let origin = EasyHandle.origin(of: url) else {
                throw HTTPClientError(code: .other, description: "malformed URL", mayHaveBeenSent: false)
            }
            var currentURL = url
            var currentHeaders = headerLines
            var redirects = 0
            while true {
                let sink = TransferSink(filePath: partPath)
                let outcome: TransferOutcome
                do {
                    outcome = try easy.perform(
                        TransferRequest(
                            method: "GET", url: currentURL, headerLines: currentHeaders, body: nil, deadline: deadline,
                            connectTimeout: self.connectTimeout, userAgent: self.userAgent, maxBytes: nil),
                        sink: sink, cancelled: cancelled)
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
                    if EasyHandle.origin(of: location) != origin {
                        // Credentials are for the URL's own host only; once dropped they stay dropped.
                        currentHeaders = []
                    }
                    currentURL = location
                    continue
                }
                guard (200..<300).contains(outcome.status) else {
                    sink.abandonFile()
                    return (outcome.status, 0)
                }
                try sink.finishFile(renamingTo: path)
                return (outcome.status, sink.bytesWritten)
            }
        }
        self.logger.debug(
            "http download",
            metadata: [
                "http.host": "\(EasyHandle.host(of: url) ?? "?")", "http.status": "\(result.status)",
                "http.bytes": "\(result.bytes)",
            ])
        return result
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
    private func onWorker<T: Sendable>(
        cancelled: NIOLockedValueBox<Bool>, _ body: @escaping @Sendable (EasyHandle) throws -> T
    ) async throws -> T {
        guard !self.isShutdown.withLockedValue({ $0 }) else {
            throw Self.shutDownError
        }
        do {
            return try await withTaskCancellationHandler {
                try await self.threadPool.runIfActive {
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
