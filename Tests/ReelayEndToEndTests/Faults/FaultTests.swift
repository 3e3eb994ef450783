import Testing

/// One fault at a time, each against a fresh system of built executables: what the user sees through the gateway, what
/// the task's history says in PostgreSQL, and what the Replicate stand-in saw must all agree with the design.
///
/// The tests are grouped by fault family in the `Faults+*.swift` files beside this one.
@Suite("Faults", .serialized)
struct Faults {}
