import Dispatch
import Foundation
import ITBCapture
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
        let messages: [Message] = (0..<60).map { i -> Message in
            // A capture replays only when it says who the programmer is (itbctl replay refuses
            // one without; see `replayNeedsAnIdentity`): this one starts with it.
            if i == 0 { return .programmerInfo(testProgrammer) }
            return switch i % 4 {
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

/// Writes a capture file holding `messages` as programmer → host records, one frame each.
func writeCapture(_ path: String, _ messages: [Message], context: [Message] = []) throws {
    let writer = try CaptureFileWriter(file: path)
    var encoder = FrameEncoder(firstSequence: 10)
    for message in context {
        encoder.encode(message).withUnsafeBytes { writer.record(.context, $0) }
    }
    for message in messages {
        encoder.encode(message).withUnsafeBytes { writer.record(.deviceToHost, $0) }
    }
    writer.close()
    if let failure = writer.failure { throw HarnessError(failure) }
}

@Suite("Captures start with who the programmer is; a replay never drops an alarm for want of it")
struct CaptureIdentityTests {
    static let stall = Message.alarm(Alarm(onsetTimeMs: 1_700_000_000_000, alarmID: 41, code: .motorStall, priority: .high,
                                           transition: .raised, detail: "stalled"))
    static let status = Message.pumpStatus(PumpStatus(deviceTimeMs: 1_700_000_000_000, dailyDoseUgX10: 4000, concentrationUgPerML: 2000,
                                                      activeAlarmMask: 0, pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: 90))

    @Test("itbctl record makes the programmer announce itself, so the capture has PROGRAMMER_INFO before anything else; --passive writes nothing")
    func recordAsksTheProgrammerWhoItIs() async throws {
        let directory = try ScratchDirectory("record-identity")
        defer { directory.remove() }
        for passive in [false, true] {
            let capture = directory.path + "/line-\(passive).itbcap"
            let programmer = try ProgrammerEndpoint(info: testProgrammer)
            defer { programmer.pty.close() }
            let recorder = try ToolProcess(["record", "--device", programmer.pty.slavePath, "--out", capture, "--duration", "60"]
                                           + (passive ? ["--passive"] : []))
            #expect(try await blocking { recorder.waitForError(containing: "recording") }, "\(recorder.errorOutput)")
            // Mid-conversation: the programmer's alarm comes first, then it serves the line (and
            // announces itself when a host heartbeat says a host has started).
            try await blocking {
                try programmer.send(Self.stall)
                _ = try programmer.service(until: { _ in false }, timeout: .milliseconds(2500))
            }
            kill(recorder.process.processIdentifier, SIGINT)
            let (status, _, log) = try await blocking { recorder.finish() }
            #expect(status == 0, "\(log)")
            let (_, decoded, _) = try await blocking { try ToolProcess(["decode", "--host-frames", capture]).finish() }
            let types = try String(decoding: decoded, as: UTF8.self).split(separator: "\n").map { try JSONObject.parse(Array($0.utf8)) }
            let deviceTypes = types.filter { $0["direction"] == nil }.compactMap { $0["type"] as? String }
            let hostTypes = types.filter { $0["direction"] as? String == "host_to_device" }.compactMap { $0["type"] as? String }
            if passive {
                #expect(hostTypes.isEmpty, "--passive writes nothing: \(hostTypes)")
                #expect(!deviceTypes.contains("programmer_info"))
                #expect(log.contains("has no PROGRAMMER_INFO"), "\(log)")
            } else {
                #expect(hostTypes.contains("host_heartbeat") && Set(hostTypes) == ["host_heartbeat"], "only heartbeats: \(hostTypes)")
                #expect(deviceTypes.contains("programmer_info"), "\(deviceTypes)")
                // The replay identifies the programmer first.
                let identity = try #require(try CaptureIdentity.find(in: capture))
                #expect(identity.info.programmerSerial == testProgrammer.programmerSerial)
            }
        }
    }

    @Test("a capture that starts mid-stream (an alarm before PROGRAMMER_INFO) replays through the daemon with the alarm stored under the programmer")
    func midStreamReplayStoresTheAlarm() async throws {
        let directory = try ScratchDirectory("mid-stream")
        defer { directory.remove() }
        let capture = directory.path + "/mid.itbcap"
        try writeCapture(capture, [Self.stall, Self.status, .programmerInfo(testProgrammer), Self.status])
        let bridge = try await TestDaemon(name: "mid-stream-replay") {
            $0.devices = []
            $0.replayFiles = [capture]
        }
        do {
            let alarms = try await bridge.waitFor("/v1/alarms?device=\(testProgrammer.programmerSerial)") {
                (($0["alarms"] as? [[String: Any]]) ?? []).contains { $0["code"] as? String == "motor_stall" }
            }
            #expect((alarms["alarms"] as? [[String: Any]])?.first?["device_alarm_id"] as? Int == 41)
        } catch {
            await bridge.stop()
            throw error
        }
        await bridge.stop()
    }

    @Test("a capture with no PROGRAMMER_INFO at all keeps its alarm under an unidentified programmer in the daemon, and itbctl replay refuses it")
    func replayNeedsAnIdentity() async throws {
        let directory = try ScratchDirectory("no-identity")
        defer { directory.remove() }
        let capture = directory.path + "/anonymous.itbcap"
        try writeCapture(capture, [Self.status, Self.stall])
        #expect(try CaptureIdentity.find(in: capture) == nil)
        let bridge = try await TestDaemon(name: "anonymous-replay") {
            $0.devices = []
            $0.replayFiles = [capture]
        }
        do {
            let alarms = try await bridge.waitFor("/v1/alarms") {
                (($0["alarms"] as? [[String: Any]]) ?? []).contains { $0["code"] as? String == "motor_stall" }
            }
            let stored = (alarms["alarms"] as? [[String: Any]])?.first { $0["code"] as? String == "motor_stall" }
            #expect(stored?["device"] as? String == "unidentified:replay:\(capture)")
        } catch {
            await bridge.stop()
            throw error
        }
        await bridge.stop()

        let (status, _, log) = try await blocking { try ToolProcess(["replay", capture, "--wait-for-host", "1"]).finish() }
        #expect(status == 6, "\(log)")
        #expect(log.contains("has no PROGRAMMER_INFO"), "\(log)")
    }

    @Test("with capture_dir, a rotated capture file starts with what the bridge knew: the last PROGRAMMER_INFO and PUMP_SESSION, as context records")
    func rotatedCapturesStartWithContext() async throws {
        let directory = try ScratchDirectory("rotated-context")
        defer { directory.remove() }
        let captures = directory.path + "/captures"
        let bridge = try await TestDaemon(name: "rotated-context-daemon") {
            $0.captureDirectory = captures
            $0.captureRotateBytes = 2048
        }
        do {
            try await bridge.connectProgrammer()
            try await bridge.withProgrammer { p in
                try p.send(.pumpSession(PumpSession(implantDateMs: 1_600_000_000_000, eriDateMs: 0, reservoirCapacityUL: 40_000, manufacturerCode: 1,
                                                    event: .begin, batteryState: .ok, pumpModel: "SynchroMed-T", pumpSerial: "SN-77")))
                for _ in 0..<120 {
                    try p.send(Self.status)
                    _ = try p.service(timeout: .zero)
                    usleep(2000)
                }
            }
            _ = try await bridge.waitFor("/v1/devices/\(testProgrammer.programmerSerial)") { ($0["pump_session"] as? [String: Any]) != nil }
        } catch {
            await bridge.stop()
            throw error
        }
        await bridge.stop()
        // Each file, in the order written (by the start time in its header), with its first two records.
        var files: [(name: String, start: Int64, records: [(CaptureFormat.Direction, MessageType?)])] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: captures) where name.hasSuffix(".itbcap") {
            let reader = try CaptureFileReader(path: captures + "/" + name)
            defer { reader.close() }
            var first: [(CaptureFormat.Direction, MessageType?)] = []
            let (kind, _) = try reader.read { record in
                guard first.count < 2 else { return }
                var decoder = FrameDecoder()
                var type: MessageType?
                decoder.feed(record.data) { type = $0.type }
                first.append((record.direction, type))
            }
            guard case .capture(let start) = kind else { throw HarnessError("\(name) is not a capture") }
            files.append((name, start, first))
        }
        files.sort { $0.start < $1.start }
        #expect(files.count >= 3, "\(files.map(\.name))")
        // The first file began with the link: nothing known yet, no context.
        #expect(files.first?.records.first?.0 != .context)
        for file in files.dropFirst() {
            #expect(file.records.first?.0 == .context && file.records.first?.1 == .programmerInfo, "\(file.name): \(file.records)")
            // So each file replays on its own: it says who the programmer is before anything else.
            #expect(try CaptureIdentity.find(in: captures + "/" + file.name)?.framesBefore == 0)
        }
        let last = try #require(files.last)
        #expect(last.records.map(\.0) == [.context, .context], "\(last.name)")
        #expect(last.records.map(\.1) == [.programmerInfo, .pumpSession], "\(last.name)")
    }
}

