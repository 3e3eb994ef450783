import ReelayAMQP

/// A delivery as a gateway's reply queue hands it over: `body` (an encoded verdict, or junk) with `correlationID`.
public func reply(_ body: [UInt8], correlationID: String?) -> AMQPDelivery {
    AMQPDelivery(
        body: body, exchange: "", routingKey: "reelay.replies.test", queue: "reelay.replies.test", redelivered: false,
        properties: AMQPProperties(correlationID: correlationID), deliveryTag: 1, generation: 1)
}
