import Foundation
import Logging
import ReelayAMQP
import ReelayConfig
import ReelayCore
import ReelayMessaging
import ReelayService
import ReelayStore

/// Admission, priority and slots. Every decision is made in PostgreSQL under an advisory lock, so any number of scheduler
/// replicas stay correct; this type only decides when to ask and what to publish afterwards.
struct Scheduler: Sendable {
    let configuration: ReelayConfiguration
    let store: TaskStore
    let bus: MessageBus
    let logger: Logger
    let admissions: AdmissionBatcher
    let passes: PassTrigger

    init(configuration: ReelayConfiguration, store: TaskStore, bus: MessageBus, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.bus = bus
        self.logger = logger
        self.admissions = AdmissionBatcher(
            store: store, limits: configuration.limits, model: configuration.replicateModel.identifier,
            replyMargin: configuration.admissionReplyMargin)
        let pass = SchedulingPass(configuration: configuration, store: store, bus: bus, logger: logger)
        self.passes = PassTrigger(logger: logger) { try await pass.run() }
    }

    /// The reply for one admission result.
    static func verdict(for result: AdmissionResult) -> AdmissionVerdict {
        if result.duplicate {
            return AdmissionVerdict(taskID: result.taskID, outcome: .duplicate, httpStatus: 202, message: nil, persisted: true)
        }
        if result.decision == .admit {
            return AdmissionVerdict(taskID: result.taskID, outcome: .admitted, httpStatus: 202, message: nil, persisted: true)
        }
        return AdmissionVerdict(
            taskID: result.taskID, outcome: .rejected, httpStatus: result.decision.httpStatus, message: result.decision.message,
            reason: result.decision.refusalReason, persisted: result.stored)
    }

    /// A submission from the gateway: admit (batched with its neighbours into one transaction), reply, fill slots.
    /// A submission the database cannot store is answered with a 422 verdict on its own; its batch is admitted as usual.
    func handleSubmit(_ delivery: AMQPDelivery) async throws {
        let command = try delivery.decode(SubmitTaskCommand.self)
        let submission = Submission(
            taskID: command.taskID, userID: command.userID, prompt: command.prompt, inputImageURL: command.inputImageURL,
            inputJSON: command.inputJSON, idempotencyKey: command.idempotencyKey, submittedAt: command.submittedAt,
            replyBy: command.replyBy)
        let result = try await self.admissions.admit(submission)
        let verdict = Self.verdict(for: result)
        if case .invalid = result.decision {
            self.logger.notice(
                "submission refused as invalid data",
                metadata: ["task.id": "\(result.taskID)", "user.id": "\(command.userID)", "reason": "\(result.decision.message ?? "-")"])
        }
        self.logger.debug(
            "admission verdict",
            metadata: ["task.id": "\(result.taskID)", "verdict": "\(verdict.outcome.rawValue)", "persisted": "\(result.stored)"])
        var replied = false
        if let replyTo = delivery.properties.replyTo {
            do {
                try await self.bus.reply(verdict, to: replyTo, correlationID: delivery.properties.correlationID)
                replied = true
            } catch {
                // Its reply queue is gone (the gateway or the broker restarted) or the broker did not take it: the gateway
                // answers (or answered) "submitted", and the row is how the user learns the outcome.
                self.logger.warning("could not send the verdict", metadata: ["task.id": "\(result.taskID)", "error": "\(error)"])
            }
        }
        if !replied, verdict.outcome == .rejected, verdict.persisted == false {
            // A refusal only counted, whose verdict nobody will read: keep it as a row after all.
            _ = try await self.store.keepLateRejection(
                submission, reason: verdict.reason ?? "invalid", message: verdict.message ?? "Refused by the scheduler",
                model: self.configuration.replicateModel.identifier)
            self.logger.notice("verdict undeliverable; kept the refusal as a rejected row", metadata: ["task.id": "\(result.taskID)"])
        }
        if verdict.outcome == .admitted {
            await self.passes.trigger()
        }
    }

    /// Task events (a slot freed, a retry due) and control commands (cancel).
    func handleEventOrControl(_ delivery: AMQPDelivery) async throws {
        if delivery.queue == Topology.Queue.control {
            let command = try delivery.decode(CancelTaskCommand.self)
            let task = try await self.store.task(id: command.taskID)
            if let task, CancelDecision.cancelRequested(task: task.snapshot) == .sendCancel {
                try await self.bus.publish(PredictionCommand(action: .cancel, taskID: task.id, attempt: task.attempt))
            }
            return
        }
        let event = try delivery.decode(TaskEvent.self)
        if SweepDecision.taskEvent(status: event.status) == .runPass {
            await self.passes.trigger()
        }
    }

    /// The periodic tick: a pass (retries whose backoff ran out, anything a lost message would have triggered), then
    /// the sweeps for expired leases, unconfirmed cancels and silent predictions. The SQL finds the rows;
    /// `SweepDecision` says what each needs.
    func tick() async throws {
        await self.passes.trigger()
        for task in try await self.store.expiredLeases() {
            // The lease is pushed forward first: of several schedulers, only the one that moved it sends the command.
            guard try await self.store.extendLease(taskID: task.id, attempt: task.attempt, by: self.configuration.dispatchLease) else {
                continue
            }
            let command = Self.command(for: SweepDecision.swept(.expiredLease, task: task.snapshot))
            self.logger.notice(
                "lease expired",
                metadata: ["task.id": "\(task.id)", "task.attempt": "\(task.attempt)", "action": "\(command?.rawValue ?? "none")"])
            try await self.send(command, for: task)
        }
        for task in try await self.store.unconfirmedCancels(after: CancelDecision.resendAfter) {
            try await self.store.touch(taskID: task.id, attempt: task.attempt)
            self.logger.notice("cancel not confirmed yet; sending it again", metadata: ["task.id": "\(task.id)"])
            try await self.send(Self.command(for: SweepDecision.swept(.unconfirmedCancel, task: task.snapshot)), for: task)
        }
        for task in try await self.store.staleProcessing(after: self.configuration.processingReconcileAfter) {
            try await self.store.touch(taskID: task.id, attempt: task.attempt)
            self.logger.notice("no webhook yet; reconciling", metadata: ["task.id": "\(task.id)", "task.attempt": "\(task.attempt)"])
            try await self.send(Self.command(for: SweepDecision.swept(.silentPrediction, task: task.snapshot)), for: task)
        }
    }

    /// The dispatcher command that carries out a sweep's action (nil: none).
    static func command(for action: SweepDecision.Action) -> PredictionCommand.Action? {
        switch action {
        case .resendCreate: .create
        case .reconcile: .get
        case .resendCancel: .cancel
        case .runPass, .nothing: nil
        }
    }

    private func send(_ command: PredictionCommand.Action?, for task: TaskRecord) async throws {
        guard let command else { return }
        try await self.bus.publish(PredictionCommand(action: command, taskID: task.id, attempt: task.attempt))
    }
}

/// Fills free slots, then tells the dispatchers. A create command lost after the commit is re-sent by the lease sweep.
struct SchedulingPass: Sendable {
    let configuration: ReelayConfiguration
    let store: TaskStore
    let bus: MessageBus
    let logger: Logger

    func run() async throws {
        let claimed = try await self.store.claimForDispatch(
            maxConcurrent: self.configuration.maxConcurrentTasks, lease: self.configuration.dispatchLease,
            agingSeconds: self.configuration.priorityAgingSeconds)
        for task in claimed {
            self.logger.info(
                "dispatching",
                metadata: ["task.id": "\(task.id)", "task.attempt": "\(task.attempt)", "task.priority": "\(task.priority)"])
            try await self.bus.publish(PredictionCommand(action: .create, taskID: task.id, attempt: task.attempt))
            try await self.bus.publish(
                TaskEvent(taskID: task.id, userID: task.userID, status: .dispatching, attempt: task.attempt, reason: "slot granted"))
        }
    }
}

/// Coalesces requests for a scheduling pass: at most one runs at a time, and a request that arrives during a pass
/// causes exactly one more pass after it.
actor PassTrigger {
    private let pass: @Sendable () async throws -> Void
    private let logger: Logger
    private var running = false
    private var again = false

    init(logger: Logger, pass: @escaping @Sendable () async throws -> Void) {
        self.logger = logger
        self.pass = pass
    }

    func trigger() async {
        if self.running {
            self.again = true
            return
        }
        self.running = true
        repeat {
            self.again = false
            do {
                try await self.pass()
            } catch {
                // The periodic tick tries again.
                self.logger.warning("scheduling pass failed", metadata: ["error": "\(error)"])
            }
        } while self.again
        self.running = false
    }
}

/// Gathers submissions that arrive while a batch commits into the next batch: one transaction admits many.
actor AdmissionBatcher {
    private let store: TaskStore
    private let limits: AdmissionLimits
    private let model: String
    private let replyMargin: Duration
    private var waiting: [(Submission, CheckedContinuation<AdmissionResult, any Error>)] = []
    private var flushing = false
    private static let maxBatch = 200

    init(store: TaskStore, limits: AdmissionLimits, model: String, replyMargin: Duration) {
        self.store = store
        self.limits = limits
        self.model = model
        self.replyMargin = replyMargin
    }

    func admit(_ submission: Submission) async throws -> AdmissionResult {
        try await withCheckedThrowingContinuation { continuation in
            self.waiting.append((submission, continuation))
            if !self.flushing {
                self.flushing = true
                Task { await self.flush() }
            }
        }
    }

    private func flush() async {
        while !self.waiting.isEmpty {
            let batch = Array(self.waiting.prefix(Self.maxBatch))
            self.waiting.removeFirst(batch.count)
            do {
                // A submission the database refuses fails alone inside `admit`; an error here is the batch's (the database
                // is down), and every message of it waits in a delay queue.
                let results = try await self.store.admit(
                    batch.map(\.0), limits: self.limits, model: self.model, replyMargin: self.replyMargin)
                for ((_, continuation), result) in zip(batch, results) {
                    continuation.resume(returning: result)
                }
            } catch {
                for (_, continuation) in batch {
                    continuation.resume(throwing: error)
                }
            }
        }
        self.flushing = false
    }
}
