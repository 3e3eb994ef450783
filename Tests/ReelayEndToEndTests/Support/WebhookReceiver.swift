import Foundation
import ReelayTestSupport

/// One HTTP request as the receiver saw it: raw body bytes (signatures are over these), header names lower-cased.
struct ReceivedRequest: Sendable {
    var method: String
    /// Path and query, e.g. "/webhooks/replicate?task=...&attempt=1".
    var target: String
    var headers: [(String, String)]
    var body: [UInt8]
    /// The status the receiver answered with.
    var answeredStatus: Int
    var receivedAt: Date

    func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return self.headers.first { $0.0 == lower }?.1
    }

    var json: JSON { JSON(bytes: self.body) }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that records every request and answers with a status the test chooses
/// (plays the Reelay webhook endpoint for the Replicate stand-in, or Replicate's CDN for downloads).
final class WebhookReceiver: Sendable {
    private struct State {
        var requests: [ReceivedRequest] = []
        /// Statuses for the next requests, in order; 200 once they run out.
        var scriptedStatuses: [Int] = []
        var connections = 0
    }

    private let server: LoopbackHTTPServer
    private let state: Locked<State>

    var port: Int { self.server.port }
    /// The base URL, e.g. "http://127.0.0.1:40123".
    var baseURL: String { self.server.baseURL }

    private init(server: LoopbackHTTPServer, state: Locked<State>) {
        self.server = server
        self.state = state
    }

    /// Starts listening on a free port.
    static func start() async throws -> WebhookReceiver {
        let state = Locked(State())
        let server = try await LoopbackHTTPServer.start(connected: { state.withLock { $0.connections += 1 } }) { request in
            let status = state.withLock { state -> Int in
                let status = state.scriptedStatuses.isEmpty ? 200 : state.scriptedStatuses.removeFirst()
                state.requests.append(
                    ReceivedRequest(
                        method: request.method, target: request.target, headers: request.headers.map { ($0.0.lowercased(), $0.1) },
                        body: request.body, answeredStatus: status, receivedAt: Date()))
                return status
            }
            return LoopbackHTTPServer.response(status, reason: status < 300 ? "OK" : "Error")
        }
        return WebhookReceiver(server: server, state: state)
    }

    /// Answers the next requests with these statuses (e.g. [500, 500] makes the sender retry twice).
    func script(statuses: [Int]) {
        self.state.withLock { $0.scriptedStatuses = statuses }
    }

    /// TCP connections accepted so far, whether or not they carried a request (a TLS handshake does not).
    var connections: Int {
        self.state.withLock { $0.connections }
    }

    /// Everything received so far, oldest first.
    var requests: [ReceivedRequest] {
        self.state.withLock { $0.requests }
    }

    /// Waits until at least `count` requests matching `filter` arrived; returns the matching ones.
    @discardableResult
    func waitFor(
        count: Int = 1, timeout: Duration = .seconds(10), where filter: @Sendable (ReceivedRequest) -> Bool = { _ in true }
    ) async throws -> [ReceivedRequest] {
        var matching: [ReceivedRequest] = []
        try await eventually(
            "webhook receiver got \(matching.count) of \(count) expected requests", timeout: timeout, every: .milliseconds(20)
        ) {
            matching = self.requests.filter(filter)
            return matching.count >= count
        }
        return matching
    }

    func stop() async {
        await self.server.stop()
    }
}
