import Logging
import ServiceLifecycle

/// Runs a service's parts in one group: SIGTERM/SIGINT start a graceful shutdown (intake stops, in-flight work
/// finishes, connections close) that is bounded, so the process always exits.
public enum ServiceRunner {
    /// Services shut down in reverse order: list the resources (pool, publisher) first.
    public static func run(_ services: [any Service], logger: Logger, gracefulLimit: Duration = .seconds(20)) async throws {
        var configuration = ServiceGroupConfiguration(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        configuration.maximumGracefulShutdownDuration = gracefulLimit
        try await ServiceGroup(configuration: configuration).run()
        logger.info("stopped")
    }
}
