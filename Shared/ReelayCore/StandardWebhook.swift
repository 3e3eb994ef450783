import Crypto
import Foundation

/// Why a webhook request failed signature verification; `description` never contains the secret or the body.
public struct WebhookVerificationError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case missingHeader, malformedTimestamp, timestampOutOfTolerance, malformedSignature, noMatchingSignature, invalidSecret
    }

    public var code: Code
    public var description: String

    public init(code: Code, description: String) {
        self.code = code
        self.description = description
    }
}

/// Standard Webhooks v1 signing and verification (REPLICATE.md "Webhook signatures"), implemented from the spec.
public struct StandardWebhook: Sendable {
    /// How far `webhook-timestamp` may be from now, in either direction, to limit replays.
    public static let tolerance: Duration = .seconds(300)

    private static let secretPrefix = "whsec_"

    /// The HMAC key: the base64-decoded secret.
    private let key: [UInt8]

    /// secret: "whsec_<base64>" (prefix optional); the key is the base64-decoded remainder. Throws invalidSecret.
    public init(secret: String) throws {
        var encoded = Substring(secret.trimmingCharacters(in: .whitespacesAndNewlines))
        if encoded.hasPrefix(Self.secretPrefix) {
            encoded = encoded.dropFirst(Self.secretPrefix.count)
        }
        guard let key = Self.decodeBase64(encoded), !key.isEmpty else {
            throw WebhookVerificationError(
                code: .invalidSecret, description: "The webhook secret is not valid: expected whsec_ followed by base64")
        }
        self.key = key
    }

    /// Verifies raw body bytes against the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers.
    ///
    /// signatureHeader is the space-separated "v1,<base64>" list; entries of other versions are ignored; malformed entries
    /// (no comma, bad base64) are rejected as malformedSignature only if no v1 entry matches; the timestamp must be an
    /// integer (Unix seconds) within `tolerance` of `now` either way. The comparison is constant-time.
    public func verify(
        id: String?, timestamp: String?, signatureHeader: String?, body: [UInt8], now: Date
    ) throws(WebhookVerificationError) {
        guard let id, !id.isEmpty else {
            throw WebhookVerificationError(code: .missingHeader, description: "Missing webhook-id header")
        }
        guard let timestamp, !timestamp.isEmpty else {
            throw WebhookVerificationError(code: .missingHeader, description: "Missing webhook-timestamp header")
        }
        guard let signatureHeader, !signatureHeader.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw WebhookVerificationError(code: .missingHeader, description: "Missing webhook-signature header")
        }
        guard let seconds = Self.parseTimestamp(timestamp) else {
            throw WebhookVerificationError(
                code: .malformedTimestamp, description: "The webhook-timestamp header is not an integer number of Unix seconds")
        }
        let skew = abs(now.timeIntervalSince1970 - Double(seconds))
        if skew > Double(Self.tolerance.components.seconds) {
            throw WebhookVerificationError(
                code: .timestampOutOfTolerance,
                description: "The webhook-timestamp is more than 5 minutes away from the current time")
        }

        let expected = self.mac(id: id, timestamp: timestamp.trimmingCharacters(in: .whitespaces), body: body)
        var sawMalformed = false
        var matched = false
        for entry in signatureHeader.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
            guard let comma = entry.firstIndex(of: ",") else {
                sawMalformed = true
                continue
            }
            guard entry[..<comma] == "v1" else {
                continue
            }
            guard let candidate = Self.decodeBase64(entry[entry.index(after: comma)...]) else {
                sawMalformed = true
                continue
            }
            // Keep scanning after a match so the time taken does not reveal which entry matched.
            if Self.constantTimeEquals(candidate, expected) {
                matched = true
            }
        }
        if matched {
            return
        }
        if sawMalformed {
            throw WebhookVerificationError(code: .malformedSignature, description: "The webhook-signature header has a malformed entry")
        }
        throw WebhookVerificationError(code: .noMatchingSignature, description: "No v1 webhook signature matches the request")
    }

    /// "v1,<base64 HMAC-SHA256 of '<id>.<timestamp>.<body>'>": used by the Replicate stand-in and tests.
    public func sign(id: String, timestamp: Int, body: [UInt8]) -> String {
        "v1," + Data(self.mac(id: id, timestamp: String(timestamp), body: body)).base64EncodedString()
    }

    private func mac(id: String, timestamp: String, body: [UInt8]) -> [UInt8] {
        var hmac = HMAC<SHA256>(key: SymmetricKey(data: self.key))
        hmac.update(data: Array("\(id).\(timestamp).".utf8))
        hmac.update(data: body)
        return Array(hmac.finalize())
    }

    /// Only ASCII digits (after trimming spaces) that fit in Int64; a sign, fraction or exponent is malformed.
    private static func parseTimestamp(_ text: String) -> Int64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, trimmed.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return nil
        }
        return Int64(trimmed)
    }

    /// Standard base64; padding may be omitted, which some secret issuers do.
    private static func decodeBase64<S: StringProtocol>(_ text: S) -> [UInt8]? {
        guard !text.isEmpty else {
            return nil
        }
        var padded = String(text)
        let remainder = padded.utf8.count % 4
        if remainder == 1 {
            return nil
        }
        if remainder > 0 && !padded.hasSuffix("=") {
            padded += String(repeating: "=", count: 4 - remainder)
        }
        guard let data = Data(base64Encoded: padded) else {
            return nil
        }
        return Array(data)
    }

    /// Compares without an early exit; the length of an HMAC is public, so a length mismatch may return at once.
    static func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else {
            return false
        }
        var difference: UInt8 = 0
        for index in lhs.indices {
            difference |= lhs[index] ^ rhs[index]
        }
        return difference == 0
    }
}
