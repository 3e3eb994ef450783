/// Polls `condition` every `interval` until it holds or `timeout` passes (or the task is cancelled); returns whether it
/// held. The condition runs in the caller's isolation, so an actor may poll its own state.
public func waitUntil(
    timeout: Duration = .seconds(10), every interval: Duration = .milliseconds(50), isolation: isolated (any Actor)? = #isolation,
    _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline && !Task.isCancelled {
        if try await condition() {
            return true
        }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}

/// Polls `condition` until it holds; throws `message` after `timeout` (and `CancellationError` when cancelled).
public func eventually(
    _ message: @autoclosure () -> String, timeout: Duration = .seconds(30), every interval: Duration = .milliseconds(50),
    isolation: isolated (any Actor)? = #isolation, _ condition: () async throws -> Bool
) async throws {
    if try await waitUntil(timeout: timeout, every: interval, condition) {
        return
    }
    try Task.checkCancellation()
    throw HarnessError("timed out after \(timeout): \(message())")
}
