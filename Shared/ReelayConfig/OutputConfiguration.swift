import ReelayCore

/// Where outputs may be downloaded from, and how large they may be (OUTPUT_* variables; OutputSourcePolicy).
extension ReelayConfiguration {
    /// OUTPUT_MAX_BYTES default: 512 MiB, far above a generated clip (a few MiB to tens of MiB).
    public static let defaultOutputMaxBytes: Int64 = 512 << 20

    /// Reads OUTPUT_ALLOWED_HOST_SUFFIXES, OUTPUT_TRUSTED_ORIGINS and OUTPUT_MAX_BYTES.
    static func parseOutputSettings(_ reader: EnvironmentReader) throws(ConfigurationError) -> (OutputSourcePolicy, Int64) {
        let suffixText = reader.string("OUTPUT_ALLOWED_HOST_SUFFIXES") ?? OutputSourcePolicy.defaultHostSuffixes.joined(separator: ",")
        var suffixes: [String] = []
        for item in suffixText.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            guard OutputSourcePolicy.validSuffix(item) else {
                throw ConfigurationError(
                    variable: "OUTPUT_ALLOWED_HOST_SUFFIXES",
                    problem: "must be a comma-separated list of host names (e.g. replicate.delivery; subdomains are included), "
                        + "got '\(EnvironmentReader.clip(item))'")
            }
            suffixes.append(item.lowercased())
        }
        var origins: [TrustedOrigin] = []
        for item in (reader.string("OUTPUT_TRUSTED_ORIGINS") ?? "").split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) })
        where !item.isEmpty {
            do {
                origins.append(try TrustedOrigin(item))
            } catch {
                throw ConfigurationError(
                    variable: "OUTPUT_TRUSTED_ORIGINS",
                    problem: "must be a comma-separated list of scheme://host:port origins (e.g. http://127.0.0.1:8090), "
                        + "got '\(EnvironmentReader.clip(item))': \(error)")
            }
        }
        let maxBytes = try reader.integer("OUTPUT_MAX_BYTES", default: Int(Self.defaultOutputMaxBytes), minimum: 1024)
        return (OutputSourcePolicy(hostSuffixes: suffixes, trustedOrigins: origins), Int64(maxBytes))
    }
}
