// The encoder: owned messages of every type round-trip through the decoder unchanged; sequence
// numbers increase and wrap; the retransmission flag is read back; duplicates and gaps are
// counted (PROTOCOL.md §2.3).

import ITBProtocol
import Testing

@Suite("Encoder and round trips")
struct EncoderTests {
    /// Encodes `message` as one frame and decodes it with a fresh decoder.
    private func roundTrip(_ message: Message, flags: FrameFlags = []) -> DecodeOutcome {
        var encoder = FrameEncoder(firstSequence: 42)
        return decodeOneShot(encoder.encode(message, flags: flags))
    }

    @Test("every message type round-trips: encode, decode, Message(frame) equals the original", arguments: Samples.oneOfEachType + Samples.edgeCases)
    func roundTripsEveryType(_ message: Message) throws {
        let outcome = roundTrip(message)
        let frame = try #require(outcome.frames.first)
        #expect(outcome.frames.count == 1)
        #expect(frame.type == message.type)
        #expect(frame.sequence == 42)
        #expect(frame.message == message)
    }

    @Test("every message type's typed view reads back what its owned value wrote", arguments: Samples.oneOfEachType + Samples.edgeCases)
    func viewsReadBack(_ message: Message) throws {
        var encoder = FrameEncoder()
        let bytes = encoder.encode(message)
        try bytes.withUnsafeBytes { raw in
            let frame = try #require(Frame(validating: raw))
            switch message {
            case .programmerInfo(let m):
                let view = try #require(ProgrammerInfoView(frame))
                #expect(ProgrammerInfo(view) == m)
            case .pumpSession(let m):
                let view = try #require(PumpSessionView(frame))
                #expect(PumpSession(view) == m)
            case .pumpStatus(let m):
                let view = try #require(PumpStatusView(frame))
                #expect(PumpStatus(view) == m)
            case .reservoir(let m):
                let view = try #require(ReservoirView(frame))
                #expect(Reservoir(view) == m)
            case .doseProgram(let m):
                let view = try #require(DoseProgramView(frame))
                #expect(DoseProgram(view) == m)
            case .refill(let m):
                let view = try #require(RefillView(frame))
                #expect(Refill(view) == m)
            case .alarm(let m):
                let view = try #require(AlarmView(frame))
                #expect(Alarm(view) == m)
            case .heartbeat(let m):
                let view = try #require(HeartbeatView(frame))
                #expect(Heartbeat(view) == m)
            case .ack(let m):
                let view = try #require(AckView(frame))
                #expect(Ack(view) == m)
            case .hostHeartbeat(let m):
                let view = try #require(HostHeartbeatView(frame))
                #expect(HostHeartbeat(view) == m)
            }
            // A view of another type refuses the frame.
            if message.type != .heartbeat { #expect(HeartbeatView(frame) == nil) }
        }
    }

    @Test("10,000 seeded realistic programmer messages round-trip unchanged through one stream")
    func randomRoundTrips() {
        var rng = SplitMix64(seed: 0xE4C0_DE00_0000_0001)
        var encoder = FrameEncoder(firstSequence: 1)
        let messages = (0..<10_000).map { _ in Samples.randomProgrammerMessage(using: &rng) }
        let stream = messages.flatMap { encoder.encode($0) }
        let outcome = decodeInRandomChunks(stream, maximum: 700, using: &rng)
        #expect(outcome.frames.map(\.message) == messages)
        #expect(outcome.counters.sequenceGaps == 0)
        #expect(outcome.counters.bytesDiscarded == 0)
        #expect(outcome.pending == 0)
    }

    @Test("encoded payloads have the v1 sizes: fixed types their minimum plus sent reserved bytes, variable types their counts")
    func payloadSizes() {
        let expected: [MessageType: Int] = [
            .programmerInfo: 48, .pumpSession: 56, .pumpStatus: 24, .reservoir: 40, .refill: 40,
            .heartbeat: 24, .ack: 12, .hostHeartbeat: 16,
        ]
        for message in Samples.oneOfEachType {
            let size = encodedPayload(message).count
            switch message {
            case .doseProgram(let m): #expect(size == 24 + 8 * (m.flexSteps.count + m.periodicBoluses.count))
            case .alarm(let m): #expect(size == 24 + m.detail.utf8.count)
            default: #expect(size == expected[message.type], "\(message.type)")
            }
        }
    }

    @Test("text longer than its field is cut to the field width, and an alarm detail to 64 bytes")
    func longTextIsCut() throws {
        let info = ProgrammerInfo(
            bootID: 1, firmwareVersion: 1, protocolMinor: 0, programmerSerial: "PGM-0123456789ABCDEF-XYZ",
            hardwareModel: "ITB-CP 8840 with a long model name")
        guard case .programmerInfo(let back) = try #require(roundTrip(.programmerInfo(info)).frames.first?.message) else {
            Issue.record("not a programmer info")
            return
        }
        #expect(back.programmerSerial == "PGM-0123456789AB")
        #expect(back.hardwareModel == "ITB-CP 8840 with")

        let alarm = Alarm(onsetTimeMs: 1, alarmID: 1, code: .eri, priority: .low, transition: .raised, detail: String(repeating: "z", count: 100))
        guard case .alarm(let backAlarm) = try #require(roundTrip(.alarm(alarm)).frames.first?.message) else {
            Issue.record("not an alarm")
            return
        }
        #expect(backAlarm.detail == String(repeating: "z", count: 64))
    }

    @Test("the encoder numbers frames consecutively and wraps from 0xFFFFFFFF to 0 without a gap being counted")
    func sequenceWraps() {
        var encoder = FrameEncoder(firstSequence: 0xFFFF_FFFE)
        let frames = (0..<4).map { _ in encoder.encode(.heartbeat(Samples.heartbeat)) }
        #expect(encoder.nextSequence == 2)
        let outcome = decodeOneShot(frames.flatMap { $0 })
        #expect(outcome.frames.map(\.sequence) == [0xFFFF_FFFE, 0xFFFF_FFFF, 0, 1])
        #expect(outcome.counters.sequenceGaps == 0)
        #expect(outcome.counters.duplicates == 0)
    }

    @Test("the retransmission flag is set on the wire and read back; other compatible flags are kept and do not mean retransmission")
    func retransmissionFlag() throws {
        var encoder = FrameEncoder(firstSequence: 1015)
        let original = encoder.encode(.alarm(Samples.alarm))
        let retransmission = encoder.encode(.alarm(Samples.alarm), flags: .retransmission)
        let unknownCompatible = encoder.encode(.alarm(Samples.alarm), flags: FrameFlags(rawValue: 0x20))
        let all = encoder.encode(.alarm(Samples.alarm), flags: FrameFlags(rawValue: 0xF0))
        #expect(original[3] == 0x00)
        #expect(retransmission[3] == 0x10)
        let outcome = decodeOneShot(original + retransmission + unknownCompatible + all)
        #expect(outcome.frames.map(\.flags) == [0x00, 0x10, 0x20, 0xF0])
        #expect(Set(outcome.frames.map(\.message)) == [.alarm(Samples.alarm)])
        for (bytes, isRetransmission) in [(original, false), (retransmission, true), (unknownCompatible, false), (all, true)] {
            try bytes.withUnsafeBytes { raw in
                let frame = try #require(Frame(validating: raw))
                #expect(frame.isRetransmission == isRetransmission)
                #expect(frame.flags.contains(.retransmission) == isRetransmission)
            }
        }
    }

    @Test("any incompatible flag bit 0–3 makes the header rejected", arguments: [0x01, 0x02, 0x04, 0x08, 0x0F, 0x1F, 0xF1])
    func incompatibleFlags(_ flags: Int) {
        let frame = FrameEncoder.frame(
            type: .heartbeat, sequence: 1, payload: encodedPayload(.heartbeat(Samples.heartbeat)), flags: FrameFlags(rawValue: UInt8(flags)))
        let outcome = decodeOneShot(frame)
        #expect(outcome.frames.isEmpty)
        #expect(outcome.counters.headerRejectsIncompatibleFlags == 1)
        frame.withUnsafeBytes { #expect(Frame(validating: $0) == nil) }
    }

    @Test("a version other than 1 makes the header rejected", arguments: [0, 2, 3, 0x81, 0xFF])
    func otherVersions(_ version: Int) {
        let frame = FrameEncoder.frame(
            type: .heartbeat, sequence: 1, payload: encodedPayload(.heartbeat(Samples.heartbeat)), version: UInt8(version))
        let outcome = decodeOneShot(frame)
        #expect(outcome.frames.isEmpty)
        #expect(outcome.counters.headerRejectsVersion == 1)
        frame.withUnsafeBytes { #expect(Frame(validating: $0) == nil) }
    }

    @Test("a repeated sequence number is a duplicate, still delivered; any other jump, back included, is a gap")
    func duplicatesAndGaps() {
        let heartbeat = encodedPayload(.heartbeat(Samples.heartbeat))
        let sequence: [UInt32] = [10, 10, 11, 13, 12, 12, 12, 13, 0xFFFF_FFFF, 0, 0]
        let stream = sequence.flatMap { FrameEncoder.frame(type: .heartbeat, sequence: $0, payload: heartbeat) }
        let outcome = decodeOneShot(stream)
        #expect(outcome.frames.map(\.sequence) == sequence)
        // 10→10 dup, 10→11 ok, 11→13 gap, 13→12 gap, 12→12 dup, 12→12 dup, 12→13 ok,
        // 13→FFFFFFFF gap, FFFFFFFF→0 ok (wrap), 0→0 dup.
        #expect(outcome.counters.duplicates == 4)
        #expect(outcome.counters.sequenceGaps == 3)
        #expect(outcome.counters.framesDelivered == UInt64(sequence.count))
    }

    @Test("the first frame after a fresh decoder may carry any sequence number without a gap")
    func firstFrameAnySequence() {
        for seq: UInt32 in [0, 1, 1000, 0x8000_0000, 0xFFFF_FFFF] {
            let frame = FrameEncoder.frame(type: .heartbeat, sequence: seq, payload: encodedPayload(.heartbeat(Samples.heartbeat)))
            let outcome = decodeOneShot(frame)
            #expect(outcome.counters.sequenceGaps == 0)
            #expect(outcome.counters.duplicates == 0)
        }
    }

    @Test("frames with a bad payload CRC or a rejected header do not move the sequence")
    func rejectedFramesDoNotMoveSequence() {
        let heartbeat = encodedPayload(.heartbeat(Samples.heartbeat))
        var badPayload = FrameEncoder.frame(type: .heartbeat, sequence: 2, payload: heartbeat)
        badPayload[20] ^= 0x01
        var badHeader = FrameEncoder.frame(type: .heartbeat, sequence: 3, payload: heartbeat)
        badHeader[8] ^= 0x01
        let stream = FrameEncoder.frame(type: .heartbeat, sequence: 1, payload: heartbeat) + badPayload + badHeader
            + FrameEncoder.frame(type: .heartbeat, sequence: 2, payload: heartbeat)
        let outcome = decodeOneShot(stream)
        #expect(outcome.frames.map(\.sequence) == [1, 2])
        #expect(outcome.counters.sequenceGaps == 0)
        #expect(outcome.counters.duplicates == 0)
        #expect(outcome.counters.payloadCRCErrors == 1)
        #expect(outcome.counters.headerRejectsHeaderCRC == 1)
    }

    @Test("the encoder's frame layout matches PROTOCOL.md §2 byte for byte")
    func frameLayout() {
        let payload: [UInt8] = [1, 2, 3]
        let frame = FrameEncoder.frame(type: .init(rawValue: 0x0102), sequence: 0x0403_0201, payload: payload, flags: .retransmission)
        #expect(Array(frame[0..<12]) == [0xB7, 0xE1, 0x01, 0x10, 0x02, 0x01, 0x03, 0x00, 0x01, 0x02, 0x03, 0x04])
        let headerCRC = CRC32C.checksum(frame[0..<12])
        #expect(Array(frame[12..<16]) == [UInt8(headerCRC & 0xFF), UInt8(headerCRC >> 8 & 0xFF), UInt8(headerCRC >> 16 & 0xFF), UInt8(headerCRC >> 24)])
        #expect(Array(frame[16..<19]) == payload)
        let payloadCRC = CRC32C.checksum(payload)
        #expect(Array(frame[19..<23]) == [UInt8(payloadCRC & 0xFF), UInt8(payloadCRC >> 8 & 0xFF), UInt8(payloadCRC >> 16 & 0xFF), UInt8(payloadCRC >> 24)])
    }
}
