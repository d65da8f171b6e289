import Foundation
@_exported import ITBTestSupport
import ITBBridge
import ITBClient
import ITBProtocol
import ITBSimulator
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// What the itbctl tests need: an in-process daemon that can be stopped and started again on the
// same state directory, a simulated programmer on a pty, and the built `itbctl` run as a real
// process. The generic helpers (blocking, ScratchDirectory, testProgrammer…) are ITBTestSupport's.

/// The bridge daemon in this process on a scratch directory, following one simulated
/// programmer; it can be stopped and started again on the same state directory and socket.
final class TestDaemon: @unchecked Sendable {
    // @unchecked: driven by one test at a time; the programmer only through `blocking`.
    let directory: ScratchDirectory
    private(set) var configuration: BridgeConfiguration
    let programmer: ProgrammerEndpoint
    /// The socket clients are told about; the daemon may run on another one for a while.
    let socketPath: String
    private var task: Task<Void, any Error>?

    /// A client of the socket the daemon currently serves.
    var client: UnixHTTPClient { UnixHTTPClient(socketPath: configuration.socketPath, timeout: .seconds(10)) }

    /// Starts the daemon and waits until its socket is published.
    init(name: String, configure: (inout BridgeConfiguration) -> Void = { _ in }) async throws {
        directory = try ScratchDirectory(name)
        programmer = try ProgrammerEndpoint(info: testProgrammer, initialRetransmitDelay: .milliseconds(200),
                                            maximumRetransmitDelay: .seconds(1))
        var configuration = BridgeConfiguration()
        configuration.devices = [programmer.pty.slavePath]
        configuration.discovery = false
        configuration.socketPath = directory.path + "/api.sock"
        configuration.stateDirectory = directory.path + "/state"
        configuration.heartbeatInterval = .milliseconds(200)
        configure(&configuration)
        self.configuration = configuration
        socketPath = configuration.socketPath
        try await start()
    }

    /// Starts (or starts again) the daemon on the same state directory, on its socket or, to
    /// hide it from clients, on `otherSocket`.
    func start(otherSocket: String? = nil) async throws {
        configuration.socketPath = otherSocket ?? socketPath
        let configuration = self.configuration
        var logger = Logger(label: "itbctl-test") { label in DaemonLogHandler(label: label, level: .warning, journald: false) }
        logger.logLevel = .warning
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        let daemon = BridgeDaemon(configuration: configuration, logger: logger, onReady: { readyContinuation.yield() })
        task = Task { try await daemon.run() }
        var iterator = ready.makeAsyncIterator()
        _ = await iterator.next()
    }

    /// Stops the daemon as SIGTERM would (cancellation); the state directory stays.
    func stop() async {
        task?.cancel()
        _ = try? await task?.value
        task = nil
    }

    /// Stops the daemon, closes the programmer and removes the scratch directory.
    func shutdown() async {
        await stop()
        programmer.pty.close()
        directory.remove()
    }

    /// `GET path` as JSON, off the cooperative pool.
    func json(_ path: String) async throws -> [String: Any] {
        let client = self.client
        let response = try await blocking { try client.get(path) }
        guard response.status == 200 else { throw HarnessError("GET \(path) answered \(response.status): \(response.text)") }
        return try parseObject(response.text)
    }

    /// Waits until `GET path` answers 200 and `predicate` holds for its JSON.
    func waitFor(_ path: String, timeout: Duration = .seconds(10), _ predicate: @escaping ([String: Any]) -> Bool) async throws -> [String: Any] {
        try await waitForJSON(client, path, timeout: timeout, predicate)
    }

    /// Runs `body` with the programmer on a thread of its own.
    func withProgrammer<T: Sendable>(_ body: @escaping @Sendable (ProgrammerEndpoint) throws -> T) async throws -> T {
        let programmer = self.programmer
        return try await blocking { try body(programmer) }
    }

    /// Services the programmer (ACKs, host heartbeats, retransmissions) until `condition` holds
    /// or `timeout` passes; true if it held.
    func serviceProgrammer(timeout: Duration = .seconds(15), until condition: @escaping @Sendable (ProgrammerEndpoint) -> Bool) async throws -> Bool {
        try await withProgrammer { try $0.service(until: condition, timeout: timeout) }
    }

    /// Connects the programmer: it announces itself once the bridge has sent a HOST_HEARTBEAT,
    /// then waits until the API shows it connected.
    func connectProgrammer() async throws {
        try await waitUntilIdentified(programmer, client: client)
    }

    /// Raises an alarm and services the programmer until the bridge has stored it (ACK stored).
    @discardableResult
    func raiseAndStore(_ code: AlarmCode, _ priority: AlarmPriority, transition: AlarmTransition = .raised, detail: String = "") async throws -> Alarm {
        let alarm = try await withProgrammer { try $0.raise(code: code, priority: priority, transition: transition, detail: detail, onsetTimeMs: nowMs()) }
        guard try await serviceProgrammer(until: { $0.pending[alarm.alarmID] == nil }) else {
            throw HarnessError("alarm \(alarm.alarmID) was never acknowledged as stored")
        }
        return alarm
    }
}

/// What one `itbctl` run printed and how it exited.
struct CLIResult: Sendable, CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String
    var description: String { "exit \(status)\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)" }
}

/// The built `itbctl`, run as a real process.
enum Itbctl {
    /// The built `itbctl` next to this test bundle (same build directory).
    static var executable: URL {
        get throws {
            var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            for _ in 0..<4 {
                let candidate = directory.appendingPathComponent("itbctl")
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
                directory.deleteLastPathComponent()
            }
            let fallback = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent(".build/debug/itbctl")
            guard FileManager.default.isExecutableFile(atPath: fallback.path) else {
                throw HarnessError("itbctl is not built: run `swift build --build-tests` first")
            }
            return fallback
        }
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
final class WatchProcess: @unchecked Sendable {
    // @unchecked: Process is used from one test; reads are of files.
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
