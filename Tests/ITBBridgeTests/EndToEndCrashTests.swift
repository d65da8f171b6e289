import Foundation
import ITBBridge
import ITBClient
import ITBProtocol
import ITBSimulator
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The daemon as a real process, for what only a process can show: SIGKILL at any instant.
final class DaemonProcess: @unchecked Sendable {
    // @unchecked: started and stopped by one test.
    let process = Process()
    let socketPath: String

    /// The built `itb-bridged`: `$ITB_DAEMON` when set (the proof run points it at the release
    /// build), else the one next to this test bundle (same build directory).
    static var executable: URL {
        get throws {
            if let override = ProcessInfo.processInfo.environment["ITB_DAEMON"], !override.isEmpty {
                guard FileManager.default.isExecutableFile(atPath: override) else { throw HarnessError("ITB_DAEMON=\(override) is not an executable") }
                return URL(fileURLWithPath: override)
            }
            var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            for _ in 0..<4 {
                let candidate = directory.appendingPathComponent("itb-bridged")
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
                directory.deleteLastPathComponent()
            }
            let fallback = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent(".build/debug/itb-bridged")
            guard FileManager.default.isExecutableFile(atPath: fallback.path) else {
                throw HarnessError("itb-bridged is not built: run `swift build --build-tests` first")
            }
            return fallback
        }
    }

    /// Starts the daemon with `arguments`. `environment` is added to the inherited environment
    /// (from which systemd's NOTIFY_SOCKET and WATCHDOG_* are removed unless given here);
    /// `wrapper`, when not empty, is a command that runs the daemon (its path and `arguments`
    /// are appended).
    init(arguments: [String], socketPath: String, log: String, environment: [String: String] = [:],
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
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        process.standardError = handle
        process.standardOutput = handle
        try process.run()
    }

    /// Waits until the API answers.
    func waitReady(timeout: Duration = .seconds(20)) async throws {
        let client = UnixHTTPClient(socketPath: socketPath, timeout: .seconds(2))
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let response = try? await blocking({ try client.get("/v1/health") }), response.status == 200 { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw HarnessError("itb-bridged did not become ready")
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func terminate() {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
    }
}

@Suite("Crash safety: SIGKILL during an alarm burst")
struct CrashSafetyTests {
    @Test("killed with SIGKILL in the middle of an alarm burst and restarted, the journal holds each alarm exactly once and every alarm is acknowledged", arguments: [1, 2, 3])
    func killDuringAlarmBurst(round: Int) async throws {
        let directory = try ScratchDirectory("kill9-\(round)")
        defer { directory.remove() }
        let socketPath = directory.path + "/api.sock"
        let programmer = try ProgrammerEndpoint(info: testProgrammer, initialRetransmitDelay: .milliseconds(100),
                                                maximumRetransmitDelay: .milliseconds(400))
        defer { programmer.pty.close() }
        let arguments = ["--no-discovery", "--device", programmer.pty.slavePath, "--socket", socketPath,
                         "--state-dir", directory.path + "/state", "--log-level", "warning"]
        var daemon = try DaemonProcess(arguments: arguments, socketPath: socketPath, log: directory.path + "/daemon.log")
        try await daemon.waitReady()

        // Identify, then send a burst of 40 alarms, and kill the daemon partway through.
        let burst = 40
        let killAfter = Duration.milliseconds(Int64(10 + 25 * round))
        try await blocking {
            try programmer.service(until: { $0.hostHeartbeats > 0 }, timeout: .seconds(10))
        }
        try await blocking {
            for i in 0..<burst {
                let code: AlarmCode = [.lowReservoir, .motorStall, .flowFault, .eri][i % 4]
                try programmer.raise(code: code, priority: .high, transition: i % 8 < 4 ? .raised : .cleared, detail: "burst \(i)", onsetTimeMs: nowMs())
            }
        }
        try await Task.sleep(for: killAfter)
        daemon.kill9()
        let acknowledgedBeforeKill = Set(programmer.acks.filter { $0.status == .stored }.map(\.alarmID))

        // Restart on the same journal; the programmer keeps retransmitting what was not ACKed.
        daemon = try DaemonProcess(arguments: arguments, socketPath: socketPath, log: directory.path + "/daemon.log")
        defer { daemon.terminate() }
        try await daemon.waitReady()
        let allAcked = try await blocking { () -> Bool in
            try programmer.service(until: { $0.pending.isEmpty }, timeout: .seconds(30))
        }
        #expect(allAcked, "every alarm is eventually acknowledged as stored")

        // Exactly once: every device alarm id is stored once, whether it was ACKed before the kill or not.
        let client = UnixHTTPClient(socketPath: socketPath)
        let alarms = try await blocking { try client.get("/v1/alarms?device=\(testProgrammer.programmerSerial)&limit=10000") }
        let list = try #require(try JSONObject.parse(alarms.body)["alarms"] as? [[String: Any]])
        var idsSeen: [Int] = []
        for alarm in list {
            if let raised = alarm["device_alarm_id"] as? Int { idsSeen.append(raised) }
            if let cleared = alarm["cleared_device_alarm_id"] as? Int { idsSeen.append(cleared) }
        }
        #expect(idsSeen.sorted() == Array(1...burst), "each of the \(burst) alarm messages stored exactly once")
        #expect(acknowledgedBeforeKill.count <= burst)
    }
}
