import Foundation

/// What Reelay should do with one HTTP answer from Replicate (REPLICATE.md "Errors and rate limits").
public enum ReplicateOutcomeClass: Sendable, Equatable {
    case success
    /// Do not retry; the message is one a user or operator can act on.
    case permanent(message: String)
    /// Nothing was created; retry after the wait (nil: the caller's own backoff).
    case rateLimited(retryAfter: Duration?)
    /// 5xx, 408 and unexpected answers: retry GET/cancel; a create in this state is ambiguous and must be reconciled.
    case transient(message: String)

    /// Whether an operator must be paged: the token was rejected (401) or the account is out of credit (402).
    public var needsAlert: Bool {
        guard case .permanent(let message) = self else {
            return false
        }
        return message.hasPrefix(ReplicateErrors.tokenRejectedMessage) || message.hasPrefix(ReplicateErrors.insufficientCreditMessage)
    }
}

/// Classification of Replicate's HTTP answers; bodies are parsed defensively because a CDN may answer with HTML.
public enum ReplicateErrors {
    /// The 401 message; `needsAlert` recognises it by this prefix.
    public static let tokenRejectedMessage = "Replicate rejected the API token (401); check REPLICATE_API_TOKEN"
    /// The 402 message; `needsAlert` recognises it by this prefix.
    public static let insufficientCreditMessage = "Replicate refused the request because the account has insufficient credit (402)"

    /// Body details beyond this are cut so a huge error page cannot bloat task rows and logs.
    private static let maxDetailLength = 500

    /// status + headers (case-insensitive names) + raw body; the body may be problem+json, {"detail": ...},
    /// or HTML/non-JSON. For 429 the Retry-After is computed against the current time.
    public static func classify(status: Int, headers: [(String, String)], body: [UInt8]) -> ReplicateOutcomeClass {
        Self.classify(status: status, headers: headers, body: body, now: Date())
    }

    /// As `classify(status:headers:body:)`, with the clock passed in for an HTTP-date Retry-After.
    public static func classify(status: Int, headers: [(String, String)], body: [UInt8], now: Date) -> ReplicateOutcomeClass {
        if (200..<300).contains(status) {
            return .success
        }
        let problem = Problem(body: body)
        let suffix = problem.summary.map { ": \($0)" } ?? ""
        switch status {
        case 429:
            return .rateLimited(retryAfter: Self.retryAfter(headers: headers, body: body, now: now))
        case 401:
            return .permanent(message: Self.tokenRejectedMessage)
        case 402:
            return .permanent(message: Self.insufficientCreditMessage + "; add credit to the Replicate account" + suffix)
        case 400:
            return .permanent(message: "Replicate rejected the request as malformed (400)" + suffix)
        case 403:
            return .permanent(message: "Replicate denied access to the model or prediction (403); check the token's permissions" + suffix)
        case 404:
            return .permanent(
                message: "Replicate could not find the model or prediction (404); check REPLICATE_MODEL" + suffix)
        case 409:
            return .permanent(message: "Replicate reported a conflict with the prediction's current state (409)" + suffix)
        case 413:
            return .permanent(message: "Replicate rejected the request as too large (413)" + suffix)
        case 422:
            return .permanent(message: "Replicate rejected the model input (422)" + (problem.validationSummary.map { ": \($0)" } ?? ""))
        case 408:
            return .transient(message: "Replicate timed out reading the request (408)" + suffix)
        case 500..<600:
            return .transient(message: "Replicate had a server error (\(status))" + suffix)
        case 400..<500:
            return .permanent(message: "Replicate rejected the request (\(status))" + suffix)
        default:
            return .transient(message: "Replicate answered with unexpected status \(status)" + suffix)
        }
    }

    /// Retry-After header (seconds or HTTP-date), else body retry_after (number), else "~Ns" in detail, else nil.
    public static func retryAfter(headers: [(String, String)], body: [UInt8], now: Date) -> Duration? {
        if let header = headers.first(where: { $0.0.caseInsensitiveCompare("retry-after") == .orderedSame })?.1 {
            let value = header.trimmingCharacters(in: .whitespaces)
            if let seconds = Double(value), seconds.isFinite, seconds >= 0 {
                return Self.duration(seconds: seconds)
            }
            if let date = Self.parseHTTPDate(value) {
                return Self.duration(seconds: max(0, date.timeIntervalSince(now)))
            }
        }
        let json = Self.parseJSON(body)
        if let seconds = json?["retry_after"]?.numberValue, seconds.isFinite, seconds >= 0 {
            return Self.duration(seconds: seconds)
        }
        if let detail = json?["detail"]?.stringValue, let seconds = Self.approximateSeconds(in: detail) {
            return Self.duration(seconds: seconds)
        }
        return nil
    }

    /// The first "~<number>s" in a text, as in "Your rate limit resets in ~30s."
    static func approximateSeconds(in text: String) -> Double? {
        var rest = Substring(text)
        while let tilde = rest.firstIndex(of: "~") {
            rest = rest[rest.index(after: tilde)...]
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            let after = rest[number.endIndex...].drop { $0 == " " }
            if !number.isEmpty, after.first == "s", let seconds = Double(number), seconds.isFinite {
                return seconds
            }
        }
        return nil
    }

    /// Parses IMF-fixdate and the two obsolete HTTP-date forms (RFC 9110 section 5.6.7).
    static func parseHTTPDate(_ text: String) -> Date? {
        // A formatter per call: DateFormatter is not Sendable, and this runs only on a 429.
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: text) {
                return date
            }
        }
        return nil
    }

    static func parseJSON(_ body: [UInt8]) -> JSONValue? {
        guard let first = body.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }),
            first == UInt8(ascii: "{") || first == UInt8(ascii: "[")
        else {
            return nil
        }
        return try? JSONDecoder().decode(JSONValue.self, from: Data(body))
    }

    /// Caps at a day so a bogus header cannot park a dispatcher forever.
    private static func duration(seconds: Double) -> Duration {
        .milliseconds(Int64((min(seconds, 86_400) * 1000).rounded(.up)))
    }

    static func clip(_ text: String) -> String {
        let oneLine = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.joined(separator: " ")
        return oneLine.count > Self.maxDetailLength ? String(oneLine.prefix(Self.maxDetailLength)) + "..." : oneLine
    }

    /// The parts of an error body worth showing: problem-details title/detail, FastAPI-style detail lists, invalid_fields.
    struct Problem {
        var title: String?
        var detail: String?
        var invalidFields: [String] = []

        init(body: [UInt8]) {
            guard let json = ReplicateErrors.parseJSON(body) else {
                return
            }
            self.title = json["title"]?.stringValue
            switch json["detail"] {
            case .string(let text):
                self.detail = text
            case .array(let items):
                // {"detail": [{"loc": [...], "msg": "..."}]}
                let messages = items.compactMap { $0["msg"]?.stringValue ?? $0.stringValue }
                self.detail = messages.isEmpty ? nil : messages.joined(separator: "; ")
            default:
                self.detail = json["error"]?.stringValue ?? json["message"]?.stringValue
            }
            if case .array(let fields) = json["invalid_fields"] {
                self.invalidFields = fields.compactMap { field in
                    let name = field["field"]?.stringValue
                    let description = field["description"]?.stringValue ?? field["message"]?.stringValue
                    switch (name, description) {
                    case (let name?, let description?): return "\(name): \(description)"
                    case (let name?, nil): return name
                    case (nil, let description?): return description
                    case (nil, nil): return nil
                    }
                }
            }
        }

        /// detail, else title; nil when the body said nothing usable (HTML, empty).
        var summary: String? {
            guard let text = self.detail ?? self.title else {
                return nil
            }
            let clipped = ReplicateErrors.clip(text)
            return clipped.isEmpty ? nil : clipped
        }

        /// For 422: the detail plus every invalid field, so the user can fix the input.
        var validationSummary: String? {
            var parts: [String] = []
            if let summary = self.summary {
                parts.append(summary)
            }
            if !self.invalidFields.isEmpty {
                parts.append("invalid fields: " + ReplicateErrors.clip(self.invalidFields.joined(separator: ", ")))
            }
            return parts.isEmpty ? nil : parts.joined(separator: "; ")
        }
    }
}
