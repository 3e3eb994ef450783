import Foundation
import Logging
import ReelayPostgres
import ReelayTestSupport
import Testing

/// The whole of Reelay as built executables: a fresh database and RabbitMQ vhost of its own (so tests never share
/// queues or rows), the Replicate stand-in, and the four services, wired as a deployment would wire them.
struct RunningSystem: Sendable {
    static let opsToken = "ops-e2e-token-0123456789abcdef0123456789abcdef"

    let folder: String
    let standin: RunningStandin
    let gatewayURL: String
    let webhookURL: String
    let environment: [String: String]
    let database: ScratchDatabase
    let vhost: ScratchVhost
    let pool: PostgresPool
    let processes: Locked<[String: ManagedProcess]>

    /// Starts everything; `overrides` change the services' environment (limits, timings).
    static func start(name: String, overrides: [String: String] = [:], standinEnvironment: [String: String] = [:]) async throws
        -> RunningSystem
    {
        let folder = try BuiltProducts.testFolder(name)
        let database = try await ScratchDatabase.create("reelay_e2e")
        let vhost = try await ScratchVhost.create("reelay-e2e")

        var standinEnv = ["STANDIN_RUN_MS": "1000"]
        standinEnv.merge(standinEnvironment) { $1 }
        let standin = try await RunningStandin.start(folder: folder, environment: standinEnv)

        let gatewayPort = freePort()
        let webhookPort = freePort()
        var environment = [
            "DATABASE_URL": database.url,
            "AMQP_URL": vhost.url,
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

        let pool = PostgresPool(url: database.url, size: 2, name: "e2e-checks", logger: Logger(label: "e2e"))
        let system = RunningSystem(
            folder: folder, standin: standin, gatewayURL: "http://127.0.0.1:\(gatewayPort)",
            webhookURL: "http://127.0.0.1:\(webhookPort)", environment: environment, database: database, vhost: vhost, pool: pool,
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
        await self.database.drop()
        let vhost = self.vhost
        await onOwnThread { vhost.drop() }
    }

    func logTails(lines: Int = 15) -> String {
        self.processes.withLock { $0 }.sorted { $0.key < $1.key }.map { "--- \($0.key)\n\($0.value.logTail(lines: lines))" }
            .joined(separator: "\n")
    }

    // MARK: helpers

    /// Runs the ops CLI (`reelay`) with the system's `environment`, to its end.
    static func runTool(_ arguments: [String], environment: [String: String]) throws -> CommandResult {
        try runCommand(BuiltProducts.path("reelay"), arguments, environment: environment)
    }

    /// Starts a system (see `start`), runs `body`, and always stops it. An error thrown by `body` is recorded with the
    /// last `logLines` lines of every service's log and the stand-in's, so a failure says where to look.
    static func run(
        name: String, overrides: [String: String] = [:], standinEnvironment: [String: String] = [:], logLines: Int = 15,
        _ body: (RunningSystem) async throws -> Void
    ) async throws {
        let system = try await Self.start(name: name, overrides: overrides, standinEnvironment: standinEnvironment)
        do {
            try await body(system)
        } catch {
            Issue.record(
                "\(error)\n\(system.logTails(lines: logLines))\n--- standin\n\(system.standin.process.logTail(lines: logLines))")
        }
        await system.stop()
    }
}
