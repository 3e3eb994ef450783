import Foundation
import ReelayCore

/// A problem-details answer (`application/problem+json`), as Replicate shapes its errors.
struct Problem: Error, Sendable {
    var status: Int
    var title: String
    var detail: String
    var invalidFields: [JSON] = []
    var retryAfterSeconds: Int?

    var json: JSON {
        var object: [String: JSON] = [
            "title": .string(self.title),
            "detail": .string(self.detail),
            "status": .int(Int64(self.status)),
        ]
        if !self.invalidFields.isEmpty {
            object["invalid_fields"] = .array(self.invalidFields)
        }
        return .object(object)
    }

    static let unauthenticated = Problem(
        status: 401, title: "Unauthenticated", detail: "You did not pass a valid authentication token")
    static let notFound = Problem(status: 404, title: "Not found", detail: "Not found.")

    static func throttled(retryAfterSeconds: Int) -> Problem {
        Problem(
            status: 429, title: "Request was throttled.",
            detail: "Request was throttled. Your rate limit resets in ~\(retryAfterSeconds)s.",
            retryAfterSeconds: retryAfterSeconds)
    }

    static let serverError = Problem(status: 500, title: "Internal Server Error", detail: "Something went wrong on our end.")

    /// One 422 entry of `invalid_fields`.
    static func field(_ type: String, _ field: String, _ description: String) -> JSON {
        .object(["type": .string(type), "field": .string(field), "description": .string(description)])
    }

    static func invalid(_ fields: [JSON]) -> Problem {
        let lines = fields.compactMap { entry -> String? in
            guard let object = entry.objectValue, let field = object["field"]?.stringValue,
                let description = object["description"]?.stringValue
            else { return nil }
            return "- \(field): \(description)"
        }
        return Problem(
            status: 422, title: "Input validation failed", detail: lines.joined(separator: "\n") + "\n", invalidFields: fields)
    }
}

/// Validates create bodies against Replicate's request schemas (`additionalProperties: false`). Pure.
enum CreateValidation {
    /// Which create endpoint was called.
    enum Endpoint: Sendable {
        /// `POST /models/{owner}/{name}/predictions` or the deployments twin: no `version` field allowed.
        case model(owner: String, name: String)
        /// `POST /predictions`: `version` required.
        case version
    }

    static let modelFields: Set<String> = ["input", "webhook", "webhook_events_filter", "stream"]
    static let versionFields: Set<String> = ["version", "input", "webhook", "webhook_events_filter", "stream"]

    /// Returns the validated request or the 4xx problem to answer with.
    static func validate(
        body: [UInt8], endpoint: Endpoint, requiredInput: [String], cancelAfter: String?
    ) -> Result<NewPrediction, Problem> {
        guard let parsed = JSON.parse(body) else {
            return .failure(Problem(status: 400, title: "Invalid JSON", detail: "The request body is not valid JSON."))
        }
        guard let object = parsed.objectValue else {
            return .failure(Problem.invalid([Problem.field("invalid_type", "(root)", "Expected: object, given: \(parsed.kind)")]))
        }
        var invalid: [JSON] = []
        let allowed: Set<String>
        switch endpoint {
        case .model: allowed = Self.modelFields
        case .version: allowed = Self.versionFields
        }
        for key in object.keys.sorted() where !allowed.contains(key) {
            invalid.append(Problem.field("additional_property_not_allowed", key, "Additional property \(key) is not allowed"))
        }

        var model = "standin/community"
        var version = "hidden"
        switch endpoint {
        case .model(let owner, let name):
            model = "\(owner)/\(name)"
        case .version:
            switch object["version"] {
            case nil:
                invalid.append(Problem.field("required", "version", "version is required"))
            case .string(let text):
                if let parsed = Self.parseVersion(text) {
                    version = parsed.version
                    if let owned = parsed.model { model = owned }
                } else {
                    invalid.append(Problem.field("invalid_version", "version", "Invalid version or not permitted"))
                }
            case .some:
                invalid.append(Problem.field("invalid_type", "version", "Invalid type. Expected: string"))
            }
        }

        var input: [String: JSON] = [:]
        switch object["input"] {
        case nil:
            invalid.append(Problem.field("required", "input", "input is required"))
        case .object(let value):
            input = value
            for key in requiredInput where value[key] == nil || value[key] == .null {
                invalid.append(Problem.field("required", "input", "\(key) is required"))
            }
        case .some:
            invalid.append(Problem.field("invalid_type", "input", "Invalid type. Expected: object"))
        }

        var webhook: String?
        switch object["webhook"] {
        case nil, .null:
            break
        case .string(let text):
            if Self.isAbsoluteHTTPURL(text) {
                webhook = text
            } else {
                invalid.append(Problem.field("format", "webhook", "Does not match format 'uri' (absolute http or https URL)"))
            }
        case .some:
            invalid.append(Problem.field("invalid_type", "webhook", "Invalid type. Expected: string"))
        }

        // Without a filter Replicate sends every event kind.
        var events = Set(WebhookEvent.allCases)
        switch object["webhook_events_filter"] {
        case nil, .null:
            break
        case .array(let values):
            events = []
            for value in values {
                if let text = value.stringValue, let event = WebhookEvent(rawValue: text) {
                    events.insert(event)
                } else {
                    invalid.append(
                        Problem.field(
                            "enum", "webhook_events_filter",
                            "webhook_events_filter must be one of the following: \"start\", \"output\", \"logs\", \"completed\""))
                }
            }
        case .some:
            invalid.append(Problem.field("invalid_type", "webhook_events_filter", "Invalid type. Expected: array"))
        }

        var stream = false
        switch object["stream"] {
        case nil, .null: break
        case .bool(let value): stream = value
        case .some: invalid.append(Problem.field("invalid_type", "stream", "Invalid type. Expected: boolean"))
        }

        var deadline: Duration?
        if let cancelAfter {
            if let parsed = Self.parseGoDuration(cancelAfter), parsed >= .seconds(5) {
                deadline = parsed
            } else {
                return .failure(
                    Problem(status: 400, title: "Invalid Cancel-After", detail: "Cancel-After must be a duration of at least 5s."))
            }
        }

        guard invalid.isEmpty else { return .failure(Problem.invalid(invalid)) }
        return .success(
            NewPrediction(
                model: model, version: version, input: input, webhook: webhook, events: events, stream: stream,
                cancelAfter: deadline, taskID: webhook.flatMap { WebhookURL.parse($0)?.taskID }))
    }

    /// "owner/name:<64 hex>" or "<64 hex>".
    static func parseVersion(_ text: String) -> (model: String?, version: String)? {
        func isVersionID(_ candidate: Substring) -> Bool {
            candidate.count == 64 && candidate.allSatisfy { $0.isHexDigit && ($0.isNumber || $0.isLowercase) }
        }
        if let colon = text.lastIndex(of: ":") {
            let model = text[..<colon]
            let version = text[text.index(after: colon)...]
            let parts = model.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty }), isVersionID(version) else { return nil }
            return (String(model), String(version))
        }
        return isVersionID(Substring(text)) ? (nil, text) : nil
    }

    static func isAbsoluteHTTPURL(_ text: String) -> Bool {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty else {
            return false
        }
        return scheme == "http" || scheme == "https"
    }

    /// Go-style durations as Replicate's `Cancel-After` takes them: "90s", "15m", "1h30m", "500ms".
    static func parseGoDuration(_ text: String) -> Duration? {
        var total = Duration.zero
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isNumber || $0 == "." }
            guard let amount = Double(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let unit = rest.prefix { $0.isLetter }
            rest = rest.dropFirst(unit.count)
            let scale: Double
            switch unit {
            case "ms": scale = 0.001
            case "s": scale = 1
            case "m": scale = 60
            case "h": scale = 3600
            default: return nil
            }
            total += .milliseconds(Int64((amount * scale * 1000).rounded()))
        }
        return total
    }
}

extension JSON {
    /// The JSON type name, for validation messages.
    var kind: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}
