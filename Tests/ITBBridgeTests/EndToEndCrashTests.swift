import Foundation
import ITBBridge
import ITBClient
import ITBProtocol
import ITBSimulator
import Testing
#if canImport(Glibc)
import Glibc
#endif

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
