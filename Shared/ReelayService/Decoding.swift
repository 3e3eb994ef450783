import ReelayAMQP
import ReelayMessaging

extension AMQPDelivery {
    /// Decodes a Reelay message; an undecodable or unknown-version message is poison (dead-lettered at once).
    public func decode<M: BusMessage>(_ type: M.Type) throws -> M {
        let message: M
        do {
            message = try MessageCodec.decode(type, from: self.body)
        } catch {
            throw PoisonMessage("\(error)")
        }
        guard message.v == 1 else { throw PoisonMessage("\(M.self) version \(message.v) is not supported (expected 1)") }
        return message
    }
}
