import Foundation
import Synchronization
import ITBClient
import ITBProtocol
import ITBSimulator
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Issue 12, fixes 2–5, each with the exact bytes the issue names, through the daemon as a
// process: a frame with valid CRCs never kills it, a time RFC 3339 cannot show is `null` with its
// raw value, protocol text keeps every byte (shown escaped), and every alarm message ACKed stored
// is findable in `/v1/alarms`.

@Suite("Wire extremes through the daemon", .serialized)
struct WireExtremesTests {
    static let serial = "PGM-WIRE"

    /// A daemon following one programmer whose `PROGRAMMER_INFO.hardware_model` is the bytes
    /// `43 50 01 58 E9`.
    final class Bench: Sendable {
        let directory: ScratchDirectory
        let client: UnixHTTPClient
        let programmer: ProgrammerEndpoint
        let daemon: DaemonProcess
        let encoder = Mutex(FrameEncoder(firstSequence: 100_000))

        init() async throws {
            directory = try ScratchDirectory("wire")
            let socketPath = directory.path + "/api.sock"
            client = UnixHTTPClient(socketPath: socketPath)
            var info = testProgrammer
            info.programmerSerial = WireExtremesTests.serial
            info.hardwareModel = String(decoding: [0x43, 0x50, 0x01, 0x58], as: UTF8.self) + "\u{E9}"
            programmer = try ProgrammerEndpoint(info: info)
            daemon = try DaemonProcess(arguments: ["--no-discovery", "--device", programmer.pty.slavePath, "--socket", socketPath,
                                                   "--state-dir", directory.path + "/state", "--log-level", "warning"],
                                       socketPath: socketPath, log: directory.path + "/daemon.log")
            try await daemon.waitReady()
            try await DeviceFaults.identify(programmer, client: client, daemon: daemon.process.processIdentifier)
        }

        func close() {
            daemon.terminate()
            programmer.pty.close()
            directory.remove()
        }

        /// Sends `payload` as one frame of `type`, byte for byte.
        func send(_ type: MessageType, _ payload: [UInt8]) throws {
            let frame = encoder.withLock { $0.encode(type: type, payload: payload) }
            try programmer.sendRaw(frame)
        }

        /// Sends an `ALARM` payload and services the line until the bridge ACKs that alarm id;
        /// returns the ACK's status.
        func sendAlarm(_ payload: [UInt8], id: UInt32) async throws -> AckStatus? {
            let before = programmer.acks.filter { $0.alarmID == id }.count
            try send(.alarm, payload)
            let programmer = self.programmer
            return try await blocking {
                _ = try programmer.service(until: { $0.acks.filter { $0.alarmID == id }.count > before }, timeout: .seconds(10))
                return programmer.acks.last { $0.alarmID == id }?.status
            }
        }

        func get(_ path: String) async throws -> (status: Int, text: String) {
            let client = self.client
            let programmer = self.programmer
            // Keep servicing the line while waiting for the answer (host heartbeats, ACKs).
            _ = try await blocking { try programmer.service(timeout: .milliseconds(50)) }
            let response = try await blocking { try client.get(path) }
            return (response.status, response.text)
        }

        var alive: Bool { kill(daemon.process.processIdentifier, 0) == 0 && daemon.process.isRunning }
    }

    static func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }

    /// `PUMP_STATUS` with `device_time_ms` given as its 8 bytes.
    static func pumpStatus(deviceTime: [UInt8]) -> [UInt8] {
        deviceTime + le(UInt32(4000)) + le(UInt32(2000)) + le(UInt32(0)) + [1, 0, 90, 0]
    }

    /// `RESERVOIR` with `device_time_ms` and `last_refill_time_ms` given as their 8 bytes.
    static func reservoir(deviceTime: [UInt8]) -> [UInt8] {
        deviceTime + deviceTime + le(UInt32(150_000)) + le(UInt32(20_000)) + le(UInt32(2_000)) + le(UInt32(0)) + [0] + [UInt8](repeating: 0, count: 7)
    }

    /// `ALARM` with the given fields; `detail` is sent byte for byte.
    static func alarm(id: UInt32, code: AlarmCode, transition: AlarmTransition, detail: [UInt8] = []) -> [UInt8] {
        le(Int64(1_780_000_000_000)) + le(id) + le(code.rawValue) + [AlarmPriority.high.rawValue, transition.rawValue, UInt8(detail.count)]
            + [UInt8](repeating: 0, count: 7) + detail
    }

    @Test("the hardware model's bytes 43 50 01 58 E9 are kept and shown escaped: \"CP\\u0001X\\u00e9\"")
    func protocolTextKeepsEveryByte() async throws {
        let bench = try await Bench()
        defer { bench.close() }
        var writer = PayloadWriter()
        ProgrammerInfo(bootID: 1, firmwareVersion: 0, protocolMinor: 0, programmerSerial: "", hardwareModel: bench.programmer.info.hardwareModel)
            .encode(into: &writer)
        #expect(Array(writer.bytes[32..<37]) == [0x43, 0x50, 0x01, 0x58, 0xE9], "the programmer sends exactly those bytes")
        let device = try await bench.get("/v1/devices/\(Self.serial)")
        #expect(device.status == 200)
        #expect(device.text.contains(#""hardware_model":"CP\u0001X\u00e9""#), "\(device.text)")
    }

    @Test("PUMP_STATUS and RESERVOIR with device_time_ms = i64 min (00 00 00 00 00 00 00 80) and i64 max: the daemon lives, the time is null with its raw value")
    func extremeDeviceTimes() async throws {
        let bench = try await Bench()
        defer { bench.close() }
        let minimum: [UInt8] = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80]
        let maximum: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]
        for (bytes, raw) in [(minimum, "-9223372036854775808"), (maximum, "9223372036854775807")] {
            try bench.send(.pumpStatus, Self.pumpStatus(deviceTime: bytes))
            try bench.send(.reservoir, Self.reservoir(deviceTime: bytes))
            var status = try await bench.get("/v1/devices/\(Self.serial)/status")
            let deadline = ContinuousClock.now + .seconds(10)
            while !status.text.contains(raw), ContinuousClock.now < deadline {
                status = try await bench.get("/v1/devices/\(Self.serial)/status")
            }
            #expect(bench.alive, "a frame with valid CRCs never kills the daemon")
            #expect(status.status == 200)
            #expect(status.text.contains(#""device_time":null,"device_time_raw":\#(raw)"#), "\(status.text)")
            #expect(status.text.contains(#""clock_offset_ms":null"#), "\(status.text)")
            let reservoir = try await bench.get("/v1/devices/\(Self.serial)/reservoir")
            #expect(reservoir.status == 200)
            #expect(reservoir.text.contains(#""device_time":null,"device_time_raw":\#(raw)"#), "\(reservoir.text)")
            #expect(reservoir.text.contains(#""last_refill_time":null,"last_refill_time_raw":\#(raw)"#), "\(reservoir.text)")
            #expect(!reservoir.text.contains("\"0000-") && !reservoir.text.contains("\"9999-"), "never a plausible wrong date: \(reservoir.text)")
        }
        #expect(try await bench.get("/v1/health").status == 200)
    }

    @Test("every alarm message ACKed stored is in /v1/alarms: a detail byte B0 kept, a second raise of an active code, a clear before its raise, an alarm id reused with other content")
    func everyStoredAlarmIsListed() async throws {
        let bench = try await Bench()
        defer { bench.close() }
        // 1: raise low_reservoir, detail "T 38.5 B0 C".
        #expect(try await bench.sendAlarm(Self.alarm(id: 1, code: .lowReservoir, transition: .raised, detail: [0x54, 0x20, 0x33, 0x38, 0xB0, 0x43]), id: 1) == .stored)
        let first = try await bench.get("/v1/alarms?device=\(Self.serial)")
        #expect(first.text.contains(#""detail":"T 38\u00b0C""#), "the byte B0 is kept, shown escaped: \(first.text)")
        // 2: low_reservoir raised again while active (a new alarm id).
        #expect(try await bench.sendAlarm(Self.alarm(id: 2, code: .lowReservoir, transition: .raised), id: 2) == .stored)
        // 508 arrives before 507: the clear of empty_reservoir, then its raise.
        #expect(try await bench.sendAlarm(Self.alarm(id: 508, code: .emptyReservoir, transition: .cleared), id: 508) == .stored)
        #expect(try await bench.sendAlarm(Self.alarm(id: 507, code: .emptyReservoir, transition: .raised), id: 507) == .stored)
        // 1 again, with other content (a reset programmer): a new alarm, and a bridge alarm says so.
        #expect(try await bench.sendAlarm(Self.alarm(id: 1, code: .motorStall, transition: .raised), id: 1) == .stored)
        // 1 again with the first content: a retransmission, ACKed stored, nothing new.
        #expect(try await bench.sendAlarm(Self.alarm(id: 1, code: .motorStall, transition: .raised), id: 1) == .stored)

        let listed = try await bench.get("/v1/alarms?device=\(Self.serial)&limit=100")
        #expect(listed.status == 200)
        let alarms = try #require(try parseObject(listed.text)["alarms"] as? [[String: Any]])
        let pump = alarms.filter { $0["source"] as? String == "pump" }
        func with(_ code: String) -> [[String: Any]] { pump.filter { $0["code"] as? String == code } }

        let low = try #require(with("low_reservoir").first)
        #expect(with("low_reservoir").count == 1)
        #expect(low["device_alarm_ids"] as? [Int] == [1, 2], "the second raise joined the active alarm")
        #expect(low["state"] as? String == "active")

        let empty = try #require(with("empty_reservoir").first)
        #expect(with("empty_reservoir").count == 1)
        #expect(empty["state"] as? String == "ended", "the clear with the higher id ends the raise that came after it")
        #expect(empty["device_alarm_id"] as? Int == 507)
        #expect(empty["cleared_device_alarm_id"] as? Int == 508)
        #expect(Set(empty["device_alarm_ids"] as? [Int] ?? []) == [507, 508])

        let stall = try #require(with("motor_stall").first)
        #expect(with("motor_stall").count == 1, "the retransmission added nothing")
        #expect(stall["device_alarm_ids"] as? [Int] == [1])
        let reused = alarms.filter { $0["source"] as? String == "bridge" && $0["code"] as? String == "alarm_id_reused" }
        #expect(reused.count == 1)
        #expect((reused.first?["detail"] as? String)?.contains("alarm_id 1") == true)

        let everyListed = Set(pump.flatMap { $0["device_alarm_ids"] as? [Int] ?? [] })
        #expect(everyListed == [1, 2, 507, 508])
        #expect(bench.alive)
    }
}
