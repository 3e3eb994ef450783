/// Why a `REPLICATE_MODEL` value was refused.
public struct ReplicateModelError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String

    public init(description: String) {
        self.description = description
    }
}

/// Which Replicate model Reelay runs, and which create endpoint that implies (REPLICATE.md "Calls").
public struct ReplicateModel: Sendable, Equatable {
    /// The model owner; nil for a bare version id.
    public var owner: String?
    /// The model name; nil for a bare version id.
    public var name: String?
    /// The 64-hex version id (without "owner/name:"); nil for an official model, which is created without a version.
    public var version: String?
    /// The text it was parsed from.
    public var identifier: String

    /// Parses REPLICATE_MODEL: "owner/name" (official model -> POST /models/owner/name/predictions, no version field),
    /// "owner/name:<64 hex>" or "<64 hex>" (POST /predictions with "version"). Throws a message for anything else.
    public init(_ text: String) throws {
        self.identifier = text
        let (reference, version) = Self.splitVersion(text)
        if let version {
            guard Self.isVersionID(version) else {
                throw ReplicateModelError(
                    description: "the version after ':' must be 64 hexadecimal characters, got '\(Self.clip(text))'")
            }
            self.version = String(version)
        }
        guard let reference else {
            // A bare version id.
            self.owner = nil
            self.name = nil
            return
        }
        let parts = reference.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, Self.isSegment(parts[0]), Self.isSegment(parts[1]) else {
            throw ReplicateModelError(
                description: "must be 'owner/name', 'owner/name:<64-hex version>' or a 64-hex version, got '\(Self.clip(text))'")
        }
        self.owner = String(parts[0])
        self.name = String(parts[1])
    }

    /// Whether this is an official model, created through the models endpoint without a version.
    public var isOfficial: Bool {
        self.version == nil
    }

    /// "/models/o/n/predictions" or "/predictions", relative to the API base URL.
    public var createPath: String {
        if self.version == nil, let owner = self.owner, let name = self.name {
            return "/models/\(owner)/\(name)/predictions"
        }
        return "/predictions"
    }

    /// Splits "reference:version"; a text that is itself a version id has no reference.
    private static func splitVersion(_ text: String) -> (reference: Substring?, version: Substring?) {
        if let colon = text.firstIndex(of: ":") {
            return (text[..<colon], text[text.index(after: colon)...])
        }
        if Self.isVersionID(Substring(text)) {
            return (nil, Substring(text))
        }
        return (Substring(text), nil)
    }

    private static func isVersionID(_ text: Substring) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "F"))
        }
    }

    /// Replicate owner and model names: letters, digits, '-', '_' and '.', not starting with a dot.
    private static func isSegment(_ text: Substring) -> Bool {
        guard let first = text.first, first != "." else {
            return false
        }
        return text.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "-" || scalar == "_" || scalar == ".")
        }
    }

    private static func clip(_ text: String) -> String {
        text.count > 120 ? String(text.prefix(120)) + "..." : text
    }
}
