import Dispatch
import Foundation
import ITBProtocol
import ITBSerial
import ITBSimulator
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs the built `itbctl` and collects its output.
///
/// `Sendable` for real: `Process`, `Pipe` and the semaphore are; what a thread of its own reads
/// from stderr is behind a `Mutex`.
final class ToolProcess: Sendable {
    let process = Process()
    private let stdout = Pipe()
    private let stderr = Pipe()
    private let errorText = Mutex(Data())
    private let errorDone = DispatchSemaphore(value: 0)

    init(_ arguments: [String]) throws {
        process.executableURL = try TestExecutables.url(of: TestExecutables.itbctl)
        process.arguments = arguments
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        let handle = stderr.fileHandleForReading
        Thread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                errorText.withLock { $0.append(chunk) }
            }
            errorDone.signal()
        }.start()
    }

    /// What the tool wrote to stderr so far.
    var errorOutput: String { errorText.withLock { String(decoding: $0, as: UTF8.self) } }

    /// Waits until stderr contains `text` (or `timeout` passes); true if it did.
    func waitForError(containing text: String, timeout: Duration = .seconds(20)) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if errorOutput.contains(text) { return true }
            usleep(10_000)
        }
        return errorOutput.contains(text)
    }

    /// Waits for exit; returns (status, stdout, stderr).
    func finish() -> (Int32, [UInt8], String) {
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        errorDone.wait()
        return (process.terminationStatus, [UInt8](out), errorOutput)
    }
}

@Suite("Captures: record, replay, decode")
struct RecordReplayTests {
    @Test("record → replay → decode gives byte-identical frames, and a damaged capture is read past the damage with a warning")
    func recordReplayDecode() async throws {
        let directory = try ScratchDirectory("capture")
        defer { directory.remove() }
        let capture = directory.path + "/line.itbcap"
        let programmer = try ProgrammerEndpoint(info: testProgrammer)
        defer { programmer.pty.close() }

        // Record what the programmer sends.
        let recorder = try ToolProcess(["record", "--device", programmer.pty.slavePath, "--out", capture, "--duration", "60"])
        // Bytes written before the recorder has opened and configured the port are stale input it
        // flushes: wait for its "recording" line, printed once the port is ready.
        #expect(try await blocking { recorder.waitForError(containing: "recording") }, "\(recorder.errorOutput)")
        var encoder = FrameEncoder(firstSequence: 100)
        let now = nowMs()
        let messages: [Message] = (0..<60).map { i in
            switch i % 4 {
            case 0: .pumpStatus(PumpStatus(deviceTimeMs: now + Int64(i), dailyDoseUgX10: 4000, concentrationUgPerML: 2000, activeAlarmMask: 0,
                                           pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: UInt8(i)))
            case 1: .reservoir(Reservoir(deviceTimeMs: now + Int64(i), lastRefillTimeMs: now - 86_400_000, volumeULX10: UInt32(300_000 - i),
                                         capacityUL: 40_000, lowReservoirThresholdUL: 2000, deliveredSinceRefillULX10: UInt32(i), volumeSource: .calculated))
            case 2: .heartbeat(Heartbeat(bootID: 7, uptimeS: UInt32(i), highestAlarmID: 0, unackedAlarmCount: 0))
            default: .alarm(Alarm(onsetTimeMs: now, alarmID: UInt32(i), code: .lowReservoir, priority: .medium, transition: .raised, detail: "a\(i)"))
            }
        }
        let frames = messages.map { encoder.encode($0) }
        try await blocking {
            for frame in frames {
                try programmer.sendRaw(frame)
                usleep(2000)
            }
        }
        // Stop it the way an engineer does: Ctrl-C, once the line has gone quiet.
        try await Task.sleep(for: .milliseconds(500))
        kill(recorder.process.processIdentifier, SIGINT)
        let (recordStatus, _, recordLog) = try await blocking { recorder.finish() }
        #expect(recordStatus == 0, "\(recordLog)")
        #expect(recordLog.contains("\(frames.reduce(0) { $0 + $1.count }) bytes"), "the recorder saw every byte: \(recordLog)")

        // Decode: one JSON line per frame, in order.
        let (decodeStatus, decoded, decodeLog) = try await blocking { try ToolProcess(["decode", capture]).finish() }
        #expect(decodeStatus == 0, "\(decodeLog)")
        let lines = String(decoding: decoded, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == frames.count)
        let sequences = try lines.map { try JSONObject.parse(Array($0.utf8))["seq"] as? Int }
        #expect(sequences == (100..<160).map { Optional($0) })
        #expect(decodeLog.contains("\"frames_delivered\":60"))

        // Replay into a pty and read it as the host would: the same bytes come out.
        let link = directory.path + "/replay"
        let replayer = try ToolProcess(["replay", capture, "--full-speed", "--link", link, "--linger", "3"])
        var waited = 0
        while access(link, F_OK) != 0 && waited < 200 {
            try await Task.sleep(for: .milliseconds(20))
            waited += 1
        }
        let port = try SerialPort.open(path: link)
        defer { port.close() }
        var hostEncoder = FrameEncoder()
        try port.write(hostEncoder.encode(.hostHeartbeat(HostHeartbeat(hostTimeMs: nowMs(), uptimeS: 1))))
        let replayed = try await blocking { () -> [[UInt8]] in
            var decoder = FrameDecoder()
            var out: [[UInt8]] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            let deadline = ContinuousClock.now + .seconds(10)
            while out.count < frames.count && ContinuousClock.now < deadline {
                let n = try buffer.withUnsafeMutableBytes { try port.read(into: $0, timeout: .milliseconds(200)) }
                buffer.withUnsafeBytes { raw in decoder.feed(UnsafeRawBufferPointer(rebasing: raw[0..<n])) { out.append(Array($0.bytes)) } }
            }
            return out
        }
        #expect(replayed == frames, "replayed frames are byte-identical to the recorded ones")
        let (replayStatus, _, replayLog) = try await blocking { replayer.finish() }
        #expect(replayStatus == 0, "\(replayLog)")

        // Damage one record in the middle: decode warns, reads on, loses only that record's frames.
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: capture)))
        bytes[bytes.count / 2] ^= 0x5A
        let damaged = directory.path + "/damaged.itbcap"
        try Data(bytes).write(to: URL(fileURLWithPath: damaged))
        let (status, damagedOut, damagedLog) = try await blocking { try ToolProcess(["decode", damaged]).finish() }
        #expect(status == 0)
        #expect(damagedLog.contains("damaged"))
        let surviving = String(decoding: damagedOut, as: UTF8.self).split(separator: "\n").count
        #expect(surviving >= frames.count - 4 && surviving < frames.count)
        let (strictStatus, _, _) = try await blocking { try ToolProcess(["decode", "--strict", damaged]).finish() }
        #expect(strictStatus == 6)
    }
}

@Suite("Read-only replay of a capture through the daemon")
struct DaemonReplayTests {
    @Test("a capture given to the daemon runs through the same pipeline: the API shows its pump, values and alarms")
    func replayCaptureFile() async throws {
        let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("protocol-spec/samples/low-reservoir.itbcap").path
        let bridge = try await TestDaemon(name: "replay") {
            $0.devices = []
            $0.replayFiles = [sample]
        }
        do {
            let id = "PGM-SIM-0001"
            _ = try await bridge.waitFor("/v1/devices/\(id)/reservoir") { ($0["capacity_ul"] as? Int) == 20_000 }
            let alarms = try await bridge.waitFor("/v1/alarms?device=\(id)") { object in
                ((object["alarms"] as? [[String: Any]]) ?? []).contains { $0["code"] as? String == "low_reservoir" }
            }
            #expect((alarms["alarms"] as? [[String: Any]])?.contains { $0["source"] as? String == "pump" } == true)
            let status = try await bridge.json("/v1/devices/\(id)/status")
            #expect(status["concentration_ug_per_ml"] as? Int == 500)
        } catch {
            await bridge.shutdown()
            throw error
        }
        await bridge.shutdown()
    }
}
