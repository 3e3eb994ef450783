import ReelayCore
import Testing

/// Guards: an image URL handed to Replicate is an https URL of a public host, written so every parser reads the same host.
@Suite("Image URL rule")
struct ImageURLRuleTests {
    @Test(arguments: [
        "https://example.com/cat.png", "https://cdn.example.com:8443/a/b.jpg?sig=abc", "HTTPS://EXAMPLE.COM/x.png",
        "https://93.184.215.14/x.png", "https://[2606:2800:220:1:248:1893:25c8:1946]/x.png", "https://xn--bcher-kva.example/x.png",
        "https://example.com./x.png", "https://example.com", "https://a_b.example.com/x.png", "https://example.com:443/x.png",
    ])
    func accepted(url: String) {
        #expect(ImageURLRule.problem(url, allowLocal: false) == nil)
    }

    /// Private, loopback, link-local (metadata), reserved and oddly encoded addresses, in every spelling.
    @Test(arguments: [
        "https://127.0.0.1/x.png", "https://127.1/x.png", "https://2130706433/x.png", "https://0x7f000001/x.png",
        "https://0x7f.0.0.1/x.png", "https://0177.0.0.1/x.png", "https://017700000001/x.png", "https://127.0.1/x.png",
        "https://10.1.2.3/x.png", "https://172.16.0.1/x.png", "https://192.168.1.1/x.png", "https://169.254.169.254/latest/meta-data",
        "https://100.100.100.200/x", "https://0.0.0.0/x.png", "https://224.0.0.1/x.png", "https://255.255.255.255/x.png",
        "https://[::1]/x.png", "https://[::]/x.png", "https://[::ffff:127.0.0.1]/x.png", "https://[::ffff:7f00:1]/x.png",
        "https://[fd00:ec2::254]/x.png", "https://[fe80::1]/x.png", "https://[fe80::1%25eth0]/x.png", "https://[ff02::1]/x.png",
        "https://[2001:db8::1]/x.png", "https://[64:ff9b::7f00:1]/x.png", "https://[2002:7f00:1::]/x.png", "https://[::127.0.0.1]/x",
        "https://localhost/x.png", "https://foo.localhost/x.png", "https://metadata.google.internal/computeMetadata/v1/",
        "https://metadata/x.png", "https://printer.local/x.png", "https://1.2.3.4.5/x.png", "https://08.1.1.1/x.png",
        "https://93.184.215.014/x.png",
    ])
    func refusedHosts(url: String) throws {
        let problem = try #require(ImageURLRule.problem(url, allowLocal: false))
        #expect(problem.hasPrefix("input_image_url"))
    }

    @Test(arguments: [
        "", "example.com/cat.png", "/cat.png", "ftp://example.com/cat.png", "http://example.com/cat.png", "https://",
        "https:///path", "file:///etc/passwd", "https://exa mple.com/x.png", "https://user:pw@example.com/x.png",
        "https://user@example.com/x.png", "javascript:alert(1)", "https://example.com:99999/x.png", "https://example.com:0/x",
        "https://example.com:/x.png", "https://example.com:80a/x", "https://bücher.example/x.png", "https://example.com\\@evil.com/",
        "https://%65xample.com/x.png", "https://exa_mple-.com/x", "https://-a.com/x", "https://[::1/x", "https://[zz::1]/x",
        "https://example.com/caf\u{E9}.png", "https://a..b.com/x", "https://example.com/\u{0}",
    ])
    func refusedSpellings(url: String) {
        #expect(ImageURLRule.problem(url, allowLocal: false) != nil)
    }

    @Test func messagesSayWhatIsWrong() throws {
        #expect(try #require(ImageURLRule.problem("https://example.com:99999/x", allowLocal: false)).contains("1 to 65535"))
        #expect(try #require(ImageURLRule.problem("https://0x7f000001/", allowLocal: false)).contains("four decimal numbers"))
        #expect(try #require(ImageURLRule.problem("https://169.254.169.254/", allowLocal: false)).contains("metadata"))
        #expect(try #require(ImageURLRule.problem("https://[::ffff:127.0.0.1]/", allowLocal: false)).contains("loopback"))
        #expect(try #require(ImageURLRule.problem("https://bücher.example/", allowLocal: false)).contains("xn--"))
        #expect(try #require(ImageURLRule.problem("http://example.com/", allowLocal: false)).contains("https"))
    }

    /// The development exception opens exactly the loopback host names and addresses, and nothing else.
    @Test func localExceptionOnlyForLoopback() {
        for url in ["http://127.0.0.1:9000/x.png", "http://localhost/x.png", "https://localhost/x.png", "http://[::1]:8090/x"] {
            #expect(ImageURLRule.problem(url, allowLocal: true) == nil, "\(url)")
            #expect(ImageURLRule.problem(url, allowLocal: false) != nil, "\(url)")
        }
        for url in ["http://10.0.0.1/x", "https://169.254.169.254/", "http://example.com/x.png", "http://2130706433/x", "http://127.1/x"] {
            #expect(ImageURLRule.problem(url, allowLocal: true) != nil, "\(url)")
        }
    }
}

/// Guards: a wrong method on an existing path is told apart from a path that does not exist.
@Suite("Route table")
struct RouteTableTests {
    let table = RouteTable([
        .init(method: "POST", pattern: "/v1/tasks"), .init(method: "GET", pattern: "/v1/tasks"),
        .init(method: "GET", pattern: "/v1/tasks/{id}"), .init(method: "POST", pattern: "/v1/tasks/{id}/cancel"),
        .init(method: "GET", pattern: "/healthz"),
    ])

    @Test func decisions() {
        #expect(self.table.decide(method: "GET", path: "/v1/tasks") == .route)
        #expect(self.table.decide(method: "DELETE", path: "/v1/tasks") == .methodNotAllowed(allow: ["GET", "HEAD", "OPTIONS", "POST"]))
        #expect(self.table.decide(method: "HEAD", path: "/v1/tasks/abc") == .headAsGet)
        #expect(self.table.decide(method: "GET", path: "/v1/tasks/abc/cancel") == .methodNotAllowed(allow: ["OPTIONS", "POST"]))
        #expect(self.table.decide(method: "HEAD", path: "/v1/tasks/abc/cancel") == .methodNotAllowed(allow: ["OPTIONS", "POST"]))
        #expect(self.table.decide(method: "OPTIONS", path: "/healthz") == .options(allow: ["GET", "HEAD", "OPTIONS"]))
        #expect(self.table.decide(method: "GET", path: "/nope") == .notFound)
        #expect(self.table.decide(method: "GET", path: "/v1/tasks/a/b") == .notFound)
        #expect(self.table.decide(method: "GET", path: "/") == .notFound)
        #expect(self.table.decide(method: "FOO", path: "/healthz") == .methodNotAllowed(allow: ["GET", "HEAD", "OPTIONS"]))
    }

    /// Empty segments and a query do not change the path, as in the router.
    @Test func pathsAsTheRouterReadsThem() {
        #expect(self.table.decide(method: "GET", path: "//v1/tasks/") == .route)
        #expect(self.table.decide(method: "PUT", path: "/healthz?x=1") == .methodNotAllowed(allow: ["GET", "HEAD", "OPTIONS"]))
    }
}
