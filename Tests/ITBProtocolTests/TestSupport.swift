// Shared helpers of the ITBProtocol test suite: the golden vectors, hex, a seeded random number
// generator, owned copies of delivered frames, decoding a byte stream in any chunking, JSON
// values for comparisons, and realistic messages. Every other file in this target uses these;
// none defines its own.

import Foundation
import ITBJSON
import ITBProtocol
import Testing
@_exported import ITBTestSupport

// MARK: - Seeded randomness

// MARK: - Hex

extension Array where Element == UInt8 {
    /// Bytes from an even-length hex string (upper or lower case).
    init(hex: String) {
        let digits = Array(hex.utf8)
        precondition(digits.count.isMultiple(of: 2), "odd-length hex string")
        func nibble(_ c: UInt8) -> UInt8 {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: preconditionFailure("not a hex digit: \(c)")
            }
        }
        self = stride(from: 0, to: digits.count, by: 2).map { nibble(digits[$0]) << 4 | nibble(digits[$0 + 1]) }
    }

    /// Lower-case hex.
    var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(count * 2)
        for byte in self {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

// MARK: - Golden vectors

/// One `crc32c` vector.
struct CRCVector: Sendable, CustomTestStringConvertible {
    let name: String
    let input: [UInt8]
    let crc: UInt32
    var testDescription: String { name }
}

/// One `frames` vector: a single valid frame and the fields it renders.
struct FrameVector: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    let type: String
    let typeID: UInt16
    let seq: UInt32
    let flags: UInt8
    let fields: JSONValue
    var testDescription: String { name }
}

/// A frame as a vector lists it: type name and sequence number.
struct Delivery: Hashable, Sendable, CustomStringConvertible {
    let type: String
    let seq: UInt32
    var description: String { "\(type)#\(seq)" }
}

/// One `negative` or `streams` vector: a byte stream, what it delivers and every counter.
struct StreamVector: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    let delivered: [Delivery]
    let counters: [String: UInt64]
    var testDescription: String { name }
}

/// `protocol-spec/vectors.json`, made by the independent Python implementation.
enum Vectors {
    static let crc32c: [CRCVector] = file.crc32c
    static let frames: [FrameVector] = file.frames
    static let negative: [StreamVector] = file.negative
    static let streams: [StreamVector] = file.streams
    /// The negative and stream vectors together (both are byte streams with expected counters).
    static let allStreams: [StreamVector] = negative + streams

    private struct File: Sendable {
        var crc32c: [CRCVector] = []
        var frames: [FrameVector] = []
        var negative: [StreamVector] = []
        var streams: [StreamVector] = []
    }

    private static let file: File = load()

    /// The package root: the nearest directory above this source file holding `Package.swift`.
    static func packageRoot(from path: String = #filePath) -> URL {
        var directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        while directory.path != "/" {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
                return directory
            }
            directory.deleteLastPathComponent()
        }
        preconditionFailure("no Package.swift above \(path)")
    }

    private static func load() -> File {
        let url = packageRoot().appendingPathComponent("protocol-spec/vectors.json")
        guard let data = try? Data(contentsOf: url),
              let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { preconditionFailure("cannot read \(url.path)") }

        func list(_ key: String) -> [[String: Any]] {
            guard let entries = root[key] as? [[String: Any]], !entries.isEmpty else {
                preconditionFailure("vectors.json has no \(key) vectors")
            }
            return entries
        }
        func integer<T: FixedWidthInteger>(_ entry: [String: Any], _ key: String, as: T.Type = T.self) -> T {
            guard let number = entry[key] as? NSNumber, let value = T(exactly: number.int64Value) else {
                preconditionFailure("vector field \(key) is not a \(T.self): \(entry[key] ?? "missing")")
            }
            return value
        }
        func string(_ entry: [String: Any], _ key: String) -> String {
            guard let value = entry[key] as? String else { preconditionFailure("vector field \(key) missing") }
            return value
        }
        func stream(_ entry: [String: Any]) -> StreamVector {
            let delivered = (entry["delivered"] as? [[String: Any]] ?? []).map {
                Delivery(type: string($0, "type"), seq: integer($0, "seq"))
            }
            let counters = (entry["counters"] as? [String: Any] ?? [:]).mapValues { value -> UInt64 in
                guard let number = value as? NSNumber else { preconditionFailure("counter not a number") }
                return number.uint64Value
            }
            return StreamVector(
                name: string(entry, "name"), bytes: [UInt8](hex: string(entry, "hex")), delivered: delivered,
                counters: counters)
        }

        var file = File()
        file.crc32c = list("crc32c").map {
            CRCVector(name: string($0, "name"), input: [UInt8](hex: string($0, "input_hex")), crc: integer($0, "crc"))
        }
        file.frames = list("frames").map {
            FrameVector(
                name: string($0, "name"), bytes: [UInt8](hex: string($0, "hex")), type: string($0, "type"),
                typeID: integer($0, "type_id"), seq: integer($0, "seq"), flags: integer($0, "flags"),
                fields: JSONValue(foundation: $0["fields"] as Any))
        }
        file.negative = list("negative").map(stream)
        file.streams = list("streams").map(stream)
        return file
    }
}

// MARK: - Decoding into owned values

/// A delivered frame copied out of the decoder's closure.
struct DeliveredFrame: Hashable, Sendable, CustomStringConvertible {
    let bytes: [UInt8]
    let type: MessageType
    let sequence: UInt32
    let flags: UInt8
    /// The owned message (nil only for a type the library does not know, which is never delivered).
    let message: Message?

    init(_ frame: Frame) {
        bytes = Array(frame.bytes)
        type = frame.type
        sequence = frame.sequence
        flags = frame.flags.rawValue
        message = Message(frame)
    }

    /// Type name and sequence number, as the vectors list deliveries.
    var delivery: Delivery { Delivery(type: type.description, seq: sequence) }

    var description: String { "\(type)#\(sequence) flags=\(flags) \(bytes.count) bytes" }
}

/// Everything observable after decoding a stream: the frames, all counters, pending bytes.
struct DecodeOutcome: Equatable, Sendable {
    var frames: [DeliveredFrame] = []
    var counters = DecoderCounters()
    var pending = 0

    var deliveries: [Delivery] { frames.map(\.delivery) }
    /// The counters keyed by their PROTOCOL.md §6 names.
    var namedCounters: [String: UInt64] { counters.named }
}

extension DecoderCounters {
    /// The counters keyed by their snake_case names.
    var named: [String: UInt64] {
        Dictionary(uniqueKeysWithValues: namedValues.map { ($0.name, $0.value) })
    }
}

extension FrameDecoder {
    /// Feeds `bytes` as one chunk, copied into a buffer of its own (as a `read()` would hand it
    /// over, so the decoder cannot lean on earlier chunks staying in memory), and returns the
    /// delivered frames as owned values.
    @discardableResult
    mutating func collect(_ bytes: some Collection<UInt8>) -> [DeliveredFrame] {
        let chunk = Array(bytes)
        var frames: [DeliveredFrame] = []
        chunk.withUnsafeBytes { raw in
            feed(raw) { frames.append(DeliveredFrame($0)) }
        }
        return frames
    }
}

/// Decodes `bytes` with a fresh decoder, cut into chunks of the given sizes (clipped at the end;
/// empty chunks are fed too; bytes beyond the sizes' sum go in one last chunk).
func decode(_ bytes: [UInt8], chunkSizes: some Sequence<Int>) -> DecodeOutcome {
    var decoder = FrameDecoder()
    var outcome = DecodeOutcome()
    var offset = 0
    for size in chunkSizes {
        let end = min(bytes.count, offset + size)
        outcome.frames += decoder.collect(bytes[offset..<end])
        offset = end
    }
    if offset < bytes.count { outcome.frames += decoder.collect(bytes[offset...]) }
    outcome.counters = decoder.counters
    outcome.pending = decoder.pendingByteCount
    return outcome
}

/// Decodes `bytes` fed in one call.
func decodeOneShot(_ bytes: [UInt8]) -> DecodeOutcome {
    decode(bytes, chunkSizes: [bytes.count])
}

/// Decodes `bytes` fed in two calls, split before index `split`.
func decode(_ bytes: [UInt8], splitAt split: Int) -> DecodeOutcome {
    decode(bytes, chunkSizes: [split, bytes.count - split])
}

/// Decodes `bytes` fed one byte per call.
func decodeByteByByte(_ bytes: [UInt8]) -> DecodeOutcome {
    decode(bytes, chunkSizes: repeatElement(1, count: bytes.count))
}

/// Decodes `bytes` fed in random chunk sizes 1...maximum (and an occasional empty chunk).
func decodeInRandomChunks(_ bytes: [UInt8], maximum: Int, using rng: inout SplitMix64) -> DecodeOutcome {
    var sizes: [Int] = []
    var total = 0
    while total < bytes.count {
        let size = Int.random(in: 0...maximum, using: &rng)
        sizes.append(size)
        total += size
    }
    return decode(bytes, chunkSizes: sizes)
}

/// Checks the counter identities of PROTOCOL.md §6: accepted = delivered + unknown + short, and
/// every byte received is consumed by an accepted frame, discarded, or pending.
func expectCountersAddUp(
    _ outcome: DecodeOutcome, consumedByAcceptedFrames: Int, sourceLocation: SourceLocation = #_sourceLocation
) {
    let c = outcome.counters
    #expect(c.framesAccepted == c.framesDelivered + c.unknownTypes + c.shortPayloads, sourceLocation: sourceLocation)
    #expect(
        c.bytesReceived == UInt64(consumedByAcceptedFrames) + c.bytesDiscarded + UInt64(outcome.pending),
        sourceLocation: sourceLocation)
}

// MARK: - Messages

/// Builds payloads byte by byte, for frames the owned message types cannot express (trailing
/// bytes, counts that disagree with the data, raw bytes in text fields).
func payload(_ build: (inout PayloadWriter) -> Void) -> [UInt8] {
    var writer = PayloadWriter()
    build(&writer)
    return writer.bytes
}

/// The payload bytes an owned message encodes to.
func encodedPayload(_ message: Message) -> [UInt8] {
    var writer = PayloadWriter()
    message.payload.encode(into: &writer)
    return writer.bytes
}

/// An ALARM payload with raw detail bytes (which a Swift `String` detail cannot always carry) and
/// an explicit `detail_length`.
func alarmPayload(alarmID: UInt32, detail: [UInt8], detailLength: Int? = nil) -> [UInt8] {
    payload { w in
        w.write(Int64(1_776_700_798_412))  // 2026-04-20T15:59:58.412Z
        w.write(alarmID)
        w.write(AlarmCode.flowFault.rawValue)
        w.write(AlarmPriority.high.rawValue)
        w.write(AlarmTransition.raised.rawValue)
        w.write(UInt8(detailLength ?? detail.count))
        w.writeZeros(7)
        w.writeBytes(detail)
    }
}

/// Representative messages of all ten types, edge values included (unknown enumeration values,
/// absent times, full-width text, the largest dose program, the longest alarm detail).
enum Samples {
    static let bootID: UInt64 = 0x3F9A_1C2E_5B7D_4E61
    static let now: Int64 = 1_773_480_413_589  // 2026-03-14T09:26:53.589Z

    static let programmerInfo = ProgrammerInfo(
        bootID: bootID, firmwareVersion: 2 << 16 | 4 << 8 | 1, protocolMinor: 0,
        programmerSerial: "PGM-000123", hardwareModel: "ITB-CP 8840")
    static let pumpSession = PumpSession(
        implantDateMs: 1_739_282_700_000, eriDateMs: 0, reservoirCapacityUL: 40_000, manufacturerCode: 1,
        event: .begin, batteryState: .ok, pumpModel: "SynchroMed II", pumpSerial: "NGP104857H")
    static let pumpStatus = PumpStatus(
        deviceTimeMs: now, dailyDoseUgX10: 4000, concentrationUgPerML: 2000, activeAlarmMask: 0,
        pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: 87)
    static let reservoir = Reservoir(
        deviceTimeMs: now, lastRefillTimeMs: 1_770_114_600_000, volumeULX10: 319_874, capacityUL: 40_000,
        lowReservoirThresholdUL: 2000, deliveredSinceRefillULX10: 80_126, volumeSource: .calculated)
    static let doseProgram = DoseProgram(
        deviceTimeMs: now, dailyDoseUgX10: 4125, patientBolusDoseUgX10: 500, patientBolusLockoutMin: 120,
        patientBolusMaxPerDay: 4, mode: .flex,
        flexSteps: [.init(startMinute: 0, rateUgPerDayX10: 3500), .init(startMinute: 480, rateUgPerDayX10: 4500)],
        periodicBoluses: [.init(startMinute: 1260, durationMin: 30, doseUgX10: 375)])
    static let refill = Refill(
        refillTimeMs: 1_770_114_600_000, concentrationUgPerML: 2000, volumeFilledUL: 40_000, expectedResidualUL: 4120,
        measuredResidualUL: 3950, drugLot: "LOT24A117")
    static let alarm = Alarm(
        onsetTimeMs: 1_776_700_798_412, alarmID: 57, code: .lowReservoir, priority: .medium, transition: .raised,
        detail: "reservoir 1998 uL, LRA 2000 uL")
    static let heartbeat = Heartbeat(bootID: bootID, uptimeS: 3600, highestAlarmID: 57, unackedAlarmCount: 1)
    static let ack = Ack(ackedSequence: 1042, alarmID: 57, ackedType: .alarm, status: .stored)
    static let hostHeartbeat = HostHeartbeat(hostTimeMs: 1_773_480_414_001, uptimeS: 86_400)

    /// One ordinary message of each of the ten types.
    static let oneOfEachType: [Message] = [
        .programmerInfo(programmerInfo), .pumpSession(pumpSession), .pumpStatus(pumpStatus), .reservoir(reservoir),
        .doseProgram(doseProgram), .refill(refill), .alarm(alarm), .heartbeat(heartbeat), .ack(ack),
        .hostHeartbeat(hostHeartbeat),
    ]

    /// Messages at the edges of what each type can carry.
    static let edgeCases: [Message] = {
        let info = ProgrammerInfo(
            bootID: .max, firmwareVersion: .max, protocolMinor: .max, programmerSerial: "0123456789ABCDEF",
            hardwareModel: "")
        let session = PumpSession(
            implantDateMs: 0, eriDateMs: .min, reservoirCapacityUL: .max, manufacturerCode: 0xFFFF,
            event: SessionEvent(rawValue: 3), batteryState: BatteryState(rawValue: 255), pumpModel: "Prometra II",
            pumpSerial: "FEDCBA9876543210")
        let status = PumpStatus(
            deviceTimeMs: .max, dailyDoseUgX10: .max, concentrationUgPerML: 0, activeAlarmMask: .max,
            pumpState: PumpState(rawValue: 9), dosingMode: DosingMode(rawValue: 200),
            linkQualityPct: PumpStatus.linkQualityUnknown)
        let reservoir = Reservoir(
            deviceTimeMs: -1, lastRefillTimeMs: 0, volumeULX10: 0, capacityUL: 0, lowReservoirThresholdUL: 0,
            deliveredSinceRefillULX10: .max, volumeSource: VolumeSource(rawValue: 5))
        let emptyProgram = DoseProgram(
            deviceTimeMs: 0, dailyDoseUgX10: 0, patientBolusDoseUgX10: 0, patientBolusLockoutMin: 0,
            patientBolusMaxPerDay: 0, mode: .simpleContinuous, flexSteps: [], periodicBoluses: [])
        var steps: [DoseProgram.FlexStep] = []
        for i in 0..<DoseProgram.maximumFlexSteps {
            steps.append(DoseProgram.FlexStep(startMinute: UInt16(i * 110), rateUgPerDayX10: UInt32(3500 + i)))
        }
        var boluses: [DoseProgram.PeriodicBolus] = []
        for i in 0..<DoseProgram.maximumPeriodicBoluses {
            boluses.append(DoseProgram.PeriodicBolus(
                startMinute: UInt16(i * 60), durationMin: UInt16(i + 1), doseUgX10: UInt32(250 * (i + 1))))
        }
        let fullProgram = DoseProgram(
            deviceTimeMs: now, dailyDoseUgX10: 9999, patientBolusDoseUgX10: .max, patientBolusLockoutMin: .max,
            patientBolusMaxPerDay: .max, mode: DosingMode(rawValue: 12), flexSteps: steps, periodicBoluses: boluses)
        let refill = Refill(
            refillTimeMs: 0, concentrationUgPerML: 50, volumeFilledUL: 20_000, expectedResidualUL: 0,
            measuredResidualUL: .max, drugLot: "")
        let longAlarm = Alarm(
            onsetTimeMs: 0, alarmID: .max, code: AlarmCode(rawValue: 0x0042), priority: AlarmPriority(rawValue: 9),
            transition: AlarmTransition(rawValue: 7), detail: String(repeating: "x", count: Alarm.maximumDetailLength))
        let emptyAlarm = Alarm(onsetTimeMs: now, alarmID: 1, code: .flowFault, priority: .info, transition: .cleared, detail: "")
        let heartbeat = Heartbeat(bootID: 0, uptimeS: .max, highestAlarmID: 0, unackedAlarmCount: .max)
        let unknownAck = Ack(
            ackedSequence: .max, alarmID: 0, ackedType: MessageType(rawValue: 0x0042), status: AckStatus(rawValue: 9))
        let rejectedAck = Ack(ackedSequence: 0, alarmID: 58, ackedType: .alarm, status: .rejected)
        let hostHeartbeat = HostHeartbeat(hostTimeMs: .min, uptimeS: 0)
        var messages: [Message] = []
        messages.append(.programmerInfo(info))
        messages.append(.pumpSession(session))
        messages.append(.pumpStatus(status))
        messages.append(.reservoir(reservoir))
        messages.append(.doseProgram(emptyProgram))
        messages.append(.doseProgram(fullProgram))
        messages.append(.refill(refill))
        messages.append(.alarm(longAlarm))
        messages.append(.alarm(emptyAlarm))
        messages.append(.heartbeat(heartbeat))
        messages.append(.ack(unknownAck))
        messages.append(.ack(rejectedAck))
        messages.append(.hostHeartbeat(hostHeartbeat))
        return messages
    }()

    /// A realistic programmer → host message of a random type (the eight the programmer sends),
    /// with values as a programmer would send them.
    static func randomProgrammerMessage(using rng: inout SplitMix64) -> Message {
        func time() -> Int64 { Int64.random(in: 1_735_689_600_000...1_798_761_599_999, using: &rng) }  // 2025–2026
        func digits(_ count: Int) -> String {
            String((0..<count).map { _ in Character(String(Int.random(in: 0...9, using: &rng))) })
        }
        func text(_ maximum: Int) -> String {
            let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:-/")
            return String((0..<Int.random(in: 0...maximum, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
        }
        let concentrations: [UInt32] = [50, 500, 1000, 2000]
        switch Int.random(in: 0..<8, using: &rng) {
        case 0:
            return .programmerInfo(.init(
                bootID: rng.next(), firmwareVersion: UInt32.random(in: 1...3, using: &rng) << 16
                    | UInt32.random(in: 0...9, using: &rng) << 8 | UInt32.random(in: 0...20, using: &rng),
                protocolMinor: UInt16.random(in: 0...2, using: &rng), programmerSerial: "PGM-" + digits(6),
                hardwareModel: Bool.random(using: &rng) ? "ITB-CP 8840" : "ITB-CP 8870"))
        case 1:
            return .pumpSession(.init(
                implantDateMs: Bool.random(using: &rng) ? time() - 86_400_000 * 365 * 4 : 0,
                eriDateMs: Int.random(in: 0..<5, using: &rng) == 0 ? time() : 0,
                reservoirCapacityUL: Bool.random(using: &rng) ? 20_000 : 40_000,
                manufacturerCode: UInt16.random(in: 1...2, using: &rng),
                event: .init(rawValue: UInt8.random(in: 1...2, using: &rng)),
                batteryState: .init(rawValue: UInt8.random(in: 0...2, using: &rng)),
                pumpModel: Bool.random(using: &rng) ? "SynchroMed II" : "Prometra II",
                pumpSerial: "NGP" + digits(6) + "H"))
        case 2:
            return .pumpStatus(.init(
                deviceTimeMs: time(), dailyDoseUgX10: UInt32.random(in: 200...15_000, using: &rng),
                concentrationUgPerML: concentrations.randomElement(using: &rng)!,
                activeAlarmMask: Int.random(in: 0..<4, using: &rng) == 0 ? UInt32.random(in: 0...0xFF, using: &rng) : 0,
                pumpState: .init(rawValue: UInt8.random(in: 0...4, using: &rng)),
                dosingMode: .init(rawValue: UInt8.random(in: 0...4, using: &rng)),
                linkQualityPct: Int.random(in: 0..<10, using: &rng) == 0 ? 255 : UInt8.random(in: 0...100, using: &rng)))
        case 3:
            let capacity: UInt32 = Bool.random(using: &rng) ? 20_000 : 40_000
            return .reservoir(.init(
                deviceTimeMs: time(), lastRefillTimeMs: time() - 86_400_000 * 60,
                volumeULX10: UInt32.random(in: 0...(capacity * 10), using: &rng), capacityUL: capacity,
                lowReservoirThresholdUL: 2000, deliveredSinceRefillULX10: UInt32.random(in: 0...(capacity * 10), using: &rng),
                volumeSource: .init(rawValue: UInt8.random(in: 0...1, using: &rng))))
        case 4:
            let steps = Int.random(in: 0...DoseProgram.maximumFlexSteps, using: &rng)
            let boluses = Int.random(in: 0...4, using: &rng)
            return .doseProgram(.init(
                deviceTimeMs: time(), dailyDoseUgX10: UInt32.random(in: 200...15_000, using: &rng),
                patientBolusDoseUgX10: UInt32.random(in: 0...1000, using: &rng),
                patientBolusLockoutMin: UInt16.random(in: 0...240, using: &rng),
                patientBolusMaxPerDay: UInt16.random(in: 0...8, using: &rng),
                mode: .init(rawValue: UInt8.random(in: 0...4, using: &rng)),
                flexSteps: (0..<steps).map {
                    .init(startMinute: UInt16($0 * 110), rateUgPerDayX10: UInt32.random(in: 200...15_000, using: &rng))
                },
                periodicBoluses: (0..<boluses).map {
                    .init(
                        startMinute: UInt16($0 * 360), durationMin: UInt16.random(in: 1...60, using: &rng),
                        doseUgX10: UInt32.random(in: 10...1000, using: &rng))
                }))
        case 5:
            return .refill(.init(
                refillTimeMs: time(), concentrationUgPerML: concentrations.randomElement(using: &rng)!,
                volumeFilledUL: Bool.random(using: &rng) ? 20_000 : 40_000,
                expectedResidualUL: UInt32.random(in: 0...8000, using: &rng),
                measuredResidualUL: UInt32.random(in: 0...8000, using: &rng), drugLot: "LOT" + digits(6)))
        case 6:
            return .alarm(.init(
                onsetTimeMs: time(), alarmID: UInt32.random(in: 1...100_000, using: &rng),
                code: .init(rawValue: UInt16.random(in: 1...8, using: &rng)),
                priority: .init(rawValue: UInt8.random(in: 1...4, using: &rng)),
                transition: .init(rawValue: UInt8.random(in: 1...2, using: &rng)), detail: text(Alarm.maximumDetailLength)))
        default:
            return .heartbeat(.init(
                bootID: rng.next(), uptimeS: UInt32.random(in: 0...10_000_000, using: &rng),
                highestAlarmID: UInt32.random(in: 0...100_000, using: &rng),
                unackedAlarmCount: UInt32.random(in: 0...3, using: &rng)))
        }
    }
}
