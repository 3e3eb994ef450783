import Foundation
import ReelayCore
import Testing

/// The dispatch order, the one aging rule (`Priority.runsBefore`); `DispatchOrderTests` checks the SQL against it.
@Suite("DispatchOrder")
struct DispatchOrderRuleTests {
    static let now = Given.now
    static let idA = UUID(uuidString: "00000000-0000-4000-8000-00000000000A")!
    static let idB = UUID(uuidString: "00000000-0000-4000-8000-00000000000B")!

    static func task(_ id: UUID = Self.idA, priority: Int, waited: TimeInterval) -> QueuedTask {
        QueuedTask(id: id, priority: priority, createdAt: Self.now.addingTimeInterval(-waited))
    }

    static func first(_ a: QueuedTask, _ b: QueuedTask, aging: Int = 10) -> Bool {
        Priority.runsBefore(a, b, now: Self.now, agingSeconds: aging)
    }

    @Test("a higher priority runs first")
    func higherFirst() { #expect(Self.first(Self.task(priority: 200, waited: 0), Self.task(Self.idB, priority: 100, waited: 50))) }

    @Test("at equal effective priority the older task runs first")
    func olderFirst() { #expect(Self.first(Self.task(Self.idB, priority: 100, waited: 5), Self.task(priority: 100, waited: 4))) }

    @Test("at equal priority and age the smaller id runs first (a total order, as PostgreSQL's)")
    func idBreaksTies() { #expect(Self.first(Self.task(priority: 1, waited: 5), Self.task(Self.idB, priority: 1, waited: 5))) }

    @Test("a task never runs before itself")
    func irreflexive() { #expect(!Self.first(Self.task(priority: 1, waited: 5), Self.task(priority: 1, waited: 5))) }

    @Test("aging lets a long-waiting free task overtake a fresh premium one: nobody starves")
    func agingOvertakes() { #expect(Self.first(Self.task(priority: 0, waited: 1015), Self.task(Self.idB, priority: 100, waited: 0))) }

    @Test("with aging off (0) the tier decides however long the wait")
    func agingOff() { #expect(Self.first(Self.task(Self.idB, priority: 100, waited: 0), Self.task(priority: 0, waited: 1_000_000), aging: 0)) }

    @Test("a creation time ahead of the clock (skew) costs no points")
    func skewCostsNothing() { #expect(Self.first(Self.task(priority: 10, waited: -60), Self.task(Self.idB, priority: 9, waited: 5))) }
}
