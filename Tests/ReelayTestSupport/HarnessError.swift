/// A harness step that could not be done; `description` says what and where to look.
public struct HarnessError: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
