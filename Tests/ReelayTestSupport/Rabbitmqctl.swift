import Foundation

/// `rabbitmqctl -q -n <the test broker's node> ...`.
public enum Rabbitmqctl {
    static let executable = "/usr/sbin/rabbitmqctl"

    /// Runs it (blocking) and returns how it ended.
    public static func run(_ arguments: [String]) throws -> CommandResult {
        try runCommand(Self.executable, ["-q", "-n", TestServers.rabbitmqNode] + arguments)
    }

    /// Runs it (blocking); throws with its output unless it exits 0.
    public static func check(_ arguments: [String]) throws {
        let result = try Self.run(arguments)
        guard result.status == 0 else {
            throw HarnessError("rabbitmqctl \(arguments.joined(separator: " ")) failed: \(result.output)")
        }
    }

    /// Runs it on a thread of its own and returns its exit status.
    public static func status(_ arguments: [String]) async throws -> Int32 {
        try await onOwnThread { try Self.run(arguments).status }
    }
}

/// A RabbitMQ vhost of its own on the test broker (its own queues, nobody else's messages), with the URL's user allowed
/// everything in it.
public struct ScratchVhost: Sendable {
    public let name: String
    /// The test broker's URL with this vhost as its path.
    public let url: String

    /// Creates `<prefix>-<8 hex digits>` (rabbitmqctl runs on a thread of its own).
    public static func create(_ prefix: String) async throws -> ScratchVhost {
        let name = TestServers.uniqueName(prefix)
        let base = TestServers.amqpURL
        let user = URLComponents(string: base)?.user.flatMap { $0.isEmpty ? nil : $0 } ?? "guest"
        try await onOwnThread {
            try Rabbitmqctl.check(["add_vhost", name])
            try Rabbitmqctl.check(["set_permissions", "-p", name, user, ".*", ".*", ".*"])
        }
        return ScratchVhost(name: name, url: TestServers.replacingPath(of: base, with: "/" + name))
    }

    /// Creates a vhost, runs `body` with it, and always deletes it.
    public static func with<T>(_ prefix: String, _ body: (ScratchVhost) async throws -> T) async throws -> T {
        try await withTearDown(try await Self.create(prefix), tearDown: { vhost in await onOwnThread { vhost.drop() } }, body)
    }

    /// Deletes the vhost and everything in it (hundreds of idle vhosts slow the shared test broker down); errors are
    /// ignored. Blocking (about a second), so that a `defer` can call it; `onOwnThread` where that matters.
    public func drop() {
        _ = try? Rabbitmqctl.run(["delete_vhost", self.name])
    }
}
