import Foundation
import Logging
import ReelayHTTPClient
import ReelayTestSupport

/// One HTTP client shared by every end-to-end test (its threads live as long as the test process).
let testHTTPClient = HTTPClient(
    threads: 4, connectTimeout: .seconds(2), userAgent: "reelay-e2e-tests", logger: Logger(label: "reelay.e2e.http"))

/// Polls `url` with GET until it answers `status`; throws with the last outcome after `timeout`.
func waitForHTTP(_ url: String, status: Int = 200, timeout: Duration) async throws {
    var last = "no answer yet"
    let answered = await waitUntil(timeout: timeout) {
        do {
            let response = try await testHTTPClient.request(method: "GET", url: url, headers: [], body: nil, timeout: .seconds(2))
            last = "status \(response.status)"
            return response.status == status
        } catch {
            last = "\(error)"
            return false
        }
    }
    guard answered else {
        try Task.checkCancellation()
        throw HarnessError("\(url) did not answer \(status) within \(timeout): \(last)")
    }
}

/// A response with its body read as JSON (when it is JSON).
struct JSONResponse {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]
    /// The body as JSON; `JSON(nil)` when the body is empty or not JSON.
    var json: JSON

    init(status: Int, headers: [(String, String)], body: [UInt8], json: JSON) {
        self.status = status
        self.headers = headers
        self.body = body
        self.json = json
    }

    /// A client's response, its body read as JSON.
    init(_ response: HTTPClientResponse) {
        self.init(status: response.status, headers: response.headers, body: response.body, json: JSON(bytes: response.body))
    }

    func header(_ name: String) -> String? {
        self.headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    var text: String { String(decoding: self.body, as: UTF8.self) }
}

/// Sends a request with an optional JSON body (any JSONSerialization value) and optional bearer token.
func sendJSON(
    _ method: String, _ url: String, token: String? = nil, body: Any? = nil, headers: [(String, String)] = [],
    timeout: Duration = .seconds(10)
) async throws -> JSONResponse {
    var allHeaders = headers
    var bytes: [UInt8]?
    if let body {
        bytes = try JSON.encode(body)
        allHeaders.append(("Content-Type", "application/json"))
    }
    if let token {
        allHeaders.append(("Authorization", "Bearer \(token)"))
    }
    return JSONResponse(try await testHTTPClient.request(method: method, url: url, headers: allHeaders, body: bytes, timeout: timeout))
}
