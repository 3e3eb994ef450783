import Logging
import NIOConcurrencyHelpers

/// A fixed-size pool of `PostgresConnection`s, opened lazily and replaced when they break.
///
/// A checkout waits at most `acquireTimeout` for a connection to come free, and at most `maxWaiters` checkouts wait at
/// once; beyond either bound the checkout fails with a `PostgresPoolError`, so a slow database or a burst of requests
/// turns into quick refusals (503 at the HTTP edge) instead of an unbounded queue of suspended callers.
public final class PostgresPool: Sendable {
    /// What a checkout receives: an open connection, or the right to open one (a slot already counted).
    private enum Lease: Sendable {
        case connection(PostgresConnection)
        case permit
    }

    private struct Waiter: Sendable {
        var id: Int
        var continuation: CheckedContinuation<Lease, Error>
        /// Fails the waiter with `.acquireTimeout`; cancelled when the waiter is served first.
        var timer: Task<Void, Never>

        /// Resumes the waiter; every path that removes a waiter from the queue calls this exactly once.
        func resume(with result: Result<Lease, Error>) {
            self.timer.cancel()
            self.continuation.resume(with: result)
        }
    }

    private struct State: Sendable {
        var idle: [PostgresConnection] = []
        /// Connections counted against `size`: idle, checked out, or being opened.
        var open = 0
        var waiters: [Waiter] = []
        var nextWaiterID = 0
        var isShutdown = false
        var shutdownWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let url: String
    private let size: Int
    private let name: String
    private let acquireTimeout: Duration
    private let maxWaiters: Int
    private let logger: Logger
    private let state = NIOLockedValueBox(State())

    /// How many times `transaction` runs the body again after a serialization failure or deadlock.
    public static let transactionRetries = 3
    /// How long a checkout waits for a busy pool unless the caller says otherwise (DATABASE_POOL_ACQUIRE_TIMEOUT_MS).
    public static let defaultAcquireTimeout: Duration = .seconds(5)
    /// How many checkouts may wait at once unless the caller says otherwise (DATABASE_POOL_MAX_WAITERS).
    public static let defaultMaxWaiters = 1000

    /// url: postgresql://user:pass@host:port/db?sslmode=... (anything libpq's PQconnectdb accepts). Connections open
    /// lazily, at most `size`; each sets `SET TIME ZONE 'UTC'` on connect and application_name = `name`.
    /// - Parameters:
    ///   - acquireTimeout: the longest a checkout waits for a connection to come free before `.acquireTimeout`.
    ///   - maxWaiters: the most checkouts waiting at once; one more fails at once with `.tooManyWaiters`.
    public init(
        url: String, size: Int, name: String, logger: Logger, acquireTimeout: Duration = PostgresPool.defaultAcquireTimeout,
        maxWaiters: Int = PostgresPool.defaultMaxWaiters
    ) {
        precondition(size > 0, "a pool needs at least one connection")
        precondition(acquireTimeout > .zero, "the acquire timeout must be positive")
        precondition(maxWaiters >= 0, "the waiter bound cannot be negative")
        self.url = url
        self.size = size
        self.name = name
        self.acquireTimeout = acquireTimeout
        self.maxWaiters = maxWaiters
        var logger = logger
        logger[metadataKey: "pg.pool"] = "\(name)"
        self.logger = logger
    }

    /// Checks a connection out (waits FIFO when all are busy, at most `acquireTimeout`), runs body, checks it back in. A connection that broke
    /// (or was lost while idle) is closed and replaced on the next checkout, so the pool rides out a server restart.
    @discardableResult
    public func withConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await self.checkout()
        let result: T
        do {
            result = try await body(connection)
        } catch {
            await self.checkin(connection)
            throw error
        }
        await self.checkin(connection)
        return result
    }

    /// BEGIN / body / COMMIT; ROLLBACK on error. Runs the whole body again, up to `transactionRetries` times, on
    /// serialization failure (40001) or deadlock (40P01): the body must not have effects outside the database.
    @discardableResult
    public func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        var retries = 0
        while true {
            do {
                return try await self.withConnection { connection in
                    try await connection.query("BEGIN")
                    let result: T
                    do {
                        result = try await body(connection)
                        if connection.transactionState == .failedTransaction {
                            // The body swallowed an error: COMMIT would silently roll back.
                            throw PostgresError(
                                sqlState: "25P02", message: "current transaction is aborted; rolled back",
                                isConnectionError: false)
                        }
                        try await connection.query("COMMIT")
                    } catch {
                        if !connection.isBroken, connection.transactionState != .idle {
                            try? await connection.executeUncancellable("ROLLBACK")
                        }
                        throw error
                    }
                    return result
                }
            } catch let error as PostgresError where error.isTransactionRetryable && retries < Self.transactionRetries {
                retries += 1
                self.logger.debug(
                    "postgres transaction retried", metadata: ["pg.sqlstate": "\(error.sqlState ?? "")", "pg.retry": "\(retries)"])
                // Jitter keeps two colliding transactions from colliding again in lockstep.
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...10) * retries))
            }
        }
    }

    /// Runs `SELECT 1` within `timeout`; false on any error or timeout (for /readyz).
    public func ping(timeout: Duration = .seconds(2)) async -> Bool {
        let work = Task {
            _ = try await self.withConnection { connection in
                try await connection.query("SELECT 1")
            }
            return true
        }
        // A connect can block its thread for up to connect_timeout; answer on time without waiting for it.
        let answered = NIOLockedValueBox(false)
        let claimAnswer: @Sendable () -> Bool = {
            answered.withLockedValue { answered in
                defer { answered = true }
                return !answered
            }
        }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let timer = Task {
                try? await Task.sleep(for: timeout)
                work.cancel()
                if claimAnswer() {
                    continuation.resume(returning: false)
                }
            }
            Task {
                let ok = (try? await work.value) ?? false
                timer.cancel()
                if claimAnswer() {
                    continuation.resume(returning: ok)
                }
            }
        }
    }

    /// Closes every connection (PQfinish) and stops their threads. Waits for checked-out connections to come back;
    /// later checkouts fail.
    public func shutdown() async {
        let (idle, waiters) = self.state.withLockedValue { state in
            state.isShutdown = true
            let idle = state.idle
            let waiters = state.waiters
            state.idle = []
            state.waiters = []
            return (idle, waiters)
        }
        for waiter in waiters {
            waiter.resume(with: .failure(Self.shutDownError))
        }
        for connection in idle {
            await connection.close()
            self.releaseSlot()
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = self.state.withLockedValue { state in
                if state.open == 0 {
                    return true
                }
                state.shutdownWaiters.append(continuation)
                return false
            }
            if done {
                continuation.resume()
            }
        }
        self.logger.debug("postgres pool shut down")
    }

    private static let shutDownError = PostgresError.connection("the connection pool is shut down")

    // MARK: - Checkout and checkin

    private func checkout() async throws -> PostgresConnection {
        let lease = try await self.lease()
        if case .connection(let connection) = lease {
            if await connection.checkAlive() {
                return connection
            }
            // Lost while idle (e.g. the server restarted): its slot becomes the permit for a new one.
            self.logger.info("postgres connection lost while idle; reconnecting", metadata: ["pg.connection": "\(connection.id)"])
            await connection.close()
        }
        do {
            return try await PostgresConnection.connect(url: self.url, name: self.name, logger: self.logger)
        } catch {
            self.releaseSlot()
            throw error
        }
    }

    private func lease() async throws -> Lease {
        let waiterID = self.state.withLockedValue { state in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Lease, Error>) in
                let immediate: Result<Lease, Error>? = self.state.withLockedValue { state in
                    if state.isShutdown {
                        return .failure(Self.shutDownError)
                    }
                    if let connection = state.idle.popLast() {
                        return .success(.connection(connection))
                    }
                    if state.open < self.size {
                        state.open += 1
                        return .success(.permit)
                    }
                    // Checked under the lock, so a cancellation handler either ran before (and we see it here)
                    // or runs after and finds the waiter.
                    if Task.isCancelled {
                        return .failure(CancellationError())
                    }
                    if state.waiters.count >= self.maxWaiters {
                        return .failure(
                            PostgresPoolError(
                                code: .tooManyWaiters, pool: self.name,
                                detail: "\(state.waiters.count) checkouts already wait for its \(self.size) connections"))
                    }
                    // The timer takes the lock before looking for the waiter, so it always finds it appended.
                    let timer = Task { [self] in
                        try? await Task.sleep(for: self.acquireTimeout)
                        if !Task.isCancelled {
                            self.expire(waiterID)
                        }
                    }
                    state.waiters.append(Waiter(id: waiterID, continuation: continuation, timer: timer))
                    return nil
                }
                if let immediate {
                    continuation.resume(with: immediate)
                }
            }
        } onCancel: {
            self.removeWaiter(waiterID)?.resume(with: .failure(CancellationError()))
        }
    }

    /// The acquire timeout of a waiter ran out: it fails, unless it was served (or cancelled) first.
    private func expire(_ waiterID: Int) {
        guard let waiter = self.removeWaiter(waiterID) else { return }
        let error = PostgresPoolError(
            code: .acquireTimeout, pool: self.name,
            detail: "no connection came free within \(self.acquireTimeout) (all \(self.size) in use)")
        self.logger.notice("postgres pool checkout timed out", metadata: ["pg.acquire_timeout": "\(self.acquireTimeout)"])
        waiter.resume(with: .failure(error))
    }

    private func removeWaiter(_ waiterID: Int) -> Waiter? {
        self.state.withLockedValue { state -> Waiter? in
            guard let index = state.waiters.firstIndex(where: { $0.id == waiterID }) else { return nil }
            return state.waiters.remove(at: index)
        }
    }

    private func checkin(_ connection: PostgresConnection) async {
        var reusable = !connection.isBroken
        if reusable, connection.transactionState != .idle {
            // The body left a transaction open (it threw, or was cancelled): never hand that to the next caller.
            do {
                try await connection.executeUncancellable("ROLLBACK")
                reusable = !connection.isBroken && connection.transactionState == .idle
            } catch {
                reusable = false
            }
        }
        if reusable {
            enum Handoff {
                case waiter(Waiter)
                case idle
                case close
            }
            let handoff = self.state.withLockedValue { state -> Handoff in
                if state.isShutdown {
                    return .close
                }
                if !state.waiters.isEmpty {
                    return .waiter(state.waiters.removeFirst())
                }
                state.idle.append(connection)
                return .idle
            }
            switch handoff {
            case .waiter(let waiter):
                waiter.resume(with: .success(.connection(connection)))
                return
            case .idle:
                return
            case .close:
                break
            }
        }
        await connection.close()
        self.releaseSlot()
    }

    /// A counted connection is gone: its slot goes to the first waiter (who opens a new one), or is freed.
    private func releaseSlot() {
        enum Next {
            case waiter(Waiter)
            case shutdownDone([CheckedContinuation<Void, Never>])
            case nothing
        }
        let next = self.state.withLockedValue { state -> Next in
            if !state.isShutdown, !state.waiters.isEmpty {
                return .waiter(state.waiters.removeFirst())
            }
            state.open -= 1
            if state.isShutdown, state.open == 0 {
                defer { state.shutdownWaiters = [] }
                return .shutdownDone(state.shutdownWaiters)
            }
            return .nothing
        }
        switch next {
        case .waiter(let waiter):
            waiter.resume(with: .success(.permit))
        case .shutdownDone(let continuations):
            for continuation in continuations {
                continuation.resume()
            }
        case .nothing:
            break
        }
    }
}
