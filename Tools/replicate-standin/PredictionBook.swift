import Foundation

/// A small seeded generator (SplitMix64), so `STANDIN_SEED` reproduces every fault choice.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = self.state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

/// A create request that passed validation.
struct NewPrediction: Sendable {
    var model: String
    var version: String
    var input: [String: JSON]
    var webhook: String?
    var events: Set<WebhookEvent>
    var stream: Bool
    var cancelAfter: Duration?
    var taskID: UUID?
}

/// What became of a valid create request.
enum CreateOutcome: Sendable {
    /// The create_500 fault: nothing was created.
    case serverError
    /// Over the create rate (or the create_429 fault): nothing was created; retry after this many seconds.
    case throttled(retryAfterSeconds: Int)
    /// Created; `withhold` is the create_timeout fault (answer late, the client cannot know it was created).
    case created(Prediction, withhold: Bool)
}

/// How one webhook delivery attempt ended, for the counters.
enum WebhookTally: Sendable {
    case delivered, failed, gaveUp, dropped
}

/// The stand-in's bookkeeping: every prediction, its state machine, the fault dice and the counters.
/// It does no IO and never reads the clock: callers pass `now`, so every transition is a plain function of its inputs.
actor PredictionBook {
    private let seed: UInt64?
    private let ratePerMinute: Int
    private let outputTTL: Duration
    private var rng: SplitMix64
    private(set) var faults: Faults
    private var predictions: [String: Prediction] = [:]
    /// Ids in creation order (oldest first).
    private var order: [String] = []
    /// Times of accepted creates within the last minute, oldest first.
    private var recentCreates: [Date] = []

    private var creates = 0
    private var createAttempts = 0
    private var running = 0
    private var peakRunning = 0
    private var rateLimited = 0
    private var serverErrors = 0
    private var withheld = 0
    private var predictionsByTask: [UUID: Int] = [:]
    private var overlappingTasks: Set<UUID> = []
    private var webhooksSent = 0
    private var webhooksFailed = 0
    private var webhooksGivenUp = 0
    private var webhooksDropped = 0

    init(seed: UInt64?, ratePerMinute: Int, outputTTL: Duration, faults: Faults) {
        self.seed = seed
        self.ratePerMinute = ratePerMinute
        self.outputTTL = outputTTL
        self.faults = faults
        self.rng = SplitMix64(seed: seed ?? UInt64.random(in: .min ... .max))
    }

    // MARK: Creating

    /// Counts a create attempt that was refused before reaching the fault dice (bad input).
    func countRejectedAttempt() {
        self.createAttempts += 1
    }

    /// Admits or refuses a valid create and, when admitted, records the new prediction as `starting`.
    func create(_ request: NewPrediction, id: String, now: Date) -> CreateOutcome {
        self.createAttempts += 1
        // Roll every die on every attempt so a seed gives the same sequence whatever the percentages are.
        let fail500 = self.roll(self.faults.create500)
        let fail429 = self.roll(self.faults.create429)
        let timeout = self.roll(self.faults.createTimeout)
        if fail500 {
            self.serverErrors += 1
            return .serverError
        }
        if fail429 {
            self.rateLimited += 1
            return .throttled(retryAfterSeconds: 1)
        }
        self.recentCreates.removeAll { now.timeIntervalSince($0) >= 60 }
        if self.recentCreates.count >= self.ratePerMinute, let oldest = self.recentCreates.first {
            self.rateLimited += 1
            let wait = Int((60 - now.timeIntervalSince(oldest)).rounded(.up))
            return .throttled(retryAfterSeconds: max(1, wait))
        }
        self.recentCreates.append(now)

        let plan = FaultPlan(
            fail: self.roll(self.faults.predictionFail),
            outputMissing: self.roll(self.faults.outputMissing),
            dropWebhook: self.roll(self.faults.webhookDrop),
            duplicateWebhook: self.roll(self.faults.webhookDuplicate),
            delayWebhook: self.roll(self.faults.webhookDelay))
        let prediction = Prediction(
            id: id, model: request.model, version: request.version, input: request.input, webhook: request.webhook,
            events: request.events, stream: request.stream, createdAt: now,
            deadline: request.cancelAfter.map { now.addingTimeInterval($0.seconds) }, plan: plan, taskID: request.taskID)
        self.predictions[id] = prediction
        self.order.append(id)
        self.creates += 1
        if timeout { self.withheld += 1 }
        if let task = request.taskID {
            self.predictionsByTask[task, default: 0] += 1
            let alreadyRunning = self.predictions.values.contains { $0.id != id && $0.taskID == task && $0.status.isRunning }
            if alreadyRunning {
                self.overlappingTasks.insert(task)
            }
        }
        self.running += 1
        self.peakRunning = max(self.peakRunning, self.running)
        return .created(prediction, withhold: timeout)
    }

    // MARK: Lifecycle

    /// starting -> processing; returns the prediction when it moved.
    func markProcessing(id: String, now: Date) -> Prediction? {
        guard var prediction = self.predictions[id], prediction.status == .starting else { return nil }
        prediction.status = .processing
        prediction.startedAt = now
        prediction.logs = "Starting prediction\n"
        self.predictions[id] = prediction
        return prediction
    }

    /// The run is over: succeeded (or failed with the prediction_fail fault). Returns the prediction when it moved.
    func finish(id: String, now: Date) -> Prediction? {
        guard var prediction = self.predictions[id], prediction.status.isRunning else { return nil }
        if prediction.startedAt == nil {
            prediction.startedAt = now
        }
        if prediction.plan.fail {
            prediction.status = .failed
            prediction.error = "CUDA error: out of memory (transient)"
            prediction.logs += "CUDA error: out of memory (transient)\n"
        } else {
            prediction.status = .succeeded
            prediction.logs += "Generated 1 video\n"
        }
        return self.end(prediction, now: now)
    }

    /// Cancels a running prediction; a finished one comes back unchanged. `changed` tells which.
    func cancel(id: String, now: Date) -> (prediction: Prediction, changed: Bool)? {
        guard var prediction = self.predictions[id] else { return nil }
        guard prediction.status.isRunning else { return (prediction, false) }
        prediction.status = .canceled
        return (self.end(prediction, now: now), true)
    }

    /// The `Cancel-After` deadline passed: a prediction still starting is aborted, a processing one canceled.
    func expireDeadline(id: String, now: Date) -> Prediction? {
        guard var prediction = self.predictions[id], prediction.status.isRunning else { return nil }
        prediction.status = prediction.status == .starting ? .aborted : .canceled
        return self.end(prediction, now: now)
    }

    private func end(_ prediction: Prediction, now: Date) -> Prediction {
        var prediction = prediction
        prediction.completedAt = now
        self.predictions[prediction.id] = prediction
        self.running -= 1
        return prediction
    }

    // MARK: Reading

    func prediction(id: String) -> Prediction? {
        self.predictions[id]
    }

    /// Every prediction, newest first.
    func all() -> [Prediction] {
        self.order.reversed().compactMap { self.predictions[$0] }
    }

    /// Whether `/files/{id}.mp4` serves the video at `now`.
    func outputAvailable(id: String, now: Date) -> Bool {
        guard let prediction = self.predictions[id], prediction.status == .succeeded else { return false }
        return !prediction.plan.outputMissing && !prediction.dataRemoved(now: now, ttl: self.outputTTL)
    }

    /// Counters for `GET /_standin/stats`.
    func stats() -> JSON {
        var byTask: [String: JSON] = [:]
        for (task, count) in self.predictionsByTask {
            byTask[task.uuidString.lowercased()] = .int(Int64(count))
        }
        let overlapping = self.overlappingTasks.map { $0.uuidString.lowercased() }.sorted().map { JSON.string($0) }
        return .object([
            "creates": .int(Int64(self.creates)),
            "create_attempts": .int(Int64(self.createAttempts)),
            "running": .int(Int64(self.running)),
            "peak_running": .int(Int64(self.peakRunning)),
            "predictions_by_task": .object(byTask),
            "overlapping_tasks": .array(overlapping),
            "webhooks_sent": .int(Int64(self.webhooksSent)),
            "webhooks_failed": .int(Int64(self.webhooksFailed)),
            "webhooks_given_up": .int(Int64(self.webhooksGivenUp)),
            "webhooks_dropped": .int(Int64(self.webhooksDropped)),
            "rate_limited": .int(Int64(self.rateLimited)),
            "server_errors": .int(Int64(self.serverErrors)),
            "withheld_creates": .int(Int64(self.withheld)),
            "predictions": .int(Int64(self.predictions.count)),
        ])
    }

    // MARK: Test controls

    func tally(_ outcome: WebhookTally) {
        switch outcome {
        case .delivered: self.webhooksSent += 1
        case .failed: self.webhooksFailed += 1
        case .gaveUp: self.webhooksGivenUp += 1
        case .dropped: self.webhooksDropped += 1
        }
    }

    /// Applies a partial fault update; returns the faults now in force.
    func updateFaults(_ update: [String: JSON]) throws(ConfigError) -> Faults {
        try self.faults.apply(update)
        return self.faults
    }

    /// Forgets every prediction and counter (faults stay) and restarts the seeded dice.
    func reset() {
        self.predictions = [:]
        self.order = []
        self.recentCreates = []
        self.creates = 0
        self.createAttempts = 0
        self.running = 0
        self.peakRunning = 0
        self.rateLimited = 0
        self.serverErrors = 0
        self.withheld = 0
        self.predictionsByTask = [:]
        self.overlappingTasks = []
        self.webhooksSent = 0
        self.webhooksFailed = 0
        self.webhooksGivenUp = 0
        self.webhooksDropped = 0
        if let seed = self.seed {
            self.rng = SplitMix64(seed: seed)
        }
    }

    /// True with probability `percent`/100; always draws one number.
    private func roll(_ percent: Double) -> Bool {
        let unit = Double(self.rng.next() >> 11) * 0x1p-53
        return unit * 100 < percent
    }
}
