import ReelayCore

/// A complete HTTP response.
public struct HTTPClientResponse: Sendable {
    public var status: Int
    /// Headers of the final response, in order, names as the server sent them.
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of header `name`, compared case-insensitively.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return self.headers.first { $0.0.lowercased() == wanted }?.1
    }
}

/// A request that got no complete HTTP response. Its description includes curl's message but never header values.
public struct HTTPClientError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// The connect or total timeout passed.
        case timeout
        /// No connection could be made (refused, DNS, TLS handshake or certificate).
        case connect
        /// The response body exceeded the allowed size.
        case tooLarge
        /// The connection failed mid-request or mid-response, or a local file could not be written.
        case io
        /// Anything else: a malformed URL or header, an unsupported scheme, a shut-down client.
        case other
    }

    public var code: Code
    public var description: String
    /// Whether the request may have reached the server (timeout after connect, reset mid-response): for Replicate's
    /// non-idempotent create this makes the outcome unknown.
    public var mayHaveBeenSent: Bool

    public init(code: Code, description: String, mayHaveBeenSent: Bool) {
        self.code = code
        self.description = description
        self.mayHaveBeenSent = mayHaveBeenSent
    }
}

/// What a download may fetch: where from (every hop), how much, and whether it must be a video.
public struct DownloadRules: Sendable {
    public typealias Source = OutputSourcePolicy.Source

    public var sources: OutputSourcePolicy
    /// A longer body is refused (`OutputRefusal.tooLarge`), by its Content-Length or while it streams.
    public var maxBytes: Int64
    /// The body must start like a video (`VideoSignature`), else `OutputRefusal.notVideo`.
    public var requiresVideo: Bool

    public init(sources: OutputSourcePolicy, maxBytes: Int64, requiresVideo: Bool = true) {
        self.sources = sources
        self.maxBytes = maxBytes
        self.requiresVideo = requiresVideo
    }
}
