import Logging
import ReelayConfig
import ReelayPostgres

extension PostgresPool {
    /// A pool over DATABASE_URL, bounded by DATABASE_POOL_ACQUIRE_TIMEOUT_MS and DATABASE_POOL_MAX_WAITERS.
    public convenience init(configuration: ReelayConfiguration, size: Int, name: String, logger: Logger) {
        self.init(
            url: configuration.databaseURL, size: size, name: name, logger: logger,
            acquireTimeout: configuration.databasePoolAcquireTimeout, maxWaiters: configuration.databasePoolMaxWaiters)
    }
}
