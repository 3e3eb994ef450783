import Foundation
import Logging
import ReelayHTTPClient

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One HTTP client shared by every end-to-end test (its threads live as long as the test process).
let testHTTPClient = HTTPClient(
    threads: 4, connectTimeout: .seconds(2), userAgent: "reelay-e2e-tests", logger: Logger(label: "reelay.e2e.http"))

/// Polls `url` with GET until it answers `status`; throws with the last outcome after `timeout`.
func waitForHTTP(_ url: String, status: Int = 200, timeout: Duration) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    var last = "no answer yet"
    while clock.now < deadline {
        do {
            let response = try await testHTTPClient.request(method: "GET", url: url, headers: [], body: nil, timeout: .seconds(2))
            if response.status == status {
                return
            }
            last = "status \(response.status)"
        } catch {
            last = "\(error)"
        }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw HarnessError("\(url) did not answer \(status) within \(timeout): \(last)")
}

/// A TCP port that was free a moment ago (bound to port 0 on 127.0.0.1 and read back).
func freePort() -> Int {
    #if canImport(Glibc)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
    let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    precondition(fd >= 0, "socket() failed: \(errno)")
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    precondition(bound == 0, "bind() failed: \(errno)")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    precondition(named == 0, "getsockname() failed: \(errno)")
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A response with its body read as JSON (when it is JSON).
struct JSONResponse {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]
    /// The body as JSON; `JSON(nil)` when the body is empty or not JSON.
    var json: JSON

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
        bytes = Array(try JSONSerialization.data(withJSONObject: body, options: [.fragmentsAllowed]))
        allHeaders.append(("Content-Type", "application/json"))
    }
    if let token {
        allHeaders.append(("Authorization", "Bearer \(token)"))
    }
    let response = try await testHTTPClient.request(method: method, url: url, headers: allHeaders, body: bytes, timeout: timeout)
    return JSONResponse(status: response.status, headers: response.headers, body: response.body, json: JSON(bytes: response.body))
}

/// Polls `condition` until it holds; throws `message` after `timeout`.
func eventually(
    _ message: @autoclosure () -> String, timeout: Duration = .seconds(30), every interval: Duration = .milliseconds(50),
    _ condition: () async throws -> Bool
) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if try await condition() {
            return
        }
        try await Task.sleep(for: interval)
    }
    if try await condition() {
        return
    }
    throw HarnessError("timed out after \(timeout): \(message())")
}
