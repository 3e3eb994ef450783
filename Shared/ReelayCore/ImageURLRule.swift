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

/// A URL's host, classified: a name, or an IP address in canonical form.
enum Host: Equatable {
    case name(String)
    case ipv4(UInt32)
    case ipv6([UInt16])

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
            guard let groups = IPv6Address.parse(raw) else {
                return .failure("has '[\(ImageURLRule.clip(raw))]', which is not a valid IPv6 address")
            }
            return .success(.ipv6(groups))
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
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        // As browsers do (WHATWG URL): a host whose last label is a number is an IPv4 address, however it is written.
        if let last = labels.last, IPv4Address.looksNumeric(last) {
            guard let address = IPv4Address.parseLenient(host) else {
                return .failure("has host '\(ImageURLRule.clip(raw))', which is neither a host name nor an IPv4 address")
            }
            guard IPv4Address.isCanonical(host) else {
                return .failure(
                    "has the IP address '\(ImageURLRule.clip(raw))' in an unusual encoding; write an IPv4 address as four decimal "
                        + "numbers (like 93.184.215.14), or better, use the host name")
            }
            return .success(.ipv4(address))
        }
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
        case .ipv4(let address): address >> 24 == 127
        case .ipv6(let groups): groups == [0, 0, 0, 0, 0, 0, 0, 1]
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
        case .ipv4(let address):
            return IPv4Address.nonPublicRange(address).map { "\($0) (\(IPv4Address.format(address)))" }
        case .ipv6(let groups):
            return IPv6Address.nonPublicRange(groups).map { "\($0) ([\(IPv6Address.format(groups))])" }
        }
    }
}

/// IPv4 parsing in every form a URL parser accepts, and the ranges that are not public.
enum IPv4Address {
    /// The last label of a host makes it an IPv4 address (WHATWG): all decimal digits, or 0x followed by hex digits.
    static func looksNumeric(_ label: Substring) -> Bool {
        if label.isEmpty {
            return false
        }
        if label.hasPrefix("0x") {
            return label.dropFirst(2).allSatisfy(\.isHexDigit)
        }
        return label.allSatisfy(\.isASCIIDigit)
    }

    /// The address as `inet_aton` and WHATWG read it: 1 to 4 parts, each decimal, 0x-hex or 0-octal, the last filling the
    /// remaining bytes (so 127.1 is 127.0.0.1 and 2130706433 is too). Nil when it is no address at all.
    static func parseLenient(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...4).contains(parts.count) else {
            return nil
        }
        var numbers: [UInt64] = []
        for part in parts {
            guard let number = Self.number(part) else {
                return nil
            }
            numbers.append(number)
        }
        var address: UInt64 = 0
        for number in numbers.dropLast() {
            guard number <= 255 else {
                return nil
            }
            address = address << 8 | number
        }
        let remainingBits = UInt64(8 * (5 - parts.count))
        guard let last = numbers.last, last < (1 << remainingBits) else {
            return nil
        }
        return UInt32(address << remainingBits | last)
    }

    private static func number(_ part: Substring) -> UInt64? {
        if part.isEmpty || part.count > 32 {
            return nil
        }
        if part.lowercased().hasPrefix("0x") {
            let digits = part.dropFirst(2)
            return digits.isEmpty ? 0 : UInt64(digits, radix: 16)
        }
        if part.count > 1 && part.hasPrefix("0") {
            return UInt64(part.dropFirst(), radix: 8)
        }
        return part.allSatisfy(\.isASCIIDigit) ? UInt64(part) : nil
    }

    /// Four decimal numbers 0...255 without leading zeros: the only spelling every parser reads alike.
    static func isCanonical(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4
            && parts.allSatisfy { part in
                !part.isEmpty && part.count <= 3 && part.allSatisfy(\.isASCIIDigit) && (part == "0" || part.first != "0")
                    && (Int(part) ?? 256) <= 255
            }
    }

    static func format(_ address: UInt32) -> String {
        [24, 16, 8, 0].map { String((address >> UInt32($0)) & 0xFF) }.joined(separator: ".")
    }

    /// (network, prefix length, what it is) for every range that is not the public internet.
    static let nonPublic: [(UInt32, Int, String)] = [
        (0x0000_0000, 8, "a 'this network' address"),
        (0x0A00_0000, 8, "a private address"),
        (0x6440_0000, 10, "a shared (carrier-grade NAT) address"),
        (0x7F00_0000, 8, "a loopback address"),
        (0xA9FE_0000, 16, "a link-local address (cloud metadata services live here)"),
        (0xAC10_0000, 12, "a private address"),
        (0xC000_0000, 24, "an IETF protocol address"),
        (0xC000_0200, 24, "a documentation address"),
        (0xC058_6300, 24, "a 6to4 relay address"),
        (0xC0A8_0000, 16, "a private address"),
        (0xC612_0000, 15, "a benchmarking address"),
        (0xC633_6400, 24, "a documentation address"),
        (0xCB00_7100, 24, "a documentation address"),
        (0xE000_0000, 4, "a multicast address"),
        (0xF000_0000, 4, "a reserved address"),
    ]

    static func nonPublicRange(_ address: UInt32) -> String? {
        Self.nonPublic.first { network, length, _ in
            let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
            return address & mask == network
        }?.2
    }
}

/// IPv6 parsing (RFC 4291 text forms) and the ranges that are not public.
enum IPv6Address {
    /// Eight 16-bit groups, or nil. Accepts '::' once and a trailing dotted IPv4 part.
    static func parse(_ text: String) -> [UInt16]? {
        guard text.count <= 45, !text.isEmpty else {
            return nil
        }
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else {
            return nil
        }
        func groups(_ part: String, allowIPv4: Bool) -> [UInt16]? {
            if part.isEmpty {
                return []
            }
            var result: [UInt16] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if allowIPv4 && index == pieces.count - 1 && piece.contains(".") {
                    guard IPv4Address.isCanonical(String(piece)), let v4 = IPv4Address.parseLenient(String(piece)) else {
                        return nil
                    }
                    result += [UInt16(v4 >> 16), UInt16(v4 & 0xFFFF)]
                } else {
                    guard (1...4).contains(piece.count), let value = UInt16(piece, radix: 16) else {
                        return nil
                    }
                    result.append(value)
                }
            }
            return result
        }
        if halves.count == 1 {
            guard let all = groups(halves[0], allowIPv4: true), all.count == 8 else {
                return nil
            }
            return all
        }
        guard let head = groups(halves[0], allowIPv4: false), let tail = groups(halves[1], allowIPv4: true),
            head.count + tail.count <= 7
        else {
            return nil
        }
        return head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
    }

    static func format(_ groups: [UInt16]) -> String {
        groups.map { String($0, radix: 16) }.joined(separator: ":")
    }

    /// Only global unicast (2000::/3) is public, less documentation and the transition ranges that embed IPv4 addresses.
    static func nonPublicRange(_ groups: [UInt16]) -> String? {
        let first = groups[0]
        if groups == [0, 0, 0, 0, 0, 0, 0, 1] {
            return "a loopback address"
        }
        if groups == [0, 0, 0, 0, 0, 0, 0, 0] {
            return "the unspecified address"
        }
        if groups[0..<5].allSatisfy({ $0 == 0 }) && groups[5] == 0xFFFF {
            return "an IPv4-mapped address"
        }
        if first & 0xFE00 == 0xFC00 {
            return "a unique local (private) address"
        }
        if first & 0xFFC0 == 0xFE80 {
            return "a link-local address"
        }
        if first & 0xFF00 == 0xFF00 {
            return "a multicast address"
        }
        if first & 0xE000 != 0x2000 {
            return "a reserved or IPv4-embedding address"
        }
        if first == 0x2001 && groups[1] == 0x0DB8 {
            return "a documentation address"
        }
        if first == 0x2001 && groups[1] == 0 {
            return "a Teredo tunnel address"
        }
        if first == 0x2002 {
            return "a 6to4 address"
        }
        return nil
    }
}

extension Character {
    var isASCIIDigit: Bool {
        self.isASCII && self.isNumber
    }
}
