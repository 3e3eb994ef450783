import Foundation
import Hummingbird
import ReelayAMQP
import ReelayMessaging
import ReelayPostgres

// What the HTTP edge answers for failures that come from below it (the database pool, the database, the broker, the
// scheduler's verdict): each says what went wrong and what to do, and never shows SQL, hosts or credentials.
extension Problem {
    /// The database pool had no connection to spare in time (or too many requests already waited): the database is
    /// busy, not broken, and a retry a moment later usually succeeds.
    public static func databaseBusy(_ error: PostgresPoolError) -> Problem {
        Problem(
            .serviceUnavailable, title: "Database busy",
            detail: "Reelay's database is busy with other requests right now; try again in a few seconds.",
            headers: [.retryAfter: "2"])
    }

    /// A database error reaching the edge. A data exception (SQLSTATE class 22, e.g. a NUL character) is the request's
    /// fault and repeating it cannot help (422); anything else is the database's (503, try again).
    public static func database(_ error: PostgresError) -> Problem {
        if error.isDataException {
            return Problem(
                .unprocessableContent, title: "Value cannot be stored",
                detail: "A value in the request cannot be stored (for example a NUL character, \\u0000); remove it and send "
                    + "the request again.")
        }
        return Problem(
            .serviceUnavailable, title: "Database unavailable", detail: "The database did not answer; try again in a few seconds.",
            headers: [.retryAfter: "5"])
    }

    /// A publish the broker did not confirm. A `basic.nack` means the queue is at its length limit (`x-max-length`,
    /// overflow `reject-publish`): Reelay is taking in more than it can work off, so the client should come back later.
    public static func publishFailed(_ error: any Error) -> Problem {
        if let error = error as? AMQPError, error.code == .nacked {
            return Problem(
                .serviceUnavailable, title: "Queue full",
                detail: "Reelay's work queue is full (it is taking in more than it can work off), so nothing was queued; "
                    + "try again in a minute (with the same Idempotency-Key, if you sent one).",
                headers: [.retryAfter: "30"])
        }
        return Problem(
            .serviceUnavailable, title: "Broker unavailable",
            detail: "Broker unavailable, try again in a few seconds (with the same Idempotency-Key, if you sent one).",
            headers: [.retryAfter: "5"])
    }

    /// The problem for a `rejected` admission verdict: 429 over the user's limit, 503 when the task queue is full, 422 when
    /// the submission cannot be stored as it is (the scheduler's message names what to change).
    public static func admissionRefused(_ verdict: AdmissionVerdict) -> Problem {
        switch verdict.httpStatus {
        case 503:
            // The scheduler's message already says when to come back.
            return Problem(
                .serviceUnavailable, title: "Queue full",
                detail: Self.sentence(verdict.message ?? "The queue is full; try again in a few minutes"), headers: [.retryAfter: "30"])
        case 422:
            return Problem(
                .unprocessableContent, title: "Invalid submission",
                detail: Self.sentence(verdict.message ?? "The submission cannot be stored; check the prompt and the input values")
                    + " Nothing was queued.")
        default:
            return Problem(
                .tooManyRequests, title: "Too many active tasks",
                detail: Self.sentence(verdict.message ?? "You have too many tasks in progress")
                    + " Wait for one of them to finish, or cancel one (POST /v1/tasks/{id}/cancel), then submit again.")
        }
    }

    /// The text with a closing full stop, so a sentence can follow it.
    static func sentence(_ text: String) -> String {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        return [".", "!", "?"].contains(trimmed.last) ? trimmed : trimmed + "."
    }
}
