import Foundation
import Logging
import ReelayConfig

#if canImport(Glibc)
import Glibc
#endif

/// What every executable does first: ignore SIGPIPE, read the configuration (or exit with one line naming the bad
/// variable), set up logging.
public enum Bootstrap {
    public static func start(service: String) -> (ReelayConfiguration, Logger) {
        // A peer closing a socket mid-write must be an error return, not a dead process.
        signal(SIGPIPE, SIG_IGN)
        let configuration: ReelayConfiguration
        do {
            configuration = try ReelayConfiguration.fromProcessEnvironment()
        } catch {
            FileHandle.standardError.write(Data("\(service): \(error)\n".utf8))
            exit(1)
        }
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        let json = configuration.logFormat == "json"
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler =
                json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "reelay.\(service)")
        logger.logLevel = level
        logger.info("starting", metadata: ["service": "\(service)", "config": "\(configuration.redactedSummary)"])
        return (configuration, logger)
    }

    /// Exits with one line when a required setting is missing; for settings only some services need.
    public static func require<T>(_ service: String, _ body: () throws -> T) -> T {
        do {
            return try body()
        } catch {
            FileHandle.standardError.write(Data("\(service): \(error)\n".utf8))
            exit(1)
        }
    }
}

/// One JSON object per line on standard error (LOG_FORMAT=json), for log shippers.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields: [String: String] = [
            "ts": Date().formatted(.iso8601), "level": event.level.rawValue, "logger": self.label, "msg": "\(event.message)",
        ]
        for (key, value) in self.metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
            fields[key] = "\(value)"
        }
        guard let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) else { return }
        FileHandle.standardError.write(data + Data("\n".utf8))
    }
}
