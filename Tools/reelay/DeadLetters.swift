import ArgumentParser
import Foundation
import Logging
import NIOConcurrencyHelpers
import ReelayAMQP
import ReelayConfig
import ReelayMessaging

/// `reelay dlq list` / `reelay dlq replay`: the dead-letter queue, where messages that could never be handled wait for a
/// person. Listing takes nothing away (every message goes back to the queue); replaying sends a message back to the queue
/// it died in, with its retry count reset.
struct DeadLetters: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq", abstract: "Inspect and replay dead-lettered messages.", subcommands: [List.self, Replay.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the dead letters (nothing is removed).")

        @Option(help: "Show at most this many.")
        var limit = 100

        func run() async throws {
            let letters = try await DeadLetterQueue.drain(limit: self.limit) { _ in false }
            if letters.isEmpty {
                print("the dead-letter queue is empty")
                return
            }
            for letter in letters {
                print(DeadLetterQueue.describe(letter))
            }
            CLI.printError("\(letters.count) dead letter(s); replay with: reelay dlq replay --id <id> (or --all)")
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send dead letters back to the queue they died in.")

        @Option(name: .customLong("id"), help: "A message id from `reelay dlq list` (repeatable).")
        var ids: [String] = []

        @Flag(help: "Replay every dead letter.")
        var all = false

        func validate() throws {
            guard self.all != !self.ids.isEmpty else {
                throw ValidationError("say which dead letters to replay: --id <id> (repeatable) or --all")
            }
        }

        func run() async throws {
            let wanted = Set(self.ids)
            let replayed = try await DeadLetterQueue.drain(limit: 10_000) { letter in
                self.all || wanted.contains(letter.properties.messageID ?? "")
            }
            for letter in replayed {
                print("replayed \(letter.properties.messageID ?? "-") to \(DeadLetterQueue.origin(letter) ?? "-")")
            }
            let missing = wanted.subtracting(replayed.compactMap(\.properties.messageID))
            if !missing.isEmpty {
                CLI.printError("not found in the dead-letter queue: \(missing.sorted().joined(separator: ", "))")
                throw ExitCode.failure
            }
        }
    }
}

enum DeadLetterQueue {
    /// The queue a dead letter came from: our header, or RabbitMQ's for messages its delivery limit dead-lettered.
    static func origin(_ letter: AMQPDelivery) -> String? {
        letter.properties.headers[Topology.deadQueueHeader] ?? letter.properties.headers["x-first-death-queue"]
    }

    static func describe(_ letter: AMQPDelivery) -> String {
        let body = String(decoding: letter.body.prefix(300), as: UTF8.self)
        let reason = letter.properties.headers[Topology.deadReasonHeader] ?? letter.properties.headers["x-first-death-reason"] ?? "-"
        return """
            id:     \(letter.properties.messageID ?? "- (no id; replay with --all)")
            queue:  \(Self.origin(letter) ?? "-")   routing key: \(letter.routingKey)
            reason: \(reason)
            body:   \(body)\(letter.body.count > 300 ? "…" : "")

            """
    }

    /// Reads the dead-letter queue until it has been quiet for a second. Letters for which `replay` is true are
    /// republished to their queue (confirmed) and acked; all others return to the dead-letter queue untouched.
    /// Returns the replayed letters, or all letters seen when none was replayed.
    static func drain(limit: Int, replay: @escaping @Sendable (AMQPDelivery) -> Bool) async throws -> [AMQPDelivery] {
        let config: ReelayConfiguration
        let url: AMQPURL
        do {
            config = try ReelayConfiguration.fromProcessEnvironment()
            url = try AMQPURL(config.amqpURL)
        } catch {
            CLI.printError("reelay: \(error)")
            throw ExitCode(1)
        }
        var logger = Logger(label: "reelay.cli") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .warning
        let publisher = AMQPPublisher(url: url, topology: Topology.all, name: "reelay-cli.publish", logger: logger)
        let consumer = AMQPConsumer(
            url: url, topology: Topology.all, queues: [Topology.Queue.dead], prefetch: UInt16(min(limit, 1000)), name: "reelay-cli.dlq",
            logger: logger)
        publisher.start()
        consumer.start()
        // A reader task collects letters; this loop stops once the queue has been quiet for a second (five before the
        // first letter: connecting takes a moment).
        let inbox = NIOLockedValueBox<[AMQPDelivery]>([])
        let reader = Task {
            for await letter in consumer.deliveries { inbox.withLockedValue { $0.append(letter) } }
        }
        var seen: [AMQPDelivery] = []
        var replayed: [AMQPDelivery] = []
        var replayedKeys: Set<String> = []
        var lastArrival = ContinuousClock.now
        var quiet: Duration = .seconds(5)
        while seen.count < limit && ContinuousClock.now - lastArrival < quiet {
            let arrived = inbox.withLockedValue { letters in
                defer { letters.removeAll() }
                return letters
            }
            if arrived.isEmpty {
                try await Task.sleep(for: .milliseconds(100))
                continue
            }
            lastArrival = .now
            quiet = .seconds(1)
            for letter in arrived {
                // A replayed letter that dies again comes straight back: replay each letter once per run, never in a loop.
                let key = letter.properties.messageID ?? String(letter.body.hashValue)
                if replayedKeys.contains(key) { continue }
                seen.append(letter)
                guard replay(letter), let queue = Self.origin(letter) else { continue }
                replayedKeys.insert(key)
                var properties = letter.properties
                for header in [Topology.retriesHeader, Topology.deadQueueHeader, Topology.deadReasonHeader] {
                    properties.headers[header] = nil
                }
                try await publisher.publish(exchange: "", routingKey: queue, body: letter.body, properties: properties)
                consumer.ack(letter)
                replayed.append(letter)
            }
        }
        // Unacked letters go back to the dead-letter queue when the consumer closes.
        await consumer.shutdown()
        reader.cancel()
        await publisher.shutdown()
        return replayed.isEmpty && !seen.contains(where: replay) ? seen : replayed
    }
}
