/// An IPv4 or IPv6 address: parsed from a URL's host (every spelling a resolver or a URL parser would accept) or from
/// a resolver's answer, and classified against the ranges Reelay never fetches from (OutputSourcePolicy).
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 bytes (IPv6), in network order.
    public let bytes: [UInt8]

    /// nil unless `bytes` has 4 or 16 elements.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        self.bytes = [a, b, c, d]
    }

    init(ipv4 value: UInt32) {
        self.bytes = [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }

    public var isIPv4: Bool { self.bytes.count == 4 }

    /// Dotted decimal for IPv4; RFC 5952 text for IPv6 (lower-case, the longest run of zero groups as "::").
    public var description: String {
        if self.isIPv4 {
            return self.bytes.map(String.init).joined(separator: ".")
        }
        let groups = (0..<8).map { UInt16(self.bytes[2 * $0]) << 8 | UInt16(self.bytes[2 * $0 + 1]) }
        var best = (start: -1, length: 0)
        var index = 0
        while index < 8 {
            guard groups[index] == 0 else {
                index += 1
                continue
            }
            var end = index
            while end < 8 && groups[end] == 0 {
                end += 1
            }
            if end - index > best.length {
                best = (index, end - index)
            }
            index = end
        }
        let hex = groups.map { String($0, radix: 16) }
        guard best.length >= 2 else {
            return hex.joined(separator: ":")
        }
        let head = hex[..<best.start].joined(separator: ":")
        let tail = hex[(best.start + best.length)...].joined(separator: ":")
        return head + "::" + tail
    }

    // MARK: - Parsing

    /// How a URL host reads as an IPv4 literal.
    public enum IPv4Literal: Sendable, Equatable {
        /// A host name: its last label is not a number.
        case notNumeric
        /// A number-shaped host that is no valid address ("1.2.3.4.5", "256.1.1.1", "09"): never a host name either.
        case malformed
        case address(IPAddress)
    }

    /// Reads a host the way inet_aton and the WHATWG URL standard do, so every spelling of an address is caught: dotted
    /// decimal, fewer parts ("127.1" = 127.0.0.1, "2130706433"), hex ("0x7f000001", "0x7f.1") and octal
    /// ("017700000001", "0177.0.0.1") parts, one trailing dot. A host whose last label is a number is an address or
    /// malformed, never a name (as in the URL standard).
    public static func parseIPv4(_ host: String) -> IPv4Literal {
        var labels = host.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if labels.count > 1, labels.last == "" {
            labels.removeLast()
        }
        guard let last = labels.last, Self.isNumberShaped(last) else {
            return .notNumeric
        }
        guard labels.count <= 4 else { return .malformed }
        var parts: [UInt64] = []
        for label in labels {
            guard let value = Self.number(label) else { return .malformed }
            parts.append(value)
        }
        for part in parts.dropLast() where part > 255 {
            return .malformed
        }
        let lastLimit: UInt64 = 1 << (8 * UInt64(5 - parts.count))
        guard parts[parts.count - 1] < lastLimit else { return .malformed }
        var value: UInt64 = parts[parts.count - 1]
        for (index, part) in parts.dropLast().enumerated() {
            value |= part << (8 * UInt64(3 - index))
        }
        return .address(IPAddress(ipv4: UInt32(value)))
    }

    /// Parses IPv6 text (without brackets): hex groups, one "::", an optional dotted IPv4 tail. Zone ids ("%eth0") and
    /// anything else are refused (nil).
    public static func parseIPv6(_ text: String) -> IPAddress? {
        let characters = Array(text.utf8)
        guard !characters.isEmpty, characters.count <= 45,
            characters.allSatisfy({ Self.isHexDigit($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") })
        else { return nil }
        let pieces = text.components(separatedBy: "::")
        guard pieces.count <= 2 else { return nil }
        func groups(_ piece: String, allowIPv4Tail: Bool) -> [UInt8]? {
            guard !piece.isEmpty else { return [] }
            var bytes: [UInt8] = []
            let parts = piece.split(separator: ":", omittingEmptySubsequences: false)
            for (index, part) in parts.enumerated() {
                if part.contains(".") {
                    guard allowIPv4Tail, index == parts.count - 1, let tail = Self.strictDottedQuad(String(part)) else { return nil }
                    bytes += tail.bytes
                    continue
                }
                guard (1...4).contains(part.count), let value = UInt16(part, radix: 16) else { return nil }
                bytes += [UInt8(value >> 8), UInt8(value & 0xFF)]
            }
            return bytes
        }
        if pieces.count == 1 {
            guard let bytes = groups(pieces[0], allowIPv4Tail: true), bytes.count == 16 else { return nil }
            return IPAddress(bytes: bytes)
        }
        guard let head = groups(pieces[0], allowIPv4Tail: false), let tail = groups(pieces[1], allowIPv4Tail: true),
            head.count + tail.count <= 14
        else { return nil }
        return IPAddress(bytes: head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail)
    }

    /// Exactly four decimal parts of 0...255 without leading zeros (the only IPv4 form allowed inside IPv6 text).
    static func strictDottedQuad(_ text: String) -> IPAddress? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.utf8.allSatisfy({ (48...57).contains($0) }), part == "0" || !part.hasPrefix("0"),
                let value = UInt8(part)
            else { return nil }
            bytes.append(value)
        }
        return IPAddress(bytes: bytes)
    }

    /// Decimal digits, or "0x"/"0X" followed by hex digits (possibly none): what makes a label an IPv4 part.
    private static func isNumberShaped(_ label: String) -> Bool {
        let bytes = Array(label.utf8)
        guard !bytes.isEmpty else { return false }
        if bytes.count >= 2, bytes[0] == UInt8(ascii: "0"), bytes[1] | 0x20 == UInt8(ascii: "x") {
            return bytes.dropFirst(2).allSatisfy(Self.isHexDigit)
        }
        return bytes.allSatisfy { (48...57).contains($0) }
    }

    /// One IPv4 part: "0x.." hex ("0x" alone is 0), "0.." octal, else decimal; nil when invalid or above 2^32.
    private static func number(_ label: String) -> UInt64? {
        var text = Substring(label)
        var radix = 10
        if text.count >= 2, text.hasPrefix("0x") || text.hasPrefix("0X") {
            text = text.dropFirst(2)
            radix = 16
            if text.isEmpty { return 0 }
        } else if text.count >= 2, text.hasPrefix("0") {
            text = text.dropFirst()
            radix = 8
        }
        // Leading zeros cannot hide a huge value: strip them before the length check.
        let digits = text.drop { $0 == "0" }
        guard !text.isEmpty, digits.count <= 11, text.allSatisfy({ $0.isASCII && $0.isHexDigit }) else { return nil }
        guard let value = UInt64(text, radix: radix), value <= UInt64(UInt32.max) else { return nil }
        return value
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (48...57).contains(byte) || (65...70).contains(byte) || (97...102).contains(byte)
    }

    // MARK: - Classification

    /// Why an address is never fetched from.
    public enum Restriction: String, Sendable, Equatable, CustomStringConvertible {
        case unspecified = "an unspecified address"
        case loopback = "a loopback address"
        case privateNetwork = "a private network address"
        case linkLocal = "a link-local address"
        case sharedAddressSpace = "a carrier-grade NAT (shared) address"
        case metadata = "a cloud metadata address"
        case multicast = "a multicast address"
        case broadcast = "the broadcast address"
        case reserved = "a reserved address"
        case documentation = "a documentation address"

        public var description: String { self.rawValue }
    }

    /// The restriction this address falls under; nil for a public unicast address. IPv6 forms that carry an IPv4
    /// address (IPv4-mapped, NAT64, 6to4) are judged by that IPv4 address; IPv4-compatible and Teredo are reserved.
    public var restriction: Restriction? {
        if self.isIPv4 {
            return Self.restriction(ipv4: self.ipv4Value)
        }
        return self.ipv6Restriction
    }

    private var ipv4Value: UInt32 {
        self.bytes.prefix(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    private static let metadataIPv4: Set<UInt32> = [
        0xA9FE_A9FE,  // 169.254.169.254 (AWS, GCP, Azure, OpenStack...)
        0xA9FE_AA02,  // 169.254.170.2 (AWS ECS task metadata)
        0x6464_64C8,  // 100.100.100.200 (Alibaba Cloud)
        0xC000_00C0,  // 192.0.0.192 (Oracle Cloud)
    ]

    private static let ipv4Ranges: [(base: UInt32, bits: UInt32, restriction: Restriction)] = [
        (0x0000_0000, 8, .unspecified),  // 0.0.0.0/8 "this network"
        (0x0A00_0000, 8, .privateNetwork),  // 10/8
        (0x6440_0000, 10, .sharedAddressSpace),  // 100.64/10
        (0x7F00_0000, 8, .loopback),  // 127/8
        (0xA9FE_0000, 16, .linkLocal),  // 169.254/16
        (0xAC10_0000, 12, .privateNetwork),  // 172.16/12
        (0xC000_0000, 24, .reserved),  // 192.0.0/24 IETF protocol assignments
        (0xC000_0200, 24, .documentation),  // 192.0.2/24
        (0xC058_6300, 24, .reserved),  // 192.88.99/24 6to4 relay anycast
        (0xC0A8_0000, 16, .privateNetwork),  // 192.168/16
        (0xC612_0000, 15, .reserved),  // 198.18/15 benchmarking
        (0xC633_6400, 24, .documentation),  // 198.51.100/24
        (0xCB00_7100, 24, .documentation),  // 203.0.113/24
        (0xE000_0000, 4, .multicast),  // 224/4
        (0xF000_0000, 4, .reserved),  // 240/4 (255.255.255.255 is checked first)
    ]

    static func restriction(ipv4 value: UInt32) -> Restriction? {
        if value == 0xFFFF_FFFF { return .broadcast }
        if Self.metadataIPv4.contains(value) { return .metadata }
        for range in Self.ipv4Ranges {
            let mask: UInt32 = range.bits == 0 ? 0 : ~UInt32(0) << (32 - range.bits)
            if value & mask == range.base { return range.restriction }
        }
        return nil
    }

    private var ipv6Restriction: Restriction? {
        let b = self.bytes
        let embedded = UInt32(b[12]) << 24 | UInt32(b[13]) << 16 | UInt32(b[14]) << 8 | UInt32(b[15])
        let firstTen = b[0..<10].allSatisfy { $0 == 0 }
        if firstTen && b[10] == 0 && b[11] == 0 {
            // ::, ::1, and the deprecated IPv4-compatible ::a.b.c.d.
            if embedded == 0 { return .unspecified }
            if embedded == 1 { return .loopback }
            return .reserved
        }
        if firstTen && b[10] == 0xFF && b[11] == 0xFF {
            // ::ffff:a.b.c.d, IPv4-mapped: the IPv4 address is where the packets go.
            return Self.restriction(ipv4: embedded)
        }
        if b[0..<8].allSatisfy({ $0 == 0 }) && b[8] == 0xFF && b[9] == 0xFF && b[10] == 0 && b[11] == 0 {
            // ::ffff:0:a.b.c.d, IPv4-translated (SIIT).
            return Self.restriction(ipv4: embedded)
        }
        if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xFF && b[3] == 0x9B {
            // 64:ff9b::/96 NAT64 carries an IPv4 address; 64:ff9b:1::/48 is local-use NAT64.
            if b[4..<12].allSatisfy({ $0 == 0 }) { return Self.restriction(ipv4: embedded) }
            if b[4] == 0 && b[5] == 1 { return .privateNetwork }
            return .reserved
        }
        if b[0] == 0x01 && b[1] == 0x00 && b[2..<8].allSatisfy({ $0 == 0 }) { return .reserved }  // 100::/64 discard
        if b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0 { return .reserved }  // 2001::/32 Teredo
        if b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0D && b[3] == 0xB8 { return .documentation }  // 2001:db8::/32
        if b[0] == 0x3F && b[1] == 0xFF && b[2] & 0xF0 == 0 { return .documentation }  // 3fff::/20
        if b[0] == 0x20 && b[1] == 0x02 {
            // 2002::/16 6to4: the next 32 bits are the IPv4 address of the relay the packets go to.
            return Self.restriction(ipv4: UInt32(b[2]) << 24 | UInt32(b[3]) << 16 | UInt32(b[4]) << 8 | UInt32(b[5]))
        }
        if self == Self.awsMetadataIPv6 { return .metadata }
        if b[0] & 0xFE == 0xFC { return .privateNetwork }  // fc00::/7 unique local
        if b[0] == 0xFE && b[1] & 0xC0 == 0x80 { return .linkLocal }  // fe80::/10
        if b[0] == 0xFE && b[1] & 0xC0 == 0xC0 { return .privateNetwork }  // fec0::/10 site-local (deprecated)
        if b[0] == 0xFF { return .multicast }  // ff00::/8
        if b[0] & 0xE0 != 0x20 { return .reserved }  // outside 2000::/3, the only global unicast space assigned
        return nil
    }

    /// fd00:ec2::254, the AWS instance metadata service over IPv6.
    static let awsMetadataIPv6 = IPAddress(bytes: [0xFD, 0, 0x0E, 0xC2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54])!
}
