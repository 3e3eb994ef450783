import ReelayCore
import Testing

@Suite("Submission validation")
struct SubmissionValidationTests {
    static let allowed: Set<String> = ["num_frames", "resolution", "seed"]

    func validate(
        prompt: String? = "a cat surfing", url: String? = "https://example.com/cat.png", keys: [String]? = nil,
        localhost: Bool = false
    ) -> [FieldError] {
        let input = keys.map { Dictionary($0.map { ($0, JSONValue.number(1)) }, uniquingKeysWith: { first, _ in first }) }
        return SubmissionValidation.validate(
            prompt: prompt, inputImageURL: url, input: input, allowedInputKeys: Self.allowed, allowLocalImageURLs: localhost)
    }

    func validate(input: [String: JSONValue]) -> [FieldError] {
        SubmissionValidation.validate(
            prompt: "a cat", inputImageURL: "https://example.com/cat.png", input: input, allowedInputKeys: ["seed", "negative_prompt", "extra"],
            allowLocalImageURLs: false)
    }

    @Test func validSubmissionHasNoErrors() {
        #expect(self.validate().isEmpty)
        #expect(self.validate(keys: []).isEmpty)
        #expect(self.validate(keys: ["seed", "num_frames"]).isEmpty)
    }

    @Test func promptRequired() {
        #expect(self.validate(prompt: nil).map(\.field) == ["prompt"])
        #expect(self.validate(prompt: "").map(\.field) == ["prompt"])
        #expect(self.validate(prompt: "  \n\t ").map(\.field) == ["prompt"])
    }

    /// Invariant: the prompt may have 1...2000 characters after trimming, counted as Characters.
    @Test func promptLengthLimits() {
        #expect(self.validate(prompt: "x").isEmpty)
        #expect(self.validate(prompt: String(repeating: "x", count: 2000)).isEmpty)
        #expect(self.validate(prompt: "   " + String(repeating: "x", count: 2000) + "\n").isEmpty)
        let tooLong = self.validate(prompt: String(repeating: "x", count: 2001))
        #expect(tooLong.map(\.field) == ["prompt"])
        #expect(tooLong.first?.message.contains("2000") == true)
        // 2000 emoji are 2000 Characters, though many more bytes.
        #expect(self.validate(prompt: String(repeating: "👩‍👩‍👧", count: 2000)).isEmpty)
    }

    @Test(arguments: [
        "https://example.com/cat.png", "https://cdn.example.com:8443/a/b.jpg?sig=abc", "HTTPS://EXAMPLE.COM/x.png",
    ])
    func acceptedImageURLs(url: String) {
        #expect(self.validate(url: url).isEmpty)
    }

    @Test(arguments: [
        "", "example.com/cat.png", "/cat.png", "ftp://example.com/cat.png", "http://example.com/cat.png", "https://",
        "https:///path", "file:///etc/passwd", "https://exa mple.com/x.png", "https://user:pw@example.com/x.png",
        "javascript:alert(1)", "http://localhost/x.png", "http://127.0.0.1:9000/x.png",
    ])
    func refusedImageURLs(url: String) {
        #expect(self.validate(url: url).map(\.field) == ["input_image_url"])
    }

    @Test func imageURLRequired() {
        #expect(self.validate(url: nil).map(\.field) == ["input_image_url"])
    }

    /// Plain http is allowed only for the local machine and only when the development switch is on.
    @Test func insecureLocalhostOnlyWhenAllowed() {
        #expect(self.validate(url: "http://127.0.0.1:9000/x.png", localhost: true).isEmpty)
        #expect(self.validate(url: "http://localhost/x.png", localhost: true).isEmpty)
        #expect(self.validate(url: "http://example.com/x.png", localhost: true).map(\.field) == ["input_image_url"])
    }

    @Test func unknownInputKeysAreNamed() throws {
        let errors = self.validate(keys: ["seed", "prompt", "webhook"])
        #expect(errors.map(\.field) == ["input.prompt", "input.webhook"])
        let message = try #require(errors.first?.message)
        #expect(message.contains("num_frames, resolution, seed"))
    }

    @Test func allErrorsAtOnce() {
        let errors = self.validate(prompt: "", url: "nope", keys: ["bad"])
        #expect(errors.map(\.field) == ["prompt", "input_image_url", "input.bad"])
    }

    /// Invariant: nothing with U+0000 passes (PostgreSQL's text and jsonb cannot hold it); the error names the field.
    @Test func nulIsRefusedWhereverItIs() {
        #expect(self.validate(prompt: "\u{0}hidden").map(\.field) == ["prompt"])
        #expect(self.validate(prompt: "a cat\u{0}").first?.message.contains("U+0000") == true)
        #expect(self.validate(url: "https://example.com/\u{0}.png").map(\.field) == ["input_image_url"])
        #expect(self.validate(input: ["negative_prompt": .string("blurry\u{0}")]).map(\.field) == ["input.negative_prompt"])
        let nested = self.validate(input: ["extra": .object(["a": .array([.string("ok"), .string("\u{0}")])])])
        #expect(nested.map(\.field) == ["input.extra.a[1]"])
        let key = self.validate(input: ["extra": .object(["bad\u{0}key": .number(1)])])
        #expect(key.map(\.field) == ["input.extra.bad\\u0000key"])
        #expect(key.first?.message.contains("U+0000") == true)
        #expect(self.validate(input: ["se\u{0}ed": .number(1)]).map(\.field) == ["input.se\\u0000ed"])
    }

    /// Invariant: the input object is bounded in depth, string length, keys, items and encoded size; each limit is named.
    @Test func inputIsBounded() throws {
        let limits = SubmissionValidation.inputLimits
        #expect(self.validate(input: ["extra": .object(["a": .object(["b": .number(1)])])]).isEmpty)
        #expect(self.validate(input: ["extra": .object(["a": .object(["b": .object(["c": .number(1)])])])]).isEmpty)
        let deep = self.validate(input: ["extra": .object(["a": .object(["b": .object(["c": .object(["d": .number(1)])])])])])
        #expect(deep.map(\.field) == ["input.extra.a.b.c"])
        #expect(deep.first?.message.contains("\(limits.maxDepth) levels") == true)

        #expect(self.validate(input: ["negative_prompt": .string(String(repeating: "x", count: limits.maxStringLength))]).isEmpty)
        let long = self.validate(input: ["negative_prompt": .string(String(repeating: "x", count: limits.maxStringLength + 1))])
        #expect(long.map(\.field) == ["input.negative_prompt"])
        #expect(long.first?.message.contains("\(limits.maxStringLength)") == true)

        let manyKeys = Dictionary(uniqueKeysWithValues: (0...limits.maxKeys).map { ("k\($0)", JSONValue.number(1)) })
        let keys = self.validate(input: ["extra": .object(manyKeys)])
        #expect(keys.map(\.field) == ["input.extra"])
        #expect(keys.first?.message.contains("at most \(limits.maxKeys)") == true)

        let items = self.validate(input: ["extra": .array(Array(repeating: .number(1), count: limits.maxArrayItems + 1))])
        #expect(items.map(\.field) == ["input.extra"])

        let longKey = self.validate(input: ["extra": .object([String(repeating: "k", count: limits.maxKeyLength + 1): .null])])
        #expect(longKey.count == 1)

        // Each piece within its limit, the whole too large: 20 strings of 1000 characters.
        let big = JSONValue.array((0..<20).map { _ in .string(String(repeating: "y", count: 1000)) })
        let size = self.validate(input: ["extra": big])
        #expect(size.map(\.field) == ["input"])
        #expect(size.first?.message.contains("\(limits.maxEncodedBytes) bytes") == true)

        #expect(self.validate(input: ["seed": .number(.infinity)]).map(\.field) == ["input.seed"])
    }

    /// Invariant: the fingerprint changes with every part of a submission and with nothing else.
    @Test func fingerprintTellsSubmissionsApart() {
        let base = SubmissionFingerprint.of(prompt: "a", inputImageURL: "https://e.com/x.png", inputJSON: nil)
        #expect(base == SubmissionFingerprint.of(prompt: "a", inputImageURL: "https://e.com/x.png", inputJSON: nil))
        #expect(base.count == 64)
        #expect(base != SubmissionFingerprint.of(prompt: "b", inputImageURL: "https://e.com/x.png", inputJSON: nil))
        #expect(base != SubmissionFingerprint.of(prompt: "a", inputImageURL: "https://e.com/y.png", inputJSON: nil))
        #expect(base != SubmissionFingerprint.of(prompt: "a", inputImageURL: "https://e.com/x.png", inputJSON: ""))
        #expect(base != SubmissionFingerprint.of(prompt: "a", inputImageURL: "https://e.com/x.png", inputJSON: "{\"seed\":1}"))
        // Length prefixes: moving a boundary between parts changes the hash.
        #expect(
            SubmissionFingerprint.of(prompt: "ab", inputImageURL: "c", inputJSON: nil)
                != SubmissionFingerprint.of(prompt: "a", inputImageURL: "bc", inputJSON: nil))
    }
}
