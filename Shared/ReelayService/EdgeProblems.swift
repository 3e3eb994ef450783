import Foundation
import Hummingbird
import ReelayPostgres

// What the HTTP edge answers for failures that come from below it (the database pool, the database): each one says what went wrong and what to do, and never shows SQL, hosts or credentials.
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

    /// The text with a closing full stop, so a sentence can follow it.
    static func sentence(_ text: String) -> String {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        return [".", "!", "?"].contains(trimmed.last) ? trimmed : trimmed + "."
    }
}
