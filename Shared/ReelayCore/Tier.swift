/// A user's service tier; it buys queue priority.
public enum Tier: String, Sendable, Codable, CaseIterable {
    case free, premium, pro

    /// Priority points added to every task of this tier.
    public var priorityBonus: Int {
        switch self {
        case .pro: 200
        case .premium: 100
        case .free: 0
        }
    }
}
