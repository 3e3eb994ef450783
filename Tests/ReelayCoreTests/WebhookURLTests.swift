import Foundation
import ReelayCore
import Testing

@Suite("Webhook URL")
struct WebhookURLTests {
    static let taskID = UUID(uuidString: "0F8FAD5B-D9CB-469F-A165-70867728950E")!

    @Test(arguments: ["https://hooks.example.com", "https://hooks.example.com/", "https://hooks.example.com//"])
    func makeWithOrWithoutTrailingSlash(base: String) {
        #expect(WebhookURL.make(base: base, taskID: Self.taskID, attempt: 3)
            == "https://hooks.example.com/webhooks/replicate?task=0f8fad5b-d9cb-469f-a165-70867728950e&attempt=3")
    }

    @Test func keepsABasePath() {
        #expect(WebhookURL.make(base: "https://example.com/reelay/", taskID: Self.taskID, attempt: 1)
            .hasPrefix("https://example.com/reelay/webhooks/replicate?"))
    }

    /// Invariant: parse(make(...)) gives back the same task and attempt.
    @Test(arguments: [0, 1, 2, 17, 1_000_000])
    func roundTrip(attempt: Int) throws {
        let taskID = UUID()
        let url = WebhookURL.make(base: "http://127.0.0.1:8081", taskID: taskID, attempt: attempt)
        let parsed = try #require(WebhookURL.parse(url))
        #expect(parsed.taskID == taskID)
        #expect(parsed.attempt == attempt)
    }

    @Test func parsesABareQueryInAnyOrder() throws {
        let parsed = try #require(WebhookURL.parse("attempt=4&x=1&task=0F8FAD5B-D9CB-469F-A165-70867728950E"))
        #expect(parsed.taskID == Self.taskID)
        #expect(parsed.attempt == 4)
        let withMark = try #require(WebhookURL.parse("?task=0f8fad5b-d9cb-469f-a165-70867728950e&attempt=2#frag"))
        #expect(withMark.attempt == 2)
    }

    @Test(arguments: [
        "https://h/webhooks/replicate", "https://h/webhooks/replicate?task=0f8fad5b-d9cb-469f-a165-70867728950e",
        "https://h/webhooks/replicate?attempt=1", "task=not-a-uuid&attempt=1",
        "task=0f8fad5b-d9cb-469f-a165-70867728950e&attempt=one", "task=0f8fad5b-d9cb-469f-a165-70867728950e&attempt=-1", "",
    ])
    func invalidOrAbsentIsNil(text: String) {
        #expect(WebhookURL.parse(text) == nil)
    }
}
