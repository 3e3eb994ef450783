import Foundation
import Logging
import ReelayCore
import ReelayHTTPClient

/// Every call Reelay makes to Replicate's HTTP API (REPLICATE.md). The token is sent only to the API base URL's host.
public struct ReplicateClient: Sendable {
    public enum CallOutcome: Sendable {
        /// 2xx with a prediction body.
        case prediction(ReplicatePrediction)
        /// Replicate answered with an error status.
        case refused(ReplicateOutcomeClass, status: Int)
        /// No usable answer. `mayHaveBeenSent` means Replicate may have acted on it (an ambiguous create).
        case unreachable(String, mayHaveBeenSent: Bool)
    }

    let http: HTTPClient
    let baseURL: String
    let token: String
    let timeout: Duration

    public init(http: HTTPClient, baseURL: String, token: String, timeout: Duration = .seconds(30)) {
        self.http = http
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.token = token
        self.timeout = timeout
    }

    /// Creates a prediction: official models through `/models/{owner}/{name}/predictions` (no version field), versions
    /// through `/predictions`. Never sends `Prefer: wait`.
    public func create(model: ReplicateModel, input: [String: Any], webhook: String, events: [String]) async -> CallOutcome {
        var body: [String: Any] = ["input": input, "webhook": webhook, "webhook_events_filter": events]
        if let version = model.version {
            body["version"] = model.owner.map { "\($0)/\(model.name ?? ""):\(version)" } ?? version
        }
        let bytes = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])).map(Array.init) ?? []
        return await self.call("POST", model.createPath, body: bytes)
    }

    public func get(predictionID: String) async -> CallOutcome {
        await self.call("GET", "/predictions/\(Self.escape(predictionID))", body: nil)
    }

    public func cancel(predictionID: String) async -> CallOutcome {
        await self.call("POST", "/predictions/\(Self.escape(predictionID))/cancel", body: nil)
    }

    /// A prediction as listed, with the string values of its input (to recognise our own when the webhook URL is absent).
    public struct Listed: Sendable {
        public var prediction: ReplicatePrediction
        public var input: [String: String]
    }

    /// Recent predictions, newest first (one page per call; follow `next` while it is set). nil when the call failed.
    public func list(url: String? = nil) async -> (predictions: [Listed], next: String?)? {
        let target = url ?? (self.baseURL + "/predictions")
        // The token goes to Replicate's API host only.
        guard target.hasPrefix(self.baseURL) else { return nil }
        guard let response = try? await self.http.request(
            method: "GET", url: target, headers: self.headers, body: nil, timeout: self.timeout),
            (200..<300).contains(response.status),
            let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        else { return nil }
        let results = (object["results"] as? [Any]) ?? []
        let predictions = results.compactMap { item -> Listed? in
            guard let data = try? JSONSerialization.data(withJSONObject: item),
                let prediction = try? ReplicatePrediction.decode(Array(data))
            else { return nil }
            let input = ((item as? [String: Any])?["input"] as? [String: Any])?.compactMapValues { $0 as? String } ?? [:]
            return Listed(prediction: prediction, input: input)
        }
        return (predictions, object["next"] as? String)
    }

    private var headers: [(String, String)] {
        [("Authorization", "Bearer \(self.token)"), ("Content-Type", "application/json"), ("Accept", "application/json")]
    }

    private func call(_ method: String, _ path: String, body: [UInt8]?) async -> CallOutcome {
        let response: HTTPClientResponse
        do {
            response = try await self.http.request(
                method: method, url: self.baseURL + path, headers: self.headers, body: body ?? (method == "POST" ? [] : nil),
                timeout: self.timeout)
        } catch let error as HTTPClientError {
            return .unreachable(error.description, mayHaveBeenSent: error.mayHaveBeenSent)
        } catch {
            return .unreachable("\(error)", mayHaveBeenSent: true)
        }
        let outcome = ReplicateErrors.classify(status: response.status, headers: response.headers, body: response.body)
        guard case .success = outcome else { return .refused(outcome, status: response.status) }
        do {
            return .prediction(try ReplicatePrediction.decode(response.body))
        } catch {
            return .unreachable("Replicate answered \(response.status) with a body that is not a prediction", mayHaveBeenSent: true)
        }
    }

    private static func escape(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? id
    }
}
