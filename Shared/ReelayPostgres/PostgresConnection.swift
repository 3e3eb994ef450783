import Logging
import NIOConcurrencyHelpers
import NIOPosix
import ReelayCPQ

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The libpq handle. Touched only by jobs on the owning connection's one-thread `NIOThreadPool`
/// (and by `deinit`, when no job can exist any more).
final class PGConnectionHandle: @unchecked Sendable {
    var conn: OpaquePointer?
}

/// One libpq connection, owned by a dedicated thread; every call runs there.
public final class PostgresConnection: Sendable {
    /// What the pool needs to know between jobs without hopping to the connection's thread.
    struct Health: Sendable {
        var isBroken = false
        var transaction: TransactionState = .idle
        var isClosed = false
    }

    enum TransactionState: Sendable {
        case idle, inTransaction, failedTransaction
    }

    private static let nextID = NIOLockedValueBox(0)

    /// A process-unique number, for logs (`pg.connection`).
    public let id: Int
    private let threadPool: NIOThreadPool
    private let handle: PGConnectionHandle
    private let health: NIOLockedValueBox<Health>
    private let logger: Logger
    /// Outlives the PGconn (PQfinish runs in `close` or `deinit`), so libpq's notice callback can use it.
    private let notices: PostgresNoticeSink

    private init(logger: Logger) {
        self.id = Self.nextID.withLockedValue { value in
            value += 1
            return value
        }
        var logger = logger
        logger[metadataKey: "pg.connection"] = "\(self.id)"
        self.logger = logger
        self.notices = PostgresNoticeSink(logger: logger)
        self.threadPool = NIOThreadPool(numberOfThreads: 1)
        self.threadPool.start()
        self.handle = PGConnectionHandle()
        self.health = NIOLockedValueBox(Health())
    }

    deinit {
        // Only reached when `close()` was never called: nobody else holds the handle, so finishing it here is safe.
        if !self.health.withLockedValue({ $0.isClosed }) {
            if let conn = self.handle.conn {
                PQfinish(conn)
            }
            self.threadPool.shutdownGracefully { _ in }
        }
    }

    /// Opens a connection. `url` is anything PQconnectdb accepts; `name` becomes application_name.
    /// The session runs in UTC with ISO dates and UTF-8.
    public static func connect(url: String, name: String, logger: Logger) async throws -> PostgresConnection {
        let connection = PostgresConnection(logger: logger)
        do {
            let notices = connection.notices
            try await connection.onThread { handle in
                try Self.open(handle, url: url, name: name, notices: notices)
            }
        } catch {
            // PQfinish even after a failed connect (libpq allocated the PGconn).
            await connection.close()
            connection.logger.debug("postgres connect failed", metadata: ["error": "\(error)"])
            throw error
        }
        connection.logger.debug("postgres connected", metadata: ["pg.application_name": "\(name)"])
        return connection
    }

    /// Runs one statement with bound parameters ($1, $2...; nil = NULL), text format.
    /// Cancelling the calling Task sends PQcancel and the query fails with SQLSTATE 57014.
    /// A parameter containing a NUL (U+0000) is refused with SQLSTATE 22021 before anything is sent: libpq would cut it
    /// short at the NUL and store the rest silently truncated.
    @discardableResult
    public func query(_ sql: String, _ params: [String?] = []) async throws -> PostgresResult {
        if let index = params.firstIndex(where: { $0?.utf8.contains(0) == true }) {
            throw PostgresError.nulInParameter(index)
        }
        let cancellation = QueryCancellation()
        return try await withTaskCancellationHandler {
            try await self.onThread { handle in
                try self.exec(handle, sql, params, cancellation: cancellation)
            }
        } onCancel: {
            cancellation.cancel()
        }
    }

    /// Runs a script of one or more statements without parameters (simple protocol), e.g. a migration.
    /// Cancellable like `query`. Returns the result of the last statement.
    @discardableResult
    public func execute(_ script: String) async throws -> PostgresResult {
        let cancellation = QueryCancellation()
        return try await withTaskCancellationHandler {
            try await self.onThread { handle in
                try self.exec(handle, script, nil, cancellation: cancellation)
            }
        } onCancel: {
            cancellation.cancel()
        }
    }

    /// Closes the connection (PQfinish) and stops its thread. Idempotent.
    public func close() async {
        let alreadyClosed = self.health.withLockedValue { health in
            defer { health.isClosed = true }
            return health.isClosed
        }
        guard !alreadyClosed else { return }
        _ = try? await self.onThread { handle in
            if let conn = handle.conn {
                PQfinish(conn)
                handle.conn = nil
            }
        }
        try? await self.threadPool.shutdownGracefully()
    }

    /// The connection failed (lost or never established) and must be replaced.
    var isBroken: Bool { self.health.withLockedValue { $0.isBroken || $0.isClosed } }

    var transactionState: TransactionState { self.health.withLockedValue { $0.transaction } }

    /// Reads whatever the server sent while idle (e.g. a shutdown notice, EOF): false when the connection is gone.
    /// The socket is non-blocking inside libpq, so this never waits.
    func checkAlive() async -> Bool {
        guard !self.isBroken else { return false }
        let alive =
            (try? await self.onThread { handle -> Bool in
                guard let conn = handle.conn, PQstatus(conn) == CONNECTION_OK else { return false }
                // A terminated backend sends a FATAL message and then closes: the first read takes the message, a later
                // one sees EOF. An idle healthy socket is not readable, so this loop ends at once.
                for _ in 0..<8 {
                    var descriptor = pollfd(fd: PQsocket(conn), events: Int16(POLLIN), revents: 0)
                    guard poll(&descriptor, 1, 0) > 0 else { break }
                    guard PQconsumeInput(conn) != 0 else { return false }
                }
                return PQstatus(conn) == CONNECTION_OK
            }) ?? false
        if !alive {
            self.health.withLockedValue { $0.isBroken = true }
        }
        return alive
    }

    /// Runs a statement that must not be skipped when the calling task is cancelled (ROLLBACK on the way out).
    func executeUncancellable(_ sql: String) async throws {
        _ = try await self.onThread { handle in
            try self.exec(handle, sql, nil, cancellation: nil)
        }
    }

    // MARK: - On the connection's thread

    /// Hops to the connection's thread. Not tied to task cancellation, so cleanup statements always run;
    /// fails with a connection error once the thread has stopped.
    private func onThread<T: Sendable>(_ body: @escaping @Sendable (PGConnectionHandle) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            self.threadPool.submit { state in
                guard case .active = state else {
                    continuation.resume(throwing: PostgresError.connection("connection is closed"))
                    return
                }
                continuation.resume(with: Result { try body(self.handle) })
            }
        }
    }

    private static func open(_ handle: PGConnectionHandle, url: String, name: String, notices: PostgresNoticeSink) throws {
        // Later keywords override what the URL (expanded from dbname) says: the URL may set its own
        // connect_timeout, but application_name and client_encoding are ours.
        let keywords = ["connect_timeout", "dbname", "application_name", "client_encoding"]
        let values = ["5", url, name, "UTF8"]
        let conn = withCStringArray(keywords) { keywordPointers in
            withCStringArray(values) { valuePointers in
                PQconnectdbParams(keywordPointers, valuePointers, 1)
            }
        }
        handle.conn = conn
        guard let conn else {
            throw PostgresError.connection("out of memory allocating the connection")
        }
        guard PQstatus(conn) == CONNECTION_OK else {
            throw PostgresError.connection(Self.connectionMessage(conn))
        }
        // Notices (and the FATAL a terminated backend sends while idle) go to the logger, not to stderr.
        PQsetNoticeProcessor(conn, postgresNoticeProcessor, Unmanaged.passUnretained(notices).toOpaque())
        let result = PQexec(conn, "SET TIME ZONE 'UTC'; SET DateStyle TO 'ISO, MDY'")
        defer { PQclear(result) }
        guard PQresultStatus(result) == PGRES_COMMAND_OK else {
            throw Self.error(from: result, conn)
        }
    }

    /// `params == nil` uses PQexec (simple protocol, several statements allowed); otherwise PQexecParams.
    private func exec(
        _ handle: PGConnectionHandle, _ sql: String, _ params: [String?]?, cancellation: QueryCancellation?
    ) throws -> PostgresResult {
        guard let conn = handle.conn, PQstatus(conn) == CONNECTION_OK else {
            self.health.withLockedValue { $0.isBroken = true }
            throw PostgresError.connection("connection is closed or broken")
        }
        if let cancellation {
            // Captured before the blocking call: PQcancel may then run from another thread while this one waits.
            guard cancellation.arm(PQgetCancel(conn)) else {
                throw PostgresError.canceledByClient
            }
        }
        let result: OpaquePointer?
        if let params {
            result = withOptionalCStringArray(params) { pointers in
                PQexecParams(conn, sql, Int32(params.count), nil, pointers, nil, nil, 0)
            }
        } else {
            result = PQexec(conn, sql)
        }
        cancellation?.disarm()
        defer {
            PQclear(result)
            let broken = PQstatus(conn) != CONNECTION_OK
            let transaction: TransactionState
            switch PQtransactionStatus(conn) {
            case PQTRANS_INTRANS: transaction = .inTransaction
            case PQTRANS_INERROR: transaction = .failedTransaction
            default: transaction = .idle
            }
            self.health.withLockedValue { health in
                health.isBroken = health.isBroken || broken
                health.transaction = transaction
            }
        }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return PostgresResult(rows: [], affectedRows: Self.affectedRows(result))
        case PGRES_TUPLES_OK:
            return PostgresResult(rows: Self.rows(result), affectedRows: Self.affectedRows(result))
        default:
            let error = Self.error(from: result, conn)
            if error.isConnectionError {
                self.logger.warning("postgres connection lost", metadata: ["error": "\(error)"])
            }
            throw error
        }
    }

    private static func rows(_ result: OpaquePointer?) -> [PostgresRow] {
        let columnCount = Int(PQnfields(result))
        let rowCount = Int(PQntuples(result))
        let columns = PostgresColumns(
            names: (0..<columnCount).map { column in
                PQfname(result, Int32(column)).map { String(cString: $0) } ?? "?column?"
            })
        var rows: [PostgresRow] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<Int32(rowCount) {
            var values: [String?] = []
            values.reserveCapacity(columnCount)
            for column in 0..<Int32(columnCount) {
                if PQgetisnull(result, row, column) != 0 {
                    values.append(nil)
                } else {
                    values.append(String(cString: PQgetvalue(result, row, column)))
                }
            }
            rows.append(PostgresRow(columns: columns, values: values))
        }
        return rows
    }

    private static func affectedRows(_ result: OpaquePointer?) -> Int {
        guard let tuples = PQcmdTuples(result) else { return 0 }
        return Int(String(cString: tuples)) ?? 0
    }

    private static func error(from result: OpaquePointer?, _ conn: OpaquePointer) -> PostgresError {
        let connectionLost = PQstatus(conn) != CONNECTION_OK
        guard let result else {
            return PostgresError.connection(Self.connectionMessage(conn))
        }
        let sqlState = PQresultErrorField(result, reelay_pg_diag_sqlstate()).map { String(cString: $0) }
        let constraint = PQresultErrorField(result, reelay_pg_diag_constraint_name()).map { String(cString: $0) }
        var message = PQresultErrorField(result, reelay_pg_diag_message_primary()).map { String(cString: $0) }
        if message == nil {
            // No primary message means libpq itself failed (e.g. the socket closed): its text is in the result.
            message = PQresultErrorMessage(result).map { Self.trimmed(String(cString: $0)) }
        }
        return PostgresError(
            sqlState: sqlState, message: message ?? "unknown error",
            isConnectionError: connectionLost || sqlState?.hasPrefix("08") == true, constraint: constraint)
    }

    private static func connectionMessage(_ conn: OpaquePointer) -> String {
        let message = PQerrorMessage(conn).map { Self.trimmed(String(cString: $0)) } ?? ""
        return message.isEmpty ? "connection failed" : message
    }

    private static func trimmed(_ text: String) -> String {
        var text = Substring(text)
        while let last = text.last, last.isWhitespace {
            text = text.dropLast()
        }
        return String(text.replacing("\n", with: " "))
    }
}

/// The logger libpq's notice processor writes to, on the connection's thread.
final class PostgresNoticeSink: Sendable {
    let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }
}

private let postgresNoticeProcessor: PQnoticeProcessor = { context, message in
    guard let context, let message else { return }
    let sink = Unmanaged<PostgresNoticeSink>.fromOpaque(context).takeUnretainedValue()
    var text = String(cString: message)
    while text.last?.isWhitespace == true {
        text.removeLast()
    }
    sink.logger.debug("postgres notice", metadata: ["pg.notice": "\(text)"])
}

/// Hands a running statement's cancel key (PGcancel) to whoever cancels the task.
/// Every field is guarded by `lock`: the key is created and freed by the connection's thread, and used by PQcancel
/// on a NIO blocking-pool thread while the lock is held, so it is never freed under it.
final class QueryCancellation: @unchecked Sendable {
    private let lock = NIOLock()
    private var cancelled = false
    private var key: OpaquePointer?

    /// Before the blocking call: stores the key; false (and frees it) if the task was already cancelled.
    func arm(_ key: OpaquePointer?) -> Bool {
        self.lock.withLock {
            if self.cancelled {
                if let key {
                    PQfreeCancel(key)
                }
                return false
            }
            self.key = key
            return true
        }
    }

    /// After the blocking call: frees the key (waiting for an in-flight PQcancel).
    func disarm() {
        self.lock.withLock {
            if let key = self.key {
                PQfreeCancel(key)
                self.key = nil
            }
        }
    }

    /// From the task's cancellation handler. PQcancel opens a connection to the server, so it runs on NIO's blocking
    /// pool, never here (this may be a cooperative thread). A cancel that reaches the server just before the
    /// statement is lost, so it is repeated a few times while the statement still runs.
    func cancel() {
        let armed = self.lock.withLock {
            self.cancelled = true
            return self.key != nil
        }
        guard armed else { return }
        Task.detached {
            for _ in 0..<5 {
                let stillRunning = (try? await NIOThreadPool.singleton.runIfActive { self.sendCancel() }) ?? false
                guard stillRunning else { return }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func sendCancel() -> Bool {
        self.lock.withLock {
            guard let key = self.key else { return false }
            var errorBuffer = [CChar](repeating: 0, count: 256)
            _ = PQcancel(key, &errorBuffer, Int32(errorBuffer.count))
            return true
        }
    }
}

/// Lends a NULL-terminated array of C strings for the duration of `body`.
private func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    withOptionalCStringArray(strings) { pointers in
        body(pointers!)
    }
}

/// Lends a NULL-terminated array of C strings (a nil element stays NULL, as libpq reads SQL NULL) for the duration of `body`.
private func withOptionalCStringArray<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    let duplicates: [UnsafeMutablePointer<CChar>?] = strings.map { string in string.flatMap { strdup($0) } }
    defer {
        for pointer in duplicates {
            free(pointer)
        }
    }
    let pointers: [UnsafePointer<CChar>?] = duplicates.map { $0.map { UnsafePointer($0) } } + [nil]
    return pointers.withUnsafeBufferPointer { buffer in
        body(buffer.baseAddress)
    }
}
