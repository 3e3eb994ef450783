/// A URL's host: a DNS name (lower-case ASCII, no trailing dot) or an IP address literal.
public enum URLHost: Sendable, Hashable, CustomStringConvertible {
    case name(String)
    case address(IPAddress)

    /// As written in a URL: the name, dotted IPv4, or bracketed IPv6.
    public var description: String {
        switch self {
        case .name(let name): name
        case .address(let address): address.isIPv4 ? address.description : "[\(address)]"
        }
    }
}

/// An absolute http(s) URL taken apart by the strict rules of `OutputSourcePolicy` (no credentials, ASCII only, a valid
/// port), with its host in canonical form.
public struct OutputURL: Sendable, Hashable {
    /// "http" or "https".
    public var scheme: String
    public var host: URLHost
    /// The effective port (443/80 when the URL names none).
    public var port: Int
    /// Path and query as written ("/" when empty); the fragment is dropped (it is never sent).
    public var pathAndQuery: String

    /// scheme://host[:port]/path?query with the canonical host: what is handed to curl, so curl and this rule agree on
    /// the host it connects to.
    public var normalized: String {
        "\(self.origin)\(self.pathAndQuery)"
    }

    /// scheme://host[:port], the port only when not the scheme's default: safe to log and to show a user (paths and
    /// queries of output URLs carry signatures).
    public var origin: String {
        let defaultPort = self.scheme == "https" ? 443 : 80
        return "\(self.scheme)://\(self.host)" + (self.port == defaultPort ? "" : ":\(self.port)")
    }

    /// Parses `text`; throws what is wrong with it.
    public init(_ text: String) throws(OutputRefusal) {
        guard !text.isEmpty, text.utf8.count <= 8192 else {
            throw OutputRefusal(.malformed, "the output URL is empty or longer than 8192 bytes")
        }
        // No control characters, spaces or backslashes anywhere (parsers disagree about them); ASCII only.
        if let bad = text.unicodeScalars.first(where: { !$0.isASCII || $0.value <= 0x20 || $0.value == 0x7F || $0 == "\\" }) {
            let what = bad.isASCII ? "a space, control character or backslash" : "a character that is not ASCII"
            throw OutputRefusal(.malformed, "the output URL contains \(what) (U+\(String(bad.value, radix: 16, uppercase: true)))")
        }
        guard let schemeEnd = text.range(of: "://") else {
            throw OutputRefusal(.malformed, "the output is not an absolute URL (scheme://host/path)")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "https" || scheme == "http" else {
            throw OutputRefusal(.scheme, "the output URL's scheme is '\(OutputRefusal.clip(scheme))'; outputs are fetched only over https")
        }
        let rest = text[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var tail = String(rest[authorityEnd...])
        if let fragment = tail.firstIndex(of: "#") {
            tail = String(tail[..<fragment])
        }
        if tail.isEmpty || tail.hasPrefix("?") {
            tail = "/" + tail
        }
        guard !authority.contains("@") else {
            throw OutputRefusal(.credentials, "the output URL carries credentials (user@host); output URLs never do")
        }
        let hostText: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw OutputRefusal(.malformed, "the output URL's IPv6 host has no closing bracket")
            }
            hostText = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else {
                    throw OutputRefusal(.malformed, "the output URL has text after its IPv6 host")
                }
                portText = after.dropFirst()
            }
        } else if let colon = authority.firstIndex(of: ":") {
            hostText = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            hostText = authority
        }
        let defaultPort = scheme == "https" ? 443 : 80
        var port = defaultPort
        if let portText {
            guard (1...5).contains(portText.count), portText.utf8.allSatisfy({ (48...57).contains($0) }), let value = Int(portText),
                (1...65535).contains(value)
            else {
                throw OutputRefusal(.port, "the output URL's port '\(OutputRefusal.clip(String(portText)))' is not a port (1 to 65535)")
            }
            port = value
        }
        self.scheme = scheme
        self.host = try Self.host(hostText, bracketed: authority.hasPrefix("["))
        self.port = port
        self.pathAndQuery = tail
    }

    /// The canonical host: IPv6 inside brackets, every IPv4 spelling, else a DNS name of letters, digits, '-' and '_'.
    private static func host(_ text: Substring, bracketed: Bool) throws(OutputRefusal) -> URLHost {
        guard !text.isEmpty else {
            throw OutputRefusal(.malformed, "the output URL has no host")
        }
        if bracketed {
            guard let address = IPAddress.parseIPv6(String(text)) else {
                throw OutputRefusal(.malformed, "the output URL's host [\(OutputRefusal.clip(String(text)))] is not an IPv6 address")
            }
            return .address(address)
        }
        let lowered = text.lowercased()
        switch IPAddress.parseIPv4(lowered) {
        case .address(let address):
            return .address(address)
        case .malformed:
            throw OutputRefusal(.malformed, "the output URL's host '\(OutputRefusal.clip(lowered))' is a malformed IP address")
        case .notNumeric:
            break
        }
        var name = lowered
        if name.hasSuffix(".") {
            name.removeLast()
        }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        let valid =
            name.utf8.count <= 253
            && labels.allSatisfy { label in
                (1...63).contains(label.utf8.count) && label.first != "-" && label.last != "-"
                    && label.utf8.allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == 45 || $0 == 95 }
            }
        guard valid else {
            throw OutputRefusal(.malformed, "the output URL's host '\(OutputRefusal.clip(lowered))' is not a valid host name")
        }
        return .name(name)
    }
}

/// An origin trusted by configuration (OUTPUT_TRUSTED_ORIGINS): exactly one scheme, host and port.
public struct TrustedOrigin: Sendable, Hashable, CustomStringConvertible {
    public var scheme: String
    public var host: URLHost
    public var port: Int

    /// Parses "scheme://host[:port]" (nothing after the authority but an optional "/").
    public init(_ text: String) throws(OutputRefusal) {
        let url = try OutputURL(text)
        guard url.pathAndQuery == "/", !text.contains("?"), !text.contains("#") else {
            throw OutputRefusal(.malformed, "a trusted origin is scheme://host[:port] without a path, got '\(OutputRefusal.clip(text))'")
        }
        self.scheme = url.scheme
        self.host = url.host
        self.port = url.port
    }

    public func matches(_ url: OutputURL) -> Bool {
        url.scheme == self.scheme && url.host == self.host && url.port == self.port
    }

    public var description: String { "\(self.scheme)://\(self.host):\(self.port)" }
}

/// Where a prediction's output may be fetched from, checked before any connection and again on every redirect hop:
/// https only, from hosts under the allowed suffixes (replicate.delivery and its subdomains by default), whose every
/// resolved address is public. Origins trusted by configuration (the local stand-in) are exempt from the scheme and
/// address rules; nothing else is.
public struct OutputSourcePolicy: Sendable, Equatable {
    public static let defaultHostSuffixes = ["replicate.delivery"]

    /// Lower-case DNS names; a host matches one when it equals it or ends with "." + it.
    public var hostSuffixes: [String]
    public var trustedOrigins: [TrustedOrigin]

    public init(hostSuffixes: [String] = Self.defaultHostSuffixes, trustedOrigins: [TrustedOrigin] = []) {
        self.hostSuffixes = hostSuffixes.map { $0.lowercased() }
        self.trustedOrigins = trustedOrigins
    }

    /// A URL that passed `check`: what to connect to, and whether its host's addresses must still be checked.
    public struct Source: Sendable, Equatable {
        public var url: OutputURL
        /// A configured trusted origin: no address check, no pinning, its own scheme.
        public var isTrusted: Bool

        /// The host name to resolve, check and pin; nil for a trusted origin (exempt).
        public var nameToResolve: String? {
            guard !self.isTrusted, case .name(let name) = self.url.host else { return nil }
            return name
        }
    }

    /// Checks a URL (the output, or a redirect's target) before anything connects to it.
    public func check(_ text: String) throws(OutputRefusal) -> Source {
        let url = try OutputURL(text)
        if self.trustedOrigins.contains(where: { $0.matches(url) }) {
            return Source(url: url, isTrusted: true)
        }
        guard url.scheme == "https" else {
            throw OutputRefusal(.scheme, "the output URL \(url.origin) uses http; outputs are fetched only over https")
        }
        switch url.host {
        case .address(let address):
            if let restriction = address.restriction {
                throw OutputRefusal(.address, "the output URL names \(address), \(restriction); it is never fetched")
            }
            throw OutputRefusal(.host, "the output URL names the IP address \(address) instead of \(self.allowedHostsText)")
        case .name(let name):
            guard self.allows(name) else {
                throw OutputRefusal(.host, "the output host \(name) is not allowed; outputs come only from \(self.allowedHostsText)")
            }
        }
        return Source(url: url, isTrusted: false)
    }

    /// Checks every address a source's host resolved to: one restricted address refuses the source (a resolver may
    /// hand out any of them). A trusted origin is exempt.
    public func check(resolved addresses: [IPAddress], for source: Source) throws(OutputRefusal) {
        guard !source.isTrusted else { return }
        for address in addresses {
            if let restriction = address.restriction {
                throw OutputRefusal(.address, "the output host \(source.url.host) resolves to \(address), \(restriction); it is never fetched")
            }
        }
    }

    /// Whether `name` is an allowed suffix or a subdomain of one.
    public func allows(_ name: String) -> Bool {
        let name = name.lowercased()
        return self.hostSuffixes.contains { suffix in name == suffix || name.hasSuffix("." + suffix) }
    }

    private var allowedHostsText: String {
        let names = self.hostSuffixes.isEmpty ? ["(no host is allowed)"] : self.hostSuffixes
        return names.joined(separator: ", ") + " and their subdomains"
    }

    /// Checks a configured suffix: a DNS name with at least one letter (never an IP address or a bare number).
    public static func validSuffix(_ text: String) -> Bool {
        guard let url = try? OutputURL("https://\(text)/"), case .name(let name) = url.host, name == text.lowercased() else {
            return false
        }
        return name.utf8.contains { (97...122).contains($0) }
    }
}

/// A download Reelay refuses, whatever the network does: the URL or an address it resolved to breaks
/// `OutputSourcePolicy`, the body is too large, or it is not a video. Final: retrying gives the same answer.
/// `description` says what was wrong in words a user can act on; it never contains a URL's path or query.
public struct OutputRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: String, Sendable, Equatable {
        case malformed, scheme, credentials, port, host, address, redirect, tooLarge, notVideo
    }

    public var reason: Reason
    public var description: String

    public init(_ reason: Reason, _ description: String) {
        self.reason = reason
        self.description = description
    }

    /// The task's error message: what was refused, that nothing was kept, and what the user can do.
    public var taskMessage: String {
        let advice: String
        switch self.reason {
        case .tooLarge:
            advice = "ask for a shorter or lower-resolution video and submit the task again"
        case .notVideo:
            advice = "the model did not return a video; submit the task again, with other inputs if it repeats"
        default:
            advice = "submit the task again, and report it if it repeats (Reelay fetches outputs only from Replicate's file hosts)"
        }
        return "The output could not be stored: \(self.description). Nothing was kept; \(advice)."
    }

    /// The body exceeded `limit` bytes.
    public static func tooLarge(limit: Int64) -> OutputRefusal {
        OutputRefusal(.tooLarge, "the output is larger than the \(Self.size(limit)) limit for one video")
    }

    /// A redirect to a refused target: the refusal, said about the redirect.
    public static func redirect(from origin: String, _ refusal: OutputRefusal) -> OutputRefusal {
        OutputRefusal(refusal.reason, "the output URL \(origin) redirected elsewhere, and \(refusal.description)")
    }

    /// "512 MiB", "1.5 KiB", "100 bytes".
    static func size(_ bytes: Int64) -> String {
        let units: [(Int64, String)] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (unit, name) in units where bytes >= unit {
            let value = Double(bytes) / Double(unit)
            let text = value == value.rounded() ? String(Int64(value)) : String((value * 10).rounded() / 10)
            return "\(text) \(name)"
        }
        return "\(bytes) bytes"
    }

    static func clip(_ text: String) -> String {
        text.count > 80 ? String(text.prefix(80)) + "..." : text
    }
}
