import Foundation

/// Read-only navigation over a JSONSerialization value: `json["urls"]["get"].string`, `json["results"][0]["id"]`.
/// A missing key or a wrong type gives `JSON(nil)`, whose accessors are nil, so tests fail on `#require`, not a crash.
public struct JSON: CustomStringConvertible {
    public let value: Any?

    public init(_ value: Any?) {
        self.value = value
    }

    /// Parses bytes; `JSON(nil)` when they are empty or not JSON.
    public init(bytes: [UInt8]) {
        guard !bytes.isEmpty else {
            self.value = nil
            return
        }
        self.value = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
    }

    public subscript(key: String) -> JSON {
        JSON((self.value as? [String: Any])?[key])
    }

    public subscript(index: Int) -> JSON {
        guard let array = self.value as? [Any], array.indices.contains(index) else { return JSON(nil) }
        return JSON(array[index])
    }

    /// Whether the key was absent or the value missing.
    public var isMissing: Bool { self.value == nil }
    /// Whether the value is JSON `null`.
    public var isNull: Bool { self.value is NSNull }
    public var string: String? { self.value as? String }
    public var bool: Bool? {
        if let number = self.value as? NSNumber, !Self.isBoolean(number) { return nil }
        return self.value as? Bool
    }
    public var int: Int? {
        if let number = self.value as? NSNumber, Self.isBoolean(number) { return nil }
        return self.value as? Int
    }
    public var double: Double? {
        if let number = self.value as? NSNumber, Self.isBoolean(number) { return nil }
        return (self.value as? Double) ?? (self.value as? Int).map(Double.init)
    }
    public var array: [JSON]? { (self.value as? [Any])?.map { JSON($0) } }
    public var object: [String: JSON]? { (self.value as? [String: Any])?.mapValues { JSON($0) } }
    public var keys: [String] { (self.value as? [String: Any]).map { Array($0.keys).sorted() } ?? [] }

    public var description: String {
        guard let value = self.value else { return "<missing>" }
        if let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]) {
            return String(decoding: data, as: UTF8.self)
        }
        return "\(value)"
    }

    /// The bytes of a JSONSerialization value (`[String: Any]`, `[Any]`, a string, a number...), as a request body.
    public static func encode(_ object: Any, sortedKeys: Bool = false) throws -> [UInt8] {
        Array(try JSONSerialization.data(withJSONObject: object, options: sortedKeys ? [.fragmentsAllowed, .sortedKeys] : [.fragmentsAllowed]))
    }

    /// JSONSerialization gives booleans as NSNumbers of type "c" (char) and never produces other chars.
    private static func isBoolean(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c"
    }
}
