import NIOConcurrencyHelpers
import ReelayCCurl
import ReelayCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One transfer's parameters.
struct TransferRequest: Sendable {
    var method: String
    var url: String
    var headerLines: [String]
    var body: [UInt8]?
    var deadline: ContinuousClock.Instant
    var connectTimeout: Duration
    var userAgent: String
    /// Larger responses fail with `.tooLarge` (nil: no limit).
    var maxBytes: Int64?
    /// CURLOPT_PROTOCOLS_STR: the schemes this transfer may use.
    var protocols = "http,https"
    /// CURLOPT_RESOLVE entries ("host:port:addr[,addr]"): the transfer connects to these addresses, never to what DNS
    /// says at connect time.
    var resolve: [String] = []
    /// When set, a socket is opened only to one of these addresses (checked in curl's open-socket callback), and no
    /// proxy from the environment is used: nothing but the checked addresses can be reached.
    var allowedAddresses: Set<IPAddress>?
}

struct TransferOutcome {
    var status: Int
    /// The Location of a 3xx, made absolute by curl.
    var redirectURL: String?
}

/// A curl easy handle and its error buffer. Owned by one worker thread at a time: `HTTPClient.takeHandle` gives it to the
/// thread running a request, which returns it afterwards; `cleanup` runs only once the worker threads have stopped.
final class EasyHandle: @unchecked Sendable {
    private let curl: UnsafeMutableRawPointer
    private let errorBuffer: UnsafeMutablePointer<CChar>
    private let errorBufferSize = Int(reelay_curl_error_size())

    init?() {
        guard let curl = curl_easy_init() else { return nil }
        self.curl = curl
        self.errorBuffer = .allocate(capacity: self.errorBufferSize)
        self.errorBuffer.initialize(repeating: 0, count: self.errorBufferSize)
    }

    func cleanup() {
        curl_easy_cleanup(self.curl)
        self.errorBuffer.deallocate()
    }

    /// Runs one transfer (blocking). Throws `HTTPClientError`, or `CancellationError` when `cancelled` was set.
    func perform(_ request: TransferRequest, sink: TransferSink, cancelled: NIOLockedValueBox<Bool>) throws -> TransferOutcome {
        let remaining = request.deadline - ContinuousClock.now
        guard remaining > .zero else {
            throw HTTPClientError(code: .timeout, description: "timed out before the request could start", mayHaveBeenSent: false)
        }
        // Reset clears the options but keeps the connection cache, TLS sessions and DNS cache.
        curl_easy_reset(self.curl)
        self.errorBuffer[0] = 0

        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(headerList) }
        // curl keeps a pointer to the RESOLVE list until the transfer ends.
        var resolveList: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(resolveList) }
        for entry in request.resolve {
            guard let appended = curl_slist_append(resolveList, entry) else {
                throw HTTPClientError(code: .other, description: "out of memory building the resolve list", mayHaveBeenSent: false)
            }
            resolveList = appended
        }
        var lines = request.headerLines
        if request.body != nil || request.method == "POST" {
            // No "Expect: 100-continue" round trip, and no invented form content type.
            lines.append("Expect:")
            if !lines.contains(where: { $0.lowercased().hasPrefix("content-type:") || $0.lowercased().hasPrefix("content-type;") }) {
                lines.append("Content-Type:")
            }
        }
        for line in lines {
            guard let appended = curl_slist_append(headerList, line) else {
                throw HTTPClientError(code: .other, description: "out of memory building headers", mayHaveBeenSent: false)
            }
            headerList = appended
        }

        sink.curl = self.curl
        sink.cancelled = cancelled
        sink.allowedAddresses = request.allowedAddresses
        defer {
            sink.curl = nil
            sink.cancelled = nil
            sink.allowedAddresses = nil
        }
        let context = Unmanaged.passUnretained(sink).toOpaque()
        return try withExtendedLifetime(sink) {
            try self.check(reelay_curl_setopt_ptr(self.curl, CURLOPT_ERRORBUFFER, self.errorBuffer))
            try self.check(reelay_curl_setopt_long(self.curl, CURLOPT_NOSIGNAL, 1))
            try self.check(request.url.withCString { reelay_curl_setopt_ptr(self.curl, CURLOPT_URL, $0) })
            try self.check(request.protocols.withCString { reelay_curl_setopt_ptr(self.curl, CURLOPT_PROTOCOLS_STR, $0) })
            try self.check(reelay_curl_setopt_long(self.curl, CURLOPT_CONNECTTIMEOUT_MS, Int(request.connectTimeout.milliseconds)))
            try self.check(reelay_curl_setopt_long(self.curl, CURLOPT_TIMEOUT_MS, Int(remaining.milliseconds)))
            try self.check(request.userAgent.withCString { reelay_curl_setopt_ptr(self.curl, CURLOPT_USERAGENT, $0) })
            try self.check(reelay_curl_setopt_long(self.curl, CURLOPT_TCP_KEEPALIVE, 1))
            try self.check(reelay_curl_setopt_ptr(self.curl, CURLOPT_HTTPHEADER, headerList))
            try self.check(reelay_curl_setopt_datacb(self.curl, CURLOPT_WRITEFUNCTION, transferWriteCallback))
            try self.check(reelay_curl_setopt_ptr(self.curl, CURLOPT_WRITEDATA, context))
            try self.check(reelay_curl_setopt_datacb(self.curl, CURLOPT_HEADERFUNCTION, transferHeaderCallback))
            try self.check(reelay_curl_setopt_ptr(self.curl, CURLOPT_HEADERDATA, context))
            try self.check(reelay_curl_setopt_xferinfocb(self.curl, transferProgressCallback))
            try self.check(reelay_curl_setopt_ptr(self.curl, CURLOPT_XFERINFODATA, context))
            try self.check(reelay_curl_setopt_long(self.curl, CURLOPT_NOPROGRESS, 0))
            if let maxBytes = request.maxBytes {
                try self.check(reelay_curl_setopt_off(self.curl, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(maxBytes)))
            }
            if resolveList != nil {
                try self.check(reelay_curl_setopt_ptr(self.curl, CURLOPT_RESOLVE, resolveList))
            }
            if request.allowedAddresses != nil {
                // An empty proxy string disables proxies, including http_proxy/https_proxy from the environment.
                try self.check(reelay_curl_setopt_ptr(self.curl, CURLOPT_PROXY, ""))
                try self.check(reelay_curl_setopt_opensocketcb(self.curl, transferOpenSocketCallback))
                try self.check(reelay_curl_setopt_ptr(self.curl, CURLOPT_OPENSOCKETDATA, context))
            }
            try self.setMethod(request.method, body: request.body)

            let code = curl_easy_perform(self.curl)
            if code == CURLE_OK || (code == CURLE_WRITE_ERROR && sink.stoppedDiscarding) {
                return TransferOutcome(status: self.responseCode(), redirectURL: self.redirectURL())
            }
            throw self.error(for: code, sink: sink)
        }
    }

    private func setMethod(_ method: String, body: [UInt8]?) throws {
        switch (method, body) {
        case ("GET", nil):
            try self.check(reelay_curl_setopt_long(self.curl, CURLOPT_HTTPGET, 1))
        case ("HEAD", nil):
            try self.check(reelay_curl_setopt_long(self.curl, CURLOPT_NOBODY, 1))
        default:
            let bytes = body ?? []
            // COPYPOSTFIELDS copies the bytes, so nothing has to outlive this call; the size must be set first.
            try self.check(reelay_curl_setopt_off(self.curl, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(bytes.count)))
            if bytes.isEmpty {
                // An empty body still needs a valid pointer (a NULL one would make curl read the data elsewhere).
                try self.check(reelay_curl_setopt_ptr(self.curl, CURLOPT_COPYPOSTFIELDS, ""))
            } else {
                try self.check(bytes.withUnsafeBytes { reelay_curl_setopt_ptr(self.curl, CURLOPT_COPYPOSTFIELDS, $0.baseAddress) })
            }
            if method != "POST" {
                try self.check(method.withCString { reelay_curl_setopt_ptr(self.curl, CURLOPT_CUSTOMREQUEST, $0) })
            }
        }
    }

    private func responseCode() -> Int {
        var code = 0
        _ = reelay_curl_getinfo_long(self.curl, CURLINFO_RESPONSE_CODE, &code)
        return code
    }

    private func redirectURL() -> String? {
        var pointer: UnsafeMutablePointer<CChar>? = nil
        guard reelay_curl_getinfo_string(self.curl, CURLINFO_REDIRECT_URL, &pointer) == CURLE_OK, let pointer else { return nil }
        return String(cString: pointer)
    }

    /// Whether curl got as far as sending the request (connection and TLS done).
    private func requestStarted() -> Bool {
        var pretransfer: curl_off_t = 0
        _ = reelay_curl_getinfo_off(self.curl, CURLINFO_PRETRANSFER_TIME_T, &pretransfer)
        return pretransfer > 0
    }

    private func check(_ code: CURLcode) throws {
        guard code == CURLE_OK else {
            throw HTTPClientError(code: .other, description: "curl option rejected: \(Self.message(code))", mayHaveBeenSent: false)
        }
    }

    private func error(for code: CURLcode, sink: TransferSink) -> Error {
        let detail = String(cString: self.errorBuffer)
        let text = detail.isEmpty ? Self.message(code) : "\(Self.message(code)): \(detail)"
        let started = self.requestStarted()
        if let refusal = sink.refusal, !(code == CURLE_ABORTED_BY_CALLBACK && sink.isCancelled) {
            // Stopped on purpose (not a video, an address that was not checked): final, not a network error.
            return refusal
        }
        switch code {
        case CURLE_ABORTED_BY_CALLBACK where sink.cancelled?.withLockedValue({ $0 }) ?? false:
            return CancellationError()
        case CURLE_OPERATION_TIMEDOUT:
            return HTTPClientError(code: .timeout, description: text, mayHaveBeenSent: started)
        case CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_CONNECT, CURLE_SSL_CONNECT_ERROR,
            CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER:
            return HTTPClientError(code: .connect, description: text, mayHaveBeenSent: false)
        case CURLE_FILESIZE_EXCEEDED:
            return HTTPClientError(code: .tooLarge, description: text, mayHaveBeenSent: true)
        case CURLE_WRITE_ERROR where sink.tooLarge:
            return HTTPClientError(code: .tooLarge, description: "response body larger than allowed", mayHaveBeenSent: true)
        case CURLE_WRITE_ERROR where sink.fileError != nil:
            return HTTPClientError(code: .io, description: sink.fileError ?? text, mayHaveBeenSent: true)
        case CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_HTTP2, CURLE_HTTP2_STREAM,
            CURLE_WRITE_ERROR, CURLE_READ_ERROR, CURLE_BAD_CONTENT_ENCODING:
            return HTTPClientError(code: .io, description: text, mayHaveBeenSent: started)
        default:
            return HTTPClientError(code: .other, description: text, mayHaveBeenSent: started)
        }
    }

    private static func message(_ code: CURLcode) -> String {
        curl_easy_strerror(code).map { String(cString: $0) } ?? "curl error \(code.rawValue)"
    }

    /// "scheme://host:port" as curl parses it, to tell whether a redirect leaves the original server.
    static func origin(of url: String) -> String? {
        guard let parsed = curl_url() else { return nil }
        defer { curl_url_cleanup(parsed) }
        guard curl_url_set(parsed, CURLUPART_URL, url, 0) == CURLUE_OK,
            let scheme = Self.part(parsed, CURLUPART_SCHEME, 0),
            let host = Self.part(parsed, CURLUPART_HOST, 0),
            let port = Self.part(parsed, CURLUPART_PORT, UInt32(CURLU_DEFAULT_PORT))
        else { return nil }
        return "\(scheme.lowercased())://\(host.lowercased()):\(port)"
    }

    /// The host alone, for logs (never the path or query, which may carry signatures).
    static func host(of url: String) -> String? {
        guard let parsed = curl_url() else { return nil }
        defer { curl_url_cleanup(parsed) }
        guard curl_url_set(parsed, CURLUPART_URL, url, 0) == CURLUE_OK else { return nil }
        return Self.part(parsed, CURLUPART_HOST, 0)
    }

    private static func part(_ url: OpaquePointer, _ part: CURLUPart, _ flags: UInt32) -> String? {
        var pointer: UnsafeMutablePointer<CChar>? = nil
        guard curl_url_get(url, part, &pointer, flags) == CURLUE_OK, let pointer else { return nil }
        defer { curl_free(pointer) }
        return String(cString: pointer)
    }
}

/// Collects one transfer's response headers and body, in memory or into a file. Used only by the worker thread running
/// the transfer (curl calls the callbacks on that thread, inside curl_easy_perform).
final class TransferSink {
    private(set) var headers: [(String, String)] = []
    private(set) var body: [UInt8] = []
    private(set) var bytesWritten: Int64 = 0
    private(set) var tooLarge = false
    private(set) var fileError: String?
    /// A non-2xx body in file mode grew past what is worth reading; the transfer was stopped on purpose.
    private(set) var stoppedDiscarding = false
    var curl: UnsafeMutableRawPointer?
    var cancelled: NIOLockedValueBox<Bool>?
    /// Addresses a socket may be opened to (nil: any); see `TransferRequest.allowedAddresses`.
    var allowedAddresses: Set<IPAddress>?
    /// Why the transfer was stopped on purpose: the body is not a video, or curl tried an address that was not checked.
    private(set) var refusal: OutputRefusal?

    private let memoryLimit: Int?
    private let filePath: String?
    /// File mode: a 2xx body larger than this stops the transfer with `tooLarge` (chunked bodies have no length up front).
    private let fileLimit: Int64?
    /// File mode: the 2xx body must start like a video (VideoSignature), decided on its first bytes.
    private let requiresVideo: Bool
    private var head: [UInt8] = []
    private var headDecided = false
    private var fileDescriptor: Int32 = -1
    private var discarding = false
    private var discarded = 0
    private var bodyStarted = false

    private static let discardLimit = 1 << 20

    init(memoryLimit: Int) {
        self.memoryLimit = memoryLimit
        self.filePath = nil
        self.fileLimit = nil
        self.requiresVideo = false
    }

    init(filePath: String, limit: Int64? = nil, requiresVideo: Bool = false) {
        self.memoryLimit = nil
        self.filePath = filePath
        self.fileLimit = limit
        self.requiresVideo = requiresVideo
    }

    deinit {
        self.abandonFile()
    }

    var isCancelled: Bool { self.cancelled?.withLockedValue { $0 } ?? false }

    /// One header line, CRLF included. A status line starts a new response (100 Continue, a redirect), so it resets.
    func header(_ bytes: UnsafeBufferPointer<UInt8>) {
        var line = String(decoding: bytes, as: UTF8.self)
        while let last = line.last, last == "\n" || last == "\r" || last == "\r\n" {
            line.removeLast()
        }
        if line.hasPrefix("HTTP/") {
            self.headers = []
            return
        }
        guard !line.isEmpty else { return }
        if line.first == " " || line.first == "\t" {
            // Obsolete line folding: continues the previous value.
            if let last = self.headers.popLast() {
                self.headers.append((last.0, last.1 + " " + line.trimmingWhitespace()))
            }
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = String(line[..<colon]).trimmingWhitespace()
        let value = String(line[line.index(after: colon)...]).trimmingWhitespace()
        self.headers.append((name, value))
    }

    /// Body bytes. Returning less than `bytes.count` makes curl stop with CURLE_WRITE_ERROR.
    func write(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        if let memoryLimit = self.memoryLimit {
            guard self.body.count + bytes.count <= memoryLimit else {
                self.tooLarge = true
                return 0
            }
            self.body.append(contentsOf: bytes)
            self.bytesWritten += Int64(bytes.count)
            return bytes.count
        }
        if !self.bodyStarted {
            self.bodyStarted = true
            self.discarding = !(200..<300).contains(self.currentStatus())
            if !self.discarding, !self.openFile() {
                return 0
            }
        }
        if self.discarding {
            self.discarded += bytes.count
            if self.discarded > Self.discardLimit {
                self.stoppedDiscarding = true
                return 0
            }
            return bytes.count
        }
        if let limit = self.fileLimit, self.bytesWritten + Int64(bytes.count) > limit {
            self.tooLarge = true
            return 0
        }
        if self.requiresVideo && !self.headDecided {
            self.head += bytes.prefix(VideoSignature.prefixLength - self.head.count)
            switch VideoSignature.classify(self.head, isComplete: false) {
            case .video: self.headDecided = true
            case .needMoreBytes: break
            case .notVideo(let what):
                self.refusal = OutputRefusal(.notVideo, "the output is not a video: it is \(what)")
                return 0
            }
        }
        var offset = 0
        while offset < bytes.count {
            let written = posixWrite(self.fileDescriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR {
                    continue
                }
                self.fileError = "could not write \(self.filePath ?? ""): \(String(cString: strerror(errno)))"
                return 0
            }
            offset += written
        }
        self.bytesWritten += Int64(bytes.count)
        return bytes.count
    }

    /// For a body that ended before its first bytes were judged (shorter than a video's signature): the refusal, if any.
    func finishVideoCheck() -> OutputRefusal? {
        guard self.requiresVideo, !self.headDecided else { return nil }
        if case .notVideo(let what) = VideoSignature.classify(self.head, isComplete: true) {
            self.refusal = OutputRefusal(.notVideo, "the output is not a video: it is \(what)")
            return self.refusal
        }
        self.headDecided = true
        return nil
    }

    /// Whether a socket may be opened to `address` (the open-socket callback); records a refusal when not.
    func mayConnect(to address: IPAddress?) -> Bool {
        guard let allowed = self.allowedAddresses else { return true }
        guard let address, allowed.contains(address) else {
            let shown = address.map { "\($0)" } ?? "an address of an unknown family"
            self.refusal = OutputRefusal(.address, "the download tried to connect to \(shown), which was not checked; it is never fetched")
            return false
        }
        return true
    }

    /// Makes the finished .part file durable and gives it its final name (creating it if the body was empty).
    func finishFile(renamingTo path: String) throws {
        guard let partPath = self.filePath else { return }
        if self.fileDescriptor < 0, !self.openFile() {
            throw HTTPClientError(code: .io, description: self.fileError ?? "could not open \(partPath)", mayHaveBeenSent: true)
        }
        let synced = fsync(self.fileDescriptor) == 0
        let syncError = errno
        let closed = close(self.fileDescriptor) == 0
        self.fileDescriptor = -1
        guard synced, closed else {
            unlink(partPath)
            throw HTTPClientError(
                code: .io, description: "could not write \(partPath): \(String(cString: strerror(synced ? errno : syncError)))",
                mayHaveBeenSent: true)
        }
        guard rename(partPath, path) == 0 else {
            let message = String(cString: strerror(errno))
            unlink(partPath)
            throw HTTPClientError(code: .io, description: "could not rename to \(path): \(message)", mayHaveBeenSent: true)
        }
    }

    /// Closes and removes the .part file, if one was started.
    func abandonFile() {
        guard self.fileDescriptor >= 0, let partPath = self.filePath else { return }
        close(self.fileDescriptor)
        self.fileDescriptor = -1
        unlink(partPath)
    }

    private func openFile() -> Bool {
        guard let partPath = self.filePath else { return false }
        let descriptor = open(partPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            self.fileError = "could not open \(partPath): \(String(cString: strerror(errno)))"
            return false
        }
        self.fileDescriptor = descriptor
        return true
    }

    private func currentStatus() -> Int {
        guard let curl = self.curl else { return 0 }
        var code = 0
        _ = reelay_curl_getinfo_long(curl, CURLINFO_RESPONSE_CODE, &code)
        return code
    }
}

/// write(2); a free function because `TransferSink.write` shadows the name inside the class.
private func posixWrite(_ descriptor: Int32, _ bytes: UnsafePointer<UInt8>, _ count: Int) -> Int {
    write(descriptor, bytes, count)
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" {
            text = text.dropFirst()
        }
        while let last = text.last, last == " " || last == "\t" {
            text = text.dropLast()
        }
        return String(text)
    }
}

private let transferWriteCallback: reelay_curl_data_cb = { data, size, count, context in
    guard let context else { return 0 }
    let sink = Unmanaged<TransferSink>.fromOpaque(context).takeUnretainedValue()
    let total = size * count
    guard total > 0, let data else { return total }
    return data.withMemoryRebound(to: UInt8.self, capacity: total) { sink.write(UnsafeBufferPointer(start: $0, count: total)) }
}

private let transferHeaderCallback: reelay_curl_data_cb = { data, size, count, context in
    guard let context else { return 0 }
    let sink = Unmanaged<TransferSink>.fromOpaque(context).takeUnretainedValue()
    let total = size * count
    guard total > 0, let data else { return total }
    data.withMemoryRebound(to: UInt8.self, capacity: total) { sink.header(UnsafeBufferPointer(start: $0, count: total)) }
    return total
}

/// Called by curl before it opens each socket: refuses addresses outside the transfer's checked set, so no redirect,
/// DNS answer or connection reuse can reach another one.
private let transferOpenSocketCallback: reelay_curl_opensocket_cb = { context, _, address in
    guard let context, let address else { return CURL_SOCKET_BAD }
    let sink = Unmanaged<TransferSink>.fromOpaque(context).takeUnretainedValue()
    let family = address.pointee.family
    let socketAddress = UnsafeRawPointer(address) + MemoryLayout<curl_sockaddr>.offset(of: \curl_sockaddr.addr)!
    var target: IPAddress?
    if family == AF_INET {
        let ipv4 = socketAddress.loadUnaligned(as: sockaddr_in.self)
        target = withUnsafeBytes(of: ipv4.sin_addr) { IPAddress(bytes: Array($0)) }
    } else if family == AF_INET6 {
        let ipv6 = socketAddress.loadUnaligned(as: sockaddr_in6.self)
        target = withUnsafeBytes(of: ipv6.sin6_addr) { IPAddress(bytes: Array($0)) }
    }
    guard sink.mayConnect(to: target) else { return CURL_SOCKET_BAD }
    let descriptor = socket(family, address.pointee.socktype, address.pointee.protocol)
    if descriptor >= 0 {
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
    }
    return descriptor
}

/// Called by curl about once a second (more often while data flows): a non-zero return aborts the transfer.
private let transferProgressCallback: reelay_curl_xferinfo_cb = { context, _, _, _, _ in
    guard let context else { return 0 }
    return Unmanaged<TransferSink>.fromOpaque(context).takeUnretainedValue().isCancelled ? 1 : 0
}
