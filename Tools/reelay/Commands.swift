import ArgumentParser
import Foundation
import Logging
import ReelayConfig
import ReelayCore
import ReelayPostgres
import ReelayStore

/// `reelay`: operations on a Reelay deployment (schema migrations, API keys, queue statistics).
struct ReelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reelay",
        abstract: "Operate Reelay: migrate the database, create API keys, read queue statistics, inspect and replay dead letters.",
        discussion: "Settings come from the environment (DATABASE_URL, LOG_LEVEL...), as for the services.",
        subcommands: [Migrate.self, Keys.self, Stats.self, DeadLetters.self])
}

/// `reelay migrate`
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply the schema migrations not yet applied (safe to repeat, safe to run concurrently).")

    func run() async throws {
        try await CLI.withPool { pool, logger in
            let applied = try await Migrations.apply(pool: pool, logger: logger)
            let version = try await Migrations.currentVersion(pool: pool)
            print("applied \(applied.count) migration(s); schema at version \(version)")
        }
    }
}

/// `reelay keys ...`
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage API keys.", subcommands: [Create.self, List.self, Revoke.self])

    /// `reelay keys create --user <uuid> --tier free|pro|premium`
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an API key for a user (creating the user, or updating its tier).",
            discussion: "The key is printed once, alone on the last line of standard output; only its hash is stored.")

        @Option(help: "The user's id (a UUID).", transform: CLI.parseUUID)
        var user: UUID

        @Option(help: "The user's tier: free, pro or premium.", transform: CLI.parseTier)
        var tier: Tier

        func run() async throws {
            let key = try await CLI.withPool { pool, _ in
                try await UserStore(pool: pool).createKey(userID: self.user, tier: self.tier)
            }
            CLI.printError(
                "created an API key for user \(self.user.uuidString.lowercased()) (tier \(self.tier.rawValue)); "
                    + "it is shown only now, so store it safely:")
            print(key)
        }
    }
}

extension Keys {
    /// `reelay keys list [--user <uuid>]`
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List API keys (of one user, or all): id, prefix, user, tier, created, revoked. Never the key itself.")

        @Option(help: "Only the keys of this user (a UUID).", transform: CLI.parseUUID)
        var user: UUID?

        func run() async throws {
            let keys = try await CLI.withPool { pool, _ in
                try await UserStore(pool: pool).keys(userID: self.user)
            }
            print(KeysFormat.table(keys))
        }
    }

    /// `reelay keys revoke <id>`
    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke an API key by its id (from 'reelay keys list'); its next request gets 401.")

        @Argument(help: "The key's id (a UUID, first column of 'reelay keys list').", transform: CLI.parseUUID)
        var id: UUID

        func run() async throws {
            let key = try await CLI.withPool { pool, _ in
                try await UserStore(pool: pool).revokeKey(id: self.id)
            }
            guard let key else {
                CLI.printError("reelay: no API key has id \(self.id.uuidString.lowercased()); see 'reelay keys list'")
                throw ExitCode.failure
            }
            print(KeysFormat.table([key]))
            CLI.printError("revoked: requests with this key are refused (401) from now on")
        }
    }
}

/// API keys as a table (never the key: only its id and first characters).
enum KeysFormat {
    static func table(_ keys: [UserStore.KeyInfo]) -> String {
        let header = ["ID", "PREFIX", "USER", "TIER", "CREATED", "REVOKED"]
        let rows = keys.map { key in
            [
                key.id.uuidString.lowercased(), key.prefix.map { $0 + "..." } ?? "-", key.userID.uuidString.lowercased(),
                key.tier.rawValue, Self.time(key.createdAt), key.revokedAt.map(Self.time) ?? "-",
            ]
        }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        return ([header] + rows).map { row in
            row.enumerated().map { column, value in value.padding(toLength: widths[column], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n")
    }

    private static func time(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }
}

/// `reelay stats [--json]`
struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show queue statistics: counts, success rate, wait and run times.")

    @Flag(help: "Print JSON (the shape of GET /v1/queue/stats) instead of text.")
    var json = false

    func run() async throws {
        let stats = try await CLI.withPool { pool, _ in
            try await TaskStore(pool: pool).stats()
        }
        print(self.json ? StatsFormat.json(stats) : StatsFormat.text(stats))
    }
}

/// Queue statistics as text or JSON.
enum StatsFormat {
    static func text(_ stats: QueueStats) -> String {
        let rows: [(String, String)] = [
            ("pending", String(stats.pending)),
            ("running", String(stats.running)),
            ("completed", String(stats.completed)),
            ("failed", String(stats.failed)),
            ("canceled", String(stats.canceled)),
            ("rejected", String(stats.rejected)),
            ("success rate", String(format: "%.1f %%", stats.successRate * 100)),
            ("wait p50", Self.seconds(stats.waitSecondsP50)),
            ("wait p95", Self.seconds(stats.waitSecondsP95)),
            ("run p50", Self.seconds(stats.runSecondsP50)),
            ("run p95", Self.seconds(stats.runSecondsP95)),
        ]
        let labelWidth = rows.map(\.0.count).max() ?? 0
        let valueWidth = rows.map(\.1.count).max() ?? 0
        return rows.map { label, value in
            label.padding(toLength: labelWidth, withPad: " ", startingAt: 0) + "  "
                + String(repeating: " ", count: valueWidth - value.count) + value
        }.joined(separator: "\n")
    }

    static func json(_ stats: QueueStats) -> String {
        let object: [String: Any] = [
            "pending": stats.pending, "running": stats.running, "completed": stats.completed, "failed": stats.failed,
            "canceled": stats.canceled, "rejected": stats.rejected, "success_rate": stats.successRate,
            "wait_seconds": ["p50": stats.waitSecondsP50, "p95": stats.waitSecondsP95],
            "run_seconds": ["p50": stats.runSecondsP50, "p95": stats.runSecondsP95],
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    private static func seconds(_ value: Double) -> String {
        String(format: "%.1f s", value)
    }
}

/// What every subcommand shares: configuration, logging, and a pool that is always shut down.
enum CLI {
    /// Calls the async `run()`; from top-level code the synchronous requirement would be picked.
    static func run<Command: AsyncParsableCommand>(_ command: inout Command) async throws {
        try await command.run()
    }

    /// Runs `body` with a one-connection pool over DATABASE_URL and shuts the pool down afterwards, whatever happens.
    /// A bad setting exits with status 1 and the configuration's one-line error.
    static func withPool<T: Sendable>(_ body: (PostgresPool, Logger) async throws -> T) async throws -> T {
        let config: ReelayConfiguration
        do {
            config = try ReelayConfiguration.fromProcessEnvironment()
        } catch {
            Self.printError("reelay: \(error)")
            throw ExitCode(1)
        }
        let logger = Self.logger(level: config.logLevel)
        let pool = PostgresPool(url: config.databaseURL, size: 1, name: "reelay-cli", logger: logger)
        let result: T
        do {
            result = try await body(pool, logger)
        } catch {
            await pool.shutdown()
            Self.printError("reelay: \(error)")
            throw ExitCode.failure
        }
        await pool.shutdown()
        return result
    }

    static func printError(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// Library logs go to stderr; below "warning" only when LOG_LEVEL asks for it, so stdout stays scriptable.
    private static func logger(level: String) -> Logger {
        var logger = Logger(label: "reelay.cli") { label in StreamLogHandler.standardError(label: label) }
        let configured = Logger.Level(rawValue: level) ?? .info
        logger.logLevel = configured == .info ? .warning : configured
        return logger
    }

    static func parseUUID(_ text: String) throws -> UUID {
        guard let id = UUID(uuidString: text) else {
            throw ValidationError(
                "'\(text)' is not a UUID (like 3f2b8c1e-5d4a-4e7b-9c1d-2a6f8e0b7c35); generate one with uuidgen or cat /proc/sys/kernel/random/uuid")
        }
        return id
    }

    static func parseTier(_ text: String) throws -> Tier {
        guard let tier = Tier(rawValue: text.lowercased()) else {
            throw ValidationError("'\(text)' is not a tier; use one of: free, pro, premium")
        }
        return tier
    }
}
