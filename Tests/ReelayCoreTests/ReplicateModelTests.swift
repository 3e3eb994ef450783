import ReelayCore
import Testing

@Suite("REPLICATE_MODEL parsing")
struct ReplicateModelTests {
    static let version = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"

    @Test func officialModel() throws {
        let model = try ReplicateModel("wan-video/wan-2.2-i2v-fast")
        #expect(model.owner == "wan-video")
        #expect(model.name == "wan-2.2-i2v-fast")
        #expect(model.version == nil)
        #expect(model.isOfficial)
        #expect(model.createPath == "/models/wan-video/wan-2.2-i2v-fast/predictions")
        #expect(model.identifier == "wan-video/wan-2.2-i2v-fast")
    }

    @Test func ownerNameVersion() throws {
        let model = try ReplicateModel("kwaivgi/kling-v2.1:\(Self.version)")
        #expect(model.owner == "kwaivgi")
        #expect(model.name == "kling-v2.1")
        #expect(model.version == Self.version)
        #expect(!model.isOfficial)
        #expect(model.createPath == "/predictions")
        #expect(model.identifier == "kwaivgi/kling-v2.1:\(Self.version)")
    }

    @Test func bareVersion() throws {
        let model = try ReplicateModel(Self.version)
        #expect(model.owner == nil)
        #expect(model.name == nil)
        #expect(model.version == Self.version)
        #expect(model.createPath == "/predictions")
    }

    @Test(arguments: [
        "", "wan-video", "wan-video/", "/wan", "a/b/c", "owner/name:", "owner/name:abc",
        "owner/name:5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaz", "own er/name", "owner/na me",
        "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15cca", ":5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
        "https://replicate.com/wan-video/wan", "owner/.hidden",
    ])
    func invalidValuesThrow(text: String) {
        #expect(throws: ReplicateModelError.self) {
            try ReplicateModel(text)
        }
    }

    @Test func errorQuotesTheValue() {
        do {
            _ = try ReplicateModel("nonsense")
            Issue.record("accepted")
        } catch {
            #expect("\(error)".contains("'nonsense'"))
            #expect("\(error)".contains("owner/name"))
        }
    }
}
