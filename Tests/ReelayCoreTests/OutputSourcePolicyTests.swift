import ReelayCore
import Testing

@Suite("Output source policy")
struct OutputSourcePolicyTests {
    static let standin = try! TrustedOrigin("http://127.0.0.1:8090")
    static let policy = OutputSourcePolicy(trustedOrigins: [Self.standin])

    static func refusal(_ url: String, policy: OutputSourcePolicy = Self.policy) -> OutputRefusal? {
        do {
            _ = try policy.check(url)
            return nil
        } catch {
            return error
        }
    }

    // MARK: Allowed

    @Test(arguments: [
        "https://replicate.delivery/xezq/abc/output.mp4", "https://pbxt.replicate.delivery/abc/out.mp4",
        "https://a.b.replicate.delivery/x.mp4?sig=1#frag", "https://REPLICATE.DELIVERY/x.mp4", "https://replicate.delivery:443/x.mp4",
        "https://replicate.delivery./x.mp4", "https://replicate.delivery", "https://replicate.delivery:8443/x.mp4",
    ])
    func replicateDeliveryIsAllowed(url: String) throws {
        let source = try Self.policy.check(url)
        #expect(!source.isTrusted)
        #expect(source.url.scheme == "https")
        #expect(source.nameToResolve?.hasSuffix("replicate.delivery") == true, "the host is resolved, checked and pinned")
    }

    @Test func normalizedFormIsWhatCurlGets() throws {
        let source = try Self.policy.check("HTTPS://Pbxt.Replicate.Delivery:443/a/B.mp4?X=1#frag")
        #expect(source.url.normalized == "https://pbxt.replicate.delivery/a/B.mp4?X=1")
        #expect(source.url.origin == "https://pbxt.replicate.delivery")
        #expect(source.url.port == 443)
        let other = try Self.policy.check("https://replicate.delivery:8443?a=b")
        #expect(other.url.normalized == "https://replicate.delivery:8443/?a=b")
        #expect(other.url.port == 8443)
    }

    /// A trusted origin (exact scheme, host and port) is exempt from the https and address rules, and is not resolved.
    @Test func trustedOriginIsExempt() throws {
        let source = try Self.policy.check("http://127.0.0.1:8090/files/abc.mp4")
        #expect(source.isTrusted)
        #expect(source.nameToResolve == nil)
        #expect(source.url.normalized == "http://127.0.0.1:8090/files/abc.mp4")
        try Self.policy.check(resolved: [IPAddress(127, 0, 0, 1)], for: source)
    }

    /// Invariant: trust is for the exact origin only: another port, scheme or spelling of another host is not trusted.
    @Test(arguments: [
        "http://127.0.0.1:8091/files/a.mp4", "https://127.0.0.1:8090/files/a.mp4", "http://localhost:8090/files/a.mp4",
        "http://127.0.0.1/files/a.mp4", "http://127.0.0.2:8090/x",
    ])
    func trustIsExact(url: String) {
        #expect(Self.refusal(url) != nil, "\(url)")
    }

    @Test func trustedOriginSpellingsOfTheSameAddressMatch() throws {
        // The policy compares canonical hosts: 127.1 is 127.0.0.1. Only the configured origin itself is trusted.
        #expect(try Self.policy.check("http://127.1:8090/x").isTrusted)
        let ipv6 = OutputSourcePolicy(trustedOrigins: [try TrustedOrigin("http://[::1]:9000")])
        #expect(try ipv6.check("http://[0:0::1]:9000/x").isTrusted)
    }

    // MARK: Refused before any connection

    @Test(arguments: [
        ("http://replicate.delivery/x.mp4", OutputRefusal.Reason.scheme), ("ftp://replicate.delivery/x.mp4", .scheme),
        ("file:///etc/passwd", .scheme), ("gopher://replicate.delivery/", .scheme), ("dict://replicate.delivery:11211/", .scheme),
        ("https://evil.com/x.mp4", .host), ("https://replicate.delivery.evil.com/x.mp4", .host), ("https://evilreplicate.delivery/x", .host),
        ("https://replicate.deliveryx/x", .host), ("https://delivery/x", .host), ("https://localhost/x", .host),
        ("https://user:pass@replicate.delivery/x", .credentials), ("https://replicate.delivery@evil.com/x", .credentials),
        ("https://evil.com#@replicate.delivery/x", .host), ("https://evil.com?@replicate.delivery/x", .host),
        ("https://replicate.delivery:99999/x", .port), ("https://replicate.delivery:0/x", .port), ("https://replicate.delivery:-1/x", .port),
        ("https://replicate.delivery:/x", .port), ("https://replicate.delivery:443abc/x", .port), ("https://replicate.delivery:+443/x", .port),
        ("https://replicate.delivery\\@evil.com/", .malformed), ("https://replicate.delivery /x", .malformed),
        ("https://replicate.delivery\t/x", .malformed), ("https://rеplicate.delivery/x", .malformed),
        ("https://ä.replicate.delivery/", .malformed), ("https://replicate.delivery/ü.mp4", .malformed), ("https:///x", .malformed),
        ("https://", .malformed), ("replicate.delivery/x", .malformed),
        ("//replicate.delivery/x", .malformed), ("", .malformed), ("https://%72eplicate.delivery/", .malformed),
        ("https://repli_cate..delivery/", .malformed), ("https://-a.replicate.delivery/", .malformed), ("https://[::1/x", .malformed),
        ("https://[fe80::1%25eth0]/x", .malformed), ("https://[::1]x/", .malformed), ("https://1.2.3.4.5/", .malformed),
        ("https://256.1.1.1/", .malformed), ("https://replicate.delivery.1/", .malformed),
    ])
    func refusedURLs(url: String, reason: OutputRefusal.Reason) {
        let refusal = Self.refusal(url)
        #expect(refusal?.reason == reason, "\(url): \(refusal.map(String.init(describing:)) ?? "allowed")")
    }

    /// Invariant: every spelling of an internal address is refused, with the reason naming the canonical address.
    @Test(arguments: [
        ("https://127.0.0.1/", "127.0.0.1", "loopback"), ("https://127.1/", "127.0.0.1", "loopback"),
        ("https://0x7f000001/", "127.0.0.1", "loopback"), ("https://2130706433/", "127.0.0.1", "loopback"),
        ("https://017700000001/", "127.0.0.1", "loopback"), ("https://[::ffff:127.0.0.1]/", "::ffff:7f00:1", "loopback"),
        ("https://[::1]:8443/", "::1", "loopback"), ("https://10.0.0.5/x.mp4", "10.0.0.5", "private"),
        ("https://172.16.3.4/", "172.16.3.4", "private"), ("https://192.168.0.1/", "192.168.0.1", "private"),
        ("https://[fd00::1]/", "fd00::1", "private"), ("https://169.254.1.1/", "169.254.1.1", "link-local"),
        ("https://[fe80::1]/", "fe80::1", "link-local"), ("https://169.254.169.254/latest/meta-data/", "169.254.169.254", "metadata"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "https"), ("https://[fd00:ec2::254]/", "fd00:ec2::254", "metadata"),
        ("https://100.64.0.1/", "100.64.0.1", "carrier-grade NAT"), ("https://0.0.0.0/", "0.0.0.0", "unspecified"),
        ("https://224.0.0.1/", "224.0.0.1", "multicast"), ("https://255.255.255.255/", "255.255.255.255", "broadcast"),
        ("https://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe", "metadata"), ("https://0/", "0.0.0.0", "unspecified"),
    ])
    func internalAddressLiterals(url: String, address: String, words: String) throws {
        let refusal = try #require(Self.refusal(url), "\(url) was allowed")
        #expect(refusal.description.contains(words), "\(url): \(refusal)")
        if words != "https" {
            #expect(refusal.reason == .address, "\(url): \(refusal)")
            #expect(refusal.description.contains(address), "\(url): \(refusal)")
        }
    }

    @Test func publicAddressLiteralsAreNotAllowedHosts() {
        let refusal = Self.refusal("https://8.8.8.8/x.mp4")
        #expect(refusal?.reason == .host)
        #expect(refusal?.description.contains("replicate.delivery") == true)
    }

    /// Invariant: a refusal never shows a URL's path or query (output URLs carry signatures).
    @Test func refusalsNeverShowPathOrQuery() {
        for url in ["http://replicate.delivery/secret-path?sig=SECRET", "https://evil.com/secret-path?sig=SECRET"] {
            let text = Self.refusal(url)?.description ?? ""
            #expect(!text.contains("SECRET") && !text.contains("secret-path"), "\(text)")
        }
    }

    // MARK: After resolution

    @Test func resolvedAddressesAreAllChecked() throws {
        let source = try Self.policy.check("https://pbxt.replicate.delivery/x.mp4")
        try Self.policy.check(resolved: [IPAddress(34, 120, 1, 1), IPAddress.parseIPv6("2606:4700::1")!], for: source)
        for bad in [IPAddress(127, 0, 0, 1), IPAddress(10, 1, 1, 1), IPAddress(169, 254, 169, 254), IPAddress.parseIPv6("::ffff:127.0.0.1")!] {
            let refusal = try #require(throws: OutputRefusal.self) {
                try Self.policy.check(resolved: [IPAddress(34, 120, 1, 1), bad], for: source)
            }
            #expect(refusal.reason == .address)
            #expect(refusal.description.contains("pbxt.replicate.delivery resolves to \(bad)"), "\(refusal)")
        }
    }

    // MARK: Configuration

    @Test func suffixesMatchWholeLabels() {
        let policy = OutputSourcePolicy(hostSuffixes: ["replicate.delivery", "Cdn.Example.com"])
        #expect(policy.allows("replicate.delivery"))
        #expect(policy.allows("x.cdn.example.com"))
        #expect(policy.allows("CDN.EXAMPLE.COM"))
        #expect(!policy.allows("xcdn.example.com"))
        #expect(!policy.allows("example.com"))
        let none = OutputSourcePolicy(hostSuffixes: [])
        #expect(Self.refusal("https://replicate.delivery/x", policy: none)?.reason == .host)
    }

    @Test func validSuffixes() {
        for good in ["replicate.delivery", "cdn.example.com", "localhost", "xn--bcher-kva.example"] {
            #expect(OutputSourcePolicy.validSuffix(good), "\(good)")
        }
        for bad in ["", "127.0.0.1", "0.1", "1", ".replicate.delivery", "replicate..delivery", "*.replicate.delivery", "a b", "ä.com", "[::1]"] {
            #expect(!OutputSourcePolicy.validSuffix(bad), "\(bad)")
        }
    }

    @Test func trustedOrigins() throws {
        #expect(try TrustedOrigin("http://127.0.0.1:8090").description == "http://127.0.0.1:8090")
        #expect(try TrustedOrigin("http://127.0.0.1:8090/").port == 8090)
        #expect(try TrustedOrigin("https://files.internal").port == 443)
        #expect(try TrustedOrigin("HTTP://LOCALHOST:80").description == "http://localhost:80")
        for bad in ["127.0.0.1:8090", "http://127.0.0.1:8090/files", "http://127.0.0.1:8090?x", "ftp://h", "http://u@h", "http://h:99999"] {
            #expect(throws: OutputRefusal.self, "\(bad)") { try TrustedOrigin(bad) }
        }
    }

    /// Guards: the task's message says what was refused, that nothing was kept, and what to do.
    @Test func taskMessagesSayWhatToDo() {
        let host = OutputRefusal(.host, "the output host evil.com is not allowed")
        #expect(host.taskMessage.hasPrefix("The output could not be stored: the output host evil.com is not allowed."))
        #expect(host.taskMessage.contains("Nothing was kept; submit the task again"))
        #expect(OutputRefusal.tooLarge(limit: 1 << 20).taskMessage.contains("1 MiB limit"))
        #expect(OutputRefusal.tooLarge(limit: 1 << 20).taskMessage.contains("shorter or lower-resolution"))
        #expect(OutputRefusal(.notVideo, "the output is not a video: it is an HTML page").taskMessage.contains("did not return a video"))
    }

    @Test func sizesReadWell() {
        #expect(OutputRefusal.tooLarge(limit: 512 << 20).description.contains("512 MiB"))
        #expect(OutputRefusal.tooLarge(limit: 1536).description.contains("1.5 KiB"))
        #expect(OutputRefusal.tooLarge(limit: 100).description.contains("100 bytes"))
        #expect(OutputRefusal.tooLarge(limit: 100).reason == .tooLarge)
    }
}
