import Foundation
import ReelayCore

/// Everything a Reelay service reads from its environment (ARCHITECTURE.md "Configuration"), validated in one place.
///
/// Defaults work for local development. Printing a configuration (`description`, `dump`) shows `redactedSummary`, so
/// secrets cannot leak through logging it.
public struct ReelayConfiguration: Sendable {
    /// DATABASE_URL; default postgresql://reelay@127.0.0.1:55432/reelay.
    public var databaseURL: String
    /// AMQP_URL; default amqp://guest:guest@127.0.0.1:5672/%2f.
    public var amqpURL: String
    /// REPLICATE_API_TOKEN; only the dispatcher needs it (`requireReplicateToken()`).
    public var replicateAPIToken: String?
    /// REPLICATE_API_BASE_URL without a trailing slash; default https://api.replicate.com/v1.
    public var replicateAPIBaseURL: String
    /// REPLICATE_MODEL; default wan-video/wan-2.2-i2v-fast.
    public var replicateModel: ReplicateModel
    /// REPLICATE_IMAGE_INPUT: the model input field that receives the image URL; default "image".
    public var replicateImageInput: String
    /// REPLICATE_ALLOWED_INPUT_KEYS: the extra `input` keys a user may set (comma-separated).
    public var allowedInputKeys: Set<String>
    /// REPLICATE_WEBHOOK_SECRET ("whsec_..."); the webhook service needs it (`requireWebhookSecret()`).
    public var webhookSecret: String?
    /// WEBHOOK_PUBLIC_URL without a trailing slash: the base Replicate calls back; default http://127.0.0.1:8081.
    public var webhookPublicURL: String
    /// QUEUE_PROCESSOR_TOKEN: the ops bearer token; ops routes are closed when unset.
    public var queueProcessorToken: String?
    /// MAX_CONCURRENT_TASKS (5): tasks holding a slot at once, across all replicas.
    public var maxConcurrentTasks: Int
    /// MAX_USER_ACTIVE_TASKS (3).
    public var maxUserActiveTasks: Int
    /// MAX_QUEUE_SIZE (1000): pending tasks.
    public var maxQueueSize: Int
    /// MAX_RETRIES (3): retries after the first attempt; 0 disables retries.
    public var maxRetries: Int
    /// ADMISSION_TIMEOUT_MS (2000): how long the gateway waits for the scheduler's verdict.
    public var admissionTimeout: Duration
    /// PRIORITY_AGING_SECONDS (0 = off): a waiting task gains a point per this many seconds.
    public var priorityAgingSeconds: Int
    /// REPLICATE_CREATE_RATE_PER_MIN (600): outbound creates per minute across all dispatchers.
    public var replicateCreateRatePerMinute: Int
    /// STORAGE_URL: file://DIR; default file://<cwd>/.reelay/storage. s3:// is not supported yet.
    public var storageURL: String
    /// GATEWAY_PORT (8080).
    public var gatewayPort: Int
    /// WEBHOOK_PORT (8081).
    public var webhookPort: Int
    /// GATEWAY_HOST ("127.0.0.1").
    public var gatewayHost: String
    /// WEBHOOK_HOST ("127.0.0.1").
    public var webhookHost: String
    /// LOG_LEVEL ("info"): trace, debug, info, notice, warning, error or critical (swift-log's names).
    public var logLevel: String
    /// LOG_FORMAT ("text"): "text" or "json".
    public var logFormat: String
    /// DISPATCH_LEASE_SECONDS (60): how long a dispatcher owns a dispatching task before a sweep may take it back.
    public var dispatchLease: Duration
    /// PROCESSING_RECONCILE_SECONDS (120): a processing task without news for this long is polled at Replicate.
    public var processingReconcileAfter: Duration
    /// SCHEDULER_TICK_MS (1000): how often the scheduler sweeps.
    public var schedulerTick: Duration
    /// RETRY_BASE_MS (2000) and RETRY_CAP_MS (300000): backoff between retries of transient failures.
    public var retryBackoff: Backoff
    /// REPLICATE_HTTP_TIMEOUT_MS (30000): the whole-request timeout of every call to Replicate's API. A create that times
    /// out has an unknown outcome and is reconciled, never blindly repeated.
    public var replicateTimeout: Duration = .seconds(30)
    /// HEALTH_PORT (unset): when set, the scheduler and the dispatcher serve /healthz and /readyz on it, bound to
    /// GATEWAY_HOST (for probes); the
    /// gateway and the webhook service serve them on their own ports.
    public var healthPort: Int?
    /// OUTPUT_ALLOWED_HOST_SUFFIXES (replicate.delivery) and OUTPUT_TRUSTED_ORIGINS (none): where outputs are fetched from.
    public var outputSources = OutputSourcePolicy()
    /// OUTPUT_MAX_BYTES (536870912, 512 MiB): a larger output is refused and the task fails.
    public var outputMaxBytes: Int64 = ReelayConfiguration.defaultOutputMaxBytes
    /// PUBLIC_BASE_URL without a trailing slash: the base of every absolute link the gateway emits (never the Host header);
    /// default http://127.0.0.1:GATEWAY_PORT.
    public var publicBaseURL: String = "http://127.0.0.1:8080"
    /// ALLOW_LOCAL_IMAGE_URLS (false): the development exception letting input_image_url be http(s)://localhost,
    /// 127.0.0.1 or [::1]. Private, link-local and other non-public addresses stay refused either way.
    public var allowLocalImageURLs = false
    /// SUBMIT_RATE_PER_MIN (60): submissions per minute one API key may make, across all gateway replicas.
    public var submitRatePerMinute = 60
    /// SUBMIT_BURST (20): submissions one API key may make at once after a quiet period.
    public var submitBurst = 20
    /// HTTP_IDLE_TIMEOUT_MS (60000): every HTTP server closes a connection idle this long.
    public var httpIdleTimeout: Duration = .seconds(60)
    /// HTTP_READ_TIMEOUT_MS (10000): every HTTP server closes a connection whose request head (from its first byte), or
    /// whose body, takes longer than this to arrive.
    public var httpReadTimeout: Duration = .seconds(10)

    /// The shortest QUEUE_PROCESSOR_TOKEN accepted: a guessable ops token opens every task to whoever guesses it.
    public static let minimumOpsTokenLength = 32
    /// DATABASE_POOL_ACQUIRE_TIMEOUT_MS (5000): the longest a database checkout waits for a busy pool; then the request
    /// fails (503 with Retry-After at the HTTP edge) instead of queueing behind a slow database.
    public var databasePoolAcquireTimeout: Duration = .seconds(5)
    /// DATABASE_POOL_MAX_WAITERS (1000): the most database checkouts waiting at once per pool; more fail at once.
    public var databasePoolMaxWaiters: Int = 1000
    /// ADMISSION_REPLY_MARGIN_MS (500): a refusal decided later than the gateway's reply deadline minus this margin is
    /// stored as a `rejected` row, because the gateway may already have answered 202 "submitted". Covers the commit, the
    /// way back to the gateway and clock skew between hosts.
    public var admissionReplyMargin: Duration = .milliseconds(500)

    /// The admission limits from MAX_USER_ACTIVE_TASKS and MAX_QUEUE_SIZE.
    public var limits: AdmissionLimits {
        get {
            AdmissionLimits(maxUserActiveTasks: self.maxUserActiveTasks, maxQueueSize: self.maxQueueSize)
        }
        set {
            self.maxUserActiveTasks = newValue.maxUserActiveTasks
            self.maxQueueSize = newValue.maxQueueSize
        }
    }

    /// The directory of the file:// `storageURL`.
    public var storageDirectory: String {
        Self.directory(ofFileURL: self.storageURL) ?? ""
    }

    /// The variables this type reads, in the order `redactedSummary` is best read.
    public static let variables = [
        "DATABASE_URL", "AMQP_URL", "REPLICATE_API_TOKEN", "REPLICATE_API_BASE_URL", "REPLICATE_MODEL", "REPLICATE_IMAGE_INPUT",
        "REPLICATE_ALLOWED_INPUT_KEYS", "REPLICATE_WEBHOOK_SECRET", "WEBHOOK_PUBLIC_URL", "QUEUE_PROCESSOR_TOKEN",
        "MAX_CONCURRENT_TASKS", "MAX_USER_ACTIVE_TASKS", "MAX_QUEUE_SIZE", "MAX_RETRIES", "ADMISSION_TIMEOUT_MS",
        "PRIORITY_AGING_SECONDS", "REPLICATE_CREATE_RATE_PER_MIN", "STORAGE_URL", "GATEWAY_PORT", "WEBHOOK_PORT", "GATEWAY_HOST",
        "WEBHOOK_HOST", "LOG_LEVEL", "LOG_FORMAT", "DISPATCH_LEASE_SECONDS", "PROCESSING_RECONCILE_SECONDS", "SCHEDULER_TICK_MS",
        "REPLICATE_HTTP_TIMEOUT_MS", "HEALTH_PORT",
        "RETRY_BASE_MS", "RETRY_CAP_MS",
        "OUTPUT_ALLOWED_HOST_SUFFIXES", "OUTPUT_TRUSTED_ORIGINS", "OUTPUT_MAX_BYTES",
        "PUBLIC_BASE_URL", "ALLOW_LOCAL_IMAGE_URLS", "SUBMIT_RATE_PER_MIN", "SUBMIT_BURST", "HTTP_IDLE_TIMEOUT_MS", "HTTP_READ_TIMEOUT_MS",
        "RETRY_BASE_MS", "RETRY_CAP_MS", "DATABASE_POOL_ACQUIRE_TIMEOUT_MS", "DATABASE_POOL_MAX_WAITERS", "ADMISSION_REPLY_MARGIN_MS",
    ]

    static let defaultAllowedInputKeys =
        "num_frames,resolution,frames_per_second,go_fast,seed,duration,mode,negative_prompt,aspect_ratio"
    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Builds and validates the configuration; the first invalid or missing setting throws. Empty values count as unset.
    public static func load(from env: [String: String]) throws(ConfigurationError) -> ReelayConfiguration {
        let reader = EnvironmentReader(env)
        let databaseURL = try reader.url(
            "DATABASE_URL", default: "postgresql://reelay@127.0.0.1:55432/reelay", schemes: ["postgresql", "postgres"])
        let amqpURL = try reader.url("AMQP_URL", default: "amqp://guest:guest@127.0.0.1:5672/%2f", schemes: ["amqp", "amqps"])
        let replicateAPIToken = reader.string("REPLICATE_API_TOKEN")
        let replicateAPIBaseURL = try reader.url(
            "REPLICATE_API_BASE_URL", default: "https://api.replicate.com/v1", schemes: ["https", "http"], trimSlash: true)

        let modelText = reader.string("REPLICATE_MODEL") ?? "wan-video/wan-2.2-i2v-fast"
        let replicateModel: ReplicateModel
        do {
            replicateModel = try ReplicateModel(modelText)
        } catch {
            throw ConfigurationError(variable: "REPLICATE_MODEL", problem: "\(error)")
        }

        let replicateImageInput = reader.string("REPLICATE_IMAGE_INPUT") ?? "image"
        guard EnvironmentReader.isInputKey(replicateImageInput) else {
            throw ConfigurationError(
                variable: "REPLICATE_IMAGE_INPUT",
                problem: "must be a model input name (letters, digits, '_'), got '\(EnvironmentReader.clip(replicateImageInput))'")
        }
        let allowedInputKeys = try Self.parseAllowedKeys(
            reader.string("REPLICATE_ALLOWED_INPUT_KEYS") ?? Self.defaultAllowedInputKeys, imageInput: replicateImageInput)

        let webhookSecret = reader.string("REPLICATE_WEBHOOK_SECRET")
        if let webhookSecret {
            try Self.checkWebhookSecret(webhookSecret)
        }
        let webhookPublicURL = try reader.url(
            "WEBHOOK_PUBLIC_URL", default: "http://127.0.0.1:8081", schemes: ["https", "http"], trimSlash: true)
        let queueProcessorToken = reader.string("QUEUE_PROCESSOR_TOKEN")
        if let queueProcessorToken, queueProcessorToken.count < Self.minimumOpsTokenLength {
            throw ConfigurationError(
                variable: "QUEUE_PROCESSOR_TOKEN",
                problem: "must be at least \(Self.minimumOpsTokenLength) characters, got \(queueProcessorToken.count); "
                    + "generate one with 'openssl rand -hex 32'")
        }

        let maxConcurrentTasks = try reader.integer("MAX_CONCURRENT_TASKS", default: 5, minimum: 1)
        let maxUserActiveTasks = try reader.integer("MAX_USER_ACTIVE_TASKS", default: 3, minimum: 1)
        let maxQueueSize = try reader.integer("MAX_QUEUE_SIZE", default: 1000, minimum: 1)
        let maxRetries = try reader.integer("MAX_RETRIES", default: 3, minimum: 0)
        let admissionTimeoutMS = try reader.integer("ADMISSION_TIMEOUT_MS", default: 2000, minimum: 1)
        let priorityAgingSeconds = try reader.integer("PRIORITY_AGING_SECONDS", default: 0, minimum: 0)
        let createRate = try reader.integer("REPLICATE_CREATE_RATE_PER_MIN", default: 600, minimum: 1)

        let storageURL = try Self.parseStorageURL(reader.string("STORAGE_URL"))
        let gatewayPort = try reader.integer("GATEWAY_PORT", default: 8080, minimum: 1, maximum: 65535)
        let webhookPort = try reader.integer("WEBHOOK_PORT", default: 8081, minimum: 1, maximum: 65535)
        let gatewayHost = try reader.host("GATEWAY_HOST")
        let webhookHost = try reader.host("WEBHOOK_HOST")

        let logLevel = try reader.choice("LOG_LEVEL", default: "info", among: Self.logLevels)
        let logFormat = try reader.choice("LOG_FORMAT", default: "text", among: ["text", "json"])

        let leaseSeconds = try reader.integer("DISPATCH_LEASE_SECONDS", default: 60, minimum: 1)
        let reconcileSeconds = try reader.integer("PROCESSING_RECONCILE_SECONDS", default: 120, minimum: 1)
        let tickMS = try reader.integer("SCHEDULER_TICK_MS", default: 1000, minimum: 1)
        let retryBaseMS = try reader.integer("RETRY_BASE_MS", default: 2000, minimum: 1)
        let retryCapMS = try reader.integer("RETRY_CAP_MS", default: 300_000, minimum: 1)
        guard retryCapMS >= retryBaseMS else {
            throw ConfigurationError(
                variable: "RETRY_CAP_MS", problem: "must be at least RETRY_BASE_MS (\(retryBaseMS)), got '\(retryCapMS)'")
        }

        let replicateTimeoutMS = try reader.integer("REPLICATE_HTTP_TIMEOUT_MS", default: 30_000, minimum: 100)
        let acquireTimeoutMS = try reader.integer("DATABASE_POOL_ACQUIRE_TIMEOUT_MS", default: 5000, minimum: 1)
        let maxWaiters = try reader.integer("DATABASE_POOL_MAX_WAITERS", default: 1000, minimum: 0)
        let replyMarginMS = try reader.integer("ADMISSION_REPLY_MARGIN_MS", default: 500, minimum: 0)

        var configuration = ReelayConfiguration(
            databaseURL: databaseURL, amqpURL: amqpURL, replicateAPIToken: replicateAPIToken,
            replicateAPIBaseURL: replicateAPIBaseURL, replicateModel: replicateModel, replicateImageInput: replicateImageInput,
            allowedInputKeys: allowedInputKeys, webhookSecret: webhookSecret, webhookPublicURL: webhookPublicURL,
            queueProcessorToken: queueProcessorToken, maxConcurrentTasks: maxConcurrentTasks,
            maxUserActiveTasks: maxUserActiveTasks, maxQueueSize: maxQueueSize, maxRetries: maxRetries,
            admissionTimeout: .milliseconds(admissionTimeoutMS), priorityAgingSeconds: priorityAgingSeconds,
            replicateCreateRatePerMinute: createRate, storageURL: storageURL, gatewayPort: gatewayPort, webhookPort: webhookPort,
            gatewayHost: gatewayHost, webhookHost: webhookHost, logLevel: logLevel, logFormat: logFormat,
            dispatchLease: .seconds(leaseSeconds), processingReconcileAfter: .seconds(reconcileSeconds),
            schedulerTick: .milliseconds(tickMS), retryBackoff: Backoff(base: .milliseconds(retryBaseMS), cap: .milliseconds(retryCapMS)))
        configuration.replicateTimeout = .milliseconds(replicateTimeoutMS)
        configuration.databasePoolAcquireTimeout = .milliseconds(acquireTimeoutMS)
        configuration.databasePoolMaxWaiters = maxWaiters
        configuration.admissionReplyMargin = .milliseconds(replyMarginMS)
        if reader.string("HEALTH_PORT") != nil {
            configuration.healthPort = try reader.integer("HEALTH_PORT", default: 0, minimum: 1, maximum: 65535)
        }
        (configuration.outputSources, configuration.outputMaxBytes) = try Self.parseOutputSettings(reader)
        configuration.publicBaseURL = try reader.url(
            "PUBLIC_BASE_URL", default: "http://127.0.0.1:\(gatewayPort)", schemes: ["https", "http"], trimSlash: true)
        if configuration.publicBaseURL.contains(where: { $0 == "?" || $0 == "#" }) {
            throw ConfigurationError(
                variable: "PUBLIC_BASE_URL", problem: "must be a base URL without query or fragment, like https://api.example.com")
        }
        configuration.allowLocalImageURLs = try reader.boolean("ALLOW_LOCAL_IMAGE_URLS", default: false)
        configuration.submitRatePerMinute = try reader.integer("SUBMIT_RATE_PER_MIN", default: 60, minimum: 1)
        configuration.submitBurst = try reader.integer("SUBMIT_BURST", default: 20, minimum: 1)
        configuration.httpIdleTimeout = .milliseconds(try reader.integer("HTTP_IDLE_TIMEOUT_MS", default: 60_000, minimum: 100))
        configuration.httpReadTimeout = .milliseconds(try reader.integer("HTTP_READ_TIMEOUT_MS", default: 10_000, minimum: 100))
        return configuration
    }

    /// `load(from:)` over this process's environment.
    public static func fromProcessEnvironment() throws(ConfigurationError) -> ReelayConfiguration {
        try Self.load(from: ProcessInfo.processInfo.environment)
    }

    /// For a service's `main`: loads the configuration or prints the one-line error to stderr and exits with status 78
    /// (EX_CONFIG), as ARCHITECTURE.md asks of a service started with a bad setting.
    public static func fromProcessEnvironmentOrExit() -> ReelayConfiguration {
        do {
            return try Self.fromProcessEnvironment()
        } catch {
            FileHandle.standardError.write(Data("\(error.description)\n".utf8))
            exit(78)
        }
    }

    /// REPLICATE_API_TOKEN, or an error naming it (the dispatcher cannot work without it).
    public func requireReplicateToken() throws(ConfigurationError) -> String {
        guard let token = self.replicateAPIToken else {
            throw ConfigurationError(variable: "REPLICATE_API_TOKEN", problem: "is required by the dispatcher but is not set")
        }
        return token
    }

    /// REPLICATE_WEBHOOK_SECRET, checked to be a usable Standard Webhooks secret, or an error naming it.
    @discardableResult
    public func requireWebhookSecret() throws(ConfigurationError) -> String {
        guard let secret = self.webhookSecret else {
            throw ConfigurationError(
                variable: "REPLICATE_WEBHOOK_SECRET", problem: "is required to verify webhooks but is not set (whsec_...)")
        }
        try Self.checkWebhookSecret(secret)
        return secret
    }

    /// The verifier for REPLICATE_WEBHOOK_SECRET, or an error naming it.
    public func requireWebhookVerifier() throws(ConfigurationError) -> StandardWebhook {
        let secret = try self.requireWebhookSecret()
        do {
            return try StandardWebhook(secret: secret)
        } catch {
            throw Self.invalidSecretError
        }
    }

    /// Every variable and its effective value, with "<set>"/"<unset>" for the token, the secrets and URL passwords.
    public var redactedSummary: [String: String] {
        func presence(_ value: String?) -> String {
            value == nil ? "<unset>" : "<set>"
        }
        return [
            "DATABASE_URL": Self.redactURL(self.databaseURL),
            "AMQP_URL": Self.redactURL(self.amqpURL),
            "REPLICATE_API_TOKEN": presence(self.replicateAPIToken),
            "REPLICATE_API_BASE_URL": Self.redactURL(self.replicateAPIBaseURL),
            "REPLICATE_MODEL": self.replicateModel.identifier,
            "REPLICATE_IMAGE_INPUT": self.replicateImageInput,
            "REPLICATE_ALLOWED_INPUT_KEYS": self.allowedInputKeys.sorted().joined(separator: ","),
            "REPLICATE_WEBHOOK_SECRET": presence(self.webhookSecret),
            "WEBHOOK_PUBLIC_URL": Self.redactURL(self.webhookPublicURL),
            "QUEUE_PROCESSOR_TOKEN": presence(self.queueProcessorToken),
            "MAX_CONCURRENT_TASKS": String(self.maxConcurrentTasks),
            "MAX_USER_ACTIVE_TASKS": String(self.maxUserActiveTasks),
            "MAX_QUEUE_SIZE": String(self.maxQueueSize),
            "MAX_RETRIES": String(self.maxRetries),
            "ADMISSION_TIMEOUT_MS": String(Self.milliseconds(self.admissionTimeout)),
            "PRIORITY_AGING_SECONDS": String(self.priorityAgingSeconds),
            "REPLICATE_CREATE_RATE_PER_MIN": String(self.replicateCreateRatePerMinute),
            "STORAGE_URL": Self.redactURL(self.storageURL),
            "GATEWAY_PORT": String(self.gatewayPort),
            "WEBHOOK_PORT": String(self.webhookPort),
            "GATEWAY_HOST": self.gatewayHost,
            "WEBHOOK_HOST": self.webhookHost,
            "LOG_LEVEL": self.logLevel,
            "LOG_FORMAT": self.logFormat,
            "DISPATCH_LEASE_SECONDS": String(self.dispatchLease.components.seconds),
            "PROCESSING_RECONCILE_SECONDS": String(self.processingReconcileAfter.components.seconds),
            "SCHEDULER_TICK_MS": String(Self.milliseconds(self.schedulerTick)),
            "RETRY_BASE_MS": String(Self.milliseconds(self.retryBackoff.base)),
            "RETRY_CAP_MS": String(Self.milliseconds(self.retryBackoff.cap)),
            "REPLICATE_HTTP_TIMEOUT_MS": String(Self.milliseconds(self.replicateTimeout)),
            "HEALTH_PORT": self.healthPort.map(String.init) ?? "<unset>",
            "OUTPUT_ALLOWED_HOST_SUFFIXES": self.outputSources.hostSuffixes.joined(separator: ","),
            "OUTPUT_TRUSTED_ORIGINS": self.outputSources.trustedOrigins.map(\.description).joined(separator: ","),
            "OUTPUT_MAX_BYTES": String(self.outputMaxBytes),
            "PUBLIC_BASE_URL": Self.redactURL(self.publicBaseURL),
            "ALLOW_LOCAL_IMAGE_URLS": String(self.allowLocalImageURLs),
            "SUBMIT_RATE_PER_MIN": String(self.submitRatePerMinute),
            "SUBMIT_BURST": String(self.submitBurst),
            "HTTP_IDLE_TIMEOUT_MS": String(Self.milliseconds(self.httpIdleTimeout)),
            "HTTP_READ_TIMEOUT_MS": String(Self.milliseconds(self.httpReadTimeout)),
            "DATABASE_POOL_ACQUIRE_TIMEOUT_MS": String(Self.milliseconds(self.databasePoolAcquireTimeout)),
            "DATABASE_POOL_MAX_WAITERS": String(self.databasePoolMaxWaiters),
            "ADMISSION_REPLY_MARGIN_MS": String(Self.milliseconds(self.admissionReplyMargin)),
        ]
    }

    // MARK: - Parsing helpers

    private static let invalidSecretError = ConfigurationError(
        variable: "REPLICATE_WEBHOOK_SECRET", problem: "is not a valid signing secret (expected whsec_ followed by base64)")

    private static func checkWebhookSecret(_ secret: String) throws(ConfigurationError) {
        do {
            _ = try StandardWebhook(secret: secret)
        } catch {
            throw Self.invalidSecretError
        }
    }

    private static func parseAllowedKeys(_ text: String, imageInput: String) throws(ConfigurationError) -> Set<String> {
        let keys = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for key in keys {
            guard EnvironmentReader.isInputKey(key) else {
                throw ConfigurationError(
                    variable: "REPLICATE_ALLOWED_INPUT_KEYS",
                    problem: "must be a comma-separated list of input names (letters, digits, '_'), got '\(EnvironmentReader.clip(key))'")
            }
            // Reelay sets these itself from the task; letting a user override them would bypass validation.
            if key == "prompt" || key == imageInput {
                throw ConfigurationError(
                    variable: "REPLICATE_ALLOWED_INPUT_KEYS", problem: "must not contain '\(key)', which Reelay sets from the task")
            }
        }
        return Set(keys)
    }

    private static func parseStorageURL(_ value: String?) throws(ConfigurationError) -> String {
        guard let value else {
            let cwd = FileManager.default.currentDirectoryPath
            return "file://" + (cwd.hasSuffix("/") ? String(cwd.dropLast()) : cwd) + "/.reelay/storage"
        }
        let lowered = value.lowercased()
        if lowered.hasPrefix("s3://") {
            throw ConfigurationError(variable: "STORAGE_URL", problem: "s3:// storage is not supported yet; use file://DIR")
        }
        guard lowered.hasPrefix("file://"), let directory = Self.directory(ofFileURL: value), !directory.isEmpty else {
            throw ConfigurationError(variable: "STORAGE_URL", problem: "must be a file://DIR URL, got '\(Self.redactURL(value))'")
        }
        return value
    }

    /// "file:///srv/videos" -> "/srv/videos"; "file://data/videos" -> "data/videos" (relative to the working directory).
    static func directory(ofFileURL url: String) -> String? {
        guard url.lowercased().hasPrefix("file://") else {
            return nil
        }
        var path = String(url.dropFirst("file://".count))
        if path.hasPrefix("localhost/") {
            path = String(path.dropFirst("localhost".count))
        }
        path = path.removingPercentEncoding ?? path
        while path.count > 1 && path.hasSuffix("/") {
            path.removeLast()
        }
        return path
    }

    /// Replaces the password in "scheme://user:password@host" and any password query parameter with "<set>".
    static func redactURL(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else {
            return url
        }
        let authorityStart = schemeEnd.upperBound
        let authorityEnd = url[authorityStart...].firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? url.endIndex
        var authority = String(url[authorityStart..<authorityEnd])
        if let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") {
            authority = String(authority[...colon]) + "<set>" + String(authority[at...])
        }
        var rest = String(url[authorityEnd...])
        if let questionMark = rest.firstIndex(of: "?") {
            let fragmentStart = rest[questionMark...].firstIndex(of: "#") ?? rest.endIndex
            let query = rest[rest.index(after: questionMark)..<fragmentStart].split(separator: "&", omittingEmptySubsequences: false)
            let redacted = query.map { pair -> String in
                let name = pair.split(separator: "=", maxSplits: 1).first.map { $0.lowercased() } ?? ""
                return ["password", "sslpassword", "pass", "token", "secret"].contains(name) ? "\(name)=<set>" : String(pair)
            }
            rest = String(rest[...questionMark]) + redacted.joined(separator: "&") + String(rest[fragmentStart...])
        }
        return String(url[..<authorityStart]) + authority + rest
    }

    private static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

extension ReelayConfiguration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The redacted summary, one "NAME=value" per variable, so logging a configuration never leaks a secret.
    public var description: String {
        let summary = self.redactedSummary
        return Self.variables.map { "\($0)=\(summary[$0] ?? "")" }.joined(separator: " ")
    }

    public var debugDescription: String {
        self.description
    }

    /// `dump()` and the debugger show the redacted summary instead of the raw fields.
    public var customMirror: Mirror {
        let summary = self.redactedSummary
        return Mirror(self, children: Self.variables.map { (label: $0, value: summary[$0] ?? "") as Mirror.Child }, displayStyle: .struct)
    }
}

/// Reads and validates single variables; every error names its variable and clips the value it quotes.
struct EnvironmentReader {
    let env: [String: String]

    init(_ env: [String: String]) {
        self.env = env
    }

    /// The trimmed value; nil when absent or empty, so `FOO=` in a .env file means "use the default".
    func string(_ name: String) -> String? {
        guard let value = self.env[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else {
            return nil
        }
        return value
    }

    func integer(_ name: String, default defaultValue: Int, minimum: Int, maximum: Int = Int.max) throws(ConfigurationError) -> Int {
        guard let text = self.string(name) else {
            return defaultValue
        }
        let kind: String
        if maximum != Int.max {
            kind = "an integer in \(minimum)...\(maximum)"
        } else if minimum == 1 {
            kind = "a positive integer"
        } else if minimum == 0 {
            kind = "a non-negative integer"
        } else {
            kind = "an integer >= \(minimum)"
        }
        guard let value = Int(text), value >= minimum, value <= maximum else {
            throw ConfigurationError(variable: name, problem: "must be \(kind), got '\(Self.clip(text))'")
        }
        return value
    }

    /// true/false (also 1/0, yes/no, on/off).
    func boolean(_ name: String, default defaultValue: Bool) throws(ConfigurationError) -> Bool {
        guard let text = self.string(name) else {
            return defaultValue
        }
        switch text.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw ConfigurationError(variable: name, problem: "must be true or false, got '\(Self.clip(text))'")
        }
    }

    func choice(_ name: String, default defaultValue: String, among choices: [String]) throws(ConfigurationError) -> String {
        guard let text = self.string(name) else {
            return defaultValue
        }
        let value = text.lowercased()
        guard choices.contains(value) else {
            throw ConfigurationError(
                variable: name, problem: "must be one of \(choices.joined(separator: ", ")), got '\(Self.clip(text))'")
        }
        return value
    }

    func host(_ name: String) throws(ConfigurationError) -> String {
        guard let text = self.string(name) else {
            return "127.0.0.1"
        }
        guard !text.contains(where: { $0.isWhitespace || $0 == "/" }) else {
            throw ConfigurationError(variable: name, problem: "must be a host name or IP address, got '\(Self.clip(text))'")
        }
        return text
    }

    /// A URL with one of `schemes` and a host; the value is quoted redacted, since database and broker URLs carry passwords.
    func url(
        _ name: String, default defaultValue: String, schemes: [String], trimSlash: Bool = false
    ) throws(ConfigurationError) -> String {
        guard var text = self.string(name) else {
            return defaultValue
        }
        let expected = schemes.map { "\($0)://" }.joined(separator: " or ")
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            schemes.contains(scheme), let host = components.host, !host.isEmpty,
            !text.contains(where: { $0.isWhitespace })
        else {
            throw ConfigurationError(
                variable: name, problem: "must be a \(expected) URL with a host, got '\(Self.clip(ReelayConfiguration.redactURL(text)))'")
        }
        if trimSlash {
            while text.hasSuffix("/") {
                text.removeLast()
            }
        }
        return text
    }

    static func isInputKey(_ text: String) -> Bool {
        !text.isEmpty && text.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") }
    }

    static func clip(_ text: String) -> String {
        text.count > 100 ? String(text.prefix(100)) + "..." : text
    }
}
