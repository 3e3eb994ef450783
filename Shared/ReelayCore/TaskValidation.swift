import Crypto
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

/// Validation of a task submission at the gateway, before anything is enqueued: whatever passes here can be stored by
/// PostgreSQL (no U+0000, which neither text columns nor jsonb hold) and stays small.
public enum SubmissionValidation {
    /// Prompt length limits, in Characters after trimming.
    public static let promptLength = 1...2000
    /// Longer image URLs are refused so a task row and its messages stay small.
    public static let maxImageURLLength = ImageURLRule.maxLength

    /// Bounds of the `input` object; every refusal names the limit.
    public struct InputLimits: Sendable, Equatable {
        /// The whole object, encoded as JSON.
        public var maxEncodedBytes = 16 * 1024
        /// Nesting levels, the input object itself being level 1.
        public var maxDepth = 4
        /// Characters of one string value.
        public var maxStringLength = 2000
        /// Characters of one key.
        public var maxKeyLength = 64
        /// Members of one object.
        public var maxKeys = 32
        /// Items of one array.
        public var maxArrayItems = 100

        public init() {}
    }

    public static let inputLimits = InputLimits()
    /// More field errors than this are cut: the first ones say enough.
    static let maxErrors = 20

    /// prompt required, 1...2000 characters after trimming whitespace, no NUL; input_image_url per `ImageURLRule`
    /// (`allowLocalImageURLs` is the development exception); input (when sent): top-level keys in `allowedInputKeys`, no NUL
    /// in any key or string, within `limits`. Returns all field errors at once.
    public static func validate(
        prompt: String?, inputImageURL: String?, input: [String: JSONValue]?, allowedInputKeys: Set<String>,
        allowLocalImageURLs: Bool, limits: InputLimits = Self.inputLimits
    ) -> [FieldError] {
        var errors: [FieldError] = []
        if let message = Self.promptProblem(prompt) {
            errors.append(FieldError(field: "prompt", message: message))
        }
        if let message = ImageURLRule.problem(inputImageURL ?? "", allowLocal: allowLocalImageURLs) {
            errors.append(FieldError(field: "input_image_url", message: message))
        }
        if let input {
            errors += Self.inputProblems(input, allowedKeys: allowedInputKeys, limits: limits)
        }
        return Array(errors.prefix(Self.maxErrors))
    }

    private static func promptProblem(_ prompt: String?) -> String? {
        guard let prompt else {
            return "prompt is required"
        }
        if prompt.unicodeScalars.contains(where: { $0.value == 0 }) {
            return "prompt must not contain U+0000 (NUL); remove it"
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

    // MARK: input

    static func inputProblems(_ input: [String: JSONValue], allowedKeys: Set<String>, limits: InputLimits) -> [FieldError] {
        var errors: [FieldError] = []
        if input.count > limits.maxKeys {
            errors.append(FieldError(field: "input", message: "input has \(input.count) keys; at most \(limits.maxKeys) are allowed"))
        }
        for key in input.keys.sorted() {
            let field = "input." + Self.display(key)
            guard allowedKeys.contains(key) else {
                let allowed = allowedKeys.isEmpty ? "none" : allowedKeys.sorted().joined(separator: ", ")
                errors.append(FieldError(field: field, message: "input key '\(Self.display(key))' is not allowed; allowed keys: \(allowed)"))
                continue
            }
            Self.check(input[key]!, field: field, depth: 2, limits: limits, errors: &errors)
        }
        if errors.isEmpty {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let size = (try? encoder.encode(input).count) ?? Int.max
            if size > limits.maxEncodedBytes {
                errors.append(
                    FieldError(
                        field: "input",
                        message: "input is \(size) bytes as JSON; at most \(limits.maxEncodedBytes) bytes are allowed, so shorten its values"))
            }
        }
        return errors
    }

    private static func check(_ value: JSONValue, field: String, depth: Int, limits: InputLimits, errors: inout [FieldError]) {
        guard errors.count < Self.maxErrors else {
            return
        }
        switch value {
        case .null, .bool:
            return
        case .number(let number):
            if !number.isFinite {
                errors.append(FieldError(field: field, message: "\(field) must be a finite number"))
            }
        case .string(let text):
            if text.unicodeScalars.contains(where: { $0.value == 0 }) {
                errors.append(FieldError(field: field, message: "\(field) must not contain U+0000 (NUL); remove it"))
            } else if text.count > limits.maxStringLength {
                errors.append(
                    FieldError(field: field, message: "\(field) must be at most \(limits.maxStringLength) characters, got \(text.count)"))
            }
        case .array(let items):
            if depth > limits.maxDepth {
                errors.append(Self.tooDeep(field, limits: limits))
                return
            }
            if items.count > limits.maxArrayItems {
                errors.append(
                    FieldError(field: field, message: "\(field) has \(items.count) items; at most \(limits.maxArrayItems) are allowed"))
                return
            }
            for (index, item) in items.enumerated() {
                Self.check(item, field: "\(field)[\(index)]", depth: depth + 1, limits: limits, errors: &errors)
            }
        case .object(let members):
            if depth > limits.maxDepth {
                errors.append(Self.tooDeep(field, limits: limits))
                return
            }
            if members.count > limits.maxKeys {
                errors.append(FieldError(field: field, message: "\(field) has \(members.count) keys; at most \(limits.maxKeys) are allowed"))
                return
            }
            for key in members.keys.sorted() {
                let child = field + "." + Self.display(key)
                if key.unicodeScalars.contains(where: { $0.value == 0 }) {
                    errors.append(FieldError(field: child, message: "keys must not contain U+0000 (NUL); remove it from \(child)"))
                    continue
                }
                if key.isEmpty || key.count > limits.maxKeyLength {
                    errors.append(
                        FieldError(field: child, message: "keys must have 1 to \(limits.maxKeyLength) characters, \(child) has \(key.count)"))
                    continue
                }
                Self.check(members[key]!, field: child, depth: depth + 1, limits: limits, errors: &errors)
            }
        }
    }

    private static func tooDeep(_ field: String, limits: InputLimits) -> FieldError {
        FieldError(field: field, message: "\(field) is nested more than \(limits.maxDepth) levels deep (input itself is level 1); flatten it")
    }

    /// A key as it can be shown in a field name: control characters escaped, long keys clipped.
    static func display(_ key: String) -> String {
        var shown = ""
        for scalar in key.unicodeScalars.prefix(64) {
            if scalar.value < 0x20 || scalar.value == 0x7F {
                shown += String(format: "\\u%04X", scalar.value)
            } else {
                shown.unicodeScalars.append(scalar)
            }
        }
        return key.unicodeScalars.count > 64 ? shown + "..." : shown
    }
}

/// What makes two submissions "the same" for an Idempotency-Key: the trimmed prompt, the image URL and the canonical
/// (key-sorted) input JSON, hashed. A key reused with a different fingerprint is a conflict, not a repeat.
public enum SubmissionFingerprint {
    /// Lowercase hex SHA-256 over the length-prefixed parts, so no two different submissions share an encoding.
    public static func of(prompt: String, inputImageURL: String, inputJSON: String?) -> String {
        var bytes: [UInt8] = Array("reelay-submission-v1".utf8)
        for part in [prompt, inputImageURL, inputJSON ?? ""] {
            let utf8 = Array(part.utf8)
            bytes += Array("\(utf8.count):".utf8) + utf8
        }
        bytes.append(inputJSON == nil ? 0 : 1)
        return SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}
