/// Runs `body` with `resource`, then `tearDown`, whether `body` returned or threw: "make, run, tear down" for a resource
/// whose cleanup is async (a `defer` cannot await).
public func withTearDown<Resource: Sendable, Result>(
    _ resource: Resource, tearDown: (Resource) async -> Void, isolation: isolated (any Actor)? = #isolation,
    _ body: (Resource) async throws -> Result
) async throws -> Result {
    let result: Result
    do {
        result = try await body(resource)
    } catch {
        await tearDown(resource)
        throw error
    }
    await tearDown(resource)
    return result
}
