import Foundation

/// A task and attempt a webhook is for.
public struct WebhookTarget: Sendable, Hashable, CustomStringConvertible {
    public var taskID: UUID
    public var attempt: Int

    public init(taskID: UUID, attempt: Int) {
        self.taskID = taskID
        self.attempt = attempt
    }

    public var description: String { "task \(self.taskID.uuidString.lowercased()) attempt \(self.attempt)" }
}

/// Which task a verified webhook may change, bound to what its signature covers.
///
/// The signature covers the body, not the URL it was posted to: the query string (`?task=&attempt=`) is anyone's to
/// write. Replicate's prediction JSON carries the `webhook` URL the prediction was created with, inside the signed
/// body; when it names a task and attempt, they are the authority and a query that disagrees is refused. Without
/// them, the query's claim holds only for a task that already recorded this very prediction id; anything else is not
/// matched to a task (the reconciliation finishes the task from Replicate's own answer).
public enum WebhookClaim: Sendable, Equatable {
    /// The signed body's `webhook` URL names this target (the query agrees, or has none).
    case signed(WebhookTarget)
    /// Only the unsigned query names a target: trust it only through `holds(recordedPredictionID:predictionID:)`.
    case unsigned(WebhookTarget)
    /// Nothing names a target: match by the prediction id recorded on a task.
    case none
    /// The query names another task or attempt than the signed body: refused.
    case conflict(signed: WebhookTarget, query: WebhookTarget)

    /// - Parameters:
    ///   - signedWebhookURL: the `webhook` field of the verified body (nil when absent).
    ///   - query: task and attempt read from the request's query string (nil when absent).
    public init(signedWebhookURL: String?, query: WebhookTarget?) {
        let signed = signedWebhookURL.flatMap(WebhookURL.parse).map { WebhookTarget(taskID: $0.taskID, attempt: $0.attempt) }
        switch (signed, query) {
        case (let signed?, let query?) where signed != query:
            self = .conflict(signed: signed, query: query)
        case (let signed?, _):
            self = .signed(signed)
        case (nil, let query?):
            self = .unsigned(query)
        case (nil, nil):
            self = .none
        }
    }

    /// The target to forward with the delivery (signed, else the query's claim), nil for `.none` and `.conflict`.
    public var target: WebhookTarget? {
        switch self {
        case .signed(let target), .unsigned(let target): target
        case .none, .conflict: nil
        }
    }

    /// For an `.unsigned` claim: whether the claimed task already recorded this prediction (only then does the unsigned
    /// query say nothing the task does not already know). A task with no prediction yet accepts no unsigned claim.
    public static func holds(recordedPredictionID: String?, predictionID: String) -> Bool {
        guard let recordedPredictionID, !predictionID.isEmpty else { return false }
        return recordedPredictionID == predictionID
    }

    /// Why a `.conflict` is refused, for the sender.
    public var conflictDescription: String? {
        guard case .conflict(let signed, let query) = self else { return nil }
        return "The webhook URL's query names \(query), but the signed prediction was created for \(signed)."
    }
}
