import Logging
import NIOConcurrencyHelpers
import ReelayAMQP
import ReelayMessaging

/// Matches the scheduler's admission verdicts (arriving on this process's reply queue) to the HTTP requests waiting for
/// them, by correlation id.
///
/// A request calls `expect` BEFORE publishing its command, because the verdict can arrive before the publish confirm
/// does; `wait` then picks up a verdict that is already there. Every waiter is resumed exactly once: by its verdict, by
/// its timeout (nil), or by the cancellation of its task (nil). A verdict nobody expects any more (it came after the
/// timeout) is dropped: the client already has a 202 "submitted" and reads the outcome with GET.
public final class VerdictWaiter: Sendable {
    private enum Entry {
        /// `expect` was called; neither the verdict nor `wait` has come yet.
        case expecting
        /// The verdict came before `wait`.
        case arrived(AdmissionVerdict)
        /// `wait` is suspended; the timer resumes it with nil unless the verdict comes first.
        case waiting(CheckedContinuation<AdmissionVerdict?, Never>, timer: Task<Void, Never>)
    }

    private let entries = NIOLockedValueBox<[String: Entry]>([:])
    private let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    /// Registers interest in the verdict for `correlationID`; call before publishing the command.
    public func expect(_ correlationID: String) {
        self.entries.withLockedValue { $0[correlationID] = .expecting }
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
                        self.resolve(correlationID, with: nil)
                    }
                }
                let immediate: AdmissionVerdict?? = self.entries.withLockedValue { entries in
                    switch entries[correlationID] {
                    case .expecting:
                        entries[correlationID] = .waiting(continuation, timer: timer)
                        return .none
                    case .arrived(let verdict):
                        entries[correlationID] = nil
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
        self.entries.withLockedValue { $0.count }
    }

    /// Ends the entry: resumes a suspended waiter (outside the lock) or, for a verdict that beat `wait`, keeps it.
    @discardableResult
    private func resolve(_ correlationID: String, with verdict: AdmissionVerdict?) -> Bool {
        let waiter: (CheckedContinuation<AdmissionVerdict?, Never>, Task<Void, Never>)? = self.entries.withLockedValue { entries in
            switch entries[correlationID] {
            case .waiting(let continuation, let timer):
                entries[correlationID] = nil
                return (continuation, timer)
            case .expecting:
                // nil here is a cancellation or failed publish: nobody will wait, so nothing is kept.
                entries[correlationID] = verdict.map(Entry.arrived)
                return nil
            case .arrived:
                // A verdict nobody will wait for any more (the publish failed after it came) must not stay behind.
                if verdict == nil {
                    entries[correlationID] = nil
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
    /// Handles one delivery of the reply queue. Never throws: a reply is acked whatever it holds, since redelivering an
    /// unreadable or late verdict cannot help anybody.
    public func handleReply(_ delivery: AMQPDelivery) {
        let verdict: AdmissionVerdict
        do {
            verdict = try MessageCodec.decode(AdmissionVerdict.self, from: delivery.body)
        } catch {
            self.logger.warning("unreadable admission verdict dropped", metadata: ["error": "\(error)"])
            return
        }
        let correlationID = delivery.properties.correlationID ?? verdict.taskID.uuidString
        if !self.deliver(verdict, correlationID: correlationID) {
            self.logger.debug(
                "admission verdict arrived after its request stopped waiting",
                metadata: ["task.id": "\(verdict.taskID.uuidString.lowercased())", "verdict": "\(verdict.outcome.rawValue)"])
        }
    }
}
