import Foundation

/// Prediction status as Replicate spells it.
enum RunStatus: String, Sendable {
    case starting, processing, succeeded, failed, canceled, aborted

    /// Starting or processing: the prediction holds a GPU.
    var isRunning: Bool { self == .starting || self == .processing }
    var isTerminal: Bool { !self.isRunning }
}

/// Webhook event kinds a client may ask for in `webhook_events_filter`.
enum WebhookEvent: String, Sendable, CaseIterable {
    case start, output, logs, completed
}

/// What a prediction will suffer, rolled once when it is created so a seed reproduces a whole run.
struct FaultPlan: Sendable, Equatable {
    var fail = false
    var outputMissing = false
    var dropWebhook = false
    var duplicateWebhook = false
    var delayWebhook = false
}

/// One prediction as the stand-in keeps it.
struct Prediction: Sendable {
    var id: String
    /// "owner/name".
    var model: String
    /// "hidden" for official models, else the 64-hex version id.
    var version: String
    var input: [String: JSON]
    var webhook: String?
    var events: Set<WebhookEvent>
    var stream: Bool
    var status: RunStatus = .starting
    var error: String?
    var logs = ""
    var createdAt: Date
    var startedAt: Date?
    var completedAt: Date?
    var deadline: Date?
    var plan: FaultPlan
    /// The Reelay task this prediction was made for, read from the webhook URL's query string.
    var taskID: UUID?

    /// The output file's path, served while the data is kept and the output is not faulted away.
    var outputPath: String { "/files/\(self.id).mp4" }

    /// Whether Replicate would have deleted inputs/outputs by `now`.
    func dataRemoved(now: Date, ttl: Duration) -> Bool {
        guard self.status.isTerminal, let completedAt = self.completedAt else { return false }
        return now.timeIntervalSince(completedAt) >= ttl.seconds
    }

    /// The prediction object exactly as `GET /v1/predictions/{id}` returns it (and the webhook body).
    func json(publicURL: String, now: Date, ttl: Duration) -> JSON {
        let removed = self.dataRemoved(now: now, ttl: ttl)
        var output = JSON.null
        if self.status == .succeeded && !removed {
            output = .string(publicURL + self.outputPath)
        }
        var urls: [String: JSON] = [
            "get": .string("\(publicURL)/v1/predictions/\(self.id)"),
            "cancel": .string("\(publicURL)/v1/predictions/\(self.id)/cancel"),
            "web": .string("\(publicURL)/p/\(self.id)"),
        ]
        if self.stream {
            urls["stream"] = .string("\(publicURL)/v1/streams/\(self.id)")
        }
        var metrics: [String: JSON] = [:]
        if let completedAt = self.completedAt {
            metrics["total_time"] = .number(Self.rounded(completedAt.timeIntervalSince(self.createdAt)))
            if let startedAt = self.startedAt {
                metrics["predict_time"] = .number(Self.rounded(completedAt.timeIntervalSince(startedAt)))
            }
        }
        var object: [String: JSON] = [
            "id": .string(self.id),
            "model": .string(self.model),
            "version": .string(self.version),
            "input": .object(self.input),
            "output": output,
            "error": self.error.map { .string($0) } ?? .null,
            "logs": .string(removed ? "" : self.logs),
            "status": .string(self.status.rawValue),
            "metrics": .object(metrics),
            "created_at": .string(Timestamp.iso8601(self.createdAt)),
            "started_at": self.startedAt.map { .string(Timestamp.iso8601($0)) } ?? .null,
            "completed_at": self.completedAt.map { .string(Timestamp.iso8601($0)) } ?? .null,
            "urls": .object(urls),
            "data_removed": .bool(removed),
            "source": .string("api"),
        ]
        if let deadline = self.deadline {
            object["deadline"] = .string(Timestamp.iso8601(deadline))
        }
        if let webhook = self.webhook {
            // As Replicate does: the prediction names the webhook it was created with (inside the signed body).
            object["webhook"] = .string(webhook)
            object["webhook_events_filter"] = .array(WebhookEvent.allCases.filter(self.events.contains).map { .string($0.rawValue) })
        }
        return .object(object)
    }

    private static func rounded(_ seconds: TimeInterval) -> Double {
        (seconds * 1_000_000).rounded() / 1_000_000
    }
}

/// Replicate-style times: ISO 8601 in UTC with 6 fractional digits.
enum Timestamp {
    static func iso8601(_ date: Date) -> String {
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded(.down))
        var seconds = time_t(micros / 1_000_000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let date = "\(pad(Int(parts.tm_year) + 1900, 4))-\(pad(Int(parts.tm_mon) + 1, 2))-\(pad(Int(parts.tm_mday), 2))"
        let time = "\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2))"
        return "\(date)T\(time).\(pad(Int(micros % 1_000_000), 6))Z"
    }
}

extension Duration {
    /// The duration in (fractional) seconds.
    var seconds: Double {
        let parts = self.components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
