import Foundation
import ReelayCore
import ReelayTestSupport
import Testing

/// The built replicate-standin, driven over HTTP as Reelay's dispatcher and webhook service would, checked against
/// Replicate's contract (REPLICATE.md). Each test runs its own stand-in process on a free port, so tests stay independent.
@Suite("Standin")
struct StandinTests {
    static let model = "wan-video/wan-2.2-i2v-fast"
    static var input: [String: Any] { ["prompt": "a cat surfing a wave", "image": "https://example.com/cat.png"] }
    static let versionID = String(repeating: "5c7d5dc6dd8bf75c", count: 4)

    /// Runs `body` against a fresh stand-in; on an error, the stand-in's log tail goes into the failure.
    func withStandin(
        _ name: String, environment: [String: String] = [:], _ body: (RunningStandin) async throws -> Void
    ) async throws {
        let folder = try BuiltProducts.testFolder("standin-\(name)")
        let standin = try await RunningStandin.start(folder: folder, environment: environment)
        do {
            try await body(standin)
        } catch {
            let tail = standin.process.logTail()
            await standin.stop()
            throw HarnessError("\(error)\n\(tail)\n(logs kept in \(folder))")
        }
        await standin.stop()
        try? FileManager.default.removeItem(atPath: folder)
    }

    func create(
        _ standin: RunningStandin, body: [String: Any], token: String? = RunningStandin.token, path: String? = nil
    ) async throws -> JSONResponse {
        try await sendJSON("POST", standin.apiBaseURL + (path ?? "/models/\(Self.model)/predictions"), token: token, body: body)
    }

    func get(_ standin: RunningStandin, _ id: String) async throws -> JSONResponse {
        try await sendJSON("GET", standin.apiBaseURL + "/predictions/\(id)", token: RunningStandin.token)
    }

    /// Polls GET until the prediction reaches `status`.
    func waitForStatus(_ standin: RunningStandin, _ id: String, _ status: String) async throws -> JSONResponse {
        var last = try await self.get(standin, id)
        try await eventually("prediction \(id) never became \(status); last \(last.json)") {
            last = try await self.get(standin, id)
            return last.json["status"].string == status
        }
        return last
    }

    // The tests, by concern: StandinTests+Validation, +Predictions, +Webhooks and +Faults beside this file.
}
