import Foundation
import ReelayCore
import ReelayPostgres
import ReelayStore

/// The opaque cursor of GET /v1/tasks: base64url of "<created_at ISO 8601 with microseconds>|<id>" of the last task of
/// the previous page. Opaque to clients, so its form can change without breaking them.
struct TaskCursor: Sendable, Equatable {
    var createdAt: Date
    var id: UUID

    init(createdAt: Date, id: UUID) {
        self.createdAt = createdAt
        self.id = id
    }

    init(after task: TaskRecord) {
        self.init(createdAt: task.createdAt, id: task.id)
    }

    /// Parses a cursor produced by `encoded`; nil for anything else.
    init?(encoded text: String) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard text.count <= 200, let data = Data(base64Encoded: base64), let plain = String(data: data, encoding: .utf8) else {
            return nil
        }
        let parts = plain.split(separator: "|", omittingEmptySubsequences: false)
        guard parts.count == 2, let date = PostgresTimestamp.parse(String(parts[0])), let id = UUID(uuidString: String(parts[1])) else {
            return nil
        }
        self.init(createdAt: date, id: id)
    }

    var encoded: String {
        let plain = TaskJSON.iso(self.createdAt) + "|" + TaskJSON.id(self.id)
        return Data(plain.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// The sort key of the list ((created_at, id) descending), exact to PostgreSQL's microsecond.
    fileprivate var key: SortKey {
        SortKey(task: self.createdAt, id: self.id)
    }
}

/// (created_at in whole microseconds, id) ordered as PostgreSQL orders them: uuid compares bytewise, which is the order of
/// their lowercase hex text.
private struct SortKey: Comparable {
    var micros: Int64
    var id: String

    init(task createdAt: Date, id: UUID) {
        self.micros = Int64((createdAt.timeIntervalSince1970 * 1_000_000).rounded())
        self.id = TaskJSON.id(id)
    }

    static func < (lhs: SortKey, rhs: SortKey) -> Bool {
        (lhs.micros, lhs.id) < (rhs.micros, rhs.id)
    }
}

/// Cursor pagination over `TaskStore.tasks(userID:status:before:limit:)`.
enum TaskPage {
    /// One page, newest first, and the cursor of the next page (nil on the last page).
    ///
    /// The store may format the cursor's time with less than microsecond precision, which could skip tasks created in the
    /// same millisecond as the cursor. So the store is asked for everything before the END of that millisecond (a superset),
    /// and the tasks not strictly after the cursor in list order are dropped here.
    static func load(
        store: TaskStore, userID: UUID, status: TaskStatus?, cursor: TaskCursor?, limit: Int
    ) async throws -> (tasks: [TaskRecord], next: TaskCursor?) {
        var slack = 8
        while true {
            let fetch = limit + 1 + (cursor == nil ? 0 : slack)
            let rows = try await store.tasks(
                userID: userID, status: status, before: cursor.map { (Self.endOfMillisecond($0.createdAt), $0.id) }, limit: fetch)
            let after = cursor.map { cursor in rows.filter { SortKey(task: $0.createdAt, id: $0.id) < cursor.key } } ?? rows
            let exhausted = rows.count < fetch
            if after.count > limit || exhausted {
                let page = Array(after.prefix(limit))
                let next = after.count > limit ? page.last.map(TaskCursor.init(after:)) : nil
                return (page, next)
            }
            // More tasks shared the cursor's millisecond than the slack covered: widen it and ask again.
            slack *= 4
        }
    }

    /// The first instant at or after `date` that is a whole millisecond, nudged half a microsecond later so that a formatter
    /// that truncates to milliseconds prints that millisecond (and one that rounds to microseconds prints it too).
    static func endOfMillisecond(_ date: Date) -> Date {
        let micros = (date.timeIntervalSince1970 * 1_000_000).rounded()
        let millis = (micros / 1000).rounded(.up)
        return Date(timeIntervalSince1970: millis / 1000 + 0.000_000_5)
    }
}
