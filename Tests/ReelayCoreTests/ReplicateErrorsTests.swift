import Foundation
import ReelayCore
import Testing

@Suite("Replicate error classification")
struct ReplicateErrorsTests {
    static let now = Date(timeIntervalSince1970: 1_700_000_000)

    func classify(_ status: Int, _ body: String = "", headers: [(String, String)] = []) -> ReplicateOutcomeClass {
        ReplicateErrors.classify(status: status, headers: headers, body: Array(body.utf8), now: Self.now)
    }

    func permanentMessage(_ outcome: ReplicateOutcomeClass) -> String? {
        if case .permanent(let message) = outcome {
            return message
        }
        return nil
    }

    @Test(arguments: [200, 201, 202, 204])
    func twoHundredsAreSuccess(status: Int) {
        #expect(self.classify(status, #"{"id":"x"}"#) == .success)
        #expect(!self.classify(status).needsAlert)
    }

    @Test func badRequestIsPermanentWithDetail() throws {
        let outcome = self.classify(400, #"{"title":"Bad request","detail":"The body is not valid JSON","status":400}"#)
        let message = try #require(self.permanentMessage(outcome))
        #expect(message.contains("400"))
        #expect(message.contains("The body is not valid JSON"))
        #expect(!outcome.needsAlert)
    }

    /// 401 pages an operator and tells them which setting to fix.
    @Test func unauthorizedNeedsAlert() throws {
        let outcome = self.classify(401, #"{"title":"Unauthenticated","detail":"You did not pass a valid authentication token","status":401}"#)
        let message = try #require(self.permanentMessage(outcome))
        #expect(message.hasPrefix("Replicate rejected the API token (401)"))
        #expect(message.contains("REPLICATE_API_TOKEN"))
        #expect(outcome.needsAlert)
    }

    @Test func paymentRequiredNeedsAlert() throws {
        let outcome = self.classify(402, #"{"title":"Insufficient credit","detail":"You have insufficient credit to run this model.","status":402}"#)
        let message = try #require(self.permanentMessage(outcome))
        #expect(message.contains("insufficient credit"))
        #expect(message.contains("402"))
        #expect(outcome.needsAlert)
    }

    @Test func notFoundIsPermanent() throws {
        let outcome = self.classify(404, #"{"detail":"Not found."}"#)
        let message = try #require(self.permanentMessage(outcome))
        #expect(message.contains("404"))
        #expect(message.contains("REPLICATE_MODEL"))
        #expect(message.contains("Not found."))
        #expect(!outcome.needsAlert)
    }

    /// A 422 message names the detail and every invalid field, so the user can correct the input.
    @Test func unprocessableListsInvalidFields() throws {
        let body = #"""
            {"title":"Input validation failed","detail":"- input.num_frames: Must be less than or equal to 121\n","status":422,
             "invalid_fields":[{"type":"less_than_equal","field":"input.num_frames","description":"Must be less than or equal to 121"},
                               {"type":"required","field":"input","description":"image is required"}]}
            """#
        let outcome = self.classify(422, body)
        let message = try #require(self.permanentMessage(outcome))
        #expect(message.contains("422"))
        #expect(message.contains("input.num_frames: Must be less than or equal to 121"))
        #expect(message.contains("image is required"))
        #expect(!message.contains("\n"))
        #expect(!outcome.needsAlert)
    }

    @Test func fastAPIStyleDetailList() throws {
        let outcome = self.classify(422, #"{"detail":[{"loc":["body","input"],"msg":"field required","type":"value_error.missing"}]}"#)
        let message = try #require(self.permanentMessage(outcome))
        #expect(message.contains("field required"))
    }

    @Test(arguments: [403, 409, 413, 418])
    func otherClientErrorsArePermanent(status: Int) throws {
        let message = try #require(self.permanentMessage(self.classify(status, #"{"detail":"nope"}"#)))
        #expect(message.contains(String(status)))
    }

    @Test(arguments: [500, 502, 503, 504, 408])
    func serverErrorsAreTransient(status: Int) {
        let outcome = self.classify(status, #"{"detail":"upstream failure"}"#)
        guard case .transient(let message) = outcome else {
            Issue.record("\(status) classified as \(outcome)")
            return
        }
        #expect(message.contains(String(status)))
        #expect(message.contains("upstream failure"))
        #expect(!outcome.needsAlert)
    }

    /// An HTML page from the CDN must not crash the parser nor end up in the message.
    @Test func htmlBodyIsHandled() throws {
        let html = "<html><head><title>400 Bad Request</title></head><body><h1>Bad Request</h1></body></html>"
        let message = try #require(self.permanentMessage(self.classify(400, html)))
        #expect(message.contains("400"))
        #expect(!message.contains("<html>"))
        guard case .transient = self.classify(502, html) else {
            Issue.record("502 with HTML was not transient")
            return
        }
        let binary: [UInt8] = [0xFF, 0xFE, 0x00, 0x7B, 0x22]
        #expect(ReplicateErrors.classify(status: 500, headers: [], body: binary) != .success)
        _ = self.classify(422, "{not json")
        _ = self.classify(422, "[1, 2, 3]")
        _ = self.classify(422, #"{"detail": 42, "invalid_fields": "oops"}"#)
    }

    @Test func rateLimitWithRetryAfterSeconds() {
        let outcome = self.classify(429, #"{"detail":"Request was throttled. Your rate limit resets in ~30s."}"#, headers: [("Retry-After", "12")])
        #expect(outcome == .rateLimited(retryAfter: .seconds(12)))
        #expect(!outcome.needsAlert)
    }

    @Test func retryAfterHeaderNameIsCaseInsensitive() {
        #expect(self.classify(429, headers: [("retry-after", "5")]) == .rateLimited(retryAfter: .seconds(5)))
        #expect(self.classify(429, headers: [("RETRY-AFTER", " 7 ")]) == .rateLimited(retryAfter: .seconds(7)))
    }

    @Test func retryAfterHTTPDate() {
        // 1_700_000_000 is Tue, 14 Nov 2023 22:13:20 GMT.
        let outcome = self.classify(429, headers: [("Retry-After", "Tue, 14 Nov 2023 22:14:05 GMT")])
        #expect(outcome == .rateLimited(retryAfter: .seconds(45)))
        let past = self.classify(429, headers: [("Retry-After", "Tue, 14 Nov 2023 22:00:00 GMT")])
        #expect(past == .rateLimited(retryAfter: .zero))
    }

    @Test func retryAfterFromBody() {
        #expect(self.classify(429, #"{"retry_after": 8, "detail":"resets in ~30s"}"#) == .rateLimited(retryAfter: .seconds(8)))
        #expect(self.classify(429, #"{"retry_after": 1.5}"#) == .rateLimited(retryAfter: .milliseconds(1500)))
    }

    @Test func retryAfterFromDetail() {
        let body = #"{"title":"Request was throttled","detail":"Request was throttled. Your rate limit resets in ~30s.","status":429}"#
        let outcome = self.classify(429, body)
        #expect(outcome == .rateLimited(retryAfter: .seconds(30)))
    }

    @Test func rateLimitWithoutAnyHint() {
        #expect(self.classify(429, #"{"detail":"Too many requests"}"#) == .rateLimited(retryAfter: nil))
        #expect(self.classify(429, "<html>slow down</html>") == .rateLimited(retryAfter: nil))
        #expect(self.classify(429, headers: [("Retry-After", "soon")]) == .rateLimited(retryAfter: nil))
    }

    @Test func unknownStatusIsTransient() {
        guard case .transient = self.classify(302) else {
            Issue.record("302 was not transient")
            return
        }
    }
}
