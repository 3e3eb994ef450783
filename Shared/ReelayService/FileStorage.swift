import Foundation

/// Object storage in a local folder (`STORAGE_URL=file://DIR`): outputs are kept as `<task id>.mp4`.
public struct FileStorage: Sendable {
    public let directory: String

    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// The storage key of a task's output.
    public func key(for taskID: UUID) -> String {
        "\(taskID.uuidString.lowercased()).mp4"
    }

    public func path(forKey key: String) -> String {
        (self.directory as NSString).appendingPathComponent((key as NSString).lastPathComponent)
    }

    public func exists(key: String) -> Bool {
        FileManager.default.fileExists(atPath: self.path(forKey: key))
    }

    public func url(forKey key: String) -> String {
        "file://" + self.path(forKey: key)
    }
}
