import Foundation
import Logging
import ReelayHTTPClient
import ReelayPostgres
import ReelayTestSupport

/// Issue 3's chaos run: the real services as processes against real PostgreSQL and RabbitMQ and a misbehaving Replicate
/// stand-in. While users push tasks through, it SIGKILLs a random service every few seconds (restarting it at once),
/// restarts RabbitMQ once and PostgreSQL once; then it waits for the backlog to drain and checks the invariants.
struct ChaosRun: Sendable {
    /// The services that get killed; two dispatchers, so one keeps consuming while the other is dead.
    static let services = ["gateway", "scheduler", "dispatcher-1", "dispatcher-2", "webhook"]
    static let tiers = ["pro", "premium", "free"]
    static let terminal: Set<String> = ["completed", "failed", "canceled", "rejected"]

    let configuration: ChaosConfiguration

    /// Starts a fresh system, runs the workload under faults, and returns the report. Throws only when the harness
    /// itself could not run (the system did not start); broken invariants are in the report.
    func run() async throws -> ChaosReport {
        let configuration = self.configuration
        print("chaos: starting the \(configuration.testDescription)")
        let system = try await RunningSystem.start(
            name: "chaos-\(configuration.name)", overrides: configuration.serviceEnvironment,
            standinEnvironment: configuration.standinEnvironment)
        // A client thread per user, so a submission waiting for its verdict never holds up another user.
        let client = HTTPClient(
            threads: configuration.users + 4, connectTimeout: .seconds(2), userAgent: "reelay-chaos",
            logger: Logger(label: "reelay.chaos.http"))
        let log = ChaosLog(path: system.folder + "/chaos.log", start: ContinuousClock.now)
        do {
            let report = try await self.run(system, client: client, log: log)
            await self.dumpTables(system, log: log)
            await client.shutdown()
            await system.stop()
            log.close()
            return report
        } catch {
            let tails = system.logTails()
            await self.dumpTables(system, log: log)
            await client.shutdown()
            await system.stop()
            log.close()
            throw HarnessError("the chaos run could not complete: \(error)\n\(tails)")
        }
    }

    /// Writes every task and every history row to tasks.tsv and task_events.tsv in the test folder: `stop()` drops the
    /// run's database, and these rows are the evidence when an invariant fails.
    private func dumpTables(_ system: RunningSystem, log: ChaosLog) async {
        let tables = [
            (
                "tasks.tsv",
                """
                SELECT id, user_uuid, tier, status, attempt, retry_count, replicate_task_id, error_message, created_at,
                    dispatched_at, create_attempted_at, started_at, completed_at, idempotency_key
                FROM video_tasks ORDER BY created_at, id
                """
            ),
            ("task_events.tsv", "SELECT id, task_id, at, from_status, to_status, attempt, reason FROM task_events ORDER BY id"),
            ("webhook_deliveries.tsv", "SELECT * FROM webhook_deliveries ORDER BY received_at"),
        ]
        for (file, sql) in tables {
            do {
                let result = try await system.pool.withConnection { try await $0.query(sql) }
                var lines = [result.rows.first?.columnNames.joined(separator: "\t") ?? ""]
                for row in result.rows {
                    lines.append(row.values.map { ($0 ?? "NULL").replacingOccurrences(of: "\t", with: " ") }.joined(separator: "\t"))
                }
                try lines.joined(separator: "\n").write(toFile: system.folder + "/" + file, atomically: true, encoding: .utf8)
            } catch {
                log.write("could not dump \(file): \(error)")
            }
        }
    }

    private func run(_ system: RunningSystem, client: HTTPClient, log: ChaosLog) async throws -> ChaosReport {
        let configuration = self.configuration
        let clock = ContinuousClock()
        log.write("\(configuration.testDescription); logs in \(system.folder)", echo: true)

        await system.process("dispatcher")?.terminate(grace: .seconds(5))
        try system.startService("dispatcher-1")
        try system.startService("dispatcher-2")

        var users: [ChaosUser] = []
        for index in 0..<configuration.users {
            let id = UUID()
            let tier = Self.tiers[index % Self.tiers.count]
            let key = try await onOwnThread { try system.createKey(user: id, tier: tier) }
            users.append(ChaosUser(index: index, id: id, tier: tier, apiKey: key, quota: configuration.quota(ofUser: index)))
        }

        let ledger = ChaosLedger()
        let workload = ChaosWorkload(
            users: users, gatewayURL: system.gatewayURL, client: client, ledger: ledger, log: log,
            maxActive: configuration.maxUserActiveTasks, arrivalWindow: configuration.arrivalWindow)
        let started = clock.now
        log.write("workload and faults start", echo: true)
        async let work: Void = workload.run()

        let faults = await self.injectFaults(system, log: log, ledger: ledger)
        await self.switchOffStandinFaults(system, log: log)
        let faultsEnded = clock.now
        let faultSeconds = (faultsEnded - started).chaosSeconds
        let backlog = configuration.tasks - ledger.counts.jobsDone
        log.write("fault phase over; \(backlog) of \(configuration.tasks) tasks not finished yet", echo: true)

        let drainSeconds = await self.waitForDrain(system, ledger: ledger, log: log, from: faultsEnded)
        ledger.stop()
        await work
        let workloadSeconds = (clock.now - started).chaosSeconds
        log.write(drainSeconds.map { "drained \(chaosSeconds($0)) s after the fault phase" } ?? "did not drain", echo: true)

        // Late and duplicated webhooks may still be on their way: let them land before the books are read, so the idle
        // check sees whether anything revives a finished task or grabs a slot.
        try await Task.sleep(for: .milliseconds(configuration.webhookDelayMs + 1_000))

        // Every killed service was restarted at once, so each should still run: one that ended by itself crashed.
        let exited = Self.services.compactMap { name -> String? in
            guard let process = system.process(name) else { return "\(name) missing" }
            return process.isRunning ? nil : "\(name) (pid \(process.pid)) exited with \(process.exitCode.map(String.init) ?? "?")"
        }
        let timing = Timing(faults: faultSeconds, backlog: backlog, drain: drainSeconds, workload: workloadSeconds)
        var report = try await self.check(system, ledger: ledger, faults: faults, timing: timing)
        report.invariants.append(
            ChaosReport.Invariant(
                name: "no service died except by SIGKILL", passed: exited.isEmpty,
                numbers: "\(Self.services.count - exited.count) of \(Self.services.count) services running at the end"
                    + Self.examples(exited, label: "exited")))
        return report
    }

    // MARK: Faults

    /// One injected fault, for the report.
    struct Fault: Sendable {
        enum Kind: Sendable, Equatable {
            case kill(String)
            case restartRabbitMQ
            case restartPostgres
        }

        /// Seconds since the fault phase started.
        var at: Double
        var kind: Kind
        /// How long the fault took (a server restart's outage).
        var seconds: Double
        /// Why the fault could not be injected as planned.
        var failure: String?
    }

    /// Kills a random service every `killInterval` (jittered), with the RabbitMQ restart at 25% of the phase and the
    /// PostgreSQL restart at 50%; returns when the phase is over (its time is up, or after the restarts no more than
    /// `backlogAtEnd` tasks are left).
    private func injectFaults(_ system: RunningSystem, log: ChaosLog, ledger: ChaosLedger) async -> [Fault] {
        let configuration = self.configuration
        var random = SeededGenerator(seed: configuration.seed)
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + configuration.faultPhase
        func after(_ seconds: Double) -> Duration { .milliseconds(Int64(seconds * 1000)) }
        var restarts: [(at: ContinuousClock.Instant, kind: Fault.Kind)] = []
        if configuration.restartRabbitMQ {
            restarts.append((start + after(configuration.faultPhase.chaosSeconds * 0.25), .restartRabbitMQ))
        }
        if configuration.restartPostgres {
            restarts.append((start + after(configuration.faultPhase.chaosSeconds * 0.5), .restartPostgres))
        }
        let interval = configuration.killInterval.chaosSeconds
        var nextKill = start + after(interval * Double.random(in: 0.5...1.5, using: &random))
        var faults: [Fault] = []
        func backlogReached() -> Bool {
            restarts.isEmpty && configuration.tasks - ledger.counts.jobsDone <= configuration.backlogAtEnd
        }
        phase: while true {
            let restart = restarts.first
            let next = restart.map { min($0.at, nextKill) } ?? nextKill
            guard next < end else { break }
            while clock.now < next {
                if backlogReached() { break phase }
                try? await Task.sleep(for: min(.milliseconds(250), next - clock.now))
            }
            let fault: Fault
            let at = (clock.now - start).chaosSeconds
            if let restart, restart.at <= nextKill {
                restarts.removeFirst()
                fault = await self.restart(restart.kind, at: at, system: system, log: log)
            } else {
                let service = Self.services.randomElement(using: &random) ?? "gateway"
                fault = await self.kill(service, at: at, system: system, log: log)
                nextKill = max(nextKill, clock.now) + after(interval * Double.random(in: 0.5...1.5, using: &random))
            }
            faults.append(fault)
            let counts = ledger.counts
            log.write(
                "progress: \(counts.accepted) accepted, \(counts.jobsDone)/\(configuration.tasks) done, "
                    + "\(counts.transportErrors) connection errors, \(counts.unavailable503) 503s",
                echo: true)
        }
        while clock.now < end && !backlogReached() {
            try? await Task.sleep(for: min(.milliseconds(250), end - clock.now))
        }
        return faults
    }

    private func kill(_ service: String, at: Double, system: RunningSystem, log: ChaosLog) async -> Fault {
        let started = ContinuousClock.now
        guard let process = system.process(service) else {
            return Fault(at: at, kind: .kill(service), seconds: 0, failure: "no process named \(service)")
        }
        process.kill()
        var failure: String?
        if await !process.waitForExit(timeout: .seconds(5)) {
            failure = "\(service) (pid \(process.pid)) survived SIGKILL for 5 s"
        }
        do {
            try system.startService(service)
        } catch {
            failure = "restarting \(service) failed: \(error)"
        }
        let pid = system.process(service).map { String($0.pid) } ?? "-"
        log.write("SIGKILL \(service) (pid \(process.pid)); restarted as pid \(pid)" + (failure.map { "; \($0)" } ?? ""), echo: true)
        return Fault(at: at, kind: .kill(service), seconds: (ContinuousClock.now - started).chaosSeconds, failure: failure)
    }

    private func restart(_ kind: Fault.Kind, at: Double, system: RunningSystem, log: ChaosLog) async -> Fault {
        let started = ContinuousClock.now
        var failure: String?
        switch kind {
        case .restartRabbitMQ:
            let node = TestServers.rabbitmqNode
            log.write("RabbitMQ: stop_app on \(node)", echo: true)
            failure = await self.command("/usr/sbin/rabbitmqctl", ["-q", "-n", node, "stop_app"], log: log)
            // Down long enough for every service to notice and go through its reconnect path (2 s at least). Meanwhile the
            // gateway and the webhook service must say they are not ready (their /readyz checks the broker connection);
            // on a busy machine noticing can take longer, so the outage lasts until both said so, or 20 s.
            var notReady: Set<String> = []
            let outage = ContinuousClock.now
            while ContinuousClock.now - outage < .seconds(2) || (notReady.count < 2 && ContinuousClock.now - outage < .seconds(20)) {
                for (name, url) in [("gateway", system.gatewayURL), ("webhook", system.webhookURL)] where !notReady.contains(name) {
                    let status = try? await testHTTPClient.request(method: "GET", url: url + "/readyz", timeout: .milliseconds(500)).status
                    if status == 503 { notReady.insert(name) }
                }
                try? await Task.sleep(for: .milliseconds(100))
            }
            log.write("RabbitMQ down: /readyz answered 503 on \(notReady.sorted().joined(separator: ", "))", echo: true)
            if notReady.count < 2 {
                failure = failure ?? "only \(notReady.sorted()) answered 503 on /readyz while RabbitMQ was down; gateway and webhook must"
            }
            var startFailure: String?
            for _ in 0..<3 {
                startFailure = await self.command("/usr/sbin/rabbitmqctl", ["-q", "-n", node, "start_app"], log: log)
                if startFailure == nil { break }
                try? await Task.sleep(for: .seconds(1))
            }
            failure = failure ?? startFailure
            log.write("RabbitMQ: start_app done" + (failure.map { "; \($0)" } ?? ""), echo: true)
        case .restartPostgres:
            log.write("PostgreSQL: restart", echo: true)
            failure = await self.command(BuiltProducts.packageRoot + "/scripts/servers.sh", ["restart-postgres", "test"], log: log)
            log.write("PostgreSQL: restarted" + (failure.map { "; \($0)" } ?? ""), echo: true)
        case .kill:
            failure = "not a restart"
        }
        return Fault(at: at, kind: kind, seconds: (ContinuousClock.now - started).chaosSeconds, failure: failure)
    }

    /// Runs a command (its output goes to commands.log in the test folder); nil when it succeeded, else what went wrong.
    private func command(_ executable: String, _ arguments: [String], log: ChaosLog) async -> String? {
        let outputPath = (log.path as NSString).deletingLastPathComponent + "/commands.log"
        do {
            let status = try await chaosRunCommand(executable, arguments, outputPath: outputPath, timeout: .seconds(60))
            return status == 0 ? nil : "\(executable) \(arguments.joined(separator: " ")) exited \(status) (see \(outputPath))"
        } catch {
            return "\(executable) could not run: \(error)"
        }
    }

    private func switchOffStandinFaults(_ system: RunningSystem, log: ChaosLog) async {
        let off = Dictionary(uniqueKeysWithValues: self.configuration.standinFaults.keys.map { ($0, 0) })
        for _ in 0..<10 {
            do {
                try await system.standin.setFaults(off)
                log.write("stand-in faults switched off", echo: true)
                return
            } catch {
                log.write("switching stand-in faults off failed: \(error)")
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    // MARK: Drain

    /// Waits until every user got its tasks through and no row is pending or holds a slot. Returns the seconds since
    /// `from`, or nil when `drainTimeout` ran out first.
    private func waitForDrain(
        _ system: RunningSystem, ledger: ChaosLedger, log: ChaosLog, from: ContinuousClock.Instant
    ) async -> Double? {
        let clock = ContinuousClock()
        let deadline = from + self.configuration.drainTimeout
        var lastReport = clock.now
        while clock.now < deadline {
            let counts = ledger.counts
            let active = try? await system.pool.withConnection { connection in
                try await connection.query(
                    "SELECT count(*) AS n FROM video_tasks WHERE status IN ('pending', 'dispatching', 'processing')"
                ).rows.first?.int("n")
            }
            if counts.usersFinished == self.configuration.users, active == 0 {
                return (clock.now - from).chaosSeconds
            }
            if clock.now - lastReport >= .seconds(5) {
                lastReport = clock.now
                log.write(
                    "draining: \(counts.jobsDone)/\(self.configuration.tasks) done, \(counts.usersFinished) users finished, "
                        + "\(active.map { String($0) } ?? "?") rows active",
                    echo: true)
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        return nil
    }

    // MARK: Checks

    private struct TaskRow {
        var id: String
        var userID: String
        var status: String
        var attempt: Int
        var retryCount: Int
        var idempotencyKey: String?
        /// The to_status of every history row into a final state, oldest first.
        var finals: [String]
    }

    /// How the run went in time.
    private struct Timing {
        /// Seconds of the fault phase.
        var faults: Double
        /// Tasks unfinished when the fault phase ended.
        var backlog: Int
        /// Seconds from the end of the fault phase until drained; nil when it never drained.
        var drain: Double?
        /// Seconds from the start of the workload until it ended.
        var workload: Double
    }

    private func check(_ system: RunningSystem, ledger: ChaosLedger, faults: [Fault], timing: Timing) async throws -> ChaosReport {
        let backlog = timing.backlog
        let drainSeconds = timing.drain
        let configuration = self.configuration
        let rows = try await self.taskRows(system)
        let byID = Dictionary(rows.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var byKey: [String: TaskRow] = [:]
        for row in rows {
            if let key = row.idempotencyKey { byKey[row.userID + "/" + key] = row }
        }
        let acceptances = ledger.acceptances
        let counts = ledger.counts
        let stats = try await system.standin.stats()
        var invariants: [ChaosReport.Invariant] = []

        // 1. Every accepted task is in exactly one final state; none is lost.
        var lost: [String] = []
        var acceptedTasks = Set<String>()
        for acceptance in acceptances {
            // A "submitted" answer for a retried key names an id the scheduler dropped as a duplicate of the first try.
            let key = acceptance.userID.uuidString.lowercased() + "/" + acceptance.idempotencyKey
            guard let row = byID[acceptance.taskID] ?? byKey[key] else {
                lost.append("\(acceptance.taskID) (u\(acceptance.user)-j\(acceptance.job), answered \(acceptance.status))")
                continue
            }
            acceptedTasks.insert(row.id)
        }
        let notFinal = rows.filter { !Self.terminal.contains($0.status) }
        let notExactlyOnce = rows.filter { Self.terminal.contains($0.status) && $0.finals != [$0.status] }
        invariants.append(
            ChaosReport.Invariant(
                name: "every accepted task in exactly one final state, none lost",
                passed: lost.isEmpty && notFinal.isEmpty && notExactlyOnce.isEmpty,
                numbers: "\(acceptances.count) accepted answers -> \(acceptedTasks.count) tasks; \(rows.count) rows, "
                    + "\(rows.count - notFinal.count) final, \(notFinal.count) not final, "
                    + "\(notExactlyOnce.count) without exactly one final transition, \(lost.count) lost"
                    + Self.examples(lost, label: "lost")
                    + Self.examples(notFinal.map { "\($0.id) \($0.status)" }, label: "not final")
                    + Self.examples(
                        notExactlyOnce.map { "\($0.id) \($0.status) via \($0.finals.joined(separator: ","))" }, label: "final transitions")))

        // 2. Predictions per task <= attempts, and no two predictions of one task ran at once.
        var predictions = 0
        var maxPerTask = 0
        var overAttempts: [String] = []
        for (task, value) in stats["predictions_by_task"].object ?? [:] {
            let count = value.int ?? 0
            predictions += count
            maxPerTask = max(maxPerTask, count)
            let attempt = byID[task]?.attempt
            if attempt == nil || count > attempt! {
                overAttempts.append("\(task): \(count) predictions, attempt \(attempt.map(String.init) ?? "no row")")
            }
        }
        invariants.append(
            ChaosReport.Invariant(
                name: "predictions per task <= its attempts", passed: overAttempts.isEmpty,
                numbers: "\(predictions) predictions for \((stats["predictions_by_task"].object ?? [:]).count) tasks, "
                    + "at most \(maxPerTask) for one; \(overAttempts.count) tasks over their attempts"
                    + Self.examples(overAttempts, label: "over")))
        let overlapping = (stats["overlapping_tasks"].array ?? []).compactMap(\.string)
        invariants.append(
            ChaosReport.Invariant(
                name: "no two predictions of one task ran at once", passed: overlapping.isEmpty,
                numbers: "\(overlapping.count) tasks with overlapping predictions" + Self.examples(overlapping, label: "tasks")))

        // 3. The global limit held at Replicate, and no user exceeded its own.
        let peak = stats["peak_running"].int ?? Int.max
        let history = try await self.historyPeaks(system)
        let slotPeak = history.slots
        invariants.append(
            ChaosReport.Invariant(
                name: "stand-in never ran more than MAX_CONCURRENT_TASKS", passed: peak <= configuration.maxConcurrentTasks,
                numbers: "peak \(peak) running at the stand-in (limit \(configuration.maxConcurrentTasks)); "
                    + "peak \(slotPeak) slots held according to task_events"))
        let userPeaks = history.users
        let overLimit = userPeaks.filter { $0.value > configuration.maxUserActiveTasks }
        invariants.append(
            ChaosReport.Invariant(
                name: "no user exceeded MAX_USER_ACTIVE_TASKS", passed: overLimit.isEmpty,
                numbers: "at most \(userPeaks.values.max() ?? 0) active tasks for one user (limit \(configuration.maxUserActiveTasks)); "
                    + "\(overLimit.count) users over" + Self.examples(overLimit.map { "\($0.key): \($0.value)" }, label: "users")))

        // 4. Once idle, no task holds a slot (checked again now, after late webhooks had time to land).
        let holding = rows.filter { $0.status == "dispatching" || $0.status == "processing" }
        let pending = rows.filter { $0.status == "pending" }
        invariants.append(
            ChaosReport.Invariant(
                name: "once idle, no task holds a slot", passed: holding.isEmpty && pending.isEmpty,
                numbers: "\(holding.count) tasks holding a slot, \(pending.count) pending"
                    + Self.examples((holding + pending).map { "\($0.id) \($0.status) attempt \($0.attempt)" }, label: "tasks")))

        // 5. The backlog drains after the last fault.
        invariants.append(
            ChaosReport.Invariant(
                name: "backlog drained after the last fault", passed: drainSeconds != nil,
                numbers: drainSeconds.map { "drained \(chaosSeconds($0)) s after the fault phase ended ("
                    + "\(backlog) tasks unfinished then)" }
                    ?? "not drained within \(Int(configuration.drainTimeout.chaosSeconds)) s: "
                    + "\(counts.jobsDone)/\(configuration.tasks) tasks done, \(counts.usersFinished)/\(configuration.users) users finished"))

        // 6. The faults were injected as planned (a run without its restarts proves nothing).
        let failedFaults = faults.filter { $0.failure != nil }
        let rabbitRestarts = faults.filter { $0.kind == .restartRabbitMQ && $0.failure == nil }.count
        let postgresRestarts = faults.filter { $0.kind == .restartPostgres && $0.failure == nil }.count
        let kills = faults.filter { if case .kill = $0.kind { $0.failure == nil } else { false } }.count
        invariants.append(
            ChaosReport.Invariant(
                name: "faults injected as planned",
                passed: failedFaults.isEmpty && kills > 0 && rabbitRestarts == (configuration.restartRabbitMQ ? 1 : 0)
                    && postgresRestarts == (configuration.restartPostgres ? 1 : 0),
                numbers: "\(kills) SIGKILLs, \(rabbitRestarts) RabbitMQ restarts, \(postgresRestarts) PostgreSQL restarts, "
                    + "\(failedFaults.count) failed" + Self.examples(failedFaults.compactMap(\.failure), label: "failures")))

        let figures = self.figures(rows: rows, counts: counts, stats: stats, faults: faults, timing: timing)
        return ChaosReport(
            configuration: configuration, folder: system.folder, figures: figures, invariants: invariants, drainSeconds: drainSeconds)
    }

    private func figures(
        rows: [TaskRow], counts: ChaosLedger.Counts, stats: JSON, faults: [Fault], timing: Timing
    ) -> [ChaosReport.Figure] {
        let configuration = self.configuration
        let byStatus = Dictionary(grouping: rows, by: \.status).mapValues(\.count)
        let statusText = ["completed", "failed", "canceled", "rejected", "pending", "dispatching", "processing"]
            .compactMap { status in byStatus[status].map { "\(status) \($0)" } }.joined(separator: ", ")
        let other = counts.otherStatuses.sorted { $0.key < $1.key }.map { "\($0.key) x\($0.value)" }.joined(separator: ", ")
        var kills: [String: Int] = [:]
        for fault in faults {
            if case .kill(let service) = fault.kind { kills[service, default: 0] += 1 }
        }
        let killText = kills.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        let restartText = faults.compactMap { fault -> String? in
            switch fault.kind {
            case .restartRabbitMQ: "RabbitMQ at +\(chaosSeconds(fault.at)) s (\(chaosSeconds(fault.seconds)) s)"
            case .restartPostgres: "PostgreSQL at +\(chaosSeconds(fault.at)) s (\(chaosSeconds(fault.seconds)) s)"
            case .kill: nil
            }
        }.joined(separator: ", ")
        func stat(_ key: String) -> String { stats[key].int.map(String.init) ?? "?" }
        let standinFaults = configuration.standinFaults.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)%" }
            .joined(separator: ", ")
        return [
            ChaosReport.Figure(
                label: "workload",
                value: "\(counts.jobsDone)/\(configuration.tasks) tasks finished ("
                    + counts.jobsDoneByStatus.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                    + ") from \(configuration.users) users in \(chaosSeconds(timing.workload)) s"),
            ChaosReport.Figure(
                label: "submissions",
                value: "\(counts.requests) requests: \(counts.accepted) accepted (\(counts.acceptedAsSubmitted) as \"submitted\"), "
                    + "\(counts.refused429) refused 429, \(counts.refusalsReplayed) refusals replayed, "
                    + "\(counts.rejectedAfterAccept) rejected after 202, \(counts.unavailable503) answered 503, "
                    + "\(counts.transportErrors) without answer" + (other.isEmpty ? "" : ", other: \(other)")
                    + "; \(counts.pollFailures) failed polls"),
            ChaosReport.Figure(
                label: "tasks in the database",
                value: "\(rows.count): \(statusText); \(rows.map(\.retryCount).reduce(0, +)) retries, "
                    + "attempts up to \(rows.map(\.attempt).max() ?? 0)"),
            ChaosReport.Figure(
                label: "faults",
                value: "\(kills.values.reduce(0, +)) SIGKILLs every ~\(chaosSeconds(configuration.killInterval.chaosSeconds)) s "
                    + "(\(killText)); restarts: \(restartText.isEmpty ? "none" : restartText)"),
            ChaosReport.Figure(label: "stand-in faults", value: standinFaults),
            ChaosReport.Figure(
                label: "stand-in",
                value: "\(stat("create_attempts")) create calls: \(stat("creates")) predictions, \(stat("server_errors")) 500s, "
                    + "\(stat("rate_limited")) 429s, \(stat("withheld_creates")) answered late; webhooks: \(stat("webhooks_sent")) "
                    + "delivered, \(stat("webhooks_failed")) failed, \(stat("webhooks_dropped")) dropped; "
                    + "peak running \(stat("peak_running"))"),
            ChaosReport.Figure(
                label: "timing",
                value: "fault phase \(chaosSeconds(timing.faults)) s (users arriving over the first "
                    + "\(chaosSeconds(configuration.arrivalWindow.chaosSeconds)) s), last kill or restart at +"
                    + "\(faults.last.map { chaosSeconds($0.at) } ?? "-") s; \(timing.backlog) tasks unfinished when it ended; "
                    + (timing.drain.map { "drained \(chaosSeconds($0)) s after it" } ?? "never drained")),
        ]
    }

    /// Every task row with its final transitions, read with a few tries (the pool reconnects after the restart).
    private func taskRows(_ system: RunningSystem) async throws -> [TaskRow] {
        var lastError: (any Error)?
        for _ in 0..<10 {
            do {
                let result = try await system.pool.withConnection { connection in
                    try await connection.query(
                        """
                        SELECT t.id::text AS id, t.user_uuid::text AS user_id, t.status, t.attempt, t.retry_count,
                            t.idempotency_key,
                            coalesce((SELECT string_agg(e.to_status, ',' ORDER BY e.id) FROM task_events e
                                WHERE e.task_id = t.id AND e.to_status IN ('completed', 'failed', 'canceled', 'rejected')), '') AS finals
                        FROM video_tasks t
                        """)
                }
                return try result.rows.map { row in
                    TaskRow(
                        id: try row.string("id"), userID: try row.string("user_id"), status: try row.string("status"),
                        attempt: try row.int("attempt"), retryCount: try row.int("retry_count"),
                        idempotencyKey: row["idempotency_key"],
                        finals: try row.string("finals").split(separator: ",").map(String.init))
                }
            } catch {
                lastError = error
                try await Task.sleep(for: .milliseconds(500))
            }
        }
        throw HarnessError("reading video_tasks failed: \(lastError.map { "\($0)" } ?? "?")")
    }

    /// From task_events in insertion order: the most tasks holding a slot at once, and each user's most active tasks.
    ///
    /// Insertion order (the id), not `at`: `at` is the transaction's start, so a claim that waited for the scheduling
    /// lock would sort before the release it was waiting for. A transaction only relies on changes committed before it
    /// read them, and those rows were inserted (and got their ids) earlier.
    private func historyPeaks(_ system: RunningSystem) async throws -> (slots: Int, users: [String: Int]) {
        let result = try await system.pool.withConnection { connection in
            try await connection.query(
                """
                SELECT e.task_id::text AS task, t.user_uuid::text AS user_id, e.from_status, e.to_status
                FROM task_events e JOIN video_tasks t ON t.id = e.task_id ORDER BY e.id
                """)
        }
        var holding = Set<String>()
        var slotPeak = 0
        var active: [String: Int] = [:]
        var userPeaks: [String: Int] = [:]
        for row in result.rows {
            let task = try row.string("task")
            let user = try row.string("user_id")
            let from = row["from_status"]
            let to = try row.string("to_status")
            if to == "dispatching" || to == "processing" {
                holding.insert(task)
            } else {
                holding.remove(task)
            }
            slotPeak = max(slotPeak, holding.count)
            // Admitted (+1) and finished after admission (-1); a refusal (nil -> rejected) never counted.
            if from == nil && to == "pending" {
                active[user, default: 0] += 1
            } else if from != nil && Self.terminal.contains(to) {
                active[user, default: 0] -= 1
            }
            userPeaks[user] = max(userPeaks[user] ?? 0, active[user] ?? 0)
        }
        return (slotPeak, userPeaks)
    }

    /// "; lost: a, b, c (and 4 more)" for a non-empty list.
    private static func examples(_ items: [String], label: String, limit: Int = 5) -> String {
        guard !items.isEmpty else { return "" }
        let shown = items.sorted().prefix(limit).joined(separator: ", ")
        return "; \(label): \(shown)" + (items.count > limit ? " (and \(items.count - limit) more)" : "")
    }
}
