import ReelayCore
import Testing

@Suite("Task lifecycle")
struct TaskTransitionTests {
    /// The legal edges, written out independently of the implementation (ARCHITECTURE.md "Task lifecycle").
    static let legal: Set<String> = [
        "nil->pending", "nil->rejected",
        "pending->dispatching", "pending->canceled", "pending->failed",
        "dispatching->processing", "dispatching->pending", "dispatching->failed", "dispatching->canceled",
        "dispatching->completed",
        "processing->completed", "processing->failed", "processing->canceled", "processing->pending",
    ]

    static let froms: [TaskStatus?] = [nil] + TaskStatus.allCases.map { Optional($0) }

    /// Invariant: isAllowed agrees with the table for every (from, to) in TaskStatus? x TaskStatus.
    @Test(arguments: TaskTransitionTests.froms, TaskStatus.allCases)
    func everyPairMatchesTheTable(from: TaskStatus?, to: TaskStatus) {
        let key = "\(from?.rawValue ?? "nil")->\(to.rawValue)"
        #expect(TaskTransition.isAllowed(from: from, to: to) == Self.legal.contains(key), "\(key)")
    }

    /// Guards the table itself: it has exactly 14 edges, so a typo in it cannot silently drop one.
    @Test func tableCoversAllStates() {
        #expect(Self.legal.count == 14)
        #expect(TaskStatus.allCases.count == 7)
        let allowedCount = Self.froms.reduce(0) { count, from in
            count + TaskStatus.allCases.filter { TaskTransition.isAllowed(from: from, to: $0) }.count
        }
        #expect(allowedCount == 14)
    }

    /// Invariant: nothing leaves a terminal state.
    @Test(arguments: TaskStatus.allCases.filter(\.isTerminal), TaskStatus.allCases)
    func terminalIsFinal(from: TaskStatus, to: TaskStatus) {
        #expect(!TaskTransition.isAllowed(from: from, to: to))
    }

    @Test func statusPredicates() {
        #expect(TaskStatus.allCases.filter(\.isTerminal) == [.completed, .failed, .canceled, .rejected])
        #expect(TaskStatus.allCases.filter(\.holdsSlot) == [.dispatching, .processing])
        #expect(TaskStatus.allCases.filter(\.isActive) == [.pending, .dispatching, .processing])
    }

    @Test func rawValuesAreTheDatabaseSpelling() {
        #expect(TaskStatus.allCases.map(\.rawValue) == [
            "pending", "dispatching", "processing", "completed", "failed", "canceled", "rejected",
        ])
    }
}
