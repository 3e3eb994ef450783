import Foundation
import ReelayCore

// Every message schema of Reelay. A message never carries authority: consumers re-read the row and apply a
// conditional update. Each message has a version field `v`; a consumer rejects (dead-letters) a version it does not know.

/// A message with a fixed place in the topology.
public protocol BusMessage: Codable, Sendable {
    static var exchange: String { get }
    var routingKey: String { get }
    var v: Int { get }
}

/// gateway -> scheduler: a new submission to admit (request/reply: `reply_to` and `correlation_id` carry the way back).
public struct SubmitTaskCommand: BusMessage, Equatable {
    public static let exchange = Topology.commandsExchange
    public var routingKey: String { Topology.RoutingKey.submit }
    public var v = 1
    public var taskID: UUID
    public var userID: UUID
    public var prompt: String
    public var inputImageURL: String
    /// The user's extra model input, a JSON object serialized as text (already validated by the gateway).
    public var inputJSON: String?
    public var idempotencyKey: String?
    public var submittedAt: Date
    /// When the gateway stops waiting for the verdict and answers 202 "submitted" instead. A refusal decided close to or
    /// after it is kept as a `rejected` row (the user can only read it there); one decided well before only counts.
    /// nil from gateways older than the field: every refusal is kept.
    public var replyBy: Date?

    public init(
        taskID: UUID, userID: UUID, prompt: String, inputImageURL: String, inputJSON: String?, idempotencyKey: String?,
        submittedAt: Date, replyBy: Date? = nil
    ) {
        self.taskID = taskID
        self.userID = userID
        self.prompt = prompt
        self.inputImageURL = inputImageURL
        self.inputJSON = inputJSON
        self.idempotencyKey = idempotencyKey
        self.submittedAt = submittedAt
        self.replyBy = replyBy
    }
}

/// scheduler -> gateway (reply queue): the admission verdict for one submission.
public struct AdmissionVerdict: Codable, Sendable, Equatable {
    public enum Outcome: String, Codable, Sendable {
        /// Persisted as a new pending task.
        case admitted
        /// The idempotency key (or task id) was seen before: `taskID` is the existing task.
        case duplicate
        /// Refused: under a limit (429, 503) or as invalid data (422). Kept as a `rejected` row only when `persisted`.
        case rejected
    }
    public var v = 1
    public var taskID: UUID
    public var outcome: Outcome
    /// 202 for admitted/duplicate; 429 (user limit), 503 (queue full) or 422 (the submission cannot be stored) for rejected.
    public var httpStatus: Int
    public var message: String?
    /// For a rejection, the refusal counter's reason (`AdmissionDecision.refusalReason`): "user_limit", "queue_full",
    /// "invalid". nil from older schedulers.
    public var reason: String?
    /// Whether a row exists for `taskID` (always for admitted and duplicate). A rejection decided well before the
    /// gateway's deadline is only counted, not stored. nil from older schedulers, which stored every rejection.
    public var persisted: Bool?

    public init(taskID: UUID, outcome: Outcome, httpStatus: Int, message: String?, reason: String? = nil, persisted: Bool? = nil) {
        self.taskID = taskID
        self.outcome = outcome
        self.httpStatus = httpStatus
        self.message = message
        self.reason = reason
        self.persisted = persisted
    }
}

/// gateway -> scheduler: the user asked to cancel a task.
public struct CancelTaskCommand: BusMessage, Equatable {
    public static let exchange = Topology.commandsExchange
    public var routingKey: String { Topology.RoutingKey.cancel }
    public var v = 1
    public var taskID: UUID

    public init(taskID: UUID) { self.taskID = taskID }
}

/// scheduler -> dispatchers: a call to make at Replicate for one attempt of a task.
public struct PredictionCommand: BusMessage, Equatable {
    public enum Action: String, Codable, Sendable { case create, cancel, get }
    public static let exchange = Topology.commandsExchange
    public var routingKey: String {
        switch self.action {
        case .create: Topology.RoutingKey.predictionCreate
        case .cancel: Topology.RoutingKey.predictionCancel
        case .get: Topology.RoutingKey.predictionGet
        }
    }
    public var v = 1
    public var action: Action
    public var taskID: UUID
    /// The fencing token: a command for an older attempt changes nothing.
    public var attempt: Int

    public init(action: Action, taskID: UUID, attempt: Int) {
        self.action = action
        self.taskID = taskID
        self.attempt = attempt
    }
}

/// webhook HTTP -> webhook finalizer: a verified webhook from Replicate.
public struct PredictionWebhookCommand: BusMessage, Equatable {
    public static let exchange = Topology.commandsExchange
    public var routingKey: String { Topology.RoutingKey.predictionCompleted }
    public var v = 1
    /// From the webhook URL's query string; nil when Replicate called without it.
    public var taskID: UUID?
    public var attempt: Int?
    public var webhookID: String
    public var receivedAt: Date
    /// The verified raw body (the prediction JSON), as text.
    public var body: String

    public init(taskID: UUID?, attempt: Int?, webhookID: String, receivedAt: Date, body: String) {
        self.taskID = taskID
        self.attempt = attempt
        self.webhookID = webhookID
        self.receivedAt = receivedAt
        self.body = body
    }
}

/// Anyone who changes a task row -> events exchange (`task.<status>`): scheduler passes, SSE.
public struct TaskEvent: BusMessage, Equatable {
    public static let exchange = Topology.eventsExchange
    public var routingKey: String { Topology.RoutingKey.event(self.status.rawValue) }
    public var v = 1
    public var taskID: UUID
    public var userID: UUID
    public var status: TaskStatus
    public var attempt: Int
    public var reason: String?
    public var at: Date

    public init(taskID: UUID, userID: UUID, status: TaskStatus, attempt: Int, reason: String?, at: Date = Date()) {
        self.taskID = taskID
        self.userID = userID
        self.status = status
        self.attempt = attempt
        self.reason = reason
        self.at = at
    }
}

/// JSON for every message: snake_case keys, ISO 8601 dates with fractional seconds.
public enum MessageCodec {
    public struct DecodingFailure: Error, CustomStringConvertible {
        public var description: String
    }

    public static func encode<M: Encodable>(_ message: M) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Self.formatDate(date))
        }
        encoder.outputFormatting = [.sortedKeys]
        // Encoding our own Codable structs cannot fail.
        return Array((try? encoder.encode(message)) ?? Data())
    }

    public static func decode<M: Decodable>(_ type: M.Type, from bytes: [UInt8]) throws -> M {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .custom { path in Self.camelCaseKey(path.last!.stringValue) }
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = Self.parseDate(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an ISO 8601 date: \(text)")
            }
            return date
        }
        do {
            return try decoder.decode(type, from: Data(bytes))
        } catch {
            throw DecodingFailure(description: "cannot decode \(M.self): \(error)")
        }
    }

    /// `task_id` -> `taskID`, `input_image_url` -> `inputImageURL`: the inverse of `.convertToSnakeCase` for our names,
    /// whose initialisms are upper case (Foundation's `.convertFromSnakeCase` would give `taskId`).
    static func camelCaseKey(_ key: String) -> AnyCodingKey {
        let initialisms: Set<String> = ["id", "url", "json"]
        let parts = key.split(separator: "_")
        guard let first = parts.first else { return AnyCodingKey(key) }
        let rest = parts.dropFirst().map { part in
            initialisms.contains(String(part)) ? part.uppercased() : part.prefix(1).uppercased() + part.dropFirst()
        }
        return AnyCodingKey(String(first) + rest.joined())
    }

    struct AnyCodingKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { self.stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public static func formatDate(_ date: Date) -> String {
        Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(date)
    }

    public static func parseDate(_ text: String) -> Date? {
        if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) {
            return date
        }
        return try? Date.ISO8601FormatStyle().parse(text)
    }
}
