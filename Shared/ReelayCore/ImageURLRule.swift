/// Which image URLs a submission may carry: absolute https URLs of public hosts, written one way only.
///
/// Replicate fetches the image, but Reelay must not hand it (or log, or later fetch itself) a URL that points into a private
/// network, at a cloud metadata service, or that different URL parsers read as different hosts. So the URL is parsed
/// strictly here (no backslashes, no credentials, ASCII host, port 1...65535), and an IP literal must be a public address
/// written in its one canonical form: `0x7f000001`, `2130706433`, `127.1` and `[::ffff:127.0.0.1]` are all refused.
public enum ImageURLRule {
    /// Longer image URLs are refused so a task row and its messages stay small.
    public static let maxLength = 2048

    /// Why `text` is not an acceptable image URL, as a sentence that says what to do; nil when it is acceptable.
    /// - Parameter allowLocal: the development exception: `http(s)://localhost`, `127.0.0.1` and `[::1]` pass (only these).
    public static func problem(_ text: String, allowLocal: Bool) -> String? {
        if text.isEmpty {
            return "input_image_url is required"
        }
        if text.utf8.count > Self.maxLength {
            return "input_image_url must be at most \(Self.maxLength) characters"
        }
        if text.unicodeScalars.contains(where: { $0.value == 0 }) {
            return "input_image_url must not contain U+0000 (NUL); remove it"
        }
        // Some URL parsers percent-encode spaces instead of failing, and read '\' as '/': refuse both outright.
        if text.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            return "input_image_url must not contain spaces or control characters; percent-encode them"
        }
        if text.contains("\\") {
            return "input_image_url must not contain backslashes; use '/' in the path and percent-encode anything else"
        }
        guard let url = ParsedURL(text) else {
            return "input_image_url must be an absolute https URL like https://cdn.example.com/frame.png"
        }
        if url.hasUserInfo {
            return "input_image_url must not contain credentials (user:password@); use a URL that needs none"
        }
        guard url.scheme == "https" || url.scheme == "http" else {
            return "input_image_url must be an https URL, got scheme '\(Self.clip(url.scheme))'"
        }
        if let port = url.port {
            guard port.count <= 5, port.allSatisfy(\.isASCIIDigit), let number = Int(port), (1...65535).contains(number) else {
                return "input_image_url has port '\(Self.clip(port))'; a port must be a number from 1 to 65535"
            }
        }
        if !url.rest.unicodeScalars.allSatisfy(\.isASCII) {
            return "input_image_url must be ASCII; percent-encode other characters in its path and query"
        }
        let host: Host
        switch Host.classify(url.host, bracketed: url.bracketedHost) {
        case .failure(let message):
            return "input_image_url " + message
        case .success(let classified):
            host = classified
        }
        if allowLocal && host.isLoopback {
            return nil
        }
        if let reason = host.nonPublicReason {
            return "input_image_url points to \(reason); use a public https URL that Replicate can fetch"
        }
        guard url.scheme == "https" else {
            return "input_image_url must be an https URL"
        }
        return nil
    }

    static func clip(_ text: some StringProtocol) -> String {
        text.count > 64 ? String(text.prefix(64)) + "..." : String(text)
    }
}

/// scheme://authority/rest, split without any normalisation.
struct ParsedURL {
    var scheme: String
    var hasUserInfo: Bool
    var host: String
    var bracketedHost: Bool
    var port: Substring?
    var rest: Substring

    init?(_ text: String) {
        guard let separator = text.range(of: "://") else {
            return nil
        }
        let scheme = text[..<separator.lowerBound]
        guard let first = scheme.first, first.isLetter,
            scheme.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) })
        else {
            return nil
        }
        self.scheme = scheme.lowercased()
        let afterScheme = text[separator.upperBound...]
        let authorityEnd = afterScheme.firstIndex(where: { "/?#".contains($0) }) ?? afterScheme.endIndex
        var authority = afterScheme[..<authorityEnd]
        self.rest = afterScheme[authorityEnd...]
        self.hasUserInfo = authority.contains("@")
        if let at = authority.lastIndex(of: "@") {
            authority = authority[authority.index(after: at)...]
        }
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                return nil
            }
            self.host = String(authority[authority.index(after: authority.startIndex)..<close])
            self.bracketedHost = true
            let after = authority[authority.index(after: close)...]
            if after.isEmpty {
                self.port = nil
            } else if after.hasPrefix(":") {
                self.port = after.dropFirst()
            } else {
                return nil
            }
        } else {
            self.bracketedHost = false
            if let colon = authority.firstIndex(of: ":") {
                self.host = String(authority[..<colon])
                self.port = authority[authority.index(after: colon)...]
            } else {
                self.host = String(authority)
                self.port = nil
            }
        }
        if self.host.isEmpty {
            return nil
        }
    }
}

/// A URL's host, classified: a name, or an IP address in canonical form (parsed and judged by `IPAddress`, the one
/// place Reelay decides which addresses are not public).
enum Host: Equatable {
    case name(String)
    case address(IPAddress)

    enum Classification {
        case success(Host)
        case failure(String)
    }

    /// Suffixes of names that never resolve to a public host.
    static let privateSuffixes = ["localhost", "local", "internal", "localdomain", "home.arpa", "arpa", "lan", "intranet"]

    static func classify(_ raw: String, bracketed: Bool) -> Classification {
        if bracketed {
            if raw.contains("%") {
                return .failure("must not carry an IPv6 zone (%); use a public host")
            }
            guard let address = IPAddress.parseIPv6(raw) else {
                return .failure("has '[\(ImageURLRule.clip(raw))]', which is not a valid IPv6 address")
            }
            return .success(.address(address))
        }
        if !raw.unicodeScalars.allSatisfy(\.isASCII) {
            return .failure("has a non-ASCII host; write an internationalised name in its xn-- (punycode) form")
        }
        if raw.contains("%") {
            return .failure("must not percent-encode its host; write the host name plainly")
        }
        var host = raw.lowercased()
        if host.hasSuffix(".") {
            host.removeLast()
        }
        // As browsers do (WHATWG URL): a host whose last label is a number is an IPv4 address, however it is written.
        switch IPAddress.parseIPv4(host) {
        case .malformed:
            return .failure("has host '\(ImageURLRule.clip(raw))', which is neither a host name nor an IPv4 address")
        case .address(let address):
            guard address.description == host else {
                return .failure(
                    "has the IP address '\(ImageURLRule.clip(raw))' in an unusual encoding; write an IPv4 address as four decimal "
                        + "numbers (like 93.184.215.14), or better, use the host name")
            }
            return .success(.address(address))
        case .notNumeric:
            break
        }
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        let validLabels = labels.allSatisfy { label in
            (1...63).contains(label.count) && label.first != "-" && label.last != "-"
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        }
        guard validLabels, host.count <= 253 else {
            return .failure("has host '\(ImageURLRule.clip(raw))', which is not a valid host name")
        }
        return .success(.name(host))
    }

    var isLoopback: Bool {
        switch self {
        case .name(let name): name == "localhost"
        case .address(let address): address.restriction == .loopback
        }
    }

    /// Why this host is not a public one ("a loopback address (127.0.0.1)"), or nil for a public host.
    var nonPublicReason: String? {
        switch self {
        case .name(let name):
            if let suffix = Self.privateSuffixes.first(where: { name == $0 || name.hasSuffix("." + $0) }) {
                return "'\(ImageURLRule.clip(name))', a .\(suffix) name that is not public"
            }
            if !name.contains(".") {
                return "the single-label host '\(ImageURLRule.clip(name))', which only resolves inside a private network"
            }
            return nil
        case .address(let address):
            return address.restriction.map { "\($0) (\(address.isIPv4 ? address.description : "[\(address)]"))" }
        }
    }
}

extension Character {
    var isASCIIDigit: Bool {
        self.isASCII && self.isNumber
    }
}
