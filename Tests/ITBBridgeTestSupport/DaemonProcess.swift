// The daemon as a real process, for what only a process can show: SIGKILL at any instant, its
// descriptors, its limits, systemd's view of it.

public import Foundation
import ITBClient
import ITBTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The built `itb-bridged` (``TestExecutables``) run as a child process, its standard output and
/// error appended to a log file.
///
/// `Sendable` for real: its properties are immutable and `Process` is itself `Sendable`.
public final class DaemonProcess: Sendable {
    /// The child process.
    public let process = Process()
    /// The socket the daemon was told to serve.
    public let socketPath: String

    /// The built `itb-bridged`: `$ITB_DAEMON` when set, else the one next to the test bundle
    /// (``TestExecutables/url(of:)``).
    public static var executable: URL {
        get throws { try TestExecutables.url(of: TestExecutables.daemon) }
    }

    /// Starts the daemon with `arguments`. `environment` is added to the inherited environment
    /// (from which systemd's NOTIFY_SOCKET and WATCHDOG_* are removed unless given here);
    /// `wrapper`, when not empty, is a command that runs the daemon (its path and `arguments`
    /// are appended). Its output is appended to `log`.
    public init(arguments: [String], socketPath: String, log: String, environment: [String: String] = [:],
                wrapper: [String] = []) throws {
        self.socketPath = socketPath
        let daemon = try Self.executable
        if let launcher = wrapper.first {
            process.executableURL = URL(fileURLWithPath: launcher)
            process.arguments = Array(wrapper.dropFirst()) + [daemon.path] + arguments
        } else {
            process.executableURL = daemon
            process.arguments = arguments
        }
        var inherited = ProcessInfo.processInfo.environment
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] { inherited[name] = nil }
        process.environment = inherited.merging(environment) { $1 }
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        process.standardError = handle
        process.standardOutput = handle
        try process.run()
    }

    /// Waits until the API answers `GET /v1/health` with 200; throws after `timeout`, or at once
    /// when the daemon has exited.
    public func waitReady(timeout: Duration = .seconds(60)) async throws {
        try await blocking { try self.waitReadyNow(timeout: timeout) }
    }

    /// ``waitReady(timeout:)``, blocking the calling thread (for a caller that is on a thread of
    /// its own, such as a simulator's `betweenVisits`).
    public func waitReadyNow(timeout: Duration = .seconds(60)) throws {
        let client = UnixHTTPClient(socketPath: socketPath, timeout: .seconds(2))
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let response = try? client.get("/v1/health"), response.status == 200 { return }
            guard process.isRunning else { throw HarnessError("itb-bridged exited with status \(process.terminationStatus) before it became ready") }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw HarnessError("itb-bridged did not become ready")
    }

    /// Kills the daemon with SIGKILL and waits for it.
    public func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Sends SIGTERM and waits for the daemon to exit.
    public func terminate() {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
    }
}
