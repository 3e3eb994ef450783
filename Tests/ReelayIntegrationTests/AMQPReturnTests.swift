import Foundation
import Testing

@testable import ReelayAMQP

/// Mandatory publishes against the real broker: how a sender learns that nobody will read its message.
@Suite("AMQPReturns")
struct AMQPReturnTests {
    /// Invariant: a mandatory publish that no queue takes (a reply queue that is gone) fails with `.returned`, even though
    /// the broker also confirms it; one that a queue takes succeeds; a plain publish to nowhere still succeeds silently.
    @Test func aMandatoryPublishToNoQueueFailsWithReturned() async throws {
        try await AMQPTestSupport.withContext { context in
            let queue = context.queue("returns")
            let topology = AMQPTopology(exchanges: [], queues: [AMQPQueue(name: queue, durable: false)], bindings: [])
            let publisher = try context.publisher(topology)
            let missing = AMQPTestSupport.unique("missing")

            let error = await #expect(throws: AMQPError.self) {
                try await publisher.publish(exchange: "", routingKey: missing, body: Array("lost".utf8), mandatory: true)
            }
            #expect(error?.code == .returned, "\(String(describing: error))")
            try await publisher.publish(exchange: "", routingKey: queue, body: Array("kept".utf8), mandatory: true)
            try await publisher.publish(exchange: "", routingKey: missing, body: Array("silently lost".utf8))

            // Interleaved: each outcome goes to its own publish.
            try await withThrowingTaskGroup(of: (Bool, Bool).self) { group in
                for index in 0..<20 {
                    let routable = index % 2 == 0
                    group.addTask {
                        do {
                            try await publisher.publish(
                                exchange: "", routingKey: routable ? queue : missing, body: Array("\(index)".utf8), mandatory: true)
                            return (routable, true)
                        } catch let error as AMQPError where error.code == .returned {
                            return (routable, false)
                        }
                    }
                }
                for try await (routable, delivered) in group {
                    #expect(routable == delivered)
                }
            }
            #expect(try await AMQPTestSupport.messageCount(queue) == 11)
        }
    }
}
