import Foundation

/// What a chaos run found: its figures, each invariant with PASS/FAIL and the numbers behind it, and the drain time.
struct ChaosReport: Sendable {
    /// One checked invariant.
    struct Invariant: Sendable {
        var name: String
        var passed: Bool
        /// The numbers that decided it (and, on failure, the first offending tasks).
        var numbers: String
    }

    /// One line of figures ("submissions", "faults", ...).
    struct Figure: Sendable {
        var label: String
        var value: String
    }

    var configuration: ChaosConfiguration
    /// The test folder: every service's log, chaos.log, and the tables as they were at the end.
    var folder: String
    var figures: [Figure]
    var invariants: [Invariant]
    /// Seconds from the end of the fault phase until every task was final and no slot was held; nil when it never drained.
    var drainSeconds: Double?

    var failed: [Invariant] { self.invariants.filter { !$0.passed } }

    /// The report as a plain-text table, for the test output and the README.
    var table: String {
        let config = self.configuration
        var lines = [
            "== Reelay chaos run \"\(config.name)\": \(config.tasks) tasks from \(config.users) users, seed \(config.seed) ==",
            "logs: \(self.folder) (chaos.log: the run's timeline; tasks.tsv, task_events.tsv: the database at the end)",
        ]
        let labelWidth = self.figures.map(\.label.count).max() ?? 0
        for figure in self.figures {
            lines.append("  " + figure.label.padding(toLength: labelWidth, withPad: " ", startingAt: 0) + "  " + figure.value)
        }
        lines.append("")
        let nameWidth = max(9, self.invariants.map(\.name.count).max() ?? 0)
        lines.append("  " + "invariant".padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  result  numbers")
        for invariant in self.invariants {
            lines.append(
                "  " + invariant.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  "
                    + (invariant.passed ? "PASS" : "FAIL") + "    " + invariant.numbers)
        }
        let failures = self.failed.count
        lines.append(
            failures == 0
                ? "ALL \(self.invariants.count) INVARIANTS HOLD"
                : "\(failures) OF \(self.invariants.count) INVARIANTS FAILED")
        return lines.joined(separator: "\n")
    }
}

/// Formats seconds for the report ("12.3").
func chaosSeconds(_ value: Double) -> String {
    String(format: "%.1f", value)
}
