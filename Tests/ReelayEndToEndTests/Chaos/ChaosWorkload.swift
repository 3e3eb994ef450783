import Foundation
import ReelayHTTPClient
import ReelayTestSupport

/// A simulated user: its API key and how many tasks it gets through.
struct ChaosUser: Sendable {
    var index: Int
    var id: UUID
    var tier: String
    var apiKey: String
    var quota: Int
}

/// A 202 the workload received: the task it promises must be found, in a final state, at the end.
struct ChaosAcceptance: Sendable {
    var user: Int
    var userID: UUID
    var job: Int
    var idempotencyKey: String
    /// Lower-case task id from the answer.
    var taskID: String
    /// The status in the answer ("submitted" when the gateway got no verdict in time).
    var status: String
}

/// What the simulated users saw, shared between them and read by the run.
final class ChaosLedger: Sendable {
    struct Counts: Sendable {
        /// POST /v1/tasks requests sent.
        var requests = 0
        var accepted = 0
        /// Accepted with status "submitted" (no verdict within ADMISSION_TIMEOUT_MS).
        var acceptedAsSubmitted = 0
        var refused429 = 0
        /// 202 for an earlier, refused try of the same Idempotency-Key (its task is `rejected`).
        var refusalsReplayed = 0
        /// Answered 202 "submitted", then rejected by the scheduler.
        var rejectedAfterAccept = 0
        var unavailable503 = 0
        var otherStatuses: [Int: Int] = [:]
        /// No answer: connection refused or reset (a killed gateway), or a timeout.
        var transportErrors = 0
        var pollFailures = 0
        var jobsDone = 0
        var jobsDoneByStatus: [String: Int] = [:]
        var usersFinished = 0
    }

    private struct State: Sendable {
        var counts = Counts()
        var acceptances: [ChaosAcceptance] = []
        var stopped = false
    }

    private let state = Locked(State())

    var counts: Counts { self.state.withLock { $0.counts } }
    var acceptances: [ChaosAcceptance] { self.state.withLock { $0.acceptances } }
    /// Set when the run ends the workload (drained or timed out); users stop at their next step.
    var stopped: Bool { self.state.withLock { $0.stopped } }

    func count(_ body: (inout Counts) -> Void) {
        self.state.withLock { body(&$0.counts) }
    }

    func accept(_ acceptance: ChaosAcceptance) {
        self.state.withLock { state in
            state.acceptances.append(acceptance)
            state.counts.accepted += 1
            if acceptance.status == "submitted" {
                state.counts.acceptedAsSubmitted += 1
            }
        }
    }

    func stop() {
        self.state.withLock { $0.stopped = true }
    }
}

/// The users of a chaos run, each in its own task: it submits while it has fewer than its limit of unfinished tasks,
/// polls its task list to see them finish, and retries submissions the system could not take (503, no answer) with the
/// same Idempotency-Key so a submission that did get through is not admitted twice.
struct ChaosWorkload: Sendable {
    let users: [ChaosUser]
    let gatewayURL: String
    let client: HTTPClient
    let ledger: ChaosLedger
    let log: ChaosLog
    let maxActive: Int
    /// User i starts after i/users of this window.
    let arrivalWindow: Duration

    static let pollInterval: Duration = .milliseconds(500)
    static let finished: Set<String> = ["completed", "failed", "canceled"]

    /// Returns when every user got all its tasks through, or the ledger was stopped.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
            let count = max(1, self.users.count)
            for user in self.users {
                let delay = self.arrivalWindow * user.index / count
                group.addTask {
                    try? await Task.sleep(for: delay)
                    await self.run(user)
                }
            }
        }
    }

    private struct Job {
        enum State {
            case waiting
            case accepted(id: String, at: ContinuousClock.Instant)
            case done
        }

        var index: Int
        /// Unique per job, so the job's rows can be recognised in the task list whatever id they got.
        var prompt: String
        var imageURL: String
        var idempotencyKey = UUID().uuidString
        var state = State.waiting

        var isWaiting: Bool {
            if case .waiting = self.state { return true }
            return false
        }

        var isAccepted: Bool {
            if case .accepted = self.state { return true }
            return false
        }

        var isDone: Bool {
            if case .done = self.state { return true }
            return false
        }
    }

    private func run(_ user: ChaosUser) async {
        var jobs = (0..<user.quota).map { index in
            Job(
                index: index, prompt: "Chaos u\(user.index)-j\(index): a lighthouse in a storm, the camera slowly dollies in",
                imageURL: "https://example.com/chaos/u\(user.index)-j\(index).png")
        }
        // After a refusal, wait for one of our tasks to finish (or a while, if none is known) before trying again.
        var refusedAt: (done: Int, at: ContinuousClock.Instant)?
        while !self.ledger.stopped {
            if jobs.contains(where: \.isAccepted) {
                await self.refresh(&jobs, user)
            }
            let done = jobs.count(where: \.isDone)
            if done == jobs.count {
                break
            }
            if let refused = refusedAt, done <= refused.done, ContinuousClock.now - refused.at < .seconds(3) {
                try? await Task.sleep(for: Self.pollInterval)
                continue
            }
            refusedAt = nil
            var active = jobs.count(where: \.isAccepted)
            while active < self.maxActive, let next = jobs.firstIndex(where: \.isWaiting), !self.ledger.stopped {
                guard await self.submit(&jobs[next], user) else {
                    refusedAt = (done, ContinuousClock.now)
                    break
                }
                active += 1
            }
            try? await Task.sleep(for: Self.pollInterval)
        }
        self.ledger.count { $0.usersFinished += 1 }
    }

    /// Submits until the gateway answers definitively: true when accepted, false when refused (a new key is taken for
    /// the next try, since a refusal is stored under the old one).
    private func submit(_ job: inout Job, _ user: ChaosUser) async -> Bool {
        let body = (try? JSON.encode(["prompt": job.prompt, "input_image_url": job.imageURL])) ?? []
        while !self.ledger.stopped {
            self.ledger.count { $0.requests += 1 }
            let response: HTTPClientResponse
            do {
                response = try await self.client.request(
                    method: "POST", url: self.gatewayURL + "/v1/tasks",
                    headers: [
                        ("Authorization", "Bearer \(user.apiKey)"), ("Content-Type", "application/json"),
                        ("Idempotency-Key", job.idempotencyKey),
                    ],
                    body: body, timeout: .seconds(15))
            } catch {
                self.ledger.count { $0.transportErrors += 1 }
                try? await Task.sleep(for: .milliseconds(300))
                continue
            }
            let json = JSON(bytes: response.body)
            switch response.status {
            case 202:
                guard let id = json["id"].string?.lowercased(), let status = json["status"].string else {
                    self.ledger.count { $0.otherStatuses[202, default: 0] += 1 }
                    self.log.write("u\(user.index)-j\(job.index): 202 without id or status: \(Self.clip(response.body))")
                    try? await Task.sleep(for: .milliseconds(500))
                    continue
                }
                if status == "rejected" {
                    self.ledger.count { $0.refusalsReplayed += 1 }
                    self.log.write("u\(user.index)-j\(job.index): 202 replays a refusal (task \(id)); new key")
                    job.idempotencyKey = UUID().uuidString
                    return false
                }
                self.ledger.accept(
                    ChaosAcceptance(
                        user: user.index, userID: user.id, job: job.index, idempotencyKey: job.idempotencyKey, taskID: id,
                        status: status))
                job.state = .accepted(id: id, at: ContinuousClock.now)
                return true
            case 429:
                self.ledger.count { $0.refused429 += 1 }
                self.log.write("u\(user.index)-j\(job.index): 429 \(Self.clip(response.body))")
                job.idempotencyKey = UUID().uuidString
                return false
            case 503:
                self.ledger.count { $0.unavailable503 += 1 }
                try? await Task.sleep(for: .milliseconds(500))
            default:
                self.ledger.count { $0.otherStatuses[response.status, default: 0] += 1 }
                self.log.write("u\(user.index)-j\(job.index): \(response.status) \(Self.clip(response.body))")
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
        return false
    }

    /// Reads the user's task list and marks jobs whose task finished; a job whose "submitted" task was rejected after
    /// all goes back to waiting.
    private func refresh(_ jobs: inout [Job], _ user: ChaosUser) async {
        let response = try? await self.client.request(
            method: "GET", url: self.gatewayURL + "/v1/tasks?limit=100", headers: [("Authorization", "Bearer \(user.apiKey)")],
            body: nil, timeout: .seconds(10))
        guard let response, response.status == 200, let tasks = JSON(bytes: response.body)["tasks"].array else {
            self.ledger.count { $0.pollFailures += 1 }
            return
        }
        var byPrompt: [String: [(id: String, status: String)]] = [:]
        for task in tasks {
            guard let prompt = task["prompt"].string, let id = task["id"].string?.lowercased(), let status = task["status"].string
            else { continue }
            byPrompt[prompt, default: []].append((id, status))
        }
        for index in jobs.indices {
            guard case .accepted(let id, let acceptedAt) = jobs[index].state else { continue }
            let rows = byPrompt[jobs[index].prompt] ?? []
            if let final = rows.first(where: { Self.finished.contains($0.status) }) {
                jobs[index].state = .done
                self.ledger.count {
                    $0.jobsDone += 1
                    $0.jobsDoneByStatus[final.status, default: 0] += 1
                }
                continue
            }
            let ownRejected = rows.contains { $0.id == id && $0.status == "rejected" }
            // A "submitted" id that never got a row was a duplicate of an earlier try under the same key.
            let replacedByRejected = !rows.isEmpty && !rows.contains { $0.id == id } && rows.allSatisfy { $0.status == "rejected" }
                && ContinuousClock.now - acceptedAt > .seconds(20)
            if ownRejected || replacedByRejected {
                self.ledger.count { $0.rejectedAfterAccept += 1 }
                self.log.write("u\(user.index)-j\(jobs[index].index): accepted task \(id) was rejected later; submitting again")
                jobs[index].idempotencyKey = UUID().uuidString
                jobs[index].state = .waiting
            }
        }
    }

    private static func clip(_ body: [UInt8]) -> String {
        let text = String(decoding: body.prefix(300), as: UTF8.self)
        return text.replacingOccurrences(of: "\n", with: " ")
    }
}
