import Foundation
import ReelayTestSupport

/// Finds the package's built executables, so end-to-end tests run exactly what `swift build` produced.
enum BuiltProducts {
    /// The package root, derived from this file's location (Tests/ReelayEndToEndTests/Support/BuiltProducts.swift).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 {
            url.deleteLastPathComponent()
        }
        return url.path
    }()

    /// Folders that may hold the executables, best first: $REELAY_BIN_PATH, the folder of the running test bundle
    /// (SwiftPM puts the .xctest next to the products), then `.build/debug`.
    static let candidateFolders: [String] = {
        var folders: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["REELAY_BIN_PATH"], !explicit.isEmpty {
            folders.append(explicit)
        }
        for executable in [Bundle.main.executablePath, CommandLine.arguments.first].compactMap({ $0 }) {
            var url = URL(fileURLWithPath: executable).resolvingSymlinksInPath()
            // Inside an .xctest bundle (Darwin) the binary sits deeper; walk up to the folder holding the bundle.
            while url.path != "/" && url.pathComponents.contains(where: { $0.hasSuffix(".xctest") }) {
                url.deleteLastPathComponent()
            }
            if url.lastPathComponent.hasSuffix(".xctest") == false && url.path != "/" {
                folders.append(url.path)
            }
        }
        folders.append(Self.packageRoot + "/.build/debug")
        return folders
    }()

    /// The absolute path of the built executable `name` (the first candidate folder holding it; else the last guess,
    /// so the error names where it looked).
    static func path(_ name: String) -> String {
        for folder in Self.candidateFolders {
            let candidate = folder + "/" + name
            if FileManager.default.isExecutableFile(atPath: candidate) {
                return candidate
            }
        }
        return Self.candidateFolders.last.map { $0 + "/" + name } ?? name
    }

    /// A fresh folder for one test's logs and files: /tmp/reelay-e2e/<name>-<random>.
    static func testFolder(_ name: String) throws -> String {
        let safe = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "-" })
        let folder = FileManager.default.temporaryDirectory
            .appendingPathComponent("reelay-e2e")
            .appendingPathComponent("\(safe)-\(UUID().uuidString.prefix(8).lowercased())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder.path
    }
}
