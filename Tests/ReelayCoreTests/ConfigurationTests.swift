import Foundation
import ReelayConfig
import ReelayCore
import Testing

@Suite("ReelayConfiguration")
struct ConfigurationTests {
    func error(_ env: [String: String]) -> ConfigurationError? {
        do {
            _ = try ReelayConfiguration.load(from: env)
            return nil
        } catch {
            return error
        }
    }

    @Test func defaults() throws {
        let config = try ReelayConfiguration.load(from: [:])
        #expect(config.databaseURL == "postgresql://reelay@127.0.0.1:55432/reelay")
        #expect(config.amqpURL == "amqp://guest:guest@127.0.0.1:5672/%2f")
        #expect(config.replicateAPIToken == nil)
        #expect(config.replicateAPIBaseURL == "https://api.replicate.com/v1")
        #expect(config.replicateModel == (try ReplicateModel("wan-video/wan-2.2-i2v-fast")))
        #expect(config.replicateImageInput == "image")
        #expect(config.allowedInputKeys == [
            "num_frames", "resolution", "frames_per_second", "go_fast", "seed", "duration", "mode", "negative_prompt", "aspect_ratio",
        ])
        #expect(config.webhookSecret == nil)
        #expect(config.webhookPublicURL == "http://127.0.0.1:8081")
        #expect(config.queueProcessorToken == nil)
        #expect(config.maxConcurrentTasks == 5)
        #expect(config.maxUserActiveTasks == 3)
        #expect(config.maxQueueSize == 1000)
        #expect(config.maxRetries == 3)
        #expect(config.limits == AdmissionLimits(maxUserActiveTasks: 3, maxQueueSize: 1000))
        #expect(config.admissionTimeout == .milliseconds(2000))
        #expect(config.priorityAgingSeconds == 0)
        #expect(config.replicateCreateRatePerMinute == 600)
        let cwd = FileManager.default.currentDirectoryPath
        #expect(config.storageURL == "file://\(cwd)/.reelay/storage")
        #expect(config.storageDirectory == "\(cwd)/.reelay/storage")
        #expect(config.gatewayPort == 8080)
        #expect(config.webhookPort == 8081)
        #expect(config.gatewayHost == "127.0.0.1")
        #expect(config.webhookHost == "127.0.0.1")
        #expect(config.logLevel == "info")
        #expect(config.logFormat == "text")
        #expect(config.dispatchLease == .seconds(60))
        #expect(config.processingReconcileAfter == .seconds(120))
        #expect(config.schedulerTick == .milliseconds(1000))
        #expect(config.retryBackoff == Backoff(base: .milliseconds(2000), cap: .seconds(300)))
        #expect(config.databasePoolAcquireTimeout == .seconds(5))
        #expect(config.databasePoolMaxWaiters == 1000)
        #expect(config.admissionReplyMargin == .milliseconds(500))
    }

    @Test func poolBoundsAndReplyMargin() throws {
        let config = try ReelayConfiguration.load(from: [
            "DATABASE_POOL_ACQUIRE_TIMEOUT_MS": "250", "DATABASE_POOL_MAX_WAITERS": "0", "ADMISSION_REPLY_MARGIN_MS": "0",
        ])
        #expect(config.databasePoolAcquireTimeout == .milliseconds(250))
        #expect(config.databasePoolMaxWaiters == 0)
        #expect(config.admissionReplyMargin == .zero)
        #expect(config.redactedSummary["DATABASE_POOL_ACQUIRE_TIMEOUT_MS"] == "250")
    }

    @Test func explicitValues() throws {
        let config = try ReelayConfiguration.load(from: [
            "DATABASE_URL": "postgresql://reelay@127.0.0.1:55433/reelay_test",
            "AMQP_URL": "amqp://guest:guest@127.0.0.1:5673/%2f",
            "REPLICATE_API_TOKEN": "r8_token", "REPLICATE_API_BASE_URL": "http://127.0.0.1:9999/v1/",
            "REPLICATE_MODEL": "kwaivgi/kling-v2.1", "REPLICATE_IMAGE_INPUT": "start_image",
            "REPLICATE_ALLOWED_INPUT_KEYS": " mode, duration ,,negative_prompt ",
            "WEBHOOK_PUBLIC_URL": "https://hooks.example.com/", "MAX_CONCURRENT_TASKS": "12", "MAX_USER_ACTIVE_TASKS": "4",
            "MAX_QUEUE_SIZE": "50", "MAX_RETRIES": "0", "ADMISSION_TIMEOUT_MS": "750", "PRIORITY_AGING_SECONDS": "30",
            "REPLICATE_CREATE_RATE_PER_MIN": "120", "STORAGE_URL": "file:///srv/reelay/videos/", "GATEWAY_PORT": "9000",
            "WEBHOOK_PORT": "9001", "GATEWAY_HOST": "0.0.0.0", "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json",
            "DISPATCH_LEASE_SECONDS": "30", "PROCESSING_RECONCILE_SECONDS": "90", "SCHEDULER_TICK_MS": "250", "RETRY_BASE_MS": "500",
            "MAX_UNRELATED": "ignored",
        ])
        #expect(config.replicateAPIToken == "r8_token")
        #expect(try config.requireReplicateToken() == "r8_token")
        #expect(config.replicateAPIBaseURL == "http://127.0.0.1:9999/v1")
        #expect(config.replicateModel.createPath == "/models/kwaivgi/kling-v2.1/predictions")
        #expect(config.replicateImageInput == "start_image")
        #expect(config.allowedInputKeys == ["mode", "duration", "negative_prompt"])
        #expect(config.webhookPublicURL == "https://hooks.example.com")
        #expect(config.limits == AdmissionLimits(maxUserActiveTasks: 4, maxQueueSize: 50))
        #expect(config.maxConcurrentTasks == 12)
        #expect(config.maxRetries == 0)
        #expect(config.admissionTimeout == .milliseconds(750))
        #expect(config.priorityAgingSeconds == 30)
        #expect(config.replicateCreateRatePerMinute == 120)
        #expect(config.storageDirectory == "/srv/reelay/videos")
        #expect(config.gatewayPort == 9000)
        #expect(config.webhookPort == 9001)
        #expect(config.gatewayHost == "0.0.0.0")
        #expect(config.logLevel == "debug")
        #expect(config.logFormat == "json")
        #expect(config.dispatchLease == .seconds(30))
        #expect(config.processingReconcileAfter == .seconds(90))
        #expect(config.schedulerTick == .milliseconds(250))
        #expect(config.retryBackoff.base == .milliseconds(500))
        #expect(config.retryBackoff.cap == .seconds(300))
    }

    @Test func emptyValuesMeanDefault() throws {
        let config = try ReelayConfiguration.load(from: ["MAX_CONCURRENT_TASKS": "", "REPLICATE_API_TOKEN": "  ", "LOG_LEVEL": ""])
        #expect(config.maxConcurrentTasks == 5)
        #expect(config.replicateAPIToken == nil)
        #expect(config.logLevel == "info")
    }

    /// Invariant: every invalid value is reported as one line naming its variable.
    @Test(arguments: [
        ("MAX_CONCURRENT_TASKS", "abc"), ("MAX_CONCURRENT_TASKS", "0"), ("MAX_CONCURRENT_TASKS", "-2"), ("MAX_CONCURRENT_TASKS", "2.5"),
        ("MAX_USER_ACTIVE_TASKS", "0"), ("MAX_QUEUE_SIZE", "lots"), ("MAX_RETRIES", "-1"), ("ADMISSION_TIMEOUT_MS", "0"),
        ("PRIORITY_AGING_SECONDS", "-5"), ("REPLICATE_CREATE_RATE_PER_MIN", "0"), ("GATEWAY_PORT", "0"), ("GATEWAY_PORT", "65536"),
        ("WEBHOOK_PORT", "http"), ("LOG_LEVEL", "verbose"), ("LOG_FORMAT", "xml"), ("DISPATCH_LEASE_SECONDS", "0"),
        ("PROCESSING_RECONCILE_SECONDS", "x"), ("SCHEDULER_TICK_MS", "-1"), ("RETRY_BASE_MS", "0"), ("RETRY_CAP_MS", "1"),
        ("DATABASE_URL", "mysql://root@localhost/db"), ("DATABASE_URL", "not a url"), ("AMQP_URL", "http://127.0.0.1:5672"),
        ("REPLICATE_API_BASE_URL", "ftp://api.replicate.com"), ("REPLICATE_API_BASE_URL", "api.replicate.com/v1"),
        ("REPLICATE_MODEL", "just-a-name"), ("REPLICATE_IMAGE_INPUT", "image url"), ("REPLICATE_ALLOWED_INPUT_KEYS", "seed,bad key"),
        ("REPLICATE_ALLOWED_INPUT_KEYS", "seed,prompt"), ("REPLICATE_ALLOWED_INPUT_KEYS", "seed,image"),
        ("REPLICATE_WEBHOOK_SECRET", "whsec_***"), ("WEBHOOK_PUBLIC_URL", "hooks.example.com"), ("STORAGE_URL", "/var/videos"),
        ("STORAGE_URL", "file://"), ("GATEWAY_HOST", "a b"), ("WEBHOOK_HOST", "http://x/"),
        ("QUEUE_PROCESSOR_TOKEN", "short"), ("QUEUE_PROCESSOR_TOKEN", String(repeating: "x", count: 31)),
        ("PUBLIC_BASE_URL", "api.example.com"), ("PUBLIC_BASE_URL", "https://api.example.com/?a=1"), ("ALLOW_LOCAL_IMAGE_URLS", "maybe"),
        ("SUBMIT_RATE_PER_MIN", "0"), ("SUBMIT_BURST", "-1"), ("HTTP_IDLE_TIMEOUT_MS", "10"), ("HTTP_READ_TIMEOUT_MS", "x"),
        ("DATABASE_POOL_ACQUIRE_TIMEOUT_MS", "0"), ("DATABASE_POOL_MAX_WAITERS", "-1"), ("ADMISSION_REPLY_MARGIN_MS", "soon"),
    ])
    func invalidValueNamesItsVariable(variable: String, value: String) throws {
        let error = try #require(self.error([variable: value]))
        #expect(error.variable == variable)
        #expect(error.description.hasPrefix("REELAY config: \(variable) "))
        #expect(!error.description.contains("\n"))
        #expect(!error.problem.isEmpty)
    }

    @Test func integerMessageMatchesTheExample() throws {
        let error = try #require(self.error(["MAX_CONCURRENT_TASKS": "abc"]))
        #expect(error.description == "REELAY config: MAX_CONCURRENT_TASKS must be a positive integer, got 'abc'")
    }

    @Test func s3IsNotSupportedYet() throws {
        let error = try #require(self.error(["STORAGE_URL": "s3://videos?endpoint=https://r2.example.com"]))
        #expect(error.description == "REELAY config: STORAGE_URL s3:// storage is not supported yet; use file://DIR")
    }

    @Test func requireReplicateTokenWhenUnset() throws {
        let config = try ReelayConfiguration.load(from: [:])
        #expect(throws: ConfigurationError(variable: "REPLICATE_API_TOKEN", problem: "is required by the dispatcher but is not set")) {
            try config.requireReplicateToken()
        }
    }

    @Test func requireWebhookSecret() throws {
        let unset = try ReelayConfiguration.load(from: [:])
        do {
            try unset.requireWebhookSecret()
            Issue.record("missing secret accepted")
        } catch {
            #expect(error.variable == "REPLICATE_WEBHOOK_SECRET")
        }
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        let set = try ReelayConfiguration.load(from: ["REPLICATE_WEBHOOK_SECRET": secret])
        #expect(try set.requireWebhookSecret() == secret)
        let verifier = try set.requireWebhookVerifier()
        #expect(verifier.sign(id: "a", timestamp: 1, body: []).hasPrefix("v1,"))
    }

    /// A secret value never shows up in an error, and invalid URLs are quoted with their password redacted.
    @Test func errorsDoNotLeakSecrets() throws {
        let secretError = try #require(self.error(["REPLICATE_WEBHOOK_SECRET": "whsec_hunter2!!"]))
        #expect(!secretError.description.contains("hunter2"))
        let urlError = try #require(self.error(["DATABASE_URL": "mysql://admin:hunter2@db.internal/app"]))
        #expect(!urlError.description.contains("hunter2"))
        #expect(urlError.description.contains("<set>"))
    }

    /// Invariant: the summary shows whether secrets are set, never their values.
    @Test func redaction() throws {
        let env = [
            "DATABASE_URL": "postgresql://reelay:dbpass123@db.internal:5432/reelay?sslmode=require&password=dbpass123",
            "AMQP_URL": "amqps://svc:mqpass456@mq.internal:5671/%2f",
            "REPLICATE_API_TOKEN": "r8_tok789",
            "REPLICATE_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "QUEUE_PROCESSOR_TOKEN": "ops-tok-000-0123456789abcdef0123456789",
        ]
        let config = try ReelayConfiguration.load(from: env)
        let summary = config.redactedSummary
        #expect(summary["REPLICATE_API_TOKEN"] == "<set>")
        #expect(summary["REPLICATE_WEBHOOK_SECRET"] == "<set>")
        #expect(summary["QUEUE_PROCESSOR_TOKEN"] == "<set>")
        #expect(summary["DATABASE_URL"] == "postgresql://reelay:<set>@db.internal:5432/reelay?sslmode=require&password=<set>")
        #expect(summary["AMQP_URL"] == "amqps://svc:<set>@mq.internal:5671/%2f")
        #expect(summary["MAX_CONCURRENT_TASKS"] == "5")
        #expect(Set(summary.keys) == Set(ReelayConfiguration.variables))

        let secrets = ["dbpass123", "mqpass456", "r8_tok789", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "ops-tok-000-0123456789abcdef0123456789"]
        var printed = ""
        dump(config, to: &printed)
        for text in Array(summary.values) + [config.description, "\(config)", String(reflecting: config), printed] {
            for secret in secrets {
                #expect(!text.contains(secret), "leaked in \(text)")
            }
        }

        let unset = try ReelayConfiguration.load(from: [:]).redactedSummary
        #expect(unset["REPLICATE_API_TOKEN"] == "<unset>")
        #expect(unset["REPLICATE_WEBHOOK_SECRET"] == "<unset>")
        #expect(unset["QUEUE_PROCESSOR_TOKEN"] == "<unset>")
        #expect(unset["AMQP_URL"] == "amqp://guest:<set>@127.0.0.1:5672/%2f")
        #expect(unset["DATABASE_URL"] == "postgresql://reelay@127.0.0.1:55432/reelay")
    }

    @Test func limitsSetterUpdatesFields() throws {
        var config = try ReelayConfiguration.load(from: [:])
        config.limits = AdmissionLimits(maxUserActiveTasks: 9, maxQueueSize: 99)
        #expect(config.maxUserActiveTasks == 9)
        #expect(config.maxQueueSize == 99)
    }

    @Test func relativeStorageDirectory() throws {
        let config = try ReelayConfiguration.load(from: ["STORAGE_URL": "file://data/videos"])
        #expect(config.storageDirectory == "data/videos")
    }

    /// Invariant: an ops token shorter than 32 characters stops the service with one line naming the variable (and
    /// not the token); 32 characters pass.
    @Test func opsTokenMustBeLong() throws {
        let error = try #require(self.error(["QUEUE_PROCESSOR_TOKEN": "hunter2-hunter2"]))
        #expect(error.description.hasPrefix("REELAY config: QUEUE_PROCESSOR_TOKEN must be at least 32 characters"))
        #expect(!error.description.contains("hunter2"))
        let config = try ReelayConfiguration.load(from: ["QUEUE_PROCESSOR_TOKEN": String(repeating: "a", count: 32)])
        #expect(config.queueProcessorToken?.count == 32)
    }

    @Test func httpEdgeDefaults() throws {
        let config = try ReelayConfiguration.load(from: ["GATEWAY_PORT": "9000"])
        #expect(config.publicBaseURL == "http://127.0.0.1:9000")
        #expect(config.allowLocalImageURLs == false)
        #expect(config.submitRatePerMinute == 60 && config.submitBurst == 20)
        #expect(config.httpIdleTimeout == .seconds(60) && config.httpReadTimeout == .seconds(10))
        let set = try ReelayConfiguration.load(from: ["PUBLIC_BASE_URL": "https://api.example.com/", "ALLOW_LOCAL_IMAGE_URLS": "true"])
        #expect(set.publicBaseURL == "https://api.example.com")
        #expect(set.allowLocalImageURLs)
    }
}
