import Foundation
import ReelayTestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The libc `kill`, reachable under another name inside `ManagedProcess` (whose own `kill()` shadows it).
private func posixKill(_ pid: Int32, _ signal: Int32) {
    _ = kill(pid, signal)
}

/// A built executable run as a child process for an end-to-end test; stdout and stderr go to one log file.
/// The process is killed when this object goes away, so a failing test never leaves servers behind.
final class ManagedProcess: Sendable {
    /// A short name for messages ("standin", "gateway-1").
    let name: String
    let executable: String
    /// Where stdout and stderr are appended.
    let logPath: String
    let pid: Int32
    private let process: Locked<Process>

    /// Starts `executable` with `arguments`; `environment` is merged over this process's environment.
    init(
        name: String, executable: String, arguments: [String] = [], environment: [String: String] = [:], logFolder: String
    ) throws {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw HarnessError("\(executable) is not built; run `swift build --build-tests` (or `swift build --product <name>`) first")
        }
        self.name = name
        self.executable = executable
        self.logPath = logFolder + "/\(name).log"
        if !FileManager.default.fileExists(atPath: self.logPath) {
            FileManager.default.createFile(atPath: self.logPath, contents: nil)
        }
        guard let log = FileHandle(forWritingAtPath: self.logPath) else {
            throw HarnessError("cannot open \(self.logPath) for writing")
        }
        log.seekToEndOfFile()

        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            try? log.close()
            throw HarnessError("cannot start \(executable): \(error)")
        }
        // The child holds its own descriptor now; ours is no longer needed.
        try? log.close()
        self.pid = process.processIdentifier
        self.process = Locked(process)
    }

    deinit {
        if self.isRunning {
            posixKill(self.pid, SIGKILL)
        }
    }

    var isRunning: Bool {
        self.process.withLock { $0.isRunning }
    }

    /// The exit status once the process has ended (128 + signal number when a signal ended it, like a shell); else nil.
    var exitCode: Int32? {
        self.process.withLock { process in
            guard !process.isRunning else { return nil }
            switch process.terminationReason {
            case .exit: return process.terminationStatus
            case .uncaughtSignal: return 128 + process.terminationStatus
            @unknown default: return process.terminationStatus
            }
        }
    }

    /// Sends a signal (e.g. SIGSTOP/SIGCONT to freeze a service) if the process still runs.
    func signal(_ signal: Int32) {
        if self.isRunning {
            posixKill(self.pid, signal)
        }
    }

    /// SIGKILL at once.
    func kill() {
        self.signal(SIGKILL)
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`. Returns the exit code.
    @discardableResult
    func terminate(grace: Duration = .seconds(5)) async -> Int32? {
        self.signal(SIGTERM)
        if await self.waitForExit(timeout: grace) {
            return self.exitCode
        }
        self.kill()
        _ = await self.waitForExit(timeout: .seconds(5))
        return self.exitCode
    }

    /// Waits until the process has ended; false on timeout.
    func waitForExit(timeout: Duration) async -> Bool {
        await waitUntil(timeout: timeout, every: .milliseconds(20)) { !self.isRunning }
    }

    /// The last `lines` lines of the log, for failure messages.
    func logTail(lines: Int = 40) -> String {
        guard let data = FileManager.default.contents(atPath: self.logPath) else { return "(no log at \(self.logPath))" }
        let text = String(decoding: data, as: UTF8.self)
        let tail = text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines)
        return "--- last \(tail.count) lines of \(self.logPath) ---\n" + tail.joined(separator: "\n")
    }
}
