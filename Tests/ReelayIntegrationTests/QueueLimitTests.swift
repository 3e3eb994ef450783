import Foundation
import Logging
import ReelayMessaging
import ReelayService
import ReelayTestSupport
import Testing

@testable import ReelayAMQP

/// The work queues' length limits against the real broker, each test in a vhost of its own (the real queue names,
/// nobody else's messages).
@Suite("QueueLimits")
struct QueueLimitTests {
    /// Creates a vhost, runs `body` with its URL, deletes the vhost.
    static func withVhost<T: Sendable>(_ label: String, _ body: (AMQPURL) async throws -> T) async throws -> T {
        try await ScratchVhost.with("reelay-it-\(label)") { try await body(try AMQPURL($0.url)) }
    }

    static func command() -> SubmitTaskCommand {
        SubmitTaskCommand(
            taskID: UUID(), userID: UUID(), prompt: "p", inputImageURL: "https://example.com/a.png", inputJSON: nil, idempotencyKey: nil,
            submittedAt: Date())
    }

    /// Publishes `count` submit commands one after another; the outcome of each.
    static func submit(_ count: Int, with publisher: AMQPPublisher) async -> [Result<Void, any Error>] {
        var outcomes: [Result<Void, any Error>] = []
        for _ in 0..<count {
            do {
                try await MessageBus(publisher: publisher).publish(Self.command())
                outcomes.append(.success(()))
            } catch {
                outcomes.append(.failure(error))
            }
        }
        return outcomes
    }

    /// Invariant: a publish to a full work queue is refused by the broker (basic.nack, `x-overflow=reject-publish`), and
    /// the error that reaches the gateway becomes 503 "Queue full" with Retry-After. (A quorum queue takes one message
    /// beyond its limit before it refuses, and may overshoot a little under concurrent publishers: RabbitMQ's documented
    /// behaviour, which a limit of thousands does not mind.)
    @Test func aPublishToAFullQueueIsNackedAndBecomes503() async throws {
        try await Self.withVhost("full") { url in
            let publisher = AMQPPublisher(
                url: url, topology: Topology.make(maxLength: [Topology.Queue.submit: 2]), name: "it-full",
                logger: AMQPTestSupport.logger("full"))
            publisher.start()
            let outcomes = await Self.submit(5, with: publisher)
            await publisher.shutdown()
            #expect(outcomes.prefix(2).allSatisfy { (try? $0.get()) != nil }, "the first two fit")
            guard case .failure(let error) = outcomes[4] else {
                Issue.record("the fifth publish was confirmed although the queue holds at most 2 (+1)")
                return
            }
            #expect((error as? AMQPError)?.code == .nacked, "\(error)")
            let problem = Problem.publishFailed(error)
            #expect(problem.status == .serviceUnavailable)
            #expect(problem.title == "Queue full")
            #expect(problem.detail.contains("try again"))
            #expect(problem.headers[.retryAfter] == "30")
            let queued = try await AMQPTestSupport.admin(url) { try $0.messageCount(queue: Topology.Queue.submit) }
            #expect(queued <= 3, "refused publishes are not queued (\(queued) queued)")
        }
    }

    /// Invariant (upgrade): a broker whose work queues were declared by a version without length limits keeps working.
    /// Redeclaring them with `x-max-length` is refused (406 PRECONDITION_FAILED); that one mismatch is tolerated and
    /// reported, the channel stays usable, and the existing queue (and its messages) stays as it is.
    @Test func queuesDeclaredWithoutTheLimitAreKeptAndReported() async throws {
        try await Self.withVhost("upgrade") { url in
            let old = AMQPPublisher(url: url, topology: Topology.make(maxLength: [:]), name: "it-old", logger: AMQPTestSupport.logger("old"))
            old.start()
            #expect(await Self.submit(1, with: old).allSatisfy { (try? $0.get()) != nil })
            await old.shutdown()

            let mismatches = try await AMQPTestSupport.admin(url) { connection -> [AMQPLimitMismatch] in
                let found = try connection.declare(Topology.all, includeExclusive: false)
                // Same connection, same channel: still usable after the reopened channel.
                _ = try connection.declare(Topology.all, includeExclusive: false)
                return found
            }
            #expect(Set(mismatches.map(\.queue)) == [Topology.Queue.submit, Topology.Queue.control])
            #expect(mismatches.allSatisfy { $0.argument == "x-max-length" && $0.wanted == "10000" })

            // A new-version publisher connects and publishes; the queue kept its message from before.
            let new = AMQPPublisher(url: url, topology: Topology.all, name: "it-new", logger: AMQPTestSupport.logger("new"))
            new.start()
            #expect(await Self.submit(1, with: new).allSatisfy { (try? $0.get()) != nil })
            #expect(new.isConnected)
            await new.shutdown()
            let kept = try await AMQPTestSupport.admin(url) { try $0.messageCount(queue: Topology.Queue.submit) }
            #expect(kept == 2)

            // Any other mismatch still fails the declaration.
            await #expect(throws: AMQPError.self) {
                try await AMQPTestSupport.admin(url) { connection in
                    var other = Topology.all
                    other.queues = [.quorum(Topology.Queue.submit, arguments: ["x-delivery-limit": .int(3)])]
                    other.bindings = []
                    _ = try connection.declare(other, includeExclusive: false)
                }
            }
        }
    }

    /// The documented migration for such a broker (deploy/README.md): the limit applied as a policy takes effect on the
    /// existing queue at once, without redeclaring it, and a full queue nacks as with the argument.
    @Test func aPolicyAppliesTheLimitToAnExistingQueue() async throws {
        try await Self.withVhost("policy") { url in
            let old = AMQPPublisher(url: url, topology: Topology.make(maxLength: [:]), name: "it-old", logger: AMQPTestSupport.logger("old"))
            old.start()
            #expect(await Self.submit(1, with: old).allSatisfy { (try? $0.get()) != nil })
            await old.shutdown()
            #expect(
                try await AMQPTestSupport.rabbitmqctl(
                    "set_policy", "-p", url.vhost, "--apply-to", "queues", "reelay-queue-limits", #"^reelay\.(submit|control)$"#,
                    #"{"max-length": 2}"#) == 0)
            let publisher = AMQPPublisher(url: url, topology: Topology.all, name: "it-policy", logger: AMQPTestSupport.logger("policy"))
            publisher.start()
            var outcomes: [Result<Void, any Error>] = []
            // The policy reaches the queue within moments; until then a publish may still fit.
            let refused = try await AMQPTestSupport.eventually(timeout: .seconds(20)) {
                outcomes = await Self.submit(1, with: publisher)
                return (try? outcomes[0].get()) == nil
            }
            await publisher.shutdown()
            #expect(refused, "a publish beyond the policy's limit is refused")
            if case .failure(let error) = outcomes.first {
                #expect((error as? AMQPError)?.code == .nacked, "\(error)")
            }
        }
    }
}
