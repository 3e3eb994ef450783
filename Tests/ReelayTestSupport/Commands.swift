import Foundation

/// What a command printed and how it ended.
public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    /// stdout, then stderr: everything it said, for a failure message.
    public var output: String { self.stdout + self.stderr }
}

/// Runs `executable` with `arguments` to its end (blocking: call it from a thread of its own, `onOwnThread`, where the
/// wait matters); `environment` is merged over this process's environment.
public func runCommand(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    process.standardInput = FileHandle.nullDevice
    let stdout = Pipe()
    let stderr = Pipe()
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    // stderr is drained meanwhile, so a chatty command cannot block on a full pipe while stdout is read.
    let errors = Locked(Data())
    let drained = DispatchSemaphore(value: 0)
    Thread {
        let data = stderr.fileHandleForReading.readDataToEndOfFile()
        errors.withLock { $0 = data }
        drained.signal()
    }.start()
    let out = stdout.fileHandleForReading.readDataToEndOfFile()
    drained.wait()
    process.waitUntilExit()
    return CommandResult(
        status: process.terminationStatus, stdout: String(decoding: out, as: UTF8.self),
        stderr: String(decoding: errors.withLock { $0 }, as: UTF8.self))
}
