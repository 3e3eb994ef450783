import Foundation
import ReelayCore
import Testing

@Suite("Replicate prediction decoding")
struct PredictionTests {
    func decode(_ json: String) throws -> ReplicatePrediction {
        try ReplicatePrediction.decode(Array(json.utf8))
    }

    @Test func outputAsString() throws {
        let prediction = try self.decode(#"""
            {"id":"ufawqhfynnddngldkgtslldrkq","model":"wan-video/wan-2.2-i2v-fast","version":"hidden",
             "input":{"prompt":"a cat","image":"https://example.com/cat.png"},"logs":"","error":null,"status":"succeeded",
             "output":"https://replicate.delivery/xezq/abc/output.mp4","data_removed":false,"source":"api",
             "metrics":{"predict_time":41.2,"total_time":43.9},
             "created_at":"2025-01-01T10:00:00.123Z","started_at":"2025-01-01T10:00:01.123456Z",
             "completed_at":"2025-01-01T10:00:44.123456789Z",
             "urls":{"get":"https://api.replicate.com/v1/predictions/ufawqhfynnddngldkgtslldrkq",
                     "cancel":"https://api.replicate.com/v1/predictions/ufawqhfynnddngldkgtslldrkq/cancel","web":"https://replicate.com/p/u"},
             "webhook":"https://hooks.example.com/webhooks/replicate?task=1&attempt=1"}
            """#)
        #expect(prediction.id == "ufawqhfynnddngldkgtslldrkq")
        #expect(prediction.status == .succeeded)
        #expect(prediction.status.isTerminal)
        #expect(prediction.error == nil)
        #expect(prediction.output == .url("https://replicate.delivery/xezq/abc/output.mp4"))
        #expect(prediction.output?.firstURL == "https://replicate.delivery/xezq/abc/output.mp4")
        #expect(prediction.dataRemoved == false)
        #expect(prediction.urls?["cancel"] == "https://api.replicate.com/v1/predictions/ufawqhfynnddngldkgtslldrkq/cancel")
        #expect(prediction.webhook == "https://hooks.example.com/webhooks/replicate?task=1&attempt=1")
    }

    /// Timestamps with 3, 6 and 9 fractional digits are kept exactly as sent.
    @Test func timestampsStayStrings() throws {
        let prediction = try self.decode(#"""
            {"id":"p","status":"processing","created_at":"2025-01-01T10:00:00.123Z","started_at":"2025-01-01T10:00:01.123456Z",
             "completed_at":"2025-01-01T10:00:44.123456789+00:00"}
            """#)
        #expect(prediction.createdAt == "2025-01-01T10:00:00.123Z")
        #expect(prediction.startedAt == "2025-01-01T10:00:01.123456Z")
        #expect(prediction.completedAt == "2025-01-01T10:00:44.123456789+00:00")
    }

    @Test func outputAsArray() throws {
        let prediction = try self.decode(#"{"id":"p","status":"succeeded","output":["https://a/1.mp4","https://a/2.mp4"]}"#)
        #expect(prediction.output == .urls(["https://a/1.mp4", "https://a/2.mp4"]))
        #expect(prediction.output?.firstURL == "https://a/1.mp4")
    }

    @Test func outputNullOrMissing() throws {
        let null = try self.decode(#"{"id":"p","status":"starting","output":null}"#)
        #expect(null.output == nil)
        #expect(null.output?.firstURL == nil)
        let missing = try self.decode(#"{"id":"p","status":"starting"}"#)
        #expect(missing.output == nil)
        #expect(missing.status == .starting)
        #expect(!missing.status.isTerminal)
    }

    @Test func outputOfOtherShape() throws {
        let object = try self.decode(#"{"id":"p","status":"succeeded","output":{"video":"https://a/1.mp4"}}"#)
        #expect(object.output == .other)
        #expect(object.output?.firstURL == nil)
        let numbers = try self.decode(#"{"id":"p","status":"succeeded","output":[1,2]}"#)
        #expect(numbers.output == .other)
    }

    /// After about an hour Replicate deletes the output: output null, data_removed true.
    @Test func dataRemoved() throws {
        let prediction = try self.decode(#"{"id":"p","status":"succeeded","output":null,"data_removed":true}"#)
        #expect(prediction.dataRemoved == true)
        #expect(prediction.output == nil)
    }

    @Test func unknownStatusIsNotTerminal() throws {
        let prediction = try self.decode(#"{"id":"p","status":"queued_somewhere"}"#)
        #expect(prediction.status == .unknown("queued_somewhere"))
        #expect(prediction.status.rawValue == "queued_somewhere")
        #expect(!prediction.status.isTerminal)
    }

    @Test(arguments: [
        ("starting", false), ("processing", false), ("succeeded", true), ("failed", true), ("canceled", true), ("aborted", true),
    ])
    func knownStatuses(raw: String, terminal: Bool) throws {
        let status = try #require(PredictionStatus(rawValue: raw))
        #expect(status.rawValue == raw)
        #expect(status.isTerminal == terminal)
        // Equality is by raw value (RawRepresentable), so check the case itself: a known status never parses as unknown.
        if case .unknown = status {
            Issue.record("'\(raw)' parsed as unknown")
        }
    }

    @Test func failedWithError() throws {
        let prediction = try self.decode(#"{"id":"p","status":"failed","error":"CUDA out of memory. Tried to allocate 2.00 GiB"}"#)
        #expect(prediction.status == .failed)
        #expect(prediction.error == "CUDA out of memory. Tried to allocate 2.00 GiB")
        #expect(PredictionFailure.isTransient(error: prediction.error))
    }

    @Test func nonStringErrorIsKept() throws {
        let prediction = try self.decode(#"{"id":"p","status":"failed","error":{"code":"E1","message":"boom"}}"#)
        let error = try #require(prediction.error)
        #expect(error.contains("boom"))
    }

    @Test func wrongTypesElsewhereAreTolerated() throws {
        let prediction = try self.decode(#"{"id":"p","status":"failed","data_removed":"no","urls":{"get":"https://x","n":1},"created_at":12}"#)
        #expect(prediction.dataRemoved == nil)
        #expect(prediction.urls == ["get": "https://x"])
        #expect(prediction.createdAt == nil)
    }

    @Test(arguments: ["", "not json", "[]", #"{"status":"succeeded"}"#, #"{"id":5,"status":"failed"}"#])
    func invalidBodiesThrow(body: String) {
        #expect(throws: PredictionDecodingError.self) {
            try self.decode(body)
        }
    }

    @Test func roundTripsThroughJSON() throws {
        let original = ReplicatePrediction(
            id: "p1", status: .unknown("paused"), error: "x", output: .urls(["https://a"]), dataRemoved: false, urls: ["get": "https://g"],
            createdAt: "2025-01-01T00:00:00.000000Z", webhook: "https://h")
        let data = try JSONEncoder().encode(original)
        #expect(try ReplicatePrediction.decode(Array(data)) == original)
        let json = try #require(String(data: data, encoding: .utf8))
        #expect(json.contains("\"data_removed\""))
        #expect(json.contains("\"created_at\""))
    }

    @Test(arguments: [
        "CUDA out of memory. Tried to allocate 20.00 MiB", "Prediction timed out", "Timeout waiting for GPU",
        "Internal error", "The service is temporarily unavailable", "Connection reset by peer", "upstream returned status 503",
        "HTTP 502 from model server", "Worker overloaded, please try again",
    ])
    func transientFailures(error: String) {
        #expect(PredictionFailure.isTransient(error: error))
    }

    @Test(arguments: [
        "NSFW content detected", "Invalid image: cannot identify image file", "num_frames must be between 81 and 121",
        "Input validation failed", "Resolution 512x512 is unsupported", "Face not detected in the image", "failed at step 512",
    ])
    func permanentFailures(error: String) {
        #expect(!PredictionFailure.isTransient(error: error))
    }

    @Test func noErrorTextIsPermanent() {
        #expect(!PredictionFailure.isTransient(error: nil))
        #expect(!PredictionFailure.isTransient(error: ""))
    }
}
