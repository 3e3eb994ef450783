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
    /// A character the database encoding cannot hold; also what a NUL in a text parameter is refused with.
    public static let characterNotInRepertoire = "22021"
    /// A Unicode escape the server cannot convert (e.g. `\u0000` in jsonb).
    public static let untranslatableCharacter = "22P05"

    /// The SQLSTATE's class, its first two characters ("22" data exception, "23" integrity constraint violation).
    public var sqlStateClass: String? {
        self.sqlState.map { String($0.prefix(2)) }
    }

    /// Class 22: the value itself is unacceptable (bad encoding, NUL, out of range, too long). Repeating never helps.
    public var isDataException: Bool { self.sqlStateClass == "22" }

    /// Class 23: the row breaks a constraint (unique, foreign key, check, not null).
    public var isIntegrityConstraintViolation: Bool { self.sqlStateClass == "23" }

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

    /// libpq takes parameters as C strings, so a NUL would silently cut the value short: it is refused before sending,
    /// with the SQLSTATE PostgreSQL itself uses for a NUL in text (22021). `index` is 0-based; the message names `$n`.
    static func nulInParameter(_ index: Int) -> PostgresError {
        PostgresError(
            sqlState: characterNotInRepertoire,
            message: "parameter $\(index + 1) contains a NUL character (U+0000), which PostgreSQL text cannot store",
            isConnectionError: false)
    }
}

/// The pool could not hand out a connection in time: the database is busy or slow, not broken. Retrying a little later
/// may succeed; the HTTP edge answers 503 with `Retry-After`. Its description names the pool and the bound, never SQL.
public struct PostgresPoolError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, as an opaque code (more may come).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String

        /// No connection came free within the pool's acquire timeout.
        public static let acquireTimeout = Code(name: "acquireTimeout")
        /// The pool's bound on waiting checkouts was reached; the checkout failed at once.
        public static let tooManyWaiters = Code(name: "tooManyWaiters")

        public var description: String { self.name }
    }

    public var code: Code
    /// The pool's name (its application_name).
    public var pool: String
    public var detail: String

    public init(code: Code, pool: String, detail: String) {
        self.code = code
        self.pool = pool
        self.detail = detail
    }

    public var description: String {
        "PostgresPoolError(\(self.code), pool: \(self.pool), \(self.detail))"
    }
}
