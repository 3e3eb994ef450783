import Foundation
import Hummingbird
import ReelayMessaging
import ReelayPostgres
import ReelayStore

/// The API's JSON shape of a task (ARCHITECTURE.md "A task as returned"): snake_case, ISO 8601 times, explicit nulls.
enum TaskJSON {
    /// A stored task. `queuePosition` only for pending tasks; `history` only on GET /v1/tasks/{id}.
    static func object(
        _ task: TaskRecord, baseURL: String, queuePosition: Int?, history: [TaskHistoryEntry]? = nil
    ) -> [String: Any] {
        var object: [String: Any] = [
            "id": Self.id(task.id),
            "status": task.status.rawValue,
            "prompt": task.prompt,
            "input_image_url": task.inputImageURL,
            // Only a stored output is served: Replicate's own URL expires within the hour.
            "output_video_url": task.status == .completed && task.outputStorageKey != nil
                ? "\(baseURL)/v1/tasks/\(Self.id(task.id))/video" as Any : NSNull(),
            "error_message": task.errorMessage as Any? ?? NSNull(),
            "priority": task.priority,
            "retry_count": task.retryCount,
            "queue_position": queuePosition as Any? ?? NSNull(),
            "created_at": Self.time(task.createdAt),
            "updated_at": Self.time(task.updatedAt),
            "started_at": Self.time(task.startedAt),
            "completed_at": Self.time(task.completedAt),
        ]
        if let history {
            object["history"] = history.map { entry -> [String: Any] in
                [
                    "at": Self.time(entry.at),
                    "from": entry.from?.rawValue as Any? ?? NSNull(),
                    "to": entry.to.rawValue,
                    "attempt": entry.attempt,
                    "reason": entry.reason as Any? ?? NSNull(),
                ]
            }
        }
        return object
    }

    /// A submission whose verdict has not come back in time: the command is safe in the broker, the row may not exist yet.
    /// `priority` is what the scheduler will compute from the user's tier.
    static func submitted(_ command: SubmitTaskCommand, priority: Int) -> [String: Any] {
        [
            "id": Self.id(command.taskID),
            "status": "submitted",
            "prompt": command.prompt,
            "input_image_url": command.inputImageURL,
            "output_video_url": NSNull(),
            "error_message": NSNull(),
            "priority": priority,
            "retry_count": 0,
            "queue_position": NSNull(),
            "created_at": Self.time(command.submittedAt),
            "updated_at": Self.time(command.submittedAt),
            "started_at": NSNull(),
            "completed_at": NSNull(),
        ]
    }

    /// Ids are lowercase, as PostgreSQL prints them.
    static func id(_ id: UUID) -> String {
        id.uuidString.lowercased()
    }

    /// ISO 8601 in UTC with microseconds (PostgreSQL's precision, so nothing is rounded away), or null.
    static func time(_ date: Date?) -> Any {
        guard let date else {
            return NSNull()
        }
        return Self.iso(date)
    }

    /// "2026-11-29T03:24:23.123456Z".
    static func iso(_ date: Date) -> String {
        // PostgresTimestamp rounds to the microsecond; only the separators differ from ISO 8601.
        var text = PostgresTimestamp.format(date)
        if let space = text.firstIndex(of: " ") {
            text.replaceSubrange(space...space, with: "T")
        }
        if text.hasSuffix("+00") {
            text.removeLast(3)
            text += "Z"
        }
        return text
    }
}
