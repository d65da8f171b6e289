import Foundation
#if canImport(Glibc)
import Glibc
#endif

// What the itbctl tests need besides the shared helpers: the built `itbctl` run as a real process,
// once or as a long-running `watch`. The in-process daemon (TestDaemon) and the executable
// locator are ITBBridgeTestSupport's; the generic helpers (blocking, ScratchDirectory,
// testProgrammer…) are ITBTestSupport's.

/// What one `itbctl` run printed and how it exited.
struct CLIResult: Sendable, CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String
    var description: String { "exit \(status)\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)" }
}

/// The built `itbctl`, run as a real process.
enum Itbctl {
    /// The built `itbctl` (``TestExecutables/url(of:)``).
    static var executable: URL {
        get throws { try TestExecutables.url(of: TestExecutables.itbctl) }
    }

    /// A command that runs `itbctl` as another user (`nobody`): `setpriv`, else `runuser`; nil
    /// when neither exists.
    static var asNobody: [String]? {
        for directory in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
            if FileManager.default.isExecutableFile(atPath: directory + "/setpriv") {
                return [directory + "/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
            }
        }
        for directory in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
            if FileManager.default.isExecutableFile(atPath: directory + "/runuser") {
                return [directory + "/runuser", "-u", "nobody", "--"]
            }
        }
        return nil
    }

    /// Starts `itbctl arguments…` (after `prefix`, e.g. `setpriv …`) with stdout and stderr going
    /// to files in `directory`.
    static func start(_ arguments: [String], prefix: [String] = [], environment: [String: String] = [:],
                      directory: String) throws -> (Process, stdout: String, stderr: String) {
        let process = Process()
        let binary = try executable.path
        let command = prefix + [binary] + arguments
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "ITB_SOCKET")
        env.merge(environment) { _, new in new }
        process.environment = env
        let tag = UUID().uuidString
        let out = directory + "/itbctl-\(tag).out"
        let err = directory + "/itbctl-\(tag).err"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return (process, out, err)
    }

    /// Runs `itbctl arguments…` to completion (at most `timeout`), off the cooperative pool.
    static func run(_ arguments: [String], prefix: [String] = [], environment: [String: String] = [:],
                    directory: String, timeout: Duration = .seconds(30)) async throws -> CLIResult {
        try await blocking {
            let (process, out, err) = try start(arguments, prefix: prefix, environment: environment, directory: directory)
            let deadline = ContinuousClock.now + timeout
            while process.isRunning, ContinuousClock.now < deadline { usleep(10_000) }
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
                throw HarnessError("itbctl \(arguments.joined(separator: " ")) did not finish within \(timeout)")
            }
            process.waitUntilExit()
            return CLIResult(status: process.terminationStatus,
                             stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                             stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
        }
    }
}

/// A long-running `itbctl watch` whose output lines the test reads as they come.
///
/// `Sendable` for real: its properties are immutable (`Process` is itself `Sendable`); its output
/// is read back from files.
final class WatchProcess: Sendable {
    let process: Process
    let stdoutPath: String
    let stderrPath: String

    init(_ arguments: [String], directory: String) throws {
        (process, stdoutPath, stderrPath) = try Itbctl.start(["watch"] + arguments, directory: directory)
    }

    /// The complete lines printed on stdout so far.
    var lines: [String] {
        let text = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // the part after the last newline (empty when the output ends a line)
        return lines
    }

    /// What was printed on stderr so far.
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Waits until `predicate` holds for the lines printed so far; returns them.
    func waitForLines(timeout: Duration = .seconds(20), _ predicate: @escaping @Sendable ([String]) -> Bool) async throws -> [String] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let now = lines
            if predicate(now) { return now }
            guard process.isRunning else { throw HarnessError("itbctl watch exited (\(process.terminationStatus)): \(stderr)") }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw HarnessError("timed out waiting for watch output; got:\n\(lines.joined(separator: "\n"))\nstderr:\n\(stderr)")
    }

    /// Waits until stderr contains `text`.
    func waitForStderr(containing text: String, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if stderr.contains(text) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw HarnessError("timed out waiting for `\(text)` on watch's stderr; got:\n\(stderr)")
    }

    /// Sends `signal` and waits (at most 10 s) for the exit status; nil if it did not exit.
    func stop(with signal: Int32) async throws -> Int32? {
        kill(process.processIdentifier, signal)
        let process = self.process
        return try await blocking { () -> Int32? in
            let deadline = ContinuousClock.now + .seconds(10)
            while process.isRunning, ContinuousClock.now < deadline { usleep(10_000) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                return nil
            }
            process.waitUntilExit()
            return process.terminationStatus
        }
    }
}
