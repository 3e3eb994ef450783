import Foundation
import Testing

/// What one chaos run does: its workload, the faults it injects, and the limits and timings the services run with.
struct ChaosConfiguration: Sendable, CustomTestStringConvertible {
    /// "short" (in the test suite) or "full" (scripts/chaos); names the run's log folder.
    var name: String
    /// Tasks to get through the system (each user gets `tasks / users`, the first ones one more for a remainder).
    var tasks: Int
    var users: Int
    /// At most how long services are killed and the stand-in misbehaves; the servers restart inside this phase.
    var faultPhase: Duration
    /// The phase also ends (once both servers have restarted) when no more than this many tasks are unfinished, so the
    /// faults stop with a backlog in flight whatever the machine's speed, and the drain time measures recovery from it.
    var backlogAtEnd: Int
    /// Mean time between two SIGKILLs (each interval is drawn from 0.5x to 1.5x of it).
    var killInterval: Duration
    var restartRabbitMQ: Bool
    var restartPostgres: Bool
    /// Seeds the stand-in's fault dice (STANDIN_SEED) and the choice and timing of kills.
    var seed: UInt64
    /// How long the system may take, after the fault phase, to finish every task and free every slot.
    var drainTimeout: Duration
    /// Users arrive one after another over this window (from the start of the fault phase), so submissions keep coming
    /// while services die and servers restart instead of all landing in the first second.
    var arrivalWindow: Duration
    var maxConcurrentTasks = 5
    var maxUserActiveTasks = 3
    /// Stand-in fault percentages during the fault phase (issue 3: 5% 5xx, 3% 429 on create, some creates that time out
    /// after being accepted, 3% webhooks dropped, 3% duplicated, 2% late).
    var standinFaults: [String: Int] = [
        "create_500": 5, "create_429": 3, "create_timeout": 2, "webhook_drop": 3, "webhook_duplicate": 3, "webhook_delay": 2,
    ]
    /// A timed-out create answers after this long: well past REPLICATE_HTTP_TIMEOUT_MS, so the dispatcher gives up on it.
    var createTimeoutMs = 4_000
    /// A late webhook arrives after this long: past PROCESSING_RECONCILE_SECONDS, so it races the reconciler.
    var webhookDelayMs = 6_000
    /// How long a prediction runs at the stand-in.
    var predictionRunMs = 800

    /// The in-suite run: 60 tasks from 20 users, a kill every ~3 s for up to 20 s (until 15 tasks are left), one broker
    /// and one database restart.
    static func short(seed: UInt64) -> ChaosConfiguration {
        ChaosConfiguration(
            name: "short", tasks: 60, users: 20, faultPhase: .seconds(20), backlogAtEnd: 15, killInterval: .seconds(3), restartRabbitMQ: true,
            restartPostgres: true, seed: seed, drainTimeout: .seconds(90), arrivalWindow: .seconds(10))
    }

    /// Issue 3's run: 300 tasks from 30 users, a kill every ~4 s for up to 90 s (until 60 tasks are left), one broker
    /// and one database restart.
    static func full(seed: UInt64) -> ChaosConfiguration {
        ChaosConfiguration(
            name: "full", tasks: 300, users: 30, faultPhase: .seconds(90), backlogAtEnd: 60, killInterval: .seconds(4), restartRabbitMQ: true,
            restartPostgres: true, seed: seed, drainTimeout: .seconds(240), arrivalWindow: .seconds(30))
    }

    /// The full run when REELAY_CHAOS_FULL=1, else the short one; REELAY_CHAOS_SEED fixes the seed (else a random one,
    /// printed in the report so a failing run can be repeated). For harsher exploratory runs: REELAY_CHAOS_TASKS,
    /// REELAY_CHAOS_USERS, REELAY_CHAOS_FAULT_SECONDS, REELAY_CHAOS_KILL_INTERVAL_MS and REELAY_CHAOS_STANDIN_FAULTS
    /// ("create_timeout=10,webhook_drop=10"; names as the stand-in's POST /_standin/faults).
    static func selected(environment: [String: String] = ProcessInfo.processInfo.environment) -> ChaosConfiguration {
        let seed = environment["REELAY_CHAOS_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...999_999)
        let full = ["1", "true", "yes"].contains(environment["REELAY_CHAOS_FULL"]?.lowercased() ?? "")
        var configuration = full ? ChaosConfiguration.full(seed: seed) : ChaosConfiguration.short(seed: seed)
        func positive(_ name: String) -> Int? {
            environment[name].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil }
        }
        if let tasks = positive("REELAY_CHAOS_TASKS") {
            configuration.backlogAtEnd = tasks * configuration.backlogAtEnd / configuration.tasks
            configuration.tasks = tasks
        }
        if let users = positive("REELAY_CHAOS_USERS") { configuration.users = users }
        if let seconds = positive("REELAY_CHAOS_FAULT_SECONDS") {
            configuration.faultPhase = .seconds(seconds)
            configuration.arrivalWindow = .seconds(seconds / 2)
        }
        if let millis = positive("REELAY_CHAOS_KILL_INTERVAL_MS") { configuration.killInterval = .milliseconds(millis) }
        for entry in (environment["REELAY_CHAOS_STANDIN_FAULTS"] ?? "").split(separator: ",") {
            let parts = entry.split(separator: "=").map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2, let percent = Int(parts[1]), (0...100).contains(percent) {
                configuration.standinFaults[parts[0]] = percent
            }
        }
        return configuration
    }

    /// Settings that make recovery fast enough to watch within a test (see ReelayConfiguration for their meaning).
    var serviceEnvironment: [String: String] {
        [
            "MAX_CONCURRENT_TASKS": String(self.maxConcurrentTasks),
            "MAX_USER_ACTIVE_TASKS": String(self.maxUserActiveTasks),
            "SCHEDULER_TICK_MS": "300",
            "DISPATCH_LEASE_SECONDS": "5",
            "PROCESSING_RECONCILE_SECONDS": "5",
            "RETRY_BASE_MS": "200",
            "MAX_RETRIES": "6",
            // Shorter than the stand-in's withheld answer, so a timed-out create is detected and reconciled.
            "REPLICATE_HTTP_TIMEOUT_MS": "2000",
        ]
    }

    /// The stand-in's run time, seed and faults (on from the start; the run switches them off when the phase ends).
    var standinEnvironment: [String: String] {
        var environment = [
            "STANDIN_RUN_MS": String(self.predictionRunMs),
            "STANDIN_SEED": String(self.seed),
            "STANDIN_FAULT_TIMEOUT_MS": String(self.createTimeoutMs),
            "STANDIN_FAULT_DELAY_MS": String(self.webhookDelayMs),
        ]
        for (fault, percent) in self.standinFaults {
            environment["STANDIN_FAULT_" + fault.uppercased()] = String(percent)
        }
        return environment
    }

    /// How many tasks user `index` submits.
    func quota(ofUser index: Int) -> Int {
        self.tasks / self.users + (index < self.tasks % self.users ? 1 : 0)
    }

    var testDescription: String {
        "\(self.name) run: \(self.tasks) tasks from \(self.users) users, \(Int(self.faultPhase.chaosSeconds)) s of faults, "
            + "a kill every ~\(Int(self.killInterval.chaosSeconds)) s, seed \(self.seed)"
    }
}

extension Duration {
    /// Seconds as a Double (for reports and arithmetic on jitter).
    var chaosSeconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
