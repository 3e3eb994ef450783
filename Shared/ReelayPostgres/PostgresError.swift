/// An error from PostgreSQL or from the connection to it. Its description never contains SQL text or credentials.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    /// The server's SQLSTATE (e.g. "23505", "40001", "57014"); nil for connection-level and client-side errors.
    public var sqlState: String?
    /// The server's primary message, or libpq's message for connection errors.
    public var message: String
    /// Whether the connection is unusable (could not connect, or lost it).
    public var isConnectionError: Bool
    /// The constraint a violation (23xxx) names, when the server reports one.
    public var constraint: String?

    public init(sqlState: String?, message: String, isConnectionError: Bool, constraint: String? = nil) {
        self.sqlState = sqlState
        self.message = message
        self.isConnectionError = isConnectionError
        self.constraint = constraint
    }

    public var description: String {
        var text = "PostgresError("
        if let sqlState = self.sqlState {
            text += "sqlState: \(sqlState), "
        }
        if self.isConnectionError {
            text += "connection error, "
        }
        if let constraint = self.constraint {
            text += "constraint: \(constraint), "
        }
        return text + "message: \(self.message))"
    }
}

extension PostgresError {
    public static let uniqueViolation = "23505"
    public static let foreignKeyViolation = "23503"
    public static let serializationFailure = "40001"
    public static let deadlockDetected = "40P01"
    public static let queryCanceled = "57014"

    /// Serialization failure or deadlock: the transaction may succeed if run again.
    public var isTransactionRetryable: Bool {
        self.sqlState == Self.serializationFailure || self.sqlState == Self.deadlockDetected
    }

    static func connection(_ message: String) -> PostgresError {
        PostgresError(sqlState: nil, message: message, isConnectionError: true)
    }

    /// A client-side cancellation reports the same SQLSTATE the server uses, so callers handle one code.
    static let canceledByClient = PostgresError(
        sqlState: queryCanceled, message: "canceling statement due to user request (task cancelled)", isConnectionError: false)

    static func decoding(_ message: String) -> PostgresError {
        PostgresError(sqlState: nil, message: message, isConnectionError: false)
    }
}
