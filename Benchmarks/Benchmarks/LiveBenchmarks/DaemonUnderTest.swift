// A real itb-bridged process: started with a notify socket (exec → READY=1 is the start-up
// figure), its stderr kept in a log file so that a crash can be reported with its last lines,
// stopped with SIGTERM and a deadline.
import Foundation
import ITBClient
#if canImport(Glibc)
import Glibc
#endif

/// Where the bench finds its binaries and keeps its scratch files.
struct BenchContext {
    var daemonPath: String
    var itbctlPath: String
    /// Scratch directory, removed at exit.
    var work: String
}

final class DaemonUnderTest {
    let name: String
    let directory: String
    let socketPath: String
    let logPath: String
    let process: Process
    /// exec → READY=1, milliseconds.
    let startupMs: Double
    /// `--nofile=SOFT:HARD` when started under prlimit(1).
    let prlimit: String?

    var pid: Int32 { process.processIdentifier }
    var client: UnixHTTPClient { UnixHTTPClient(socketPath: socketPath) }
    var isRunning: Bool { process.isRunning }

    /// Starts the daemon and waits for READY=1 (10 s at most).
    ///
    /// - Parameters:
    ///   - device: a `--device` path (a pty's slave), or nil for none.
    ///   - prlimit: `SOFT:HARD` open-file limits to start it with, through `prlimit --nofile=`
    ///     (which execs the daemon, so the pid is the daemon's); nil inherits the bench's limits.
    ///   - configLines: lines of a config file given with `--config`, when not empty.
    init(_ context: BenchContext, device: String?, name: String, prlimit: String? = nil, configLines: [String] = []) throws {
        self.name = name
        directory = context.work + "/" + name
        socketPath = directory + "/api.sock"
        logPath = directory + "/daemon.log"
        self.prlimit = prlimit
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let notifyPath = directory + "/notify"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = unixAddress(notifyPath)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        defer { close(fd) }
        var args = ["--no-discovery", "--socket", socketPath, "--state-dir", directory + "/state", "--log-level", "warning"]
        if let device { args += ["--device", device] }
        if !configLines.isEmpty {
            let configPath = directory + "/itb-bridged.conf"
            try (configLines.joined(separator: "\n") + "\n").write(toFile: configPath, atomically: true, encoding: .utf8)
            args += ["--config", configPath]
        }
        process = Process()
        if let prlimit {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
            process.arguments = ["--nofile=\(prlimit)", "--", context.daemonPath] + args
        } else {
            process.executableURL = URL(fileURLWithPath: context.daemonPath)
            process.arguments = args
        }
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = notifyPath
        process.environment = environment
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        let started = monotonicNs()
        try process.run()
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = started + 10_000_000_000
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else {
                if process.isRunning && monotonicNs() < deadline { continue }
                let tail = Self.tail(logPath)
                let how = process.isRunning ? "no READY=1 within 10 s" : "exited before READY=1 (status \(process.terminationStatus))"
                kill(process.processIdentifier, SIGKILL)
                throw BenchError("\(name): the daemon \(how)\(tail.isEmpty ? "" : "; its log:\n" + tail)")
            }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0, String(decoding: buffer[0..<n], as: UTF8.self).contains("READY=1") { break }
        }
        startupMs = Double(monotonicNs() - started) / 1e6
    }

    /// How the process ended, or nil while it runs.
    var exitDescription: String? {
        guard !process.isRunning else { return nil }
        switch process.terminationReason {
        case .uncaughtSignal: return "killed by signal \(process.terminationStatus)"
        default: return "exited with status \(process.terminationStatus)"
        }
    }

    /// The last lines of the daemon's stderr.
    func logTail(_ lines: Int = 20) -> String { Self.tail(logPath, lines) }

    static func tail(_ path: String, _ lines: Int = 20) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "" }
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Reports a daemon that is no longer running (a crash) as a problem; true if it runs.
    @discardableResult
    func checkAlive(_ during: String) -> Bool {
        if let exit = exitDescription {
            Report.problem("\(name): the daemon \(exit) during \(during); last lines of its log (\(logPath)):\n\(logTail())")
            return false
        }
        return true
    }

    /// SIGTERM, then up to 10 s for a graceful exit; a daemon that hangs is reported and killed,
    /// one that exits with a failure status is reported.
    /// SIGTERM → exit, milliseconds, once stopped.
    private(set) var stopMs: Double?

    func stop() {
        guard stopMs == nil, checkAlive("the run") else { return }
        let signalled = monotonicNs()
        kill(pid, SIGTERM)
        if !waitFor(timeout: 10, stepMs: 2, { !process.isRunning }) {
            Report.problem("\(name): the daemon did not stop within 10 s of SIGTERM; killed (SIGKILL)")
            kill(pid, SIGKILL)
        }
        process.waitUntilExit()
        stopMs = Double(monotonicNs() - signalled) / 1e6
        if process.terminationReason == .uncaughtSignal || process.terminationStatus != 0 {
            Report.problem("\(name): the daemon \(exitDescription ?? "?") after SIGTERM; last lines of its log:\n\(logTail())")
        }
    }
}
