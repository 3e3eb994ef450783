import Foundation
import ReelayTestSupport
import Testing

/// What the stand-in refuses, as Replicate does, and a setting it refuses to start with.
extension StandinTests {
    // MARK: Authentication and validation

    /// Guards: every /v1 route demands the bearer token and answers Replicate's exact 401 problem.
    @Test func missingOrWrongTokenIs401() async throws {
        try await self.withStandin("auth") { standin in
            for token in [nil, "r8_wrong"] as [String?] {
                let response = try await self.create(standin, body: ["input": Self.input], token: token)
                #expect(response.status == 401)
                #expect(response.json["title"].string == "Unauthenticated")
                #expect(response.json["detail"].string == "You did not pass a valid authentication token")
                #expect(response.json["status"].int == 401)
            }
            let list = try await sendJSON("GET", standin.apiBaseURL + "/predictions")
            #expect(list.status == 401)
            let stats = try await standin.stats()
            #expect(stats["creates"].int == 0)
        }
    }

    /// Guards: additionalProperties false, an unknown top-level field is a 422 naming the field.
    @Test func unknownFieldIs422WithInvalidFields() async throws {
        try await self.withStandin("unknown-field") { standin in
            let response = try await self.create(standin, body: ["input": Self.input, "wait": true])
            #expect(response.status == 422)
            let fields = try #require(response.json["invalid_fields"].array)
            #expect(fields.contains { $0["field"].string == "wait" })
            #expect(response.header("content-type")?.hasPrefix("application/problem+json") == true)
            #expect(try await standin.stats()["creates"].int == 0)
        }
    }

    /// Guards: the official-model endpoint takes no `version`, the way Replicate refuses it.
    @Test func versionOnModelsEndpointIs422() async throws {
        try await self.withStandin("version-on-model") { standin in
            let response = try await self.create(standin, body: ["version": Self.versionID, "input": Self.input])
            #expect(response.status == 422)
            let fields = try #require(response.json["invalid_fields"].array)
            #expect(fields.map { $0["field"].string } == ["version"])
        }
    }

    /// Guards: input must be an object holding the model's required keys (STANDIN_REQUIRED_INPUT).
    @Test func missingRequiredInputIs422() async throws {
        try await self.withStandin("required-input") { standin in
            let response = try await self.create(standin, body: ["input": ["prompt": "only a prompt"]])
            #expect(response.status == 422)
            #expect(response.json["detail"].string?.contains("image is required") == true)
            let notObject = try await self.create(standin, body: ["input": "a cat"])
            #expect(notObject.status == 422)
            let badHook = try await self.create(standin, body: ["input": Self.input, "webhook": "/relative/path"])
            #expect(badHook.status == 422)
            let badFilter = try await self.create(standin, body: ["input": Self.input, "webhook_events_filter": ["done"]])
            #expect(badFilter.status == 422)
        }
    }

    /// Guards: POST /v1/predictions demands a well-formed version and reports it back.
    @Test func versionEndpointRequiresVersion() async throws {
        try await self.withStandin("version-endpoint") { standin in
            let missing = try await self.create(standin, body: ["input": Self.input], path: "/predictions")
            #expect(missing.status == 422)
            let malformed = try await self.create(standin, body: ["version": "abc", "input": Self.input], path: "/predictions")
            #expect(malformed.status == 422)
            let created = try await self.create(
                standin, body: ["version": "someone/model:\(Self.versionID)", "input": Self.input], path: "/predictions")
            #expect(created.status == 201)
            #expect(created.json["version"].string == Self.versionID)
            #expect(created.json["model"].string == "someone/model")
        }
    }

    // MARK: Configuration

    /// Guards: a bad setting stops the stand-in at once with one line naming the variable.
    @Test func badSettingExitsNamingTheVariable() async throws {
        let folder = try BuiltProducts.testFolder("standin-bad-env")
        let process = try ManagedProcess(
            name: "standin", executable: BuiltProducts.path("replicate-standin"),
            environment: ["STANDIN_PORT": String(freePort()), "STANDIN_FAULT_CREATE_500": "150"], logFolder: folder)
        #expect(await process.waitForExit(timeout: .seconds(10)))
        #expect(process.exitCode != 0)
        #expect(process.logTail().contains("STANDIN_FAULT_CREATE_500"))
        try? FileManager.default.removeItem(atPath: folder)
    }
}
