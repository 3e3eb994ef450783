import Foundation

/// A Replicate prediction (also the webhook body), parsed leniently: unknown fields are ignored, odd types tolerated.
public struct ReplicatePrediction: Sendable, Codable, Equatable {
    public var id: String
    public var status: PredictionStatus
    public var error: String?
    /// String, array of strings, or null until done.
    public var output: PredictionOutput?
    /// "data_removed": true once Replicate deleted the output (about an hour after the run).
    public var dataRemoved: Bool?
    /// get, cancel, web, stream...
    public var urls: [String: String]?
    /// ISO 8601 with 3, 6 or 9 fractional digits; kept as text so no precision or format is lost.
    public var createdAt: String?
    public var startedAt: String?
    public var completedAt: String?
    public var webhook: String?

    public init(
        id: String, status: PredictionStatus, error: String? = nil, output: PredictionOutput? = nil, dataRemoved: Bool? = nil,
        urls: [String: String]? = nil, createdAt: String? = nil, startedAt: String? = nil, completedAt: String? = nil,
        webhook: String? = nil
    ) {
        self.id = id
        self.status = status
        self.error = error
        self.output = output
        self.dataRemoved = dataRemoved
        self.urls = urls
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.completedAt = completedAt
        self.webhook = webhook
    }

    enum CodingKeys: String, CodingKey {
        case id, status, error, output, urls, webhook
        case dataRemoved = "data_removed"
        case createdAt = "created_at"
        case startedAt = "started_at"
        case completedAt = "completed_at"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.id = try container.decode(String.self, forKey: .id)
        self.status = (try? container.decodeIfPresent(PredictionStatus.self, forKey: .status)) ?? .unknown("")
        self.error = Self.text(try? container.decodeIfPresent(JSONValue.self, forKey: .error))
        self.output = try? container.decodeIfPresent(PredictionOutput.self, forKey: .output)
        self.dataRemoved = try? container.decodeIfPresent(Bool.self, forKey: .dataRemoved)
        if case .object(let members)? = try? container.decodeIfPresent(JSONValue.self, forKey: .urls) {
            self.urls = members.compactMapValues(\.stringValue)
        }
        self.createdAt = try? container.decodeIfPresent(String.self, forKey: .createdAt)
        self.startedAt = try? container.decodeIfPresent(String.self, forKey: .startedAt)
        self.completedAt = try? container.decodeIfPresent(String.self, forKey: .completedAt)
        self.webhook = try? container.decodeIfPresent(String.self, forKey: .webhook)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.id, forKey: .id)
        try container.encode(self.status, forKey: .status)
        try container.encode(self.error, forKey: .error)
        try container.encode(self.output, forKey: .output)
        try container.encodeIfPresent(self.dataRemoved, forKey: .dataRemoved)
        try container.encodeIfPresent(self.urls, forKey: .urls)
        try container.encodeIfPresent(self.createdAt, forKey: .createdAt)
        try container.encodeIfPresent(self.startedAt, forKey: .startedAt)
        try container.encodeIfPresent(self.completedAt, forKey: .completedAt)
        try container.encodeIfPresent(self.webhook, forKey: .webhook)
    }

    /// Decodes a prediction from raw JSON bytes; throws `PredictionDecodingError` (which never quotes the body).
    public static func decode(_ bytes: [UInt8]) throws -> ReplicatePrediction {
        do {
            return try JSONDecoder().decode(ReplicatePrediction.self, from: Data(bytes))
        } catch {
            throw PredictionDecodingError(
                description: "The body is not a Replicate prediction (JSON object with a string \"id\"), \(bytes.count) bytes")
        }
    }

    /// An error that is not a string (seen from some models) is kept as compact JSON rather than dropped.
    private static func text(_ value: JSONValue?) -> String? {
        switch value {
        case nil, .null?:
            return nil
        case .string(let text)?:
            return text
        case let other?:
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            return (try? encoder.encode(other)).flatMap { String(bytes: $0, encoding: .utf8) }
        }
    }
}

/// Why a body could not be read as a prediction.
public struct PredictionDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
}

/// A prediction's status; statuses Replicate may add later are kept as `unknown` and treated as not terminal.
/// Equality compares raw values (RawRepresentable), the spelling on the wire.
public enum PredictionStatus: Sendable, Codable, Equatable, RawRepresentable {
    case starting, processing, succeeded, failed, canceled, aborted, unknown(String)

    public init?(rawValue: String) {
        switch rawValue {
        case "starting": self = .starting
        case "processing": self = .processing
        case "succeeded": self = .succeeded
        case "failed": self = .failed
        case "canceled": self = .canceled
        case "aborted": self = .aborted
        default: self = .unknown(rawValue)
        }
    }

    public var rawValue: String {
        switch self {
        case .starting: "starting"
        case .processing: "processing"
        case .succeeded: "succeeded"
        case .failed: "failed"
        case .canceled: "canceled"
        case .aborted: "aborted"
        case .unknown(let text): text
        }
    }

    /// succeeded, failed, canceled, aborted; unknown -> false (keep reconciling).
    public var isTerminal: Bool {
        switch self {
        case .succeeded, .failed, .canceled, .aborted: true
        case .starting, .processing, .unknown: false
        }
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        // init(rawValue:) never fails: anything unrecognised becomes .unknown.
        self = PredictionStatus(rawValue: text) ?? .unknown(text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(self.rawValue)
    }
}

/// A prediction's output: one URL (typical for video models), several, or something else (object, number).
public enum PredictionOutput: Sendable, Codable, Equatable {
    case url(String)
    case urls([String])
    case other

    /// The first URL, if any.
    public var firstURL: String? {
        switch self {
        case .url(let url): url
        case .urls(let urls): urls.first
        case .other: nil
        }
    }

    public init(from decoder: any Decoder) throws {
        switch try JSONValue(from: decoder) {
        case .string(let url):
            self = .url(url)
        case .array(let items):
            let strings = items.compactMap(\.stringValue)
            self = strings.isEmpty ? .other : .urls(strings)
        default:
            self = .other
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .url(let url): try container.encode(url)
        case .urls(let urls): try container.encode(urls)
        case .other: try container.encodeNil()
        }
    }
}

/// Whether a failed prediction is worth retrying.
public enum PredictionFailure {
    /// Error texts that mean the input itself is the problem; checked first so "invalid timeout value" stays permanent.
    private static let permanentMarkers = [
        "nsfw", "safety", "flagged", "invalid", "validation", "unsupported", "not supported", "must be", "cannot identify image",
        "could not decode", "unable to decode",
    ]
    private static let transientMarkers = [
        "timeout", "timed out", "time out", "out of memory", "cuda", "internal error", "internal server error", "temporarily",
        "temporary", "try again", "retry", "connection reset", "connection refused", "connection error", "connection aborted",
        "econnreset", "broken pipe", "service unavailable", "bad gateway", "gateway timeout", "unavailable", "overloaded",
        "capacity", "interrupted", "preempted", "network", "too many requests", "rate limit",
    ]

    /// Whether a failed prediction's error text looks transient (timeouts, "CUDA out of memory", "internal error", 5xx,
    /// "temporarily", "connection reset"...) -> retry; else permanent. No text is no evidence of a passing fault: false.
    public static func isTransient(error: String?) -> Bool {
        guard let error, !error.isEmpty else {
            return false
        }
        let text = error.lowercased()
        if Self.permanentMarkers.contains(where: { text.contains($0) }) {
            return false
        }
        if Self.transientMarkers.contains(where: { text.contains($0) }) {
            return true
        }
        return Self.containsServerErrorCode(text)
    }

    /// A 5xx status named as such ("status 503", "HTTP 502", "error 500", "code: 504"), not any number that starts with 5.
    private static func containsServerErrorCode(_ text: String) -> Bool {
        let characters = Array(text)
        var index = 0
        while index < characters.count {
            guard characters[index].isASCII, characters[index].isNumber else {
                index += 1
                continue
            }
            var end = index
            while end < characters.count, characters[end].isASCII, characters[end].isNumber {
                end += 1
            }
            if end - index == 3, characters[index] == "5" {
                let before = String(characters[max(0, index - 12)..<index]).trimmingCharacters(in: .whitespaces.union(.punctuationCharacters))
                if ["status", "http", "error", "code", "http/1.1", "http/2"].contains(where: { before.hasSuffix($0) }) {
                    return true
                }
            }
            index = end
        }
        return false
    }
}
