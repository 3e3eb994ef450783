import Foundation

/// The finalizer's decisions: which task a verified webhook (or a reconciled prediction) may change, and what its
/// prediction means for that task: complete (after the output is stored), fail, retry, cancel, move to processing, or
/// nothing. These keep "exactly one final state": only a task holding a slot at the webhook's own attempt, and with no
/// other prediction recorded, takes any news; everything else is stale and changes nothing.
///
/// Pure: the claim and the row it names, the prediction, and the download's result in; an `Action` out. `Finalizer` reads
/// rows, downloads and runs the actions.
public enum WebhookDecision {
    /// Which row a delivery's claim (`WebhookClaim`) asks the finalizer to read.
    public enum Lookup: Sendable, Equatable {
        /// The task the claim names, by id.
        case task(UUID)
        /// No claim: the task that recorded this prediction id.
        case taskRecordingPrediction
        /// The claim is refused (`conflict`): no row is read.
        case none
    }

    /// What the claim and the row it named amount to.
    public enum Binding: Sendable, Equatable {
        /// The delivery is for this attempt of the row read.
        case bound(attempt: Int)
        /// The query names another task or attempt than the signed body: not applied.
        case conflict(signed: WebhookTarget, query: WebhookTarget)
        /// No such task (never created here, or the prediction is recorded nowhere).
        case unknownTask
        /// Only the unsigned query names the task, and that task has not recorded this prediction: not trusted.
        case unrecordedPrediction(claimed: WebhookTarget)
    }

    public enum Action: Sendable, Equatable {
        /// An older attempt's, a finished task's or another prediction's news: changes nothing.
        case ignoreStale
        /// Succeeded: keep the video in our storage first (`downloaded` decides what follows).
        case storeOutput(url: String)
        /// The output is kept: complete the task.
        case complete(reason: String)
        /// Fail the task now, with this history reason and error message.
        case fail(reason: String, message: String)
        /// A failure that looks transient: back to pending with backoff (or failed once retries are spent).
        /// `eventReason` is the bare reason the task event carries.
        case retry(reason: String, eventReason: String)
        /// Replicate canceled the prediction: finish as canceled.
        case finishCanceled(reason: String, message: String)
        /// The prediction started before its create was recorded: record it (`dispatching` to `processing`).
        case markProcessing(predictionID: String)
        /// Not terminal, nothing to record: wait for the next webhook or the silent-prediction sweep.
        case keepWaiting
        /// Fail this delivery so it comes back later (the download may succeed then).
        case redeliver(String)
    }

    /// What fetching the output came to.
    public enum Download: Sendable, Equatable {
        /// The output breaks the output rules (source, size, not a video): the same URL gets the same answer.
        case refused(OutputRefusal)
        /// The transfer failed (network, storage): trying again may succeed.
        case failed(String)
        /// The output host answered with this status; `bytes` kept on 2xx.
        case answered(status: Int, bytes: Int64)
    }

    // MARK: binding

    /// The row to read for a claim.
    public static func lookup(for claim: WebhookClaim) -> Lookup {
        switch claim {
        case .signed(let target), .unsigned(let target): .task(target.taskID)
        case .none: .taskRecordingPrediction
        case .conflict: .none
        }
    }

    /// Binds a delivery to `task`, the row `lookup(for:)` named (nil: not found): the signed body's target decides; an
    /// unsigned query holds only for a task that already recorded this very prediction; with no claim, the attempt
    /// that recorded the prediction.
    public static func bind(_ claim: WebhookClaim, task: TaskSnapshot?, predictionID: String) -> Binding {
        switch claim {
        case .conflict(let signed, let query):
            return .conflict(signed: signed, query: query)
        case .signed(let target):
            return task == nil ? .unknownTask : .bound(attempt: target.attempt)
        case .unsigned(let target):
            guard let task, WebhookClaim.holds(recordedPredictionID: task.replicateTaskID, predictionID: predictionID) else {
                return .unrecordedPrediction(claimed: target)
            }
            return .bound(attempt: target.attempt)
        case .none:
            guard let task else { return .unknownTask }
            return .bound(attempt: task.attempt)
        }
    }

    // MARK: outcome

    /// Whether news for `attempt` about `predictionID` can no longer change `task`: only a task holding a slot
    /// (dispatching or processing) at this attempt, with no other prediction recorded, takes it.
    public static func isStale(task: TaskSnapshot, attempt: Int, predictionID: String) -> Bool {
        attempt != task.attempt || !task.status.holdsSlot || (task.replicateTaskID != nil && task.replicateTaskID != predictionID)
    }

    /// A prediction arrived for `attempt` of `task` (its webhook, or a reconciliation's answer).
    public static func predictionArrived(_ prediction: ReplicatePrediction, task: TaskSnapshot, attempt: Int) -> Action {
        if Self.isStale(task: task, attempt: attempt, predictionID: prediction.id) {
            return .ignoreStale
        }
        switch prediction.status {
        case .succeeded:
            guard let url = prediction.output?.firstURL else {
                let reason =
                    prediction.dataRemoved == true
                    ? "Replicate deleted the output before it could be stored" : "Replicate reported success without an output file"
                return .fail(reason: reason, message: reason)
            }
            return .storeOutput(url: url)
        case .failed, .aborted:
            let reason = prediction.error ?? "the prediction \(prediction.status.rawValue) without an error message"
            if PredictionFailure.isTransient(error: prediction.error) {
                return .retry(reason: "Replicate: \(reason)", eventReason: reason)
            }
            return .fail(reason: "Replicate: \(reason)", message: "Replicate: \(reason)")
        case .canceled:
            return .finishCanceled(reason: "canceled at Replicate", message: "Canceled")
        case .starting, .processing, .unknown:
            // An unknown status is not terminal (REPLICATE.md): keep reconciling.
            return task.status == .dispatching ? .markProcessing(predictionID: prediction.id) : .keepWaiting
        }
    }

    /// The output of a succeeded `prediction` was fetched with this result.
    public static func downloaded(_ result: Download, prediction: ReplicatePrediction) -> Action {
        switch result {
        case .refused(let refusal):
            // Final: the same URL gets the same answer, so the task fails now instead of spending retries.
            return .fail(reason: refusal.taskMessage, message: refusal.taskMessage)
        case .failed(let error):
            return .redeliver("downloading the output of \(prediction.id) failed: \(error)")
        case .answered(let status, let bytes):
            if (200..<300).contains(status) {
                return .complete(reason: "output stored (\(bytes) bytes)")
            }
            if status == 404 || status == 410 || prediction.dataRemoved == true {
                let reason = "Replicate deleted the output before it could be stored (\(status))"
                return .fail(reason: reason, message: reason)
            }
            return .redeliver("downloading the output of \(prediction.id) answered \(status)")
        }
    }
}
