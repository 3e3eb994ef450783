import Foundation
import ReelayPostgres
import ReelayTestSupport
import Testing

/// The HTTP edge of the built services (issue 7): nothing from outside can stall, leak or poison Reelay.
@Suite("HTTP edge", .serialized)
struct EdgeTests {
    static let publicBaseURL = "https://api.reelay.test"

    /// Runs `body` against a fresh system and always stops it; a failure carries the services' log tails.
    func withSystem(_ name: String, overrides: [String: String] = [:], _ body: (RunningSystem) async throws -> Void) async throws {
        try await RunningSystem.run(name: "edge-\(name)", overrides: overrides, logLines: 30, body)
    }

    func rows(_ system: RunningSystem, user: UUID? = nil) async throws -> Int {
        let result = try await system.pool.withConnection { connection in
            try await connection.query(
                "SELECT count(*) AS n FROM video_tasks WHERE $1::uuid IS NULL OR user_uuid = $1::uuid", [user?.uuidString])
        }
        return try result.rows.first?.int("n") ?? -1
    }

    func submit(
        _ system: RunningSystem, key: String, body: [String: Any], headers: [(String, String)] = []
    ) async throws -> JSONResponse {
        try await sendJSON("POST", system.gatewayURL + "/v1/tasks", token: key, body: body, headers: headers)
    }

    static func port(_ url: String) -> Int {
        Int(url.split(separator: ":").last ?? "") ?? 0
    }

    /// Guards: a submission that can never be stored (U+0000 anywhere, an unbounded input, an image URL pointing inside)
    /// gets 422 naming the field, and nothing is published: no row appears, while a valid submission's row does.
    @Test func unstorableSubmissionsAreRefusedBeforeAnythingIsPublished() async throws {
        try await self.withSystem("unstorable") { system in
            let user = UUID()
            let key = try system.createKey(user: user, tier: "pro")
            let image = "https://example.com/frame.png"
            let cases: [(body: [String: Any], field: String)] = [
                (["prompt": "\u{0}hidden", "input_image_url": image], "prompt"),
                (["prompt": "a fox\u{0}", "input_image_url": image], "prompt"),
                (["prompt": "a fox", "input_image_url": "https://example.com/\u{0}.png"], "input_image_url"),
                (["prompt": "a fox", "input_image_url": image, "input": ["negative_prompt": "blurry\u{0}"]], "input.negative_prompt"),
                (["prompt": "a fox", "input_image_url": image, "input": ["seed\u{0}": 1]], "input.seed\\u0000"),
                (["prompt": "a fox", "input_image_url": image, "input": ["negative_prompt": String(repeating: "x", count: 2001)]],
                 "input.negative_prompt"),
                (["prompt": "a fox", "input_image_url": image, "input": ["negative_prompt": [[[["deep"]]]]]], "input.negative_prompt[0][0][0]"),
                (["prompt": "a fox", "input_image_url": "https://0x7f000001/x.png"], "input_image_url"),
                (["prompt": "a fox", "input_image_url": "https://[::ffff:127.0.0.1]/x.png"], "input_image_url"),
                (["prompt": "a fox", "input_image_url": "https://2130706433/x.png"], "input_image_url"),
                (["prompt": "a fox", "input_image_url": "https://127.1/x.png"], "input_image_url"),
                (["prompt": "a fox", "input_image_url": "https://169.254.169.254/latest/meta-data"], "input_image_url"),
                (["prompt": "a fox", "input_image_url": "https://example.com:99999/x.png"], "input_image_url"),
                (["prompt": "a fox", "input_image_url": "https://bücher.example/x.png"], "input_image_url"),
                // The development exception is off unless ALLOW_LOCAL_IMAGE_URLS says otherwise.
                (["prompt": "a fox", "input_image_url": "http://localhost:9000/x.png"], "input_image_url"),
            ]
            for (body, field) in cases {
                let response = try await self.submit(system, key: key, body: body)
                #expect(response.status == 422, "\(field): \(response.text)")
                #expect(response.header("Content-Type")?.hasPrefix("application/problem+json") == true)
                let fields = response.json["invalid_fields"].array?.compactMap { $0["field"].string } ?? []
                #expect(fields == [field], "\(response.text)")
            }
            // The body limit, at the edge.
            let hugeInput = ["negative_prompt": String(repeating: "y", count: 70_000)]
            let huge = try await self.submit(system, key: key, body: ["prompt": "a fox", "input_image_url": image, "input": hugeInput])
            #expect(huge.status == 413)

            // A valid submission from the same user reaches the database, so no row above means nothing was published.
            let valid = try await self.submit(system, key: key, body: ["prompt": "a fox", "input_image_url": image])
            #expect(valid.status == 202, "\(valid.text)")
            try await eventually("the valid submission is stored") { try await self.rows(system, user: user) == 1 }
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await self.rows(system, user: user) == 1)
            let stored = try await system.pool.withConnection { try await $0.query("SELECT prompt FROM video_tasks") }
            #expect(try stored.rows.map { try $0.string("prompt") } == ["a fox"])
        }
    }

    /// Guards: every absolute link is built from PUBLIC_BASE_URL; a client's Host header never makes one.
    @Test func hostHeaderNeverMakesALink() async throws {
        try await self.withSystem("host", overrides: ["PUBLIC_BASE_URL": Self.publicBaseURL + "/"]) { system in
            let key = try system.createKey(user: UUID(), tier: "pro")
            let evil = [("Host", "evil.example")]
            let submitted = try await self.submit(
                system, key: key, body: ["prompt": "host header test", "input_image_url": "https://example.com/h.png"], headers: evil)
            #expect(submitted.status == 202, "\(submitted.text)")
            let id = try #require(submitted.json["id"].string)
            #expect(submitted.header("Location") == "/v1/tasks/\(id)")
            var task = JSON(nil)
            try await eventually("the task completes", timeout: .seconds(60), every: .milliseconds(300)) {
                task = try await sendJSON("GET", system.gatewayURL + "/v1/tasks/\(id)", token: key, headers: evil).json
                return task["status"].string == "completed"
            }
            #expect(task["output_video_url"].string == "\(Self.publicBaseURL)/v1/tasks/\(id)/video")
            let list = try await sendJSON("GET", system.gatewayURL + "/v1/tasks", token: key, headers: evil)
            #expect(list.json["tasks"][0]["output_video_url"].string == "\(Self.publicBaseURL)/v1/tasks/\(id)/video")
            #expect(!list.text.contains("evil.example"))
            let openAPI = try await sendJSON("GET", system.gatewayURL + "/openapi.json", headers: evil)
            #expect(openAPI.json["servers"][0]["url"].string == Self.publicBaseURL)
            #expect(!openAPI.text.contains("evil.example"))
        }
    }

    /// Guards: an Idempotency-Key stands for one submission; repeating it returns the same task, reusing it with another
    /// body is refused (422 naming the header), and no second task is created either way.
    @Test func idempotencyKeyReusedWithAnotherBodyIsAConflict() async throws {
        try await self.withSystem("idempotency") { system in
            let user = UUID()
            let key = try system.createKey(user: user, tier: "pro")
            let header = [("Idempotency-Key", "order-42")]
            let body: [String: Any] = ["prompt": "same body", "input_image_url": "https://example.com/i.png", "input": ["seed": 7]]
            let first = try await self.submit(system, key: key, body: body, headers: header)
            let again = try await self.submit(system, key: key, body: body, headers: header)
            #expect(first.status == 202 && again.status == 202, "\(first.text) \(again.text)")
            let id = try #require(first.json["id"].string)
            #expect(again.json["id"].string == id)

            var other = body
            other["input"] = ["seed": 8]
            let conflict = try await self.submit(system, key: key, body: other, headers: header)
            #expect(conflict.status == 422, "\(conflict.text)")
            #expect(conflict.json["invalid_fields"][0]["field"].string == "Idempotency-Key")
            #expect(conflict.json["detail"].string?.contains(id) == true)
            // The same key of another user is another key.
            let otherUser = try system.createKey(user: UUID(), tier: "pro")
            #expect(try await self.submit(system, key: otherUser, body: other, headers: header).status == 202)

            try await eventually("the first task is stored") { try await self.rows(system, user: user) == 1 }
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await self.rows(system, user: user) == 1)
        }
    }

    /// Guards: 405 with Allow for a wrong method on an existing path, 404 for no path, HEAD wherever GET is, OPTIONS; all
    /// of it problem+json with the security headers, on the gateway, the webhook service and a health server.
    @Test func methodsStatusesAndHeadersOnEveryServer() async throws {
        try await self.withSystem("methods") { system in
            let healthPort = freePort()
            try system.startService("dispatcher-health", overrides: ["HEALTH_PORT": String(healthPort)])
            try await waitForHTTP("http://127.0.0.1:\(healthPort)/readyz", timeout: .seconds(30))
            let key = try system.createKey(user: UUID(), tier: "pro")
            let servers = [
                (system.gatewayURL, "/v1/tasks", ["GET", "HEAD", "OPTIONS", "POST"]),
                (system.webhookURL, "/webhooks/replicate", ["OPTIONS", "POST"]),
                ("http://127.0.0.1:\(healthPort)", "/readyz", ["GET", "HEAD", "OPTIONS"]),
            ]
            for (base, path, allow) in servers {
                for method in ["DELETE", "PUT", "PATCH"] {
                    let response = try await sendJSON(method, base + path, token: key)
                    #expect(response.status == 405, "\(method) \(base)\(path): \(response.text)")
                    #expect(response.header("Allow") == allow.joined(separator: ", "))
                    Self.expectProblem(response, status: 405)
                }
                let missing = try await sendJSON("GET", base + "/no/such/path", token: key)
                #expect(missing.status == 404)
                Self.expectProblem(missing, status: 404)
                let options = try await sendJSON("OPTIONS", base + path)
                #expect(options.status == 204)
                #expect(options.header("Allow") == allow.joined(separator: ", "))
                Self.expectSecurityHeaders(options)
                let health = try await sendJSON("GET", base + "/healthz")
                #expect(health.status == 200)
                Self.expectSecurityHeaders(health)
                let head = try #require(await RawSockets.onThread {
                    RawSockets.head(port: Self.port(base), request: "HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                })
                #expect(head.status == 200)
                #expect(head.afterHead == 0, "a HEAD answer has no body")
                #expect(head.headers["x-content-type-options"] == "nosniff")
            }
            // HEAD of a user's route: the GET's head, no body.
            let head = try #require(await RawSockets.onThread {
                RawSockets.head(
                    port: Self.port(system.gatewayURL),
                    request: "HEAD /v1/tasks HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \(key)\r\nConnection: close\r\n\r\n")
            })
            #expect(head.status == 200)
            #expect(head.afterHead == 0)
            #expect(head.headers["content-type"] == "application/json")
            #expect(head.headers["cache-control"] == "no-store")

            let unauthorized = try await sendJSON("GET", system.gatewayURL + "/v1/tasks")
            #expect(unauthorized.status == 401)
            Self.expectProblem(unauthorized, status: 401)
            let list = try await sendJSON("GET", system.gatewayURL + "/v1/tasks", token: key)
            #expect(list.status == 200)
            Self.expectSecurityHeaders(list)
        }
    }

    static func expectProblem(_ response: JSONResponse, status: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(response.header("Content-Type") == "application/problem+json", sourceLocation: sourceLocation)
        #expect(response.json["status"].int == status, sourceLocation: sourceLocation)
        #expect(response.json["detail"].string?.isEmpty == false, sourceLocation: sourceLocation)
        Self.expectSecurityHeaders(response, sourceLocation: sourceLocation)
    }

    static func expectSecurityHeaders(_ response: JSONResponse, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(response.header("X-Content-Type-Options") == "nosniff", sourceLocation: sourceLocation)
        #expect(response.header("Cache-Control") == "no-store", sourceLocation: sourceLocation)
        #expect(response.header("Content-Security-Policy")?.hasPrefix("default-src 'none'") == true, sourceLocation: sourceLocation)
        #expect(response.header("Referrer-Policy") == "no-referrer", sourceLocation: sourceLocation)
    }

    /// Guards: a key submitting faster than SUBMIT_RATE_PER_MIN (after its SUBMIT_BURST) gets 429 with Retry-After, and the
    /// refused submission is not published; another key is not slowed down.
    @Test func submissionRateIsLimitedPerKey() async throws {
        try await self.withSystem("rate", overrides: ["SUBMIT_RATE_PER_MIN": "1", "SUBMIT_BURST": "2"]) { system in
            let user = UUID()
            let key = try system.createKey(user: user, tier: "pro")
            var statuses: [Int] = []
            var limited: JSONResponse?
            for index in 0..<3 {
                let response = try await self.submit(
                    system, key: key, body: ["prompt": "rate \(index)", "input_image_url": "https://example.com/r.png"])
                statuses.append(response.status)
                if response.status == 429 { limited = response }
            }
            #expect(statuses == [202, 202, 429])
            let refused = try #require(limited)
            #expect(refused.json["title"].string == "Submitting too fast")
            let retryAfter = try #require(refused.header("Retry-After").flatMap { Int($0) })
            #expect(retryAfter >= 1 && retryAfter <= 61, "one token per minute: \(retryAfter)")
            Self.expectProblem(refused, status: 429)

            let other = try system.createKey(user: UUID(), tier: "pro")
            let otherBody = ["prompt": "other key", "input_image_url": "https://example.com/r.png"]
            #expect(try await self.submit(system, key: other, body: otherBody).status == 202)
            try await eventually("the two admitted submissions are stored") { try await self.rows(system, user: user) == 2 }
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await self.rows(system, user: user) == 2)
        }
    }

    /// Guards: `reelay keys list` shows ids and prefixes but never a key; `reelay keys revoke` makes the key fail with 401
    /// on its very next request.
    @Test func revokedKeyIsRefusedAtOnce() async throws {
        try await self.withSystem("revoke") { system in
            let user = UUID()
            let key = try system.createKey(user: user, tier: "premium")
            let kept = try system.createKey(user: user, tier: "premium")
            #expect(try await sendJSON("GET", system.gatewayURL + "/v1/tasks", token: key).status == 200)

            let list = try RunningSystem.runTool(["keys", "list", "--user", user.uuidString], environment: system.environment)
            #expect(list.status == 0, "\(list.output)")
            #expect(!list.output.contains(key) && !list.output.contains(kept), "keys list must never print a key")
            let lines = list.stdout.split(separator: "\n").dropFirst()
            #expect(lines.count == 2)
            let line = try #require(lines.first { $0.contains(String(key.prefix(11))) })
            #expect(line.contains(user.uuidString.lowercased()) && line.contains("premium"))
            let id = try #require(line.split(separator: " ").first.map(String.init))

            let revoke = try RunningSystem.runTool(["keys", "revoke", id], environment: system.environment)
            #expect(revoke.status == 0, "\(revoke.output)")
            let refused = try await sendJSON("GET", system.gatewayURL + "/v1/tasks", token: key)
            #expect(refused.status == 401)
            #expect(refused.header("WWW-Authenticate") == "Bearer")
            #expect(try await sendJSON("GET", system.gatewayURL + "/v1/tasks", token: kept).status == 200)

            let listed = try RunningSystem.runTool(["keys", "list"], environment: system.environment)
            let revokedLine = try #require(listed.stdout.split(separator: "\n").first { $0.hasPrefix(id) })
            #expect(!revokedLine.hasSuffix("-"), "the revoked key shows when it was revoked: \(revokedLine)")
            let unknown = try RunningSystem.runTool(["keys", "revoke", UUID().uuidString], environment: system.environment)
            #expect(unknown.status != 0)
        }
    }

    /// Guards: idle connections and connections sending a request head a byte at a time are closed by every HTTP server
    /// (gateway, webhook, a health server) within the configured timeouts, and the servers still answer afterwards.
    @Test func idleAndSlowConnectionsAreClosed() async throws {
        let overrides = ["HTTP_IDLE_TIMEOUT_MS": "1500", "HTTP_READ_TIMEOUT_MS": "1000"]
        try await self.withSystem("slow", overrides: overrides) { system in
            let healthPort = freePort()
            try system.startService("dispatcher-health", overrides: ["HEALTH_PORT": String(healthPort)])
            try await waitForHTTP("http://127.0.0.1:\(healthPort)/readyz", timeout: .seconds(30))
            for port in [Self.port(system.gatewayURL), Self.port(system.webhookURL), healthPort] {
                // 20 idle and 20 byte-every-200-ms connections; each must be closed within 1.5 s (idle) or 1 s (slow) of
                // its start. The bound below is 10x that, so a busy machine does not fail it, while a server that never
                // closes them (the fault) fails for sure.
                let result = await RawSockets.onThread {
                    RawSockets.holdConnections(port: port, idle: 20, slow: 20, interval: .milliseconds(200), limit: .seconds(15))
                }
                print("measured: port \(port): \(result.idleClosed)/20 idle and \(result.slowClosed)/20 slow connections closed, "
                    + "the last after \(result.longestOpen)")
                #expect(result.failedToConnect == 0)
                #expect(result.idleClosed == 20, "idle connections left open on port \(port)")
                #expect(result.slowClosed == 20, "byte-a-time connections left open on port \(port)")
                let health = try await sendJSON("GET", "http://127.0.0.1:\(port)/healthz")
                #expect(health.status == 200)
            }
        }
    }

    /// Guards: a QUEUE_PROCESSOR_TOKEN shorter than 32 characters stops every service at start, with one line naming the
    /// variable and not the token.
    @Test func shortOpsTokenStopsEveryService() async throws {
        for service in ["gateway", "webhook", "scheduler", "dispatcher"] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: BuiltProducts.path(service))
            var environment = ProcessInfo.processInfo.environment
            environment["QUEUE_PROCESSOR_TOKEN"] = "too-short-token"
            process.environment = environment
            let stderr = Pipe()
            process.standardError = stderr
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            // A service that accepts the token runs on: give it 10 s to exit, then stop it and fail.
            let deadline = ContinuousClock.now + .seconds(10)
            while process.isRunning && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
                Issue.record("\(service) started with a short ops token")
                continue
            }
            let text = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(process.terminationStatus != 0, "\(service) started with a short ops token")
            let lines = text.split(separator: "\n")
            #expect(lines.count == 1, "\(service): \(text)")
            #expect(text.contains("QUEUE_PROCESSOR_TOKEN must be at least 32 characters"), "\(service): \(text)")
            #expect(!text.contains("too-short-token"))
        }
    }
}
