import ReelayCore
import Testing

@Suite("Submission validation")
struct SubmissionValidationTests {
    static let allowed: Set<String> = ["num_frames", "resolution", "seed"]

    func validate(
        prompt: String? = "a cat surfing", url: String? = "https://example.com/cat.png", keys: [String]? = nil,
        localhost: Bool = false
    ) -> [FieldError] {
        SubmissionValidation.validate(
            prompt: prompt, inputImageURL: url, inputKeys: keys, allowedInputKeys: Self.allowed, allowInsecureLocalhost: localhost)
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
}
