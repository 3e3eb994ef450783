import Foundation

/// Fault percentages (each 0...100): how often the stand-in misbehaves on purpose.
struct Faults: Sendable, Equatable {
    /// Create answers 500 and creates nothing.
    var create500: Double = 0
    /// Create answers 429 and creates nothing.
    var create429: Double = 0
    /// Create creates the prediction but withholds the answer for `timeoutMs` (an ambiguous create).
    var createTimeout: Double = 0
    /// The terminal webhook is never sent.
    var webhookDrop: Double = 0
    /// The terminal webhook is sent twice with the same webhook-id.
    var webhookDuplicate: Double = 0
    /// The terminal webhook is held back for `delayMs`.
    var webhookDelay: Double = 0
    /// The prediction ends failed with a transient-looking error.
    var predictionFail: Double = 0
    /// The prediction succeeds but its output file answers 404.
    var outputMissing: Double = 0
    /// How long a create_timeout answer is withheld, in milliseconds.
    var timeoutMs: Int = 35_000
    /// How long a webhook_delay holds the terminal webhook back, in milliseconds.
    var delayMs: Int = 5_000

    /// Lower-case names (as used by `POST /_standin/faults`) and their environment variables.
    static let names: [(key: String, env: String)] = [
        ("create_500", "STANDIN_FAULT_CREATE_500"),
        ("create_429", "STANDIN_FAULT_CREATE_429"),
        ("create_timeout", "STANDIN_FAULT_CREATE_TIMEOUT"),
        ("webhook_drop", "STANDIN_FAULT_WEBHOOK_DROP"),
        ("webhook_duplicate", "STANDIN_FAULT_WEBHOOK_DUPLICATE"),
        ("webhook_delay", "STANDIN_FAULT_WEBHOOK_DELAY"),
        ("prediction_fail", "STANDIN_FAULT_PREDICTION_FAIL"),
        ("output_missing", "STANDIN_FAULT_OUTPUT_MISSING"),
    ]

    /// A percentage by its lower-case name; nil for unknown names.
    subscript(percent key: String) -> Double? {
        get {
            switch key {
            case "create_500": return self.create500
            case "create_429": return self.create429
            case "create_timeout": return self.createTimeout
            case "webhook_drop": return self.webhookDrop
            case "webhook_duplicate": return self.webhookDuplicate
            case "webhook_delay": return self.webhookDelay
            case "prediction_fail": return self.predictionFail
            case "output_missing": return self.outputMissing
            default: return nil
            }
        }
        set {
            guard let value = newValue else { return }
            switch key {
            case "create_500": self.create500 = value
            case "create_429": self.create429 = value
            case "create_timeout": self.createTimeout = value
            case "webhook_drop": self.webhookDrop = value
            case "webhook_duplicate": self.webhookDuplicate = value
            case "webhook_delay": self.webhookDelay = value
            case "prediction_fail": self.predictionFail = value
            case "output_missing": self.outputMissing = value
            default: break
            }
        }
    }

    /// The current values as JSON, keyed like `POST /_standin/faults`.
    var json: JSON {
        var object: [String: JSON] = [:]
        for entry in Self.names {
            object[entry.key] = .number(self[percent: entry.key] ?? 0)
        }
        object["timeout_ms"] = .int(Int64(self.timeoutMs))
        object["delay_ms"] = .int(Int64(self.delayMs))
        return .object(object)
    }

    /// Applies a partial update such as `{"create_500": 5, "delay_ms": 2000}`; throws on unknown names or bad values.
    mutating func apply(_ update: [String: JSON]) throws(ConfigError) {
        var next = self
        for (key, value) in update {
            if key == "timeout_ms" || key == "delay_ms" {
                guard let millis = value.intValue, millis >= 0 else {
                    throw ConfigError(variable: key, problem: "must be a non-negative integer of milliseconds")
                }
                if key == "timeout_ms" { next.timeoutMs = millis } else { next.delayMs = millis }
                continue
            }
            guard next[percent: key] != nil else {
                throw ConfigError(variable: key, problem: "is not a known fault")
            }
            guard let percent = value.doubleValue, (0...100).contains(percent) else {
                throw ConfigError(variable: key, problem: "must be a percentage from 0 to 100")
            }
            next[percent: key] = percent
        }
        self = next
    }
}

/// A configuration value that cannot be used; `description` names the variable and never echoes secrets.
struct ConfigError: Error, CustomStringConvertible {
    var variable: String
    var problem: String
    var description: String { "\(self.variable) \(self.problem)" }
}

/// The stand-in's configuration, read from the environment once at start.
struct StandinConfig: Sendable {
    /// The signing secret used when REPLICATE_WEBHOOK_SECRET is unset ("reelay-standin-webhook-secret!!!" in base64).
    static let defaultWebhookSecret = "whsec_cmVlbGF5LXN0YW5kaW4td2ViaG9vay1zZWNyZXQhISE="

    /// STANDIN_HOST [127.0.0.1]
    var host = "127.0.0.1"
    /// STANDIN_PORT [8090]
    var port = 8090
    /// STANDIN_PUBLIC_URL [http://127.0.0.1:8090], without a trailing slash: base of `urls` and output files.
    var publicURL = "http://127.0.0.1:8090"
    /// REPLICATE_API_TOKEN [r8_standin_dev_token]: the only bearer token accepted.
    var apiToken = "r8_standin_dev_token"
    /// REPLICATE_WEBHOOK_SECRET [`defaultWebhookSecret`]
    var webhookSecret = StandinConfig.defaultWebhookSecret
    /// STANDIN_RUN_MS [1000]: how long a prediction runs; it turns `processing` after 10% of it.
    var runTime: Duration = .milliseconds(1000)
    /// STANDIN_REQUIRED_INPUT [prompt,image]: input keys that must be present.
    var requiredInput = ["prompt", "image"]
    /// STANDIN_CREATE_RATE_PER_MIN [600]: accepted creates per sliding minute before 429.
    var createRatePerMinute = 600
    /// STANDIN_OUTPUT_TTL_SECONDS [3600]: after completion + this, data is removed.
    var outputTTL: Duration = .seconds(3600)
    /// STANDIN_WEBHOOK_RETRY_SECONDS [60]: how long a terminal webhook is retried.
    var webhookRetryWindow: Duration = .seconds(60)
    /// STANDIN_SEED [random]: makes fault choices reproducible.
    var seed: UInt64?
    /// STANDIN_FAULT_* [0], STANDIN_FAULT_TIMEOUT_MS [35000], STANDIN_FAULT_DELAY_MS [5000]
    var faults = Faults()

    /// Reads the configuration; throws naming the first bad variable.
    static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigError) -> StandinConfig {
        var config = StandinConfig()
        func value(_ name: String) -> String? {
            guard let raw = env[name]?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else { return nil }
            return raw
        }
        func integer(_ name: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int? {
            guard let raw = value(name) else { return nil }
            guard let number = Int(raw), range.contains(number) else {
                throw ConfigError(variable: name, problem: "must be an integer from \(range.lowerBound) to \(range.upperBound)")
            }
            return number
        }

        if let host = value("STANDIN_HOST") { config.host = host }
        if let port = try integer("STANDIN_PORT", 1...65535) {
            config.port = port
            config.publicURL = "http://127.0.0.1:\(port)"
        }
        if let url = value("STANDIN_PUBLIC_URL") {
            guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil else {
                throw ConfigError(variable: "STANDIN_PUBLIC_URL", problem: "must be an absolute http(s) URL")
            }
            config.publicURL = url.hasSuffix("/") ? String(url.dropLast()) : url
        }
        if let token = value("REPLICATE_API_TOKEN") { config.apiToken = token }
        if let secret = value("REPLICATE_WEBHOOK_SECRET") {
            guard secret.hasPrefix("whsec_"), Data(base64Encoded: String(secret.dropFirst(6))) != nil else {
                throw ConfigError(variable: "REPLICATE_WEBHOOK_SECRET", problem: "must be whsec_ followed by base64")
            }
            config.webhookSecret = secret
        }
        if let millis = try integer("STANDIN_RUN_MS", 1...86_400_000) { config.runTime = .milliseconds(millis) }
        if let raw = env["STANDIN_REQUIRED_INPUT"] {
            config.requiredInput = raw.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        if let rate = try integer("STANDIN_CREATE_RATE_PER_MIN", 1...1_000_000) { config.createRatePerMinute = rate }
        if let ttl = try integer("STANDIN_OUTPUT_TTL_SECONDS", 0...31_536_000) { config.outputTTL = .seconds(ttl) }
        if let retry = try integer("STANDIN_WEBHOOK_RETRY_SECONDS", 0...86_400) { config.webhookRetryWindow = .seconds(retry) }
        if let raw = value("STANDIN_SEED") {
            guard let seed = UInt64(raw) else {
                throw ConfigError(variable: "STANDIN_SEED", problem: "must be a non-negative integer")
            }
            config.seed = seed
        }
        for entry in Faults.names {
            guard let raw = value(entry.env) else { continue }
            guard let percent = Double(raw), percent.isFinite, (0...100).contains(percent) else {
                throw ConfigError(variable: entry.env, problem: "must be a percentage from 0 to 100")
            }
            config.faults[percent: entry.key] = percent
        }
        if let millis = try integer("STANDIN_FAULT_TIMEOUT_MS", 0...3_600_000) { config.faults.timeoutMs = millis }
        if let millis = try integer("STANDIN_FAULT_DELAY_MS", 0...3_600_000) { config.faults.delayMs = millis }
        return config
    }
}
