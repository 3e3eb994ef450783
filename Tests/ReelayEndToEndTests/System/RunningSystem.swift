import Foundation
import Logging
import ReelayPostgres

/// The whole of Reelay as built executables: a fresh database and RabbitMQ vhost of its own (so tests never share
/// queues or rows), the Replicate stand-in, and the four services, wired as a deployment would wire them.
struct RunningSystem: Sendable {
    static let opsToken = "ops-e2e-token-0123456789abcdef0123456789abcdef"

    let folder: String
    let standin: RunningStandin
    let gatewayURL: String
    let webhookURL: String
    let environment: [String: String]
    let databaseURL: String
    let pool: PostgresPool
    let processes: Locked<[String: ManagedProcess]>

    /// Starts everything; `overrides` change the services' environment (limits, timings).
    static func start(name: String, overrides: [String: String] = [:], standinEnvironment: [String: String] = [:]) async throws
        -> RunningSystem
    {
        let folder = try BuiltProducts.testFolder(name)
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let baseDatabaseURL = ProcessInfo.processInfo.environment["DATABASE_URL"] ?? "postgresql://reelay@127.0.0.1:55433/reelay_test"
        let baseAMQPURL = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5673/%2f"

        // A database of its own.
        let database = "reelay_e2e_\(suffix)"
        let admin = PostgresPool(url: baseDatabaseURL, size: 1, name: "e2e-admin", logger: Logger(label: "e2e"))
        _ = try await admin.withConnection { try await $0.query("CREATE DATABASE \(database)") }
        await admin.shutdown()
        let databaseURL = Self.replacingPath(of: baseDatabaseURL, with: "/" + database)

        // A RabbitMQ vhost of its own.
        let vhost = "reelay-e2e-\(suffix)"
        try Self.rabbitmqctl(["add_vhost", vhost])
        try Self.rabbitmqctl(["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"])
        let amqpURL = Self.replacingPath(of: baseAMQPURL, with: "/" + vhost)

        var standinEnv = ["STANDIN_RUN_MS": "1000"]
        standinEnv.merge(standinEnvironment) { $1 }
        let standin = try await RunningStandin.start(folder: folder, environment: standinEnv)

        let gatewayPort = freePort()
        let webhookPort = freePort()
        var environment = [
            "DATABASE_URL": databaseURL,
            "AMQP_URL": amqpURL,
            "REPLICATE_API_BASE_URL": standin.apiBaseURL,
            // The stand-in serves outputs over http on loopback: trusted by exact origin, as in development.
            "OUTPUT_TRUSTED_ORIGINS": standin.baseURL,
            "REPLICATE_API_TOKEN": RunningStandin.token,
            "REPLICATE_WEBHOOK_SECRET": RunningStandin.secret,
            "WEBHOOK_PUBLIC_URL": "http://127.0.0.1:\(webhookPort)",
            "GATEWAY_PORT": String(gatewayPort),
            "WEBHOOK_PORT": String(webhookPort),
            "STORAGE_URL": "file://\(folder)/storage",
            "QUEUE_PROCESSOR_TOKEN": Self.opsToken,
            "SCHEDULER_TICK_MS": "500",
            "LOG_LEVEL": "info",
        ]
        environment.merge(overrides) { $1 }

        let migrate = try Self.runTool(["migrate"], environment: environment)
        guard migrate.status == 0 else { throw HarnessError("reelay migrate failed: \(migrate.output)") }

        let pool = PostgresPool(url: databaseURL, size: 2, name: "e2e-checks", logger: Logger(label: "e2e"))
        let system = RunningSystem(
            folder: folder, standin: standin, gatewayURL: "http://127.0.0.1:\(gatewayPort)",
            webhookURL: "http://127.0.0.1:\(webhookPort)", environment: environment, databaseURL: databaseURL, pool: pool,
            processes: Locked([:]))
        for service in ["webhook", "scheduler", "dispatcher", "gateway"] {
            try system.startService(service)
        }
        do {
            try await waitForHTTP(system.gatewayURL + "/readyz", timeout: .seconds(30))
            try await waitForHTTP(system.webhookURL + "/readyz", timeout: .seconds(30))
        } catch {
            throw HarnessError("the system did not become ready: \(error)\n\(system.logTails())")
        }
        return system
    }

    /// Starts (or restarts) one service under `name` (e.g. "dispatcher-2" runs the dispatcher executable), with the
    /// system's environment changed by `overrides`.
    func startService(_ name: String, executable: String? = nil, overrides: [String: String] = [:]) throws {
        let executable = executable ?? name.split(separator: "-").first.map(String.init) ?? name
        let process = try ManagedProcess(
            name: name, executable: BuiltProducts.path(executable), environment: self.environment.merging(overrides) { $1 },
            logFolder: self.folder)
        self.processes.withLock { $0[name] = process }
    }

    func process(_ name: String) -> ManagedProcess? {
        self.processes.withLock { $0[name] }
    }

    /// Creates a user of `tier` and returns its API key, through the ops CLI as an operator would.
    func createKey(user: UUID, tier: String) throws -> String {
        let result = try Self.runTool(["keys", "create", "--user", user.uuidString, "--tier", tier], environment: self.environment)
        guard result.status == 0, let key = result.stdout.split(separator: "\n").last.map(String.init), !key.isEmpty else {
            throw HarnessError("reelay keys create failed (\(result.status)): \(result.output)")
        }
        return key
    }

    func stop() async {
        let all = self.processes.withLock { Array($0.values) }
        await withTaskGroup(of: Void.self) { group in
            for process in all {
                group.addTask { _ = await process.terminate(grace: .seconds(10)) }
            }
        }
        await self.standin.stop()
        await self.pool.shutdown()
        await self.dropResources()
    }

    /// Drops this run's database and RabbitMQ vhost (the logs stay in `folder`): hundreds of idle vhosts, each with its
    /// quorum queues, slow the shared test broker down for everyone.
    private func dropResources() async {
        if let database = self.databaseURL.split(separator: "?").first?.split(separator: "/").last, database.hasPrefix("reelay_e2e_") {
            let base = ProcessInfo.processInfo.environment["DATABASE_URL"] ?? "postgresql://reelay@127.0.0.1:55433/reelay_test"
            let admin = PostgresPool(url: base, size: 1, name: "e2e-drop", logger: Logger(label: "e2e"))
            _ = try? await admin.withConnection { try await $0.query("DROP DATABASE IF EXISTS \(database) WITH (FORCE)") }
            await admin.shutdown()
        }
        if let vhost = self.environment["AMQP_URL"]?.split(separator: "?").first?.split(separator: "/").last, vhost.hasPrefix("reelay-e2e-") {
            try? Self.rabbitmqctl(["delete_vhost", String(vhost)])
        }
    }

    func logTails(lines: Int = 15) -> String {
        self.processes.withLock { $0 }.sorted { $0.key < $1.key }.map { "--- \($0.key)\n\($0.value.logTail(lines: lines))" }
            .joined(separator: "\n")
    }

    // MARK: helpers

    static func runTool(_ arguments: [String], environment: [String: String]) throws -> (status: Int32, stdout: String, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuiltProducts.path("reelay"))
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let outText = String(decoding: out, as: UTF8.self)
        return (process.terminationStatus, outText, outText + String(decoding: err, as: UTF8.self))
    }

    static func rabbitmqctl(_ arguments: [String]) throws {
        let node = ProcessInfo.processInfo.environment["REELAY_RABBITMQ_NODE"] ?? "REELAY_RABBITMQ_NODE-is-unset-run-scripts-test"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/rabbitmqctl")
        process.arguments = ["-q", "-n", node] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw HarnessError("rabbitmqctl \(arguments.joined(separator: " ")) failed: \(text)")
        }
    }

    /// `scheme://authority/old?query` -> `scheme://authority<path>?query`.
    static func replacingPath(of url: String, with path: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let query = rest[authorityEnd...].firstIndex(of: "?").map { String(rest[$0...]) } ?? ""
        return String(url[..<schemeEnd.upperBound]) + rest[..<authorityEnd] + path + query
    }
}
