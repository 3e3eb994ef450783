import Foundation
import ReelayTestSupport

/// The built `replicate-standin` running on a free port, ready to serve (healthz answered).
struct RunningStandin: Sendable {
    /// The token it accepts (REPLICATE_API_TOKEN).
    static let token = "r8_e2e_test_token"
    /// The secret it signs webhooks with (REPLICATE_WEBHOOK_SECRET): base64 of "reelay-e2e-test-webhook-secret!!".
    static let secret = "whsec_cmVlbGF5LWUyZS10ZXN0LXdlYmhvb2stc2VjcmV0ISE="

    let process: ManagedProcess
    let port: Int
    /// Everything a test needs to know, e.g. "http://127.0.0.1:40123".
    var baseURL: String { "http://127.0.0.1:\(self.port)" }
    /// Replicate's API base as Reelay's REPLICATE_API_BASE_URL expects it.
    var apiBaseURL: String { self.baseURL + "/v1" }

    /// Starts the stand-in with test defaults (run 300 ms, no faults) overridden by `environment`.
    static func start(name: String = "standin", folder: String, environment: [String: String] = [:]) async throws -> RunningStandin {
        let port = freePort()
        var env = [
            "STANDIN_HOST": "127.0.0.1",
            "STANDIN_PORT": String(port),
            "STANDIN_PUBLIC_URL": "http://127.0.0.1:\(port)",
            "REPLICATE_API_TOKEN": Self.token,
            "REPLICATE_WEBHOOK_SECRET": Self.secret,
            "STANDIN_RUN_MS": "300",
            "LOG_LEVEL": "debug",
        ]
        env.merge(environment) { _, new in new }
        let process = try ManagedProcess(
            name: name, executable: BuiltProducts.path("replicate-standin"), environment: env, logFolder: folder)
        let standin = RunningStandin(process: process, port: port)
        do {
            try await waitForHTTP(standin.baseURL + "/healthz", timeout: .seconds(20))
        } catch {
            let tail = process.logTail()
            await process.terminate(grace: .seconds(1))
            throw HarnessError("replicate-standin did not come up: \(error)\n\(tail)")
        }
        return standin
    }

    /// `GET /_standin/stats` as JSON.
    func stats() async throws -> JSON {
        try await sendJSON("GET", self.baseURL + "/_standin/stats").json
    }

    /// Sets fault percentages at runtime, e.g. `["create_500": 100]`.
    func setFaults(_ faults: [String: Any]) async throws {
        let response = try await sendJSON("POST", self.baseURL + "/_standin/faults", body: faults)
        guard response.status == 200 else {
            throw HarnessError("setting faults failed with \(response.status): \(response.text)")
        }
    }

    func stop() async {
        await self.process.terminate(grace: .seconds(5))
    }
}
