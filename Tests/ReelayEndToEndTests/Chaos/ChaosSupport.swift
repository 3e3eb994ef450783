import Foundation

/// A seeded random generator (SplitMix64): the same seed gives the same kills at the same offsets.
struct ChaosRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var value = self.state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}

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

/// Runs blocking work (a child process waited for, a CLI call) on a thread of its own, never on the cooperative pool.
func chaosOnOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            continuation.resume(with: Result { try body() })
        }
        thread.start()
    }
}

/// Runs `executable` with `arguments` to its end on a thread of its own; its output is appended to `outputPath`.
/// Not a pipe: `pg_ctl restart` hands its stderr to the server it starts, and a pipe would then never reach end-of-file.
func chaosRunCommand(_ executable: String, _ arguments: [String], outputPath: String) async throws -> Int32 {
    try await chaosOnOwnThread {
        if !FileManager.default.fileExists(atPath: outputPath) {
            _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        }
        guard let output = FileHandle(forWritingAtPath: outputPath) else {
            throw HarnessError("cannot open \(outputPath) for writing")
        }
        defer { try? output.close() }
        output.seekToEndOfFile()
        output.write(Data("$ \(executable) \(arguments.joined(separator: " "))\n".utf8))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }
}
