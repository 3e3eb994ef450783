import Foundation
import ReelayTestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The run's own timeline (faults, refused submissions, progress), one timestamped line each, next to the services' logs
/// in the test folder, so a failure can be lined up with what the services logged at that moment.
final class ChaosLog: Sendable {
    let path: String
    private let start: ContinuousClock.Instant
    private let handle: Locked<FileHandle?>

    init(path: String, start: ContinuousClock.Instant) {
        self.path = path
        self.start = start
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        self.handle = Locked(FileHandle(forWritingAtPath: path))
    }

    /// Seconds since the run started.
    var elapsed: Double {
        (ContinuousClock.now - self.start).chaosSeconds
    }

    /// Appends a line; with `echo`, prints it too (progress shows in `swift test` output).
    func write(_ message: String, echo: Bool = false) {
        let stamp = Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date())
        let line = "\(stamp) +\(String(format: "%.1f", self.elapsed))s \(message)"
        self.handle.withLock { $0?.write(Data((line + "\n").utf8)) }
        if echo {
            print("chaos +\(String(format: "%.1f", self.elapsed))s \(message)")
        }
    }

    func close() {
        self.handle.withLock { handle in
            try? handle?.close()
            handle = nil
        }
    }
}

/// Runs `executable` with `arguments` to its end on a thread of its own; its output is appended to `outputPath`.
///
/// posix_spawn and waitpid, not Foundation's `Process`: `pg_ctl restart` leaves a server running that inherits the
/// child's descriptors, and `Process` (which sees an exit through a descriptor the child holds) then never notices that
/// the script ended. For the same reason the output goes to a file, never a pipe.
/// After `timeout` the command is killed (SIGKILL) and this throws: a wedged broker must not hang the run.
func chaosRunCommand(_ executable: String, _ arguments: [String], outputPath: String, timeout: Duration) async throws -> Int32 {
    try await onOwnThread {
        let fd = open(outputPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw HarnessError("cannot open \(outputPath) for writing (errno \(errno))")
        }
        defer { close(fd) }
        let header = "$ \(executable) \(arguments.joined(separator: " "))\n"
        _ = header.withCString { write(fd, $0, strlen($0)) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fd, 1)
        posix_spawn_file_actions_adddup2(&actions, fd, 2)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard spawned == 0 else {
            throw HarnessError("cannot start \(executable) (error \(spawned))")
        }
        var status: Int32 = 0
        let deadline = ContinuousClock.now + timeout
        while true {
            let waited = waitpid(pid, &status, WNOHANG)
            if waited == pid { break }
            if waited < 0 && errno != EINTR {
                throw HarnessError("waitpid for \(executable) failed (errno \(errno))")
            }
            if ContinuousClock.now >= deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                throw HarnessError("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout)")
            }
            usleep(50_000)
        }
        // WIFEXITED/WEXITSTATUS are macros Swift cannot import: the low 7 bits are the signal, the next byte the code.
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
