import Foundation

/// The PostgreSQL and RabbitMQ that `scripts/test` starts (`scripts/servers.sh up test`) and names in the environment.
public enum TestServers {
    /// `DATABASE_URL`: the test database, whose server also holds every scratch database.
    public static var databaseURL: String {
        ProcessInfo.processInfo.environment["DATABASE_URL"] ?? "postgresql://reelay@127.0.0.1:55433/reelay_test"
    }

    /// `AMQP_URL`: the test broker's default vhost.
    public static var amqpURL: String {
        ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5673/%2f"
    }

    /// `REELAY_RABBITMQ_NODE`: the broker's Erlang node, for rabbitmqctl.
    public static var rabbitmqNode: String {
        ProcessInfo.processInfo.environment["REELAY_RABBITMQ_NODE"] ?? "REELAY_RABBITMQ_NODE-is-unset-run-scripts-test"
    }

    /// `scheme://authority/old?query` -> `scheme://authority<path>?query`.
    public static func replacingPath(of url: String, with path: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let query = rest[authorityEnd...].firstIndex(of: "?").map { String(rest[$0...]) } ?? ""
        return String(url[..<schemeEnd.upperBound]) + rest[..<authorityEnd] + path + query
    }

    /// A name no other test (or test run) uses: `prefix` and 8 random hex digits, joined by `separator`.
    public static func uniqueName(_ prefix: String, separator: String = "-") -> String {
        prefix + separator + UUID().uuidString.prefix(8).lowercased()
    }
}
