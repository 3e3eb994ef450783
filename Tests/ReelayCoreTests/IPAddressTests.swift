import ReelayCore
import Testing

@Suite("IP addresses")
struct IPAddressTests {
    // MARK: IPv4 spellings

    /// Invariant: every spelling inet_aton or a URL parser turns into 127.0.0.1 is read as 127.0.0.1, so no spelling
    /// slips past the loopback rule.
    @Test(arguments: [
        "127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0X7F000001", "017700000001", "0177.0.0.1", "0x7f.0.0.1",
        "0x7f.1", "127.0.0.1.", "0177.1", "0x7F.0x0.0x0.0x1", "00000000000000000177.0.0.1",
    ])
    func loopbackSpellings(host: String) {
        #expect(IPAddress.parseIPv4(host) == .address(IPAddress(127, 0, 0, 1)), "\(host)")
    }

    @Test func otherSpellings() {
        #expect(IPAddress.parseIPv4("0") == .address(IPAddress(0, 0, 0, 0)))
        #expect(IPAddress.parseIPv4("0x") == .address(IPAddress(0, 0, 0, 0)))
        #expect(IPAddress.parseIPv4("10.1") == .address(IPAddress(10, 0, 0, 1)))
        #expect(IPAddress.parseIPv4("169.254.43518") == .address(IPAddress(169, 254, 169, 254)))
        #expect(IPAddress.parseIPv4("2852039166") == .address(IPAddress(169, 254, 169, 254)))
        #expect(IPAddress.parseIPv4("0xa9fea9fe") == .address(IPAddress(169, 254, 169, 254)))
        #expect(IPAddress.parseIPv4("4294967295") == .address(IPAddress(255, 255, 255, 255)))
        #expect(IPAddress.parseIPv4("8.8.8.8") == .address(IPAddress(8, 8, 8, 8)))
    }

    /// A host whose last label is a number is an address or malformed, never a name that might pass the allowlist.
    @Test(arguments: [
        "256.0.0.1", "1.2.3.4.5", "4294967296", "0x100000000", "1.2.3.256", "1.2.65536", "09", "0189.0.0.1", "1..1", "0x1g.1",
        "99999999999999999999", "replicate.delivery.1", "a.0x10",
    ])
    func malformedNumbers(host: String) {
        #expect(IPAddress.parseIPv4(host) == .malformed, "\(host)")
    }

    @Test(arguments: ["replicate.delivery", "localhost", "1.2.3.example", "0x7f000001.example", "abc", "1a", "a1", "0xz"])
    func namesAreNotNumbers(host: String) {
        #expect(IPAddress.parseIPv4(host) == .notNumeric, "\(host)")
    }

    // MARK: IPv6

    @Test func ipv6Forms() throws {
        #expect(IPAddress.parseIPv6("::1")?.description == "::1")
        #expect(IPAddress.parseIPv6("::")?.description == "::")
        #expect(IPAddress.parseIPv6("0:0:0:0:0:0:0:1")?.description == "::1")
        #expect(IPAddress.parseIPv6("2001:DB8::1")?.description == "2001:db8::1")
        #expect(IPAddress.parseIPv6("::ffff:127.0.0.1")?.description == "::ffff:7f00:1")
        #expect(IPAddress.parseIPv6("::ffff:7f00:1") == IPAddress.parseIPv6("::ffff:127.0.0.1"))
        #expect(IPAddress.parseIPv6("fe80::1:2:3:4")?.bytes.count == 16)
        #expect(IPAddress.parseIPv6("1:2:3:4:5:6:7:8")?.description == "1:2:3:4:5:6:7:8")
        #expect(IPAddress.parseIPv6("1:0:0:2:0:0:0:3")?.description == "1:0:0:2::3")
        #expect(IPAddress.parseIPv6("fd00:ec2::254")?.description == "fd00:ec2::254")
    }

    @Test(arguments: [
        "", ":", ":::", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", "fe80::1%eth0", "fe80::1%25eth0", "::ffff:127.1",
        "::ffff:0127.0.0.1", "::ffff:127.0.0.256", "1.2.3.4::", "g::1", ":1:2:3:4:5:6:7", "1:2:3:4:5:6:7:",
        "1:2:3:4:5:6:7:8::",
    ])
    func invalidIPv6(text: String) {
        #expect(IPAddress.parseIPv6(text) == nil, "\(text)")
    }

    // MARK: Classification

    /// Invariant: no address a download could be pointed at inside the network is treated as public.
    @Test(arguments: [
        ("0.0.0.0", IPAddress.Restriction.unspecified), ("0.1.2.3", .unspecified), ("10.0.0.1", .privateNetwork),
        ("10.255.255.255", .privateNetwork), ("100.64.0.1", .sharedAddressSpace), ("100.127.255.254", .sharedAddressSpace),
        ("127.0.0.1", .loopback), ("127.255.255.254", .loopback), ("169.254.0.1", .linkLocal), ("169.254.169.254", .metadata),
        ("169.254.170.2", .metadata), ("100.100.100.200", .metadata), ("192.0.0.192", .metadata), ("172.16.0.1", .privateNetwork),
        ("172.31.255.255", .privateNetwork), ("192.0.0.8", .reserved), ("192.0.2.1", .documentation), ("192.168.1.1", .privateNetwork),
        ("198.18.0.1", .reserved), ("198.19.255.255", .reserved), ("198.51.100.7", .documentation), ("203.0.113.9", .documentation),
        ("224.0.0.1", .multicast), ("239.255.255.250", .multicast), ("240.0.0.1", .reserved), ("255.255.255.255", .broadcast),
        ("192.88.99.1", .reserved),
    ])
    func restrictedIPv4(text: String, restriction: IPAddress.Restriction) throws {
        guard case .address(let address) = IPAddress.parseIPv4(text) else {
            Issue.record("\(text) did not parse")
            return
        }
        #expect(address.restriction == restriction, "\(text)")
    }

    @Test(arguments: [
        "8.8.8.8", "1.1.1.1", "34.120.1.1", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0", "169.253.255.255",
        "169.255.0.0", "192.167.255.255", "192.169.0.0", "198.17.255.255", "198.20.0.0", "223.255.255.255", "11.0.0.0", "126.255.255.255",
        "128.0.0.0",
    ])
    func publicIPv4(text: String) {
        guard case .address(let address) = IPAddress.parseIPv4(text) else {
            Issue.record("\(text) did not parse")
            return
        }
        #expect(address.restriction == nil, "\(text)")
    }

    @Test(arguments: [
        ("::", IPAddress.Restriction.unspecified), ("::1", .loopback), ("::ffff:127.0.0.1", .loopback), ("::ffff:10.1.2.3", .privateNetwork),
        ("::ffff:169.254.169.254", .metadata), ("::ffff:0:127.0.0.1", .loopback), ("::127.0.0.1", .reserved), ("::8.8.8.8", .reserved),
        ("64:ff9b::127.0.0.1", .loopback), ("64:ff9b::a9fe:a9fe", .metadata), ("64:ff9b:1::1", .privateNetwork),
        ("2002:7f00:1::", .loopback), ("2002:c0a8:101::1", .privateNetwork), ("2001::1", .reserved), ("2001:db8::1", .documentation),
        ("3fff::1", .documentation), ("100::1", .reserved), ("fc00::1", .privateNetwork), ("fd12:3456::1", .privateNetwork),
        ("fd00:ec2::254", .metadata), ("fe80::1", .linkLocal), ("febf::1", .linkLocal), ("fec0::1", .privateNetwork),
        ("ff02::1", .multicast), ("ff05::1:3", .multicast),
    ])
    func restrictedIPv6(text: String, restriction: IPAddress.Restriction) throws {
        let address = try #require(IPAddress.parseIPv6(text), "\(text)")
        #expect(address.restriction == restriction, "\(text)")
    }

    @Test(arguments: ["2606:4700:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "2001:4860::1"])
    func publicIPv6(text: String) throws {
        let address = try #require(IPAddress.parseIPv6(text), "\(text)")
        #expect(address.restriction == nil, "\(text)")
    }

    @Test func bytesAndDescription() {
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
        #expect(IPAddress(bytes: [1, 2, 3, 4])?.description == "1.2.3.4")
        #expect(IPAddress(bytes: [UInt8](repeating: 0, count: 16))?.description == "::")
        #expect(IPAddress(bytes: [0, 1] + [UInt8](repeating: 0, count: 12) + [0, 1])?.description == "1::1")
    }
}
