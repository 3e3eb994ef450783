import Foundation

/// The dispatcher's decisions: for each thing that happens to a prediction command (it arrives, its create is recorded,
/// Replicate answers, a lookup ends), what to do next. Create is not idempotent at Replicate, so these decisions keep
/// "never run twice at Replicate": once a create may have been sent, the attempt is only ever looked up, never created
/// again, until the lookup proves no prediction exists.
///
/// Pure: a `TaskSnapshot` read just before, what Replicate said, and the time in; an `Action` out. `Dispatcher` reads
/// rows, calls Replicate and runs the actions.
public enum DispatchDecision {
    public enum Action: Sendable, Equatable {
        /// The command is for an attempt the task has left, a task that is gone, or an attempt another dispatcher took.
        case ignoreStale
        /// Take a token of the shared create rate, then record that a create is attempted (`beginCreate`).
        case beginCreate
        /// The attempt's create is recorded as attempted: send it to Replicate.
        case sendCreate
        /// The user canceled before the create was sent: finish as canceled, nothing reaches Replicate.
        case cancelBeforeCreate(reason: String, message: String)
        /// Record the prediction on the attempt (`dispatching` to `processing`).
        case recordCreated(predictionID: String)
        /// Replicate refused for good: fail the task now. `alert`: the account itself is refused (401/402).
        case fail(reason: String, message: String, alert: Bool)
        /// Replicate's rate limit: every dispatcher pauses creates for `pause`, and the task retries no sooner.
        case pauseCreatesAndRetry(pause: Duration, reason: String)
        /// Nothing was created: back to pending with backoff (or failed once retries are spent), at least `notBefore`.
        case retry(reason: String, notBefore: Duration?)
        /// The create's outcome is unknown: look for the prediction before anything creates again. `fallbackReason` is
        /// set when no create of this attempt can still be in flight: a missing prediction is then retried with it.
        case reconcile(fallbackReason: String?)
        /// Ask Replicate to cancel the recorded prediction.
        case cancelAtReplicate(predictionID: String)
        /// Cancel sent, not confirmed yet: its webhook, or the scheduler's re-send, follows.
        case awaitCancelConfirmation
        /// Look the prediction up by its recorded id.
        case getPrediction(predictionID: String)
        /// No id recorded: search recent predictions for this attempt's (`PredictionSearch`), back to `since`.
        case searchPredictions(since: Date)
        /// Nothing found, but another dispatcher's create may still be in flight: its answer, webhook or the next
        /// lease sweep settles it.
        case waitForInFlightCreate
        /// A terminal prediction: hand it to the finalizer exactly as its webhook would arrive.
        case forwardTerminal(ReplicatePrediction)
        /// The prediction is still running: note that it was checked, so the silent-prediction sweep waits again.
        case keepWaiting
        /// Fail this delivery so it comes back later (delay queue): a call that may be repeated safely did not succeed.
        case redeliver(String)
        case nothing
    }

    /// How long past the create's HTTP timeout a prediction may still appear before a lookup calls the create lost.
    public static let inFlightGrace: TimeInterval = 5
    /// Recent predictions are searched from this long before the attempt's create was recorded (clock skew).
    public static let searchSlack: TimeInterval = 5
    /// The pause after a 429 that named no reset.
    public static let defaultRateLimitPause: Duration = .seconds(10)

    // MARK: create

    /// A create command for `attempt` arrived; `task` is the row now (nil: gone).
    public static func createCommand(task: TaskSnapshot?, attempt: Int) -> Action {
        guard let task, task.status == .dispatching, task.attempt == attempt else { return .ignoreStale }
        // A create was already attempted (a redelivery after a crash, a command re-sent by the lease sweep): never create
        // twice; find out what happened instead.
        if task.createAttemptedAt != nil {
            return .reconcile(fallbackReason: nil)
        }
        return .beginCreate
    }

    /// `beginCreate` ran: `task` is the row it recorded the attempt on, nil when another dispatcher recorded it first.
    public static func createBegun(task: TaskSnapshot?) -> Action {
        guard let task else { return .ignoreStale }
        if task.cancelRequestedAt != nil {
            return .cancelBeforeCreate(reason: "canceled before it reached Replicate", message: "Canceled by the user")
        }
        return .sendCreate
    }

    /// Replicate answered this dispatcher's create.
    public static func createAnswered(_ result: ReplicateCallResult) -> Action {
        switch result {
        case .prediction(let prediction):
            return .recordCreated(predictionID: prediction.id)
        case .refused(let failure, let status):
            switch failure {
            case .success:
                return .nothing  // not produced by the client: a 2xx is a prediction or an unreadable answer
            case .permanent(let message):
                return .fail(reason: "Replicate refused the create (\(status))", message: message, alert: failure.needsAlert)
            case .rateLimited(let retryAfter):
                // Not created: safe to try again after the reset. The task counts a retry and waits at least until then.
                let pause = retryAfter ?? Self.defaultRateLimitPause
                return .pauseCreatesAndRetry(
                    pause: pause, reason: "Replicate rate limit (429), resets in \(pause.secondsInReasons) s")
            case .transient(let message):
                // A 5xx on create is ambiguous: the prediction may exist. Look before trying again.
                return .reconcile(fallbackReason: message)
            }
        case .unreachable(let reason, mayHaveBeenSent: true):
            // The call ended without an answer (timeout, connection lost mid-request): it may have been created.
            return .reconcile(fallbackReason: "Replicate did not answer the create (\(reason))")
        case .unreachable(let reason, mayHaveBeenSent: false):
            // The request never left (connection refused, DNS): nothing can exist.
            return .retry(reason: "Replicate could not be reached (\(reason))", notBefore: nil)
        }
    }

    // MARK: cancel

    /// A cancel command for `attempt`: only a task holding a slot at that attempt, with a prediction, has one to cancel.
    public static func cancelCommand(task: TaskSnapshot?, attempt: Int) -> Action {
        guard let task, task.attempt == attempt, task.status.holdsSlot, let predictionID = task.replicateTaskID else {
            return .ignoreStale
        }
        return .cancelAtReplicate(predictionID: predictionID)
    }

    /// Replicate answered the cancel of `predictionID`.
    public static func cancelAnswered(_ result: ReplicateCallResult, predictionID: String) -> Action {
        switch result {
        case .prediction(let prediction):
            return prediction.status.isTerminal ? .forwardTerminal(prediction) : .awaitCancelConfirmation
        case .refused:
            // Logged; the scheduler sends the cancel again while the task stays unconfirmed.
            return .awaitCancelConfirmation
        case .unreachable(let reason, _):
            return .redeliver("cancel of \(predictionID) failed: \(reason)")
        }
    }

    // MARK: reconcile

    /// A reconcile (get) command for `attempt`, or a create whose outcome is unknown: how to find the prediction.
    public static func reconcileCommand(task: TaskSnapshot?, attempt: Int) -> Action {
        guard let task, task.attempt == attempt, task.status.holdsSlot else { return .ignoreStale }
        if let predictionID = task.replicateTaskID {
            return .getPrediction(predictionID: predictionID)
        }
        return .searchPredictions(since: Self.searchStart(for: task))
    }

    /// How far back a search looks: a little before the create was recorded (else the dispatch, else the submission).
    public static func searchStart(for task: TaskSnapshot) -> Date {
        (task.createAttemptedAt ?? task.dispatchedAt ?? task.createdAt).addingTimeInterval(-Self.searchSlack)
    }

    /// Replicate answered the get of the recorded prediction. See `predictionLookedUp` for the arguments.
    public static func getAnswered(
        _ result: ReplicateCallResult, predictionID: String, task: TaskSnapshot, fallbackReason: String?, now: Date,
        createTimeout: Duration
    ) -> [Action] {
        switch result {
        case .prediction(let prediction):
            return Self.predictionLookedUp(
                prediction, task: task, fallbackReason: fallbackReason, now: now, createTimeout: createTimeout)
        case .refused(let failure, let status):
            return [.redeliver("get \(predictionID) answered \(status): \(failure)")]
        case .unreachable(let reason, _):
            return [.redeliver("get \(predictionID) failed: \(reason)")]
        }
    }

    /// A lookup ended: `prediction` is this attempt's, or nil when Replicate has none.
    /// - Parameters:
    ///   - fallbackReason: set when this dispatcher's own create call has ended: no create can be in flight any more.
    ///   - createTimeout: the create call's HTTP timeout (`REPLICATE_HTTP_TIMEOUT_MS`): how long another dispatcher's
    ///     create may still be running.
    public static func predictionLookedUp(
        _ prediction: ReplicatePrediction?, task: TaskSnapshot, fallbackReason: String?, now: Date, createTimeout: Duration
    ) -> [Action] {
        guard let prediction else {
            if fallbackReason == nil, let attempted = task.createAttemptedAt,
                now.timeIntervalSince(attempted) < createTimeout.secondsInReasons + Self.inFlightGrace
            {
                return [.waitForInFlightCreate]
            }
            if task.status == .dispatching {
                return [.retry(reason: fallbackReason ?? "the create never reached Replicate", notBefore: nil)]
            }
            return []
        }
        var actions: [Action] = []
        if task.status == .dispatching {
            actions.append(.recordCreated(predictionID: prediction.id))
        }
        actions.append(prediction.status.isTerminal ? .forwardTerminal(prediction) : .keepWaiting)
        return actions
    }
}

/// Looks through Replicate's list of recent predictions (newest first, page by page) for one attempt's prediction.
///
/// By the task and attempt in its webhook URL when Replicate shows it; else by the same input (prompt and image)
/// created after the attempt's create was recorded. A prediction whose webhook URL names another task or attempt is
/// never taken for this one, whatever its input.
public struct PredictionSearch: Sendable, Equatable {
    /// One listed prediction with what the search compares.
    public struct Listed: Sendable, Equatable {
        public var prediction: ReplicatePrediction
        /// `prediction.createdAt`, parsed.
        public var createdAt: Date?
        /// The string values of its input.
        public var input: [String: String]

        public init(prediction: ReplicatePrediction, createdAt: Date?, input: [String: String]) {
            self.prediction = prediction
            self.createdAt = createdAt
            self.input = input
        }
    }

    public enum Step: Sendable, Equatable {
        case found(ReplicatePrediction)
        /// Not on this page; it may be on the next.
        case nextPage(String)
        case notFound
    }

    /// Pages read at most; a prediction further back than that is older than any create of this attempt could be.
    public static let maxPages = 5

    public var target: WebhookTarget
    public var prompt: String
    public var imageURL: String
    /// The model input field that takes the image (`REPLICATE_IMAGE_INPUT`).
    public var imageInput: String
    public var since: Date

    public init(target: WebhookTarget, prompt: String, imageURL: String, imageInput: String, since: Date) {
        self.target = target
        self.prompt = prompt
        self.imageURL = imageURL
        self.imageInput = imageInput
        self.since = since
    }

    /// One page, newest first, and the URL of the next.
    public func scan(_ page: [Listed], next: String?) -> Step {
        for listed in page {
            if let webhook = listed.prediction.webhook, let found = WebhookURL.parse(webhook) {
                if found.taskID == self.target.taskID && found.attempt == self.target.attempt { return .found(listed.prediction) }
                continue
            }
            if let created = listed.createdAt, created >= self.since, listed.input["prompt"] == self.prompt,
                listed.input[self.imageInput] == self.imageURL
            {
                return .found(listed.prediction)
            }
        }
        // Newest first: once a page reaches back before the create, older pages cannot hold it.
        guard let next, let oldest = page.last?.createdAt, oldest >= self.since else { return .notFound }
        return .nextPage(next)
    }
}
