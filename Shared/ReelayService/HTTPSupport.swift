import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import ReelayCore

/// An RFC 9457 problem (`application/problem+json`): what was wrong and what to do about it.
public struct Problem: Error, HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var title: String
    public var detail: String
    public var fields: [FieldError]
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, title: String, detail: String, fields: [FieldError] = [], headers: HTTPFields = [:]) {
        self.status = status
        self.title = title
        self.detail = detail
        self.fields = fields
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var object: [String: Any] = [
            "type": "https://reelay.dev/problems/\(self.title.lowercased().replacingOccurrences(of: " ", with: "-"))",
            "title": self.title, "status": Int(self.status.code), "detail": self.detail,
        ]
        if !self.fields.isEmpty {
            object["invalid_fields"] = self.fields.map { ["field": $0.field, "message": $0.message] }
        }
        var headers = self.headers
        headers[.contentType] = "application/problem+json"
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return Response(status: self.status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// JSON responses from `[String: Any]`-shaped values (the API's field names are snake_case and stable).
public enum JSONResponse {
    public static func make(_ status: HTTPResponse.Status, _ object: Any, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// `/healthz` (the process answers) and `/readyz` (its dependencies answer) on any router.
public enum HealthRoutes {
    public static func add<Context: RequestContext>(
        to router: Router<Context>, checks: [(name: String, check: @Sendable () async -> Bool)]
    ) {
        router.get("/healthz") { _, _ in
            JSONResponse.make(.ok, ["status": "ok"])
        }
        router.get("/readyz") { _, _ in
            var results: [String: String] = [:]
            var ready = true
            for (name, check) in checks {
                let ok = await check()
                results[name] = ok ? "ok" : "unreachable"
                ready = ready && ok
            }
            return JSONResponse.make(ready ? .ok : .serviceUnavailable, ["status": ready ? "ready" : "not ready", "checks": results])
        }
    }
}

/// A small HTTP server with only /healthz and /readyz, for services without an HTTP API of their own (scheduler,
/// dispatcher) when HEALTH_PORT is set.
public enum HealthServer {
    public static func make(
        host: String, port: Int?, checks: [(name: String, check: @Sendable () async -> Bool)], timeouts: HTTPEdge.Timeouts = .fromEnvironment,
        logger: Logger
    ) -> [any Service] {
        guard let port else { return [] }
        let router = Router()
        HealthRoutes.add(to: router, checks: checks)
        return [HTTPEdge.application(router: router, host: host, port: port, timeouts: timeouts, logger: logger)]
    }
}
