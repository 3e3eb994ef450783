import Foundation

/// One problem with one field of a submission, reported in problem+json's field list.
public struct FieldError: Sendable, Equatable, Codable {
    public var field: String
    public var message: String

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }
}

/// Validation of a task submission at the gateway, before anything is enqueued.
public enum SubmissionValidation {
    /// Prompt length limits, in Characters after trimming.
    public static let promptLength = 1...2000
    /// Longer image URLs are refused so a task row and its messages stay small.
    public static let maxImageURLLength = 2048

    /// prompt required, 1...2000 characters after trimming whitespace; input_image_url required, absolute https URL with a
    /// host (http://127.0.0.1 / http://localhost only when allowInsecureLocalhost is true, for development); input keys (when
    /// an input object was sent) must all be in allowedInputKeys. Returns all field errors at once.
    public static func validate(
        prompt: String?, inputImageURL: String?, inputKeys: [String]?, allowedInputKeys: Set<String>, allowInsecureLocalhost: Bool
    ) -> [FieldError] {
        var errors: [FieldError] = []
        if let message = Self.promptProblem(prompt) {
            errors.append(FieldError(field: "prompt", message: message))
        }
        if let message = Self.imageURLProblem(inputImageURL, allowInsecureLocalhost: allowInsecureLocalhost) {
            errors.append(FieldError(field: "input_image_url", message: message))
        }
        for key in Set(inputKeys ?? []).sorted() where !allowedInputKeys.contains(key) {
            let allowed = allowedInputKeys.isEmpty ? "none" : allowedInputKeys.sorted().joined(separator: ", ")
            errors.append(FieldError(field: "input.\(key)", message: "input key '\(key)' is not allowed; allowed keys: \(allowed)"))
        }
        return errors
    }

    private static func promptProblem(_ prompt: String?) -> String? {
        guard let prompt else {
            return "prompt is required"
        }
        let length = prompt.trimmingCharacters(in: .whitespacesAndNewlines).count
        if length < Self.promptLength.lowerBound {
            return "prompt must not be empty"
        }
        if length > Self.promptLength.upperBound {
            return "prompt must be at most \(Self.promptLength.upperBound) characters, got \(length)"
        }
        return nil
    }

    private static func imageURLProblem(_ text: String?, allowInsecureLocalhost: Bool) -> String? {
        guard let text, !text.isEmpty else {
            return "input_image_url is required"
        }
        if text.utf8.count > Self.maxImageURLLength {
            return "input_image_url must be at most \(Self.maxImageURLLength) characters"
        }
        // URL parsing on Linux may percent-encode spaces instead of failing, so refuse them explicitly.
        if text.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            return "input_image_url must not contain spaces or control characters"
        }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            let host = components.host, !host.isEmpty
        else {
            return "input_image_url must be an absolute https URL"
        }
        if components.user != nil || components.password != nil {
            return "input_image_url must not contain credentials"
        }
        switch scheme {
        case "https":
            return nil
        case "http" where allowInsecureLocalhost && ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host.lowercased()):
            return nil
        default:
            return "input_image_url must be an https URL"
        }
    }
}
