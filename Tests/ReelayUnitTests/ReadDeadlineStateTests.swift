import Testing

@testable import ReelayService

/// Guards the read deadline's decisions: the timer runs from a request's first byte until its head, again from the head
/// until its end, and never while the server answers or the connection is idle between requests.
@Suite("Read deadline state")
struct ReadDeadlineStateTests {
    @Test func oneRequest() {
        var state = ReadDeadlineState()
        #expect(state.bytesArrived() == .startTimer)
        #expect(state.phase == .head)
        #expect(state.bytesArrived() == .none)
        #expect(state.progressed(.headReceived) == .restartTimer)
        #expect(state.phase == .body)
        #expect(state.bytesArrived() == .none)
        #expect(state.progressed(.bodyReceived) == .stopTimer)
        #expect(state.phase == .responding)
        #expect(state.bytesArrived() == .none)
        #expect(state.progressed(.responseSent) == .stopTimer)
        #expect(state.phase == .idle)
    }

    /// A keep-alive connection: the next request's first byte starts a new deadline.
    @Test func keepAlive() {
        var state = ReadDeadlineState()
        _ = state.bytesArrived()
        _ = state.progressed(.headReceived)
        _ = state.progressed(.bodyReceived)
        _ = state.progressed(.responseSent)
        #expect(state.bytesArrived() == .startTimer)
    }
}
