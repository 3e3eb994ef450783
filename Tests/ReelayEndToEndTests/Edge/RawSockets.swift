import Foundation
import ReelayTestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Plain TCP clients for what an HTTP client library will not do: a HEAD whose head announces a body, connections that
/// stay idle or send a byte at a time. Blocking calls run on a thread of their own, never on Swift's cooperative pool.
enum RawSockets {
    /// Runs `body` on a new thread and returns its result.
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await onOwnThread(body)
    }

    /// A connected TCP socket to 127.0.0.1:`port`, or -1.
    static func connect(port: Int) -> Int32 {
        let fd = Loopback.tcpSocket()
        guard fd >= 0 else { return -1 }
        var address = Loopback.address(port: port)
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                #if canImport(Glibc)
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                #else
                Darwin.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                #endif
            }
        }
        if result != 0 {
            close(fd)
            return -1
        }
        return fd
    }

    /// Sends `request` and reads until the head of the answer is complete (or the peer closes): status and header lines.
    static func head(port: Int, request: String, timeoutSeconds: Int = 10) -> (status: Int, headers: [String: String], afterHead: Int)? {
        let fd = Self.connect(port: port)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array(request.utf8)
        guard send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { return nil }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if let end = Self.find([13, 10, 13, 10], in: received) {
                // Anything after the head within a short wait would be a body (a HEAD answer must have none).
                var short = timeval(tv_sec: 0, tv_usec: 300_000)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &short, socklen_t(MemoryLayout<timeval>.size))
                let extra = recv(fd, &buffer, buffer.count, 0)
                let text = String(decoding: received[..<end], as: UTF8.self)
                var lines = text.components(separatedBy: "\r\n")
                let statusLine = lines.removeFirst().split(separator: " ")
                var headers: [String: String] = [:]
                for line in lines {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
                let status = statusLine.count > 1 ? Int(statusLine[1]) ?? 0 : 0
                return (status, headers, received.count - end - 4 + max(extra, 0))
            }
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { return nil }
            received += buffer[0..<count]
        }
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where Array(haystack[start..<(start + needle.count)]) == needle {
            return start
        }
        return nil
    }

    /// Opens `idle` connections that send nothing and `slow` connections that send a request head one byte every
    /// `interval`, to `port`, and watches them until each is closed by the server or `limit` passes. Returns, per kind, how
    /// many the server closed and the longest time one stayed open.
    static func holdConnections(
        port: Int, idle: Int, slow: Int, interval: Duration, limit: Duration
    ) -> (idleClosed: Int, slowClosed: Int, longestOpen: Duration, failedToConnect: Int) {
        let clock = ContinuousClock()
        let start = clock.now
        var sockets: [(fd: Int32, slow: Bool, sent: Int, closedAt: Duration?)] = []
        var failed = 0
        for index in 0..<(idle + slow) {
            let fd = Self.connect(port: port)
            if fd < 0 {
                failed += 1
                continue
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            sockets.append((fd, index >= idle, 0, nil))
        }
        let head = Array("GET /healthz HTTP/1.1\r\nHost: reelay.test\r\nX-Padding: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 4096)
        var buffer = [UInt8](repeating: 0, count: 1024)
        var nextSend = clock.now
        while clock.now - start < limit && sockets.contains(where: { $0.closedAt == nil }) {
            if clock.now >= nextSend {
                for index in sockets.indices where sockets[index].slow && sockets[index].closedAt == nil {
                    let byte = head[sockets[index].sent % head.count]
                    if send(sockets[index].fd, [byte], 1, Int32(MSG_NOSIGNAL)) == 1 {
                        sockets[index].sent += 1
                    } else if errno != EAGAIN {
                        sockets[index].closedAt = clock.now - start
                    }
                }
                nextSend = clock.now + interval
            }
            var polls = sockets.filter { $0.closedAt == nil }.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            _ = poll(&polls, nfds_t(polls.count), 50)
            for entry in polls where entry.revents != 0 {
                guard let index = sockets.firstIndex(where: { $0.fd == entry.fd }) else { continue }
                let count = recv(entry.fd, &buffer, buffer.count, 0)
                // 0: the server closed; an error other than "nothing yet": reset, closed too. Data (an error answer) is
                // read and the loop waits for the close that follows.
                if count == 0 || (count < 0 && errno != EAGAIN) {
                    sockets[index].closedAt = clock.now - start
                }
            }
        }
        for socket in sockets {
            close(socket.fd)
        }
        let closed = sockets.filter { $0.closedAt != nil }
        return (
            closed.filter { !$0.slow }.count, closed.filter(\.slow).count,
            closed.compactMap(\.closedAt).max() ?? .zero, failed
        )
    }
}
