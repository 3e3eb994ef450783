import Foundation
import ReelayCore
import Testing

@Suite("Webhook binding")
struct WebhookBindingTests {
    static let mine = WebhookTarget(taskID: UUID(), attempt: 2)
    static let other = WebhookTarget(taskID: UUID(), attempt: 1)

    static func url(_ target: WebhookTarget) -> String {
        WebhookURL.make(base: "https://hooks.example.com", taskID: target.taskID, attempt: target.attempt)
    }

    /// Invariant: the signed body's webhook URL is the authority; the unsigned query cannot redirect a webhook.
    @Test func signedBodyIsTheAuthority() {
        #expect(WebhookClaim(signedWebhookURL: Self.url(Self.mine), query: Self.mine) == .signed(Self.mine))
        #expect(WebhookClaim(signedWebhookURL: Self.url(Self.mine), query: nil) == .signed(Self.mine))
        #expect(WebhookClaim(signedWebhookURL: Self.url(Self.mine), query: nil).target == Self.mine)
    }

    @Test func aQueryThatDisagreesIsAConflict() {
        let otherTask = WebhookClaim(signedWebhookURL: Self.url(Self.mine), query: Self.other)
        #expect(otherTask == .conflict(signed: Self.mine, query: Self.other))
        #expect(otherTask.target == nil)
        #expect(otherTask.conflictDescription?.contains(Self.other.taskID.uuidString.lowercased()) == true)
        // The same task with another attempt is a conflict too: the attempt is the fence.
        let otherAttempt = WebhookTarget(taskID: Self.mine.taskID, attempt: 3)
        #expect(WebhookClaim(signedWebhookURL: Self.url(Self.mine), query: otherAttempt) == .conflict(signed: Self.mine, query: otherAttempt))
        #expect(WebhookClaim(signedWebhookURL: Self.url(Self.mine), query: Self.mine).conflictDescription == nil)
    }

    @Test func withoutASignedTargetTheQueryIsOnlyAClaim() {
        #expect(WebhookClaim(signedWebhookURL: nil, query: Self.other) == .unsigned(Self.other))
        // A webhook URL that names no task (another integration's) signs nothing about tasks.
        #expect(WebhookClaim(signedWebhookURL: "https://hooks.example.com/other", query: Self.other) == .unsigned(Self.other))
        #expect(WebhookClaim(signedWebhookURL: nil, query: nil) == .none)
        #expect(WebhookClaim(signedWebhookURL: "https://x/y?task=nope&attempt=1", query: nil) == .none)
        #expect(WebhookClaim(signedWebhookURL: nil, query: nil).target == nil)
    }

    /// Invariant: an unsigned claim holds only for a task that already recorded this very prediction; a task with no
    /// prediction yet accepts none.
    @Test func unsignedClaimsHoldOnlyForTheRecordedPrediction() {
        #expect(WebhookClaim.holds(recordedPredictionID: "abc", predictionID: "abc"))
        #expect(!WebhookClaim.holds(recordedPredictionID: "abc", predictionID: "xyz"))
        #expect(!WebhookClaim.holds(recordedPredictionID: nil, predictionID: "xyz"))
        #expect(!WebhookClaim.holds(recordedPredictionID: "", predictionID: ""))
    }
}
