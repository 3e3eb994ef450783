#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Wakes a connection thread that waits in poll(2), so a job queued from any thread is picked up at once instead of
/// after the next poll timeout. A non-blocking self-pipe.
final class Waker: Sendable {
    private let readFD: Int32
    private let writeFD: Int32

    init() {
        var fds: [Int32] = [-1, -1]
        precondition(pipe(&fds) == 0, "pipe() failed: the process is out of file descriptors")
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        self.readFD = fds[0]
        self.writeFD = fds[1]
    }

    deinit {
        close(self.readFD)
        close(self.writeFD)
    }

    /// Makes the next (or current) `wait` return. Safe from any thread; a full pipe already means "wake up".
    func wake() {
        var byte: UInt8 = 1
        _ = write(self.writeFD, &byte, 1)
    }

    /// Waits until woken, until `socket` is readable (or failed), or until `timeout`.
    /// - Returns: whether the socket needs reading.
    @discardableResult
    func wait(socket: Int32?, timeout: Duration) -> Bool {
        var fds = [pollfd(fd: self.readFD, events: Int16(POLLIN), revents: 0)]
        if let socket {
            fds.append(pollfd(fd: socket, events: Int16(POLLIN), revents: 0))
        }
        let result = poll(&fds, nfds_t(fds.count), timeout.milliseconds)
        guard result > 0 else {
            return false
        }
        if fds[0].revents != 0 {
            var buffer = [UInt8](repeating: 0, count: 64)
            while read(self.readFD, &buffer, buffer.count) > 0 {}
        }
        return fds.count > 1 && fds[1].revents != 0
    }
}

extension Duration {
    /// Whole milliseconds for poll(2), rounded up, clamped to 0...Int32.max.
    var milliseconds: Int32 {
        let (seconds, attoseconds) = self.components
        guard seconds >= 0 else {
            return 0
        }
        let millis = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: millis)
    }
}

/// Exponential reconnect backoff with jitter: each delay is drawn from [d/2, d] where d doubles from `base` up to `cap`.
/// Why jitter: after a broker restart every client of every replica reconnects; spreading them avoids a thundering herd.
struct Backoff {
    let base: Duration
    let cap: Duration
    private(set) var failures = 0

    init(base: Duration = .milliseconds(250), cap: Duration = .seconds(10)) {
        self.base = base
        self.cap = cap
    }

    /// The delay before the next attempt; counts one more failure.
    mutating func next<Generator: RandomNumberGenerator>(using generator: inout Generator) -> Duration {
        let exponent = min(self.failures, 30)
        self.failures += 1
        let ceiling = min(self.base * (1 << exponent), self.cap)
        let ceilingNanos = Self.nanoseconds(ceiling)
        return .nanoseconds(Int64.random(in: (ceilingNanos / 2)...ceilingNanos, using: &generator))
    }

    mutating func next() -> Duration {
        var generator = SystemRandomNumberGenerator()
        return self.next(using: &generator)
    }

    mutating func reset() {
        self.failures = 0
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// Maps publisher-confirm sequence numbers of one channel to the caller's message ids.
///
/// The broker numbers publishes from 1 on each channel after confirm.select and answers with basic.ack / basic.nack,
/// where `multiple` settles every outstanding number up to and including the tag (tag 0 with `multiple` means all).
struct ConfirmTracker {
    private(set) var nextSequence: UInt64 = 1
    /// Outstanding (sequence, id) pairs, ascending by sequence.
    private var outstanding: [(sequence: UInt64, id: UInt64)] = []

    var isEmpty: Bool { self.outstanding.isEmpty }
    var count: Int { self.outstanding.count }

    /// Records a publish of message `id`; returns its sequence number.
    @discardableResult
    mutating func published(id: UInt64) -> UInt64 {
        let sequence = self.nextSequence
        self.nextSequence += 1
        self.outstanding.append((sequence, id))
        return sequence
    }

    /// Settles one confirm; returns the ids it settles, in publish order.
    mutating func settle(tag: UInt64, multiple: Bool) -> [UInt64] {
        if multiple {
            let end = tag == 0 ? self.outstanding.count : self.outstanding.partitioningIndex { $0.sequence > tag }
            let settled = self.outstanding[..<end].map(\.id)
            self.outstanding.removeFirst(end)
            return settled
        }
        let index = self.outstanding.partitioningIndex { $0.sequence >= tag }
        guard index < self.outstanding.count, self.outstanding[index].sequence == tag else {
            return []
        }
        return [self.outstanding.remove(at: index).id]
    }

    /// Forgets the channel (it died); returns the ids still unconfirmed, in publish order, for republishing.
    mutating func reset() -> [UInt64] {
        let unconfirmed = self.outstanding.map(\.id)
        self.outstanding = []
        self.nextSequence = 1
        return unconfirmed
    }
}

extension Array {
    /// The first index whose element satisfies `predicate`, for an array partitioned by it (binary search).
    fileprivate func partitioningIndex(where predicate: (Element) -> Bool) -> Int {
        var low = 0
        var high = self.count
        while low < high {
            let middle = (low + high) / 2
            if predicate(self[middle]) {
                high = middle
            } else {
                low = middle + 1
            }
        }
        return low
    }
}

/// When a connection thread may try to connect again: jittered backoff after each failure, restarted only once a
/// connection stayed up for `AMQPConnection.stableAfter` (a channel closed right after every connect must not loop fast).
/// Owned by the connection thread alone.
struct ReconnectSchedule {
    var backoff = Backoff()
    private(set) var nextAttempt = ContinuousClock.now
    private var connectedAt: ContinuousClock.Instant?

    /// How long to wait before the next attempt, or nil when it may connect now.
    var waitBeforeAttempt: Duration? {
        let now = ContinuousClock.now
        return now < self.nextAttempt ? self.nextAttempt - now : nil
    }

    mutating func connected() {
        self.connectedAt = .now
    }

    /// A connect attempt failed, or the connection was lost: returns the delay before the next attempt.
    mutating func failed() -> Duration {
        if let connectedAt = self.connectedAt, ContinuousClock.now - connectedAt >= AMQPConnection.stableAfter {
            self.backoff.reset()
        }
        self.connectedAt = nil
        let delay = self.backoff.next()
        self.nextAttempt = ContinuousClock.now.advanced(by: delay)
        return delay
    }
}
