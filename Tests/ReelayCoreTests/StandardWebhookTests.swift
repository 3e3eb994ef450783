import Crypto
import Foundation
import ReelayCore
import Testing

@Suite("Standard Webhooks signature")
struct StandardWebhookTests {
    static let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    static let id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    static let timestamp = 1_614_265_330
    static let body = Array(#"{"test": 2432232314}"#.utf8)
    static let now = Date(timeIntervalSince1970: TimeInterval(timestamp))

    /// HMAC-SHA256 computed here straight from the spec (key = base64-decoded secret without whsec_), not via sign().
    static func expectedSignature(secret: String, id: String, timestamp: Int, body: [UInt8]) throws -> String {
        let keyData = try #require(Data(base64Encoded: String(secret.dropFirst("whsec_".count))))
        let message = Array("\(id).\(timestamp).".utf8) + body
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: keyData))
        return "v1," + Data(mac).base64EncodedString()
    }

    func verify(
        _ webhook: StandardWebhook, id: String? = Self.id, timestamp: String? = String(Self.timestamp), signature: String?,
        body: [UInt8] = Self.body, now: Date = Self.now
    ) -> WebhookVerificationError.Code? {
        do {
            try webhook.verify(id: id, timestamp: timestamp, signatureHeader: signature, body: body, now: now)
            return nil
        } catch {
            return error.code
        }
    }

    /// Known answer from the Standard Webhooks specification's example, and recomputed independently with Crypto.
    @Test func knownAnswer() throws {
        let webhook = try StandardWebhook(secret: Self.secret)
        let independent = try Self.expectedSignature(secret: Self.secret, id: Self.id, timestamp: Self.timestamp, body: Self.body)
        #expect(independent == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        #expect(webhook.sign(id: Self.id, timestamp: Self.timestamp, body: Self.body) == independent)
        #expect(self.verify(webhook, signature: independent) == nil)
    }

    @Test func validSignatureIsAccepted() throws {
        let webhook = try StandardWebhook(secret: Self.secret)
        let body = Array(#"{"id":"abc","status":"succeeded"}"#.utf8)
        let signature = webhook.sign(id: "msg_1", timestamp: Self.timestamp, body: body)
        #expect(self.verify(webhook, id: "msg_1", signature: signature, body: body) == nil)
    }

    @Test func tamperedBodyIsRejected() throws {
        let webhook = try StandardWebhook(secret: Self.secret)
        let signature = webhook.sign(id: Self.id, timestamp: Self.timestamp, body: Self.body)
        var tampered = Self.body
        tampered[tampered.count - 2] ^= 0x01
        #expect(self.verify(webhook, signature: signature, body: tampered) == .noMatchingSignature)
    }

    /// The id and timestamp are signed too: changing either breaks the signature.
    @Test func tamperedIdOrTimestampIsRejected() throws {
        let webhook = try StandardWebhook(secret: Self.secret)
        let signature = webhook.sign(id: Self.id, timestamp: Self.timestamp, body: Self.body)
        #expect(self.verify(webhook, id: "msg_other", signature: signature) == .noMatchingSignature)
        #expect(self.verify(webhook, timestamp: String(Self.timestamp + 1), signature: signature) == .noMatchingSignature)
    }

    @Test func wrongSecretIsRejected() throws {
        let signer = try StandardWebhook(secret: "whsec_" + Data(repeating: 7, count: 24).base64EncodedString())
        let webhook = try StandardWebhook(secret: Self.secret)
        let signature = signer.sign(id: Self.id, timestamp: Self.timestamp, body: Self.body)
        #expect(self.verify(webhook, signature: signature) == .noMatchingSignature)
    }

    /// Entries of other versions are ignored, so a correct MAC under "v2," does not pass.
    @Test func otherVersionOnlyIsRejected() throws {
        let webhook = try StandardWebhook(secret: Self.secret)
        let v1 = webhook.sign(id: Self.id, timestamp: Self.timestamp, body: Self.body)
        let v2 = "v2," + v1.dropFirst(3)
        #expect(self.verify(webhook, signature: v2) == .noMatchingSignature)
        #expect(self.verify(webhook, signature: "v1a," + v1.dropFirst(3)) == .noMatchingSignature)
    }

    @Test func secondSignatureMatches() throws {
        let webhook = try StandardWebhook(secret: Self.secret)
        let good = webhook.sign(id: Self.id, timestamp: Self.timestamp, body: Self.body)
        let wrong = "v1," + Data(repeating: 1, count: 32).base64EncodedString()
        #expect(self.verify(webhook, signature: "\(wrong) \(good)") == nil)
        #expect(self.verify(webhook, signature: "v2,abcd \(good)") == nil)
        // A malformed entry does not hide a matching one.
        #expect(self.verify(webhook, signature: "garbage v1,!!!! \(good)") == nil)
    }

    @Test func malformedEntriesWithoutAMatchAreMalformed() throws {
        let webhook = try StandardWebhook(secret: Self.secret)
        let wrong = "v1," + Data(repeating: 1, count: 32).base64EncodedString()
        #expect(self.verify(webhook, signature: "nocomma") == .malformedSignature)
        #expect(self.verify(webhook, signature: "v1,not*base64!") == .malformedSignature)
        #expect(self.verify(webhook, signature: "\(wrong) nocomma") == .malformedSignature)
        #expect(self.verify(webhook, signature: "v1,") == .malformedSignature)
    }

    /// Invariant: timestamps more than 5 minutes from now, either way, are refused even with a valid signature.
    @Test(arguments: [-301, 301, -3600, 86_400])
    func timestampOutsideToleranceIsRejected(offset: Int) throws {
        let webhook = try StandardWebhook(secret: Self.secret)
        let signature = webhook.sign(id: Self.id, timestamp: Self.timestamp, body: Self.body)
        let now = Self.now.addingTimeInterval(TimeInterval(-offset))
        #expect(self.verify(webhook, signature: signature, now: now) == .timestampOutOfTolerance)
    }

    @Test(arguments: [-300, -299, 0, 299, 300])
    func timestampInsideToleranceIsAccepted(offset: Int) throws {
        let webhook = try StandardWebhook(secret: Self.secret)
        let signature = webhook.sign(id: Self.id, timestamp: Self.timestamp, body: Self.body)
        let now = Self.now.addingTimeInterval(TimeInterval(-offset))
        #expect(self.verify(webhook, signature: signature, now: now) == nil)
        #expect(StandardWebhook.tolerance == .seconds(300))
    }

    @Test(arguments: ["1614265330.0", "abc", "-1614265330", "1.6e9", "0x60370B32", "99999999999999999999999"])
    func nonIntegerTimestampIsMalformed(timestamp: String) throws {
        let webhook = try StandardWebhook(secret: Self.secret)
        let signature = webhook.sign(id: Self.id, timestamp: Self.timestamp, body: Self.body)
        #expect(self.verify(webhook, timestamp: timestamp, signature: signature) == .malformedTimestamp)
    }

    @Test func missingHeadersAreReported() throws {
        let webhook = try StandardWebhook(secret: Self.secret)
        let signature = webhook.sign(id: Self.id, timestamp: Self.timestamp, body: Self.body)
        #expect(self.verify(webhook, id: nil, signature: signature) == .missingHeader)
        #expect(self.verify(webhook, id: "", signature: signature) == .missingHeader)
        #expect(self.verify(webhook, timestamp: nil, signature: signature) == .missingHeader)
        #expect(self.verify(webhook, signature: nil) == .missingHeader)
        #expect(self.verify(webhook, signature: "  ") == .missingHeader)
    }

    /// The key is the base64 decoding of the text after the optional prefix: both spellings sign identically.
    @Test func secretWithoutPrefixIsTheSameKey() throws {
        let prefixed = try StandardWebhook(secret: Self.secret)
        let bare = try StandardWebhook(secret: String(Self.secret.dropFirst("whsec_".count)))
        let signature = prefixed.sign(id: Self.id, timestamp: Self.timestamp, body: Self.body)
        #expect(bare.sign(id: Self.id, timestamp: Self.timestamp, body: Self.body) == signature)
        #expect(self.verify(bare, signature: signature) == nil)
    }

    /// Replicate's docs show the key used without base64 decoding; that must NOT verify.
    @Test func undecodedKeyIsNotAccepted() throws {
        let webhook = try StandardWebhook(secret: Self.secret)
        let wrongKey = SymmetricKey(data: Array("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".utf8))
        let message = Array("\(Self.id).\(Self.timestamp).".utf8) + Self.body
        let wrong = "v1," + Data(HMAC<SHA256>.authenticationCode(for: message, using: wrongKey)).base64EncodedString()
        #expect(self.verify(webhook, signature: wrong) == .noMatchingSignature)
    }

    @Test(arguments: ["", "whsec_", "whsec_not base64!", "whsec_a"])
    func invalidSecretIsRefused(secret: String) {
        do {
            _ = try StandardWebhook(secret: secret)
            Issue.record("secret '\(secret)' was accepted")
        } catch let error as WebhookVerificationError {
            #expect(error.code == .invalidSecret)
            #expect(!error.description.contains("not base64!"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func errorsNeverContainTheSecret() throws {
        let webhook = try StandardWebhook(secret: Self.secret)
        let key = String(Self.secret.dropFirst("whsec_".count))
        for signature in [nil, "nocomma", "v1,AAAA"] as [String?] {
            do {
                try webhook.verify(id: Self.id, timestamp: String(Self.timestamp), signatureHeader: signature, body: Self.body, now: Self.now)
                Issue.record("verification passed unexpectedly")
            } catch {
                #expect(!error.description.contains(key))
                #expect(!error.description.isEmpty)
            }
        }
    }
}
