import Foundation
import ReelayCore
import ReelayPostgres
import ReelayStore
import Testing

/// Invariant: the aging rule exists once. The SQL that orders the queue (`TaskStore.rank`, used by `claimForDispatch`
/// and `queuePosition`) orders the same rows exactly as `Priority.runsBefore`, the Swift rule the unit tests pin down:
/// the order of successive claims, and every queue position, equal the order by the Swift rule.
@Suite("DispatchOrderSQL")
struct DispatchOrderTests {
    /// A pending row: its stored priority and how long before the database's `now()` it was created (negative: a
    /// creation time ahead of the database's clock, as a skewed gateway writes it).
    struct Row {
        var priority: Int
        var waited: TimeInterval
    }

    /// Rows that test every part of the rule with `PRIORITY_AGING_SECONDS` = 10. Waits sit mid-period (…5 s), so the
    /// few seconds the test takes never move a row across a point.
    static let rows: [Row] = [
        Row(priority: 200, waited: 5),  // a fresh pro task: 200
        Row(priority: 100, waited: 1005),  // premium, aged to 200: ties the pro task, older, so first
        Row(priority: 0, waited: 2005),  // free, aged to 200: older still
        Row(priority: 10, waited: -60),  // created "in the future": no points lost, 10
        Row(priority: 9, waited: 5),  // 9: after the skewed 10 (the old SQL subtracted 6 from it and put it first)
        Row(priority: 5, waited: 45),  // aged to 9: ties, older
        Row(priority: 0, waited: 95),  // aged to 9: ties, oldest of the three
        Row(priority: 50, waited: 25),  // 52, and the next row has the very same created_at: the id decides
        Row(priority: 50, waited: 25),
        Row(priority: 3, waited: 15),  // 4
        Row(priority: 1, waited: 35),  // aged to 4: ties, older
        Row(priority: 0, waited: 0.5),  // 0
    ]

    @Test("with aging on, successive claims and queue positions follow Priority.runsBefore")
    func agingOn() async throws {
        try await self.check(agingSeconds: 10, label: "order10")
    }

    @Test("with aging off, successive claims and queue positions follow Priority.runsBefore")
    func agingOff() async throws {
        try await self.check(agingSeconds: 0, label: "order0")
    }

    /// Inserts `rows`, then compares the Swift order with every queue position and with the order of one-slot claims.
    func check(agingSeconds: Int, label: String) async throws {
        let db = try await StoreDatabase.create(label)
        let store = TaskStore(pool: db.pool)
        let user = UUID()
        _ = try await UserStore(pool: db.pool).createKey(userID: user, tier: .free)
        let queued = try await self.insert(Self.rows, user: user, into: db)
        let now = try await self.databaseNow(db)
        let expected = queued.sorted { Priority.runsBefore($0, $1, now: now, agingSeconds: agingSeconds) }.map(\.id)
        #expect(Set(expected).count == Self.rows.count)

        for (index, id) in expected.enumerated() {
            let task = try #require(try await store.task(id: id))
            #expect(try await store.queuePosition(of: task, agingSeconds: agingSeconds) == index + 1, "position of row \(index)")
        }

        var claimed: [UUID] = []
        for _ in Self.rows {
            let claim = try await store.claimForDispatch(maxConcurrent: 1, lease: .seconds(60), agingSeconds: agingSeconds)
            try #require(claim.count == 1, "one free slot, one claim")
            claimed.append(claim[0].id)
            // Done at once, so the only slot is free for the next claim.
            _ = try await db.pool.withConnection { connection in
                try await connection.query("UPDATE video_tasks SET status = 'completed' WHERE id = $1", [claim[0].id.uuidString])
            }
        }
        #expect(claimed == expected, "the claims' order is the order of Priority.runsBefore")
        await db.pool.shutdown()
    }

    /// Inserts pending rows created `waited` seconds before one reading of the database's clock; rows with the same
    /// wait get the very same `created_at`. Returns them as the Swift rule sees them, `created_at` as stored.
    func insert(_ rows: [Row], user: UUID, into db: StoreDatabase) async throws -> [QueuedTask] {
        let base = try await self.databaseNow(db)
        var queued: [QueuedTask] = []
        for row in rows {
            let id = UUID()
            let result = try await db.pool.withConnection { connection in
                try await connection.query(
                    """
                    INSERT INTO video_tasks (id, user_uuid, status, input_image_url, prompt, priority, model, tier, created_at, updated_at)
                    VALUES ($1, $2, 'pending', 'https://example.com/a.png', 'a fox', $3::int, 'o/m', 'free', $4::timestamptz, now())
                    RETURNING created_at
                    """,
                    [
                        id.uuidString, user.uuidString, String(row.priority),
                        PostgresFormat.timestamp(base.addingTimeInterval(-row.waited)),
                    ])
            }
            let createdAt = try #require(try result.rows.first?.date("created_at"))
            queued.append(QueuedTask(id: id, priority: row.priority, createdAt: createdAt))
        }
        return queued
    }

    func databaseNow(_ db: StoreDatabase) async throws -> Date {
        try await db.pool.withConnection { connection in
            let result = try await connection.query("SELECT now() AS now")
            return try #require(try result.rows.first?.date("now"))
        }
    }
}
