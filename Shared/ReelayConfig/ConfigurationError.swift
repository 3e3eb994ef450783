/// A missing or invalid setting; `description` is the one line a service prints before exiting. It never quotes a secret.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The environment variable at fault, e.g. "MAX_CONCURRENT_TASKS".
    public var variable: String
    /// What is wrong with it, e.g. "must be a positive integer, got 'abc'".
    public var problem: String

    public init(variable: String, problem: String) {
        self.variable = variable
        self.problem = problem
    }

    /// "REELAY config: <VARIABLE> <problem>"
    public var description: String {
        "REELAY config: \(self.variable) \(self.problem)"
    }
}
