import Foundation

/// Read-only navigation over a JSONSerialization value: `json["urls"]["get"].string`, `json["results"][0]["id"]`.
/// A missing key or a wrong type gives `JSON(nil)`, whose accessors are nil, so tests fail on `#require`, not a crash.
struct JSON: CustomStringConvertible {
    let value: Any?

    init(_ value: Any?) {
        self.value = value
    }

    /// Parses bytes; `JSON(nil)` when they are empty or not JSON.
    init(bytes: [UInt8]) {
        guard !bytes.isEmpty else {
            self.value = nil
            return
        }
        self.value = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
    }

    subscript(key: String) -> JSON {
        JSON((self.value as? [String: Any])?[key])
    }

    subscript(index: Int) -> JSON {
        guard let array = self.value as? [Any], array.indices.contains(index) else { return JSON(nil) }
        return JSON(array[index])
    }

    /// Whether the key was absent or the value missing.
    var isMissing: Bool { self.value == nil }
    /// Whether the value is JSON `null`.
    var isNull: Bool { self.value is NSNull }
    var string: String? { self.value as? String }
    var bool: Bool? {
        if let number = self.value as? NSNumber, !Self.isBoolean(number) { return nil }
        return self.value as? Bool
    }
    var int: Int? {
        if let number = self.value as? NSNumber, Self.isBoolean(number) { return nil }
        return self.value as? Int
    }
    var double: Double? {
        if let number = self.value as? NSNumber, Self.isBoolean(number) { return nil }
        return (self.value as? Double) ?? (self.value as? Int).map(Double.init)
    }
    var array: [JSON]? { (self.value as? [Any])?.map { JSON($0) } }
    var object: [String: JSON]? { (self.value as? [String: Any])?.mapValues { JSON($0) } }
    var keys: [String] { (self.value as? [String: Any]).map { Array($0.keys).sorted() } ?? [] }

    var description: String {
        guard let value = self.value else { return "<missing>" }
        if let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]) {
            return String(decoding: data, as: UTF8.self)
        }
        return "\(value)"
    }

    /// JSONSerialization gives booleans as NSNumbers of type "c" (char) and never produces other chars.
    private static func isBoolean(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c"
    }
}
