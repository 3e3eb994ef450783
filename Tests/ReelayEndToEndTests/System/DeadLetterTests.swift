import Foundation
import ReelayCore
import ReelayTestSupport
import Testing

/// Guards: a message that can never be handled is kept (not lost, not looping) in the dead-letter queue, `reelay dlq list`
/// shows where it came from and why, and `reelay dlq replay` sends it back to that queue.
@Suite("DeadLetters", .serialized)
struct DeadLetterTests {
    @Test func poisonWebhookIsDeadLetteredListedAndReplayed() async throws {
        try await RunningSystem.run(name: "dead-letters") { system in
            // A correctly signed webhook whose body is not a prediction: accepted at the edge, poison for the finalizer.
            let body = Array(#"{"hello": "not a prediction"}"#.utf8)
            let signer = try StandardWebhook(secret: RunningStandin.secret)
            let timestamp = Int(Date().timeIntervalSince1970)
            let response = try await testHTTPClient.request(
                method: "POST", url: system.webhookURL + "/webhooks/replicate",
                headers: [
                    ("webhook-id", "msg_poison_1"), ("webhook-timestamp", String(timestamp)),
                    ("webhook-signature", signer.sign(id: "msg_poison_1", timestamp: timestamp, body: body)),
                    ("Content-Type", "application/json"),
                ], body: body, timeout: .seconds(10))
            #expect(response.status == 200)

            var listing = ""
            try await eventually("the poison message reaches the dead-letter queue", timeout: .seconds(20), every: .milliseconds(500)) {
                listing = try RunningSystem.runTool(["dlq", "list"], environment: system.environment).stdout
                return listing.contains("reelay.completions")
            }
            #expect(listing.contains("is not a prediction"), "the reason is shown: \(listing)")
            let id = try #require(
                listing.split(separator: "\n").first { $0.hasPrefix("id:") }.map { $0.dropFirst(3).trimmingCharacters(in: .whitespaces) })

            // Listing removed nothing: a second listing shows the same letter.
            #expect(try RunningSystem.runTool(["dlq", "list"], environment: system.environment).stdout.contains(id))

            let replay = try RunningSystem.runTool(["dlq", "replay", "--id", id], environment: system.environment)
            #expect(replay.status == 0, "\(replay.output)")
            #expect(replay.stdout.contains("replayed \(id) to reelay.completions"))
            // Replayed into its queue, it is handled again (and, still poison, dead-lettered again).
            try await eventually("the replayed letter is handled again", timeout: .seconds(20), every: .milliseconds(500)) {
                let log = (try? String(contentsOfFile: system.folder + "/webhook.log", encoding: .utf8)) ?? ""
                return log.components(separatedBy: "dead-lettering a message that can never be handled").count - 1 >= 2
            }
            // Replayed once, not in a loop (a replayed letter that dies again must not be replayed again by the same run).
            let log = (try? String(contentsOfFile: system.folder + "/webhook.log", encoding: .utf8)) ?? ""
            #expect(log.components(separatedBy: "dead-lettering a message that can never be handled").count - 1 == 2)
            let unknown = try RunningSystem.runTool(["dlq", "replay", "--id", "no-such-id"], environment: system.environment)
            #expect(unknown.status != 0)
            #expect(unknown.output.contains("not found in the dead-letter queue: no-such-id"))
        }
    }
}
