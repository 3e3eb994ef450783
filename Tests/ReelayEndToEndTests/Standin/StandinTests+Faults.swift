import Foundation
import ReelayCore
import ReelayTestSupport
import Testing

/// The faults the stand-in injects on request, and its outputs' expiry and hostile file routes.
extension StandinTests {
    // MARK: Faults

    /// Guards: with create_500 at 100% every create answers 500 and nothing is created.
    @Test func create500FaultCreatesNothing() async throws {
        try await self.withStandin("fault-500") { standin in
            try await standin.setFaults(["create_500": 100])
            let response = try await self.create(standin, body: ["input": Self.input])
            #expect(response.status == 500)
            let stats = try await standin.stats()
            #expect(stats["creates"].int == 0)
            #expect(stats["create_attempts"].int == 1)
            #expect(stats["running"].int == 0)
            let list = try await sendJSON("GET", standin.apiBaseURL + "/predictions", token: RunningStandin.token)
            #expect(list.json["results"].array?.count == 0)

            try await standin.setFaults(["create_500": 0])
            #expect(try await self.create(standin, body: ["input": Self.input]).status == 201)
        }
    }

    /// Guards: the create_429 fault answers 429 with a wait a client can read, and creates nothing.
    @Test func create429FaultThrottles() async throws {
        try await self.withStandin("fault-429", environment: ["STANDIN_FAULT_CREATE_429": "100"]) { standin in
            let response = try await self.create(standin, body: ["input": Self.input])
            #expect(response.status == 429)
            #expect(response.header("retry-after") == "1")
            #expect(response.json["detail"].string?.contains("~1s") == true)
            let stats = try await standin.stats()
            #expect(stats["creates"].int == 0)
            #expect(stats["rate_limited"].int == 1)
        }
    }

    /// Guards: above STANDIN_CREATE_RATE_PER_MIN creates are refused with 429 and a Retry-After, and not created.
    @Test func createRateLimitThrottles() async throws {
        try await self.withStandin("rate", environment: ["STANDIN_CREATE_RATE_PER_MIN": "2"]) { standin in
            var statuses: [Int] = []
            for _ in 0..<3 {
                statuses.append(try await self.create(standin, body: ["input": Self.input]).status)
            }
            #expect(statuses == [201, 201, 429])
            let refused = try await self.create(standin, body: ["input": Self.input])
            let wait = try #require(refused.header("retry-after").flatMap { Int($0) })
            #expect((1...60).contains(wait))
            let stats = try await standin.stats()
            #expect(stats["creates"].int == 2)
            #expect(stats["create_attempts"].int == 4)
            #expect(stats["rate_limited"].int == 2)
        }
    }

    /// Guards: create_timeout creates the prediction but withholds the answer, so the client sees a timeout (an ambiguous
    /// create) while the prediction exists and can be found by listing.
    @Test func createTimeoutFaultIsAmbiguous() async throws {
        try await self.withStandin(
            "fault-timeout", environment: ["STANDIN_FAULT_CREATE_TIMEOUT": "100", "STANDIN_FAULT_TIMEOUT_MS": "60000"]
        ) { standin in
            await #expect(throws: (any Error).self) {
                _ = try await sendJSON(
                    "POST", standin.apiBaseURL + "/models/\(Self.model)/predictions", token: RunningStandin.token,
                    body: ["input": Self.input], timeout: .seconds(3))
            }
            // The client gave up long before the answer; the prediction exists all the same.
            try await eventually("the withheld create is counted", timeout: .seconds(30), every: .milliseconds(50)) {
                try await standin.stats()["creates"].int == 1
            }
            let stats = try await standin.stats()
            #expect(stats["creates"].int == 1)
            #expect(stats["withheld_creates"].int == 1)
            let list = try await sendJSON("GET", standin.apiBaseURL + "/predictions", token: RunningStandin.token)
            #expect(list.json["results"].array?.count == 1)
        }
    }

    /// Guards: webhook_drop never sends the terminal webhook (the reconciler must find the outcome by polling).
    @Test func dropFaultSendsNoTerminalWebhook() async throws {
        let receiver = try await WebhookReceiver.start()
        defer { Task { await receiver.stop() } }
        try await self.withStandin("fault-drop", environment: ["STANDIN_FAULT_WEBHOOK_DROP": "100"]) { standin in
            let hookURL = WebhookURL.make(base: receiver.baseURL, taskID: UUID(), attempt: 1)
            let created = try await self.create(
                standin, body: ["input": Self.input, "webhook": hookURL, "webhook_events_filter": ["completed"]])
            let id = try #require(created.json["id"].string)
            _ = try await self.waitForStatus(standin, id, "succeeded")
            try await Task.sleep(for: .milliseconds(500))
            #expect(receiver.requests.isEmpty)
            #expect(try await standin.stats()["webhooks_dropped"].int == 1)
        }
    }

    /// Guards: output_missing succeeds with an output URL that answers 404.
    @Test func outputMissingFaultServes404() async throws {
        try await self.withStandin("fault-output", environment: ["STANDIN_FAULT_OUTPUT_MISSING": "100"]) { standin in
            let created = try await self.create(standin, body: ["input": Self.input])
            let id = try #require(created.json["id"].string)
            let succeeded = try await self.waitForStatus(standin, id, "succeeded")
            let output = try #require(succeeded.json["output"].string)
            let file = try await testHTTPClient.request(method: "GET", url: output, headers: [], body: nil, timeout: .seconds(5))
            #expect(file.status == 404)
        }
    }

    /// Guards: the prediction_fail fault ends the prediction failed with a transient-looking error.
    @Test func predictionFailFaultEndsFailed() async throws {
        try await self.withStandin("fault-fail", environment: ["STANDIN_FAULT_PREDICTION_FAIL": "100"]) { standin in
            let created = try await self.create(standin, body: ["input": Self.input])
            let id = try #require(created.json["id"].string)
            let failed = try await self.waitForStatus(standin, id, "failed")
            #expect(failed.json["error"].string == "CUDA error: out of memory (transient)")
            #expect(failed.json["output"].isNull)
        }
    }

    /// Guards: outputs expire: after the TTL `output` is null, `data_removed` true, and the file answers 404.
    @Test func outputExpiresAfterTTL() async throws {
        // A 3 s TTL: the poll that sees `succeeded` must come before the output expires, even on a busy machine.
        try await self.withStandin("ttl", environment: ["STANDIN_OUTPUT_TTL_SECONDS": "3"]) { standin in
            let created = try await self.create(standin, body: ["input": Self.input])
            let id = try #require(created.json["id"].string)
            let succeeded = try await self.waitForStatus(standin, id, "succeeded")
            let output = try #require(succeeded.json["output"].string)
            #expect(succeeded.json["data_removed"].bool == false)
            try await Task.sleep(for: .milliseconds(3300))
            let expired = try await self.get(standin, id)
            #expect(expired.json["data_removed"].bool == true)
            #expect(expired.json["output"].isNull)
            #expect(expired.json["status"].string == "succeeded")
            let file = try await testHTTPClient.request(method: "GET", url: output, headers: [], body: nil, timeout: .seconds(5))
            #expect(file.status == 404)
        }
    }

    /// Guards: the stand-in's hostile file routes, which the output-download tests rely on, do what they say: a
    /// redirect to any URL, and blobs of a given size and kind, with a Content-Length or chunked.
    @Test func hostileFileRoutes() async throws {
        try await self.withStandin("hostile") { standin in
            let redirect = try await testHTTPClient.request(
                method: "GET", url: standin.baseURL + "/_standin/redirect?to=http%3A%2F%2F169.254.169.254%2Flatest%2F", headers: [],
                body: nil, timeout: .seconds(5))
            #expect(redirect.status == 302)
            #expect(redirect.header("location") == "http://169.254.169.254/latest/")
            for chunked in [false, true] {
                let url = standin.baseURL + "/_standin/blob?bytes=200000&kind=mp4" + (chunked ? "&chunked=1" : "")
                let video = try await testHTTPClient.request(method: "GET", url: url, headers: [], body: nil, timeout: .seconds(5))
                #expect(video.status == 200)
                #expect(video.body.count == 200_000)
                #expect(Array(video.body[4..<8]) == Array("ftyp".utf8))
                #expect((video.header("content-length") == nil) == chunked, "chunked=\(chunked): \(video.headers)")
            }
            let page = try await testHTTPClient.request(
                method: "GET", url: standin.baseURL + "/_standin/blob?bytes=5000&kind=html", headers: [], body: nil, timeout: .seconds(5))
            #expect(page.header("content-type") == "text/html")
            #expect(page.body.count == 5000)
            #expect(String(decoding: page.body.prefix(15), as: UTF8.self) == "<!DOCTYPE html>")
            let bad = try await sendJSON("GET", standin.baseURL + "/_standin/blob?bytes=-1")
            #expect(bad.status == 400)
        }
    }
}
