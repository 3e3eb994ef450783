import Hummingbird
import Logging
import ReelayPostgres
import ReelayService

/// Turns every error that is not yet a `Problem` into one, so each response a client gets is problem+json with a detail
/// that says what to do. Internal errors are logged with the request id and never shown (they may hold SQL or hosts).
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let problem as Problem {
            throw problem
        } catch let error as HTTPError {
            throw Self.problem(for: error, request: request)
        } catch let error as PostgresPoolError {
            context.logger.warning("database pool busy", metadata: ["error": "\(error)"])
            throw Problem.databaseBusy(error)
        } catch let error as PostgresError {
            context.logger.error("database error", metadata: ["error": "\(error)", "pg.sqlstate": "\(error.sqlState ?? "-")"])
            throw Problem.database(error)
        } catch is CancellationError {
            throw Problem(.serviceUnavailable, title: "Shutting down", detail: "The gateway is stopping; try again.")
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(error)"])
            throw Problem(
                .internalServerError, title: "Internal Server Error",
                detail: "Something went wrong on our side; try again. If it persists, report request id \(context.id).")
        }
    }

    static func problem(for error: HTTPError, request: Request) -> Problem {
        switch error.status {
        case .notFound:
            return Problem(
                .notFound, title: "Not Found",
                detail: "No route \(request.method.rawValue) \(Self.clip(request.uri.path)). The API is described at /openapi.json.")
        case .methodNotAllowed:
            return Problem(
                .methodNotAllowed, title: "Method Not Allowed",
                detail: "\(request.method.rawValue) is not supported on \(Self.clip(request.uri.path)); see /openapi.json.", headers: error.headers)
        default:
            return Problem(
                error.status, title: error.status.reasonPhrase,
                detail: error.body ?? "The request could not be handled (\(error.status.code)); see /openapi.json.", headers: error.headers)
        }
    }

    /// Paths are client input: echo a bounded piece of them.
    static func clip(_ path: String) -> String {
        path.count > 200 ? String(path.prefix(200)) + "..." : path
    }
}
