import Foundation
import Logging
import ReelayAMQP

/// Publishes Reelay's messages with publisher confirms.
public struct MessageBus: Sendable {
    public let publisher: AMQPPublisher

    public init(publisher: AMQPPublisher) {
        self.publisher = publisher
    }

    /// Returns once the broker confirmed the message.
    public func publish<M: BusMessage>(_ message: M, properties: AMQPProperties = AMQPProperties()) async throws {
        var properties = properties
        // Every message gets an id, so a dead letter can be named when it is listed or replayed.
        if properties.messageID == nil { properties.messageID = UUID().uuidString.lowercased() }
        try await self.publisher.publish(
            exchange: M.exchange, routingKey: message.routingKey, body: MessageCodec.encode(message), properties: properties)
    }

    /// Sends a verdict straight to a reply queue (the default exchange routes by queue name).
    /// - Throws: `AMQPError` `.returned` when the reply queue no longer exists (its gateway restarted, or the broker did
    ///   and the gateway has not declared it again yet): nobody will read the verdict.
    public func reply(_ verdict: AdmissionVerdict, to queue: String, correlationID: String?) async throws {
        var properties = AMQPProperties()
        properties.correlationID = correlationID
        properties.persistent = false
        try await self.publisher.publish(
            exchange: "", routingKey: queue, body: MessageCodec.encode(verdict), properties: properties, mandatory: true)
    }
}
