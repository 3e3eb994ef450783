import Logging
import NIOConcurrencyHelpers
import ReelayAMQP
import ReelayConfig
import ReelayMessaging
import ReelayStore

/// Matches the scheduler's admission verdicts (arriving on this process's reply queue) to the HTTP requests waiting for
/// them, by correlation id.
///
/// A request calls `expect` BEFORE publishing its command, because the verdict can arrive before the publish confirm
/// does; `wait` then picks up a verdict that is already there. Every waiter is resumed exactly once: by its verdict, by
/// its timeout (nil), or by the cancellation of its task (nil).
///
/// A verdict that comes after the timeout finds a client that already has 202 "submitted" and reads the outcome with
/// GET. The scheduler stores a refusal decided near the deadline; one it decided earlier but that still arrived late
/// (`persisted == false`) is handed to `onLateRejection`, which stores it, so that GET never answers 404 for a task the
/// client was told exists. For that the submission of a timed-out wait is kept for a while (bounded in time, count and
/// bytes).
public final class VerdictWaiter: Sendable {
    /// Stores a rejection that arrived after its request answered 202 "submitted" (the scheduler only counted it).
    public typealias LateRejectionHandler = @Sendable (SubmitTaskCommand, AdmissionVerdict) async throws -> Void

    private enum Entry {
        /// `expect` was called; neither the verdict nor `wait` has come yet.
        case expecting(SubmitTaskCommand?)
        /// The verdict came before `wait`.
        case arrived(AdmissionVerdict)
        /// `wait` is suspended; the timer resumes it with nil unless the verdict comes first.
        case waiting(CheckedContinuation<AdmissionVerdict?, Never>, timer: Task<Void, Never>, submission: SubmitTaskCommand?)
    }

    /// Submissions answered 202 "submitted" by a timeout, oldest first, for `lateWindow`.
    private struct Late {
        var submissions: [String: (SubmitTaskCommand, ContinuousClock.Instant)] = [:]
        var order: [String] = []
        var head = 0
        /// Roughly the memory the kept submissions take (their text fields).
        var bytes = 0

        static func size(_ submission: SubmitTaskCommand) -> Int {
            submission.prompt.utf8.count + submission.inputImageURL.utf8.count + (submission.inputJSON?.utf8.count ?? 0) + 256
        }

        mutating func add(_ correlationID: String, _ submission: SubmitTaskCommand, now: ContinuousClock.Instant) {
            _ = self.take(correlationID)
            self.submissions[correlationID] = (submission, now)
            self.bytes += Self.size(submission)
            self.order.append(correlationID)
        }

        mutating func take(_ correlationID: String) -> (SubmitTaskCommand, ContinuousClock.Instant)? {
            guard let kept = self.submissions.removeValue(forKey: correlationID) else { return nil }
            self.bytes -= Self.size(kept.0)
            return kept
        }

        /// Drops what is older than `window` or beyond `capacity` or `byteBudget` (oldest first).
        mutating func trim(now: ContinuousClock.Instant, window: Duration, capacity: Int, byteBudget: Int) {
            while self.head < self.order.count {
                let id = self.order[self.head]
                guard let (_, since) = self.submissions[id] else {
                    self.head += 1  // taken already
                    continue
                }
                guard self.submissions.count > capacity || self.bytes > byteBudget || now - since > window else { break }
                _ = self.take(id)
                self.head += 1
            }
            if self.head > 1024 && self.head * 2 > self.order.count {
                self.order.removeFirst(self.head)
                self.head = 0
            }
        }
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var late = Late()
    }

    private let state = NIOLockedValueBox(State())
    private let logger: Logger
    private let onLateRejection: LateRejectionHandler?
    private let lateWindow: Duration
    private let lateCapacity: Int
    private let lateByteBudget: Int

    /// - Parameters:
    ///   - onLateRejection: stores a rejection that came after its request answered 202 and that the scheduler did not
    ///     store; nil drops such verdicts.
    ///   - lateWindow, lateCapacity, lateByteBudget: how long, how many and how much of the timed-out submissions are
    ///     kept for a late verdict. Only a verdict delayed on its way (the scheduler decided in time) needs one: a
    ///     verdict decided late is stored by the scheduler itself, so a short window does.
    public init(
        logger: Logger, lateWindow: Duration = .seconds(120), lateCapacity: Int = 10_000, lateByteBudget: Int = 32 << 20,
        onLateRejection: LateRejectionHandler? = nil
    ) {
        self.logger = logger
        self.lateWindow = lateWindow
        self.lateCapacity = lateCapacity
        self.lateByteBudget = lateByteBudget
        self.onLateRejection = onLateRejection
    }

    /// Registers interest in the verdict for `correlationID`; call before publishing the command. With `submission`, a
    /// timeout keeps it for a late verdict (see the type's description).
    public func expect(_ correlationID: String, submission: SubmitTaskCommand? = nil) {
        self.state.withLockedValue { $0.entries[correlationID] = .expecting(submission) }
    }

    /// Drops interest without waiting (the publish failed).
    public func forget(_ correlationID: String) {
        self.resolve(correlationID, with: nil)
    }

    /// Suspends until the verdict for `correlationID` arrives, or returns nil after `timeout` or on task cancellation.
    /// Returns nil at once when `expect` was not called (or the entry was already resolved).
    public func wait(for correlationID: String, timeout: Duration) async -> AdmissionVerdict? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<AdmissionVerdict?, Never>) in
                let timer = Task {
                    try? await Task.sleep(for: timeout)
                    if !Task.isCancelled {
                        self.resolve(correlationID, with: nil, timedOut: true)
                    }
                }
                let immediate: AdmissionVerdict?? = self.state.withLockedValue { state in
                    switch state.entries[correlationID] {
                    case .expecting(let submission):
                        state.entries[correlationID] = .waiting(continuation, timer: timer, submission: submission)
                        return .none
                    case .arrived(let verdict):
                        state.entries[correlationID] = nil
                        return .some(verdict)
                    case .waiting, nil:
                        // Resolved (cancelled) before we got here, or a second wait for one id: never hang.
                        return .some(nil)
                    }
                }
                if let immediate {
                    timer.cancel()
                    continuation.resume(returning: immediate)
                }
            }
        } onCancel: {
            self.resolve(correlationID, with: nil)
        }
    }

    /// Hands a verdict from the reply queue to its waiter. Returns false when nobody expects it (late or unknown).
    @discardableResult
    public func deliver(_ verdict: AdmissionVerdict, correlationID: String) -> Bool {
        self.resolve(correlationID, with: verdict)
    }

    /// The number of requests currently expecting a verdict (for tests and debugging).
    public var pendingCount: Int {
        self.state.withLockedValue { $0.entries.count }
    }

    /// The number of timed-out submissions kept for a late verdict (for tests and debugging).
    public var lateCount: Int {
        self.state.withLockedValue { $0.late.submissions.count }
    }

    /// Ends the entry: resumes a suspended waiter (outside the lock) or, for a verdict that beat `wait`, keeps it. A
    /// timeout keeps the waiter's submission for a late verdict, in the same step, so no verdict can slip between.
    @discardableResult
    private func resolve(_ correlationID: String, with verdict: AdmissionVerdict?, timedOut: Bool = false) -> Bool {
        let now = ContinuousClock.now
        let waiter: (CheckedContinuation<AdmissionVerdict?, Never>, Task<Void, Never>)? = self.state.withLockedValue { state in
            switch state.entries[correlationID] {
            case .waiting(let continuation, let timer, let submission):
                state.entries[correlationID] = nil
                if timedOut, let submission {
                    state.late.add(correlationID, submission, now: now)
                    state.late.trim(now: now, window: self.lateWindow, capacity: self.lateCapacity, byteBudget: self.lateByteBudget)
                }
                return (continuation, timer)
            case .expecting(let submission):
                // nil here is a cancellation or failed publish: nobody will wait, so nothing is kept. (A timer that beat
                // `wait` to the lock is a timeout all the same.)
                state.entries[correlationID] = verdict.map(Entry.arrived)
                if timedOut, let submission {
                    state.late.add(correlationID, submission, now: now)
                    state.late.trim(now: now, window: self.lateWindow, capacity: self.lateCapacity, byteBudget: self.lateByteBudget)
                }
                return nil
            case .arrived:
                // A verdict nobody will wait for any more (the publish failed after it came) must not stay behind.
                if verdict == nil {
                    state.entries[correlationID] = nil
                }
                return nil
            case nil:
                return nil
            }
        }
        guard let (continuation, timer) = waiter else {
            return false
        }
        timer.cancel()
        continuation.resume(returning: verdict)
        return true
    }
}

extension VerdictWaiter {
    /// Handles one delivery of the reply queue. An unreadable verdict, or a late one with nothing to do, is acked and
    /// dropped; only a late rejection that could not be stored yet throws (the reply comes back and is tried again).
    public func handleReply(_ delivery: AMQPDelivery) async throws {
        let verdict: AdmissionVerdict
        do {
            verdict = try MessageCodec.decode(AdmissionVerdict.self, from: delivery.body)
        } catch {
            self.logger.warning("unreadable admission verdict dropped", metadata: ["error": "\(error)"])
            return
        }
        let correlationID = delivery.properties.correlationID ?? verdict.taskID.uuidString
        if self.deliver(verdict, correlationID: correlationID) {
            return
        }
        let kept = self.state.withLockedValue { $0.late.take(correlationID) }
        let submission = kept?.0
        let metadata: Logger.Metadata = [
            "task.id": "\(verdict.taskID.uuidString.lowercased())", "verdict": "\(verdict.outcome.rawValue)",
        ]
        // Only a refusal the scheduler counted instead of storing needs a row; `persisted == nil` is an older scheduler,
        // which stored every refusal.
        guard let submission, verdict.outcome == .rejected, verdict.persisted == false, let onLateRejection = self.onLateRejection else {
            self.logger.debug("admission verdict arrived after its request stopped waiting", metadata: metadata)
            return
        }
        do {
            try await onLateRejection(submission, verdict)
            self.logger.notice("rejection arrived after 202 submitted; stored it for the client to read", metadata: metadata)
        } catch {
            // Kept for the retry with its original time, so a store that keeps failing ends with the window.
            let since = kept?.1 ?? ContinuousClock.now
            self.state.withLockedValue { $0.late.add(correlationID, submission, now: since) }
            self.logger.warning("could not store a late rejection; trying again", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            throw error
        }
    }
}

/// The gateway's `VerdictWaiter.LateRejectionHandler`: stores the rejection as a `rejected` row.
public enum LateRejections {
    public static func store(in store: TaskStore, configuration: ReelayConfiguration) -> VerdictWaiter.LateRejectionHandler {
        let model = configuration.replicateModel.identifier
        return { command, verdict in
            let submission = Submission(
                taskID: command.taskID, userID: command.userID, prompt: command.prompt, inputImageURL: command.inputImageURL,
                inputJSON: command.inputJSON, idempotencyKey: command.idempotencyKey, submittedAt: command.submittedAt,
                replyBy: command.replyBy)
            _ = try await store.keepLateRejection(
                submission, reason: verdict.reason ?? "user_limit", message: verdict.message ?? "Refused by the scheduler", model: model)
        }
    }
}
