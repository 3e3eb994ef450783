import ReelayConfig
import ReelayCore
import Testing

@Suite("Output configuration")
struct OutputConfigurationTests {
    @Test func defaults() throws {
        let config = try ReelayConfiguration.load(from: [:])
        #expect(config.outputSources.hostSuffixes == ["replicate.delivery"])
        #expect(config.outputSources.trustedOrigins.isEmpty)
        #expect(config.outputMaxBytes == 512 * 1024 * 1024)
        #expect(config.redactedSummary["OUTPUT_ALLOWED_HOST_SUFFIXES"] == "replicate.delivery")
        #expect(config.redactedSummary["OUTPUT_TRUSTED_ORIGINS"] == "")
        #expect(config.redactedSummary["OUTPUT_MAX_BYTES"] == "536870912")
    }

    @Test func explicitValues() throws {
        let config = try ReelayConfiguration.load(from: [
            "OUTPUT_ALLOWED_HOST_SUFFIXES": " replicate.delivery, CDN.Example.com ,",
            "OUTPUT_TRUSTED_ORIGINS": "http://127.0.0.1:8090, https://files.internal",
            "OUTPUT_MAX_BYTES": "1048576",
        ])
        #expect(config.outputSources.hostSuffixes == ["replicate.delivery", "cdn.example.com"])
        #expect(config.outputSources.trustedOrigins.map(\.description) == ["http://127.0.0.1:8090", "https://files.internal:443"])
        #expect(config.outputMaxBytes == 1_048_576)
        #expect(try config.outputSources.check("http://127.0.0.1:8090/files/a.mp4").isTrusted)
        #expect(config.description.contains("OUTPUT_TRUSTED_ORIGINS=http://127.0.0.1:8090,https://files.internal:443"))
    }

    @Test(arguments: [
        ("OUTPUT_ALLOWED_HOST_SUFFIXES", "127.0.0.1"), ("OUTPUT_ALLOWED_HOST_SUFFIXES", "*.replicate.delivery"),
        ("OUTPUT_ALLOWED_HOST_SUFFIXES", ".replicate.delivery"), ("OUTPUT_ALLOWED_HOST_SUFFIXES", "https://replicate.delivery"),
        ("OUTPUT_TRUSTED_ORIGINS", "127.0.0.1:8090"), ("OUTPUT_TRUSTED_ORIGINS", "http://127.0.0.1:8090/files"),
        ("OUTPUT_TRUSTED_ORIGINS", "http://u:p@127.0.0.1:8090"), ("OUTPUT_MAX_BYTES", "0"), ("OUTPUT_MAX_BYTES", "lots"),
    ])
    func invalidValuesNameTheirVariable(variable: String, value: String) {
        do {
            _ = try ReelayConfiguration.load(from: [variable: value])
            Issue.record("\(variable)=\(value) was accepted")
        } catch {
            #expect(error.variable == variable)
            #expect(error.description.hasPrefix("REELAY config: \(variable) "), "\(error.description)")
        }
    }
}
