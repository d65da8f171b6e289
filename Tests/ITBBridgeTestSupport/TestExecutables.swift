// Where the tests find the built executables: one locator for the daemon, itbctl and any other
// product of this package.

public import Foundation
import ITBTestSupport

/// The package's built executables, as the tests run them.
///
/// `$ITB_DAEMON`, when set, names the daemon to test (the proof run points it at the release
/// build); the other executables are then taken from the same directory, so that a run tests one
/// build. Otherwise each is looked up next to the test bundle (the same build directory), then in
/// the repository's `.build/debug`.
public enum TestExecutables {
    /// The daemon's executable name.
    public static let daemon = "itb-bridged"
    /// The command-line tool's executable name.
    public static let itbctl = "itbctl"

    /// The built executable called `name` (`itb-bridged`, `itbctl`); throws a ``HarnessError``
    /// that says how to build it when there is none.
    public static func url(of name: String) throws -> URL {
        if let override = ProcessInfo.processInfo.environment["ITB_DAEMON"], !override.isEmpty {
            let daemon = URL(fileURLWithPath: override)
            let candidate = name == Self.daemon ? daemon : daemon.deletingLastPathComponent().appendingPathComponent(name)
            guard FileManager.default.isExecutableFile(atPath: candidate.path) else {
                throw HarnessError("ITB_DAEMON=\(override): \(candidate.path) is not an executable")
            }
            return candidate
        }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory.deleteLastPathComponent()
        }
        // This file is Tests/ITBBridgeTestSupport/TestExecutables.swift.
        let fallback = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/\(name)")
        guard FileManager.default.isExecutableFile(atPath: fallback.path) else {
            throw HarnessError("\(name) is not built: run `swift build --build-tests` first")
        }
        return fallback
    }

    /// The directory that holds the built executables (that of ``url(of:)`` for the daemon).
    public static func directory() throws -> URL {
        try url(of: daemon).deletingLastPathComponent()
    }
}
