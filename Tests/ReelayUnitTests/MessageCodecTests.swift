import Foundation
import ReelayCore
import ReelayMessaging
import Testing

/// Guards the wire format between services: every message survives encode/decode, keys are snake_case.
@Suite("MessageCodec")
struct MessageCodecTests {
    @Test func everyMessageRoundTrips() throws {
        // Dates travel with millisecond precision.
        let now = Date(timeIntervalSince1970: 1_790_000_000.5)
        let submit = SubmitTaskCommand(
            taskID: UUID(), userID: UUID(), prompt: "p", inputImageURL: "https://x/y.png", inputJSON: #"{"seed":1}"#,
            idempotencyKey: "k", submittedAt: now)
        #expect(try MessageCodec.decode(SubmitTaskCommand.self, from: MessageCodec.encode(submit)) == submit)
        let verdict = AdmissionVerdict(taskID: UUID(), outcome: .rejected, httpStatus: 429, message: "no")
        #expect(try MessageCodec.decode(AdmissionVerdict.self, from: MessageCodec.encode(verdict)) == verdict)
        let command = PredictionCommand(action: .cancel, taskID: UUID(), attempt: 3)
        #expect(try MessageCodec.decode(PredictionCommand.self, from: MessageCodec.encode(command)) == command)
        let webhook = PredictionWebhookCommand(taskID: nil, attempt: nil, webhookID: "msg_1", receivedAt: now, body: "{}")
        #expect(try MessageCodec.decode(PredictionWebhookCommand.self, from: MessageCodec.encode(webhook)) == webhook)
        let event = TaskEvent(taskID: UUID(), userID: UUID(), status: .completed, attempt: 1, reason: nil, at: now)
        #expect(try MessageCodec.decode(TaskEvent.self, from: MessageCodec.encode(event)) == event)
        #expect(try MessageCodec.decode(CancelTaskCommand.self, from: MessageCodec.encode(CancelTaskCommand(taskID: event.taskID))).taskID
            == event.taskID)
    }

    @Test func keysAreSnakeCaseOnTheWire() throws {
        let submit = SubmitTaskCommand(
            taskID: UUID(), userID: UUID(), prompt: "p", inputImageURL: "u", inputJSON: nil, idempotencyKey: nil, submittedAt: Date())
        let object = try #require(try JSONSerialization.jsonObject(with: Data(MessageCodec.encode(submit))) as? [String: Any])
        #expect(Set(object.keys).isSuperset(of: ["v", "task_id", "user_id", "input_image_url", "submitted_at"]))
    }

    @Test func garbageIsADecodingFailure() {
        #expect(throws: MessageCodec.DecodingFailure.self) {
            try MessageCodec.decode(TaskEvent.self, from: Array("not json".utf8))
        }
    }
}
