// Accepted but not delivered (PROTOCOL.md §2.2 step 4): frames of unknown types and frames
// shorter than their type's minimum are counted and skipped; they still move the sequence.

import ITBProtocol
import Testing

@Suite("Unknown types and short payloads")
struct SkippedFrameTests {
    /// Decodes `skipped` between two valid heartbeats numbered around it, and checks that only the
    /// heartbeats are delivered and that the sequence saw no gap.
    private func expectSkipped(
        type: MessageType, payload: [UInt8], as counter: KeyPath<DecoderCounters, UInt64>,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let heartbeat = encodedPayload(.heartbeat(Samples.heartbeat))
        let before = FrameEncoder.frame(type: .heartbeat, sequence: 10, payload: heartbeat)
        let skipped = FrameEncoder.frame(type: type, sequence: 11, payload: payload)
        let after = FrameEncoder.frame(type: .heartbeat, sequence: 12, payload: heartbeat)
        let stream = before + skipped + after
        let outcome = decodeOneShot(stream)
        #expect(outcome.frames.map(\.sequence) == [10, 12], sourceLocation: sourceLocation)
        #expect(outcome.counters[keyPath: counter] == 1, sourceLocation: sourceLocation)
        #expect(outcome.counters.framesAccepted == 3, sourceLocation: sourceLocation)
        #expect(outcome.counters.framesDelivered == 2, sourceLocation: sourceLocation)
        #expect(outcome.counters.sequenceGaps == 0, "a skipped frame still moves the sequence", sourceLocation: sourceLocation)
        #expect(outcome.counters.bytesDiscarded == 0, sourceLocation: sourceLocation)
        expectCountersAddUp(outcome, consumedByAcceptedFrames: stream.count, sourceLocation: sourceLocation)
        skipped.withUnsafeBytes { #expect(Frame(validating: $0) == nil, sourceLocation: sourceLocation) }
    }

    /// `message`'s payload, or a frame of its type carrying it, is delivered.
    private func expectDelivered(type: MessageType, payload: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
        let frame = FrameEncoder.frame(type: type, sequence: 1, payload: payload)
        let outcome = decodeOneShot(frame)
        #expect(outcome.frames.map(\.bytes) == [frame], sourceLocation: sourceLocation)
        #expect(outcome.frames.first?.message != nil, sourceLocation: sourceLocation)
        frame.withUnsafeBytes { #expect(Frame(validating: $0) != nil, sourceLocation: sourceLocation) }
    }

    @Test("a frame of an unknown type is skipped and counted, whatever its length", arguments: [0x0000, 0x0009, 0x0042, 0x0100, 0x0103, 0x0201, 0x8001, 0xFFFF])
    func unknownType(_ raw: Int) {
        let type = MessageType(rawValue: UInt16(raw))
        #expect(type.name == nil)
        #expect(type.fixedMinimumLength == nil)
        var rng = SplitMix64(seed: UInt64(raw))
        for length in [0, 1, 12, 48, 1024] {
            expectSkipped(type: type, payload: rng.bytes(length), as: \.unknownTypes)
        }
    }

    @Test("a payload one byte below its type's fixed minimum is skipped and counted as short", arguments: Samples.oneOfEachType)
    func oneByteShort(_ message: Message) throws {
        let minimum = try #require(message.type.fixedMinimumLength)
        let full = encodedPayload(message)
        expectSkipped(type: message.type, payload: Array(full.prefix(minimum - 1)), as: \.shortPayloads)
        expectSkipped(type: message.type, payload: [], as: \.shortPayloads)
    }

    @Test("a payload of exactly its type's fixed minimum is delivered", arguments: Samples.oneOfEachType)
    func exactlyMinimum(_ message: Message) throws {
        let minimum = try #require(message.type.fixedMinimumLength)
        var body = encodedPayload(message)
        if message.type == .doseProgram || message.type == .alarm {
            // Variable parts set to none, so the fixed part is the whole minimum.
            body[message.type == .doseProgram ? 21 : 16] = 0
            if message.type == .doseProgram { body[22] = 0 }
        }
        expectDelivered(type: message.type, payload: Array(body.prefix(minimum)))
    }

    @Test("the fixed minimum lengths are those of PROTOCOL.md §3")
    func minimumLengths() {
        let expected: [MessageType: Int] = [
            .programmerInfo: 48, .pumpSession: 56, .pumpStatus: 24, .reservoir: 40, .doseProgram: 24, .refill: 40,
            .alarm: 24, .heartbeat: 20, .ack: 12, .hostHeartbeat: 12,
        ]
        for type in MessageType.allKnown { #expect(type.fixedMinimumLength == expected[type], "\(type)") }
        #expect(MessageType.allKnown.count == 10)
    }

    /// A DOSE_PROGRAM payload with `steps` flex steps and `boluses` periodic boluses present, and
    /// the counts given (the real counts unless overridden).
    private func doseProgram(steps: Int, boluses: Int, stepCount: Int? = nil, bolusCount: Int? = nil) -> [UInt8] {
        payload { w in
            w.write(Samples.now)
            w.write(UInt32(4125))
            w.write(UInt32(500))
            w.write(UInt16(120))
            w.write(UInt16(4))
            w.write(DosingMode.flex.rawValue)
            w.write(UInt8(stepCount ?? steps))
            w.write(UInt8(bolusCount ?? boluses))
            w.writeZeros(1)
            for i in 0..<steps {
                w.write(UInt16(i * 100))
                w.writeZeros(2)
                w.write(UInt32(3500))
            }
            for i in 0..<boluses {
                w.write(UInt16(i * 60))
                w.write(UInt16(15))
                w.write(UInt32(250))
            }
        }
    }

    @Test("a DOSE_PROGRAM with 14 flex steps, all 14 present, is short: the protocol allows 13")
    func doseProgramFourteenSteps() {
        expectSkipped(type: .doseProgram, payload: doseProgram(steps: 14, boluses: 0), as: \.shortPayloads)
    }

    @Test("a DOSE_PROGRAM with 25 periodic boluses, all present, is short: the protocol allows 24")
    func doseProgramTwentyFiveBoluses() {
        expectSkipped(type: .doseProgram, payload: doseProgram(steps: 0, boluses: 25), as: \.shortPayloads)
    }

    @Test("a DOSE_PROGRAM with counts of 255 is short, whatever bytes follow")
    func doseProgramHugeCounts() {
        expectSkipped(type: .doseProgram, payload: doseProgram(steps: 2, boluses: 0, stepCount: 255), as: \.shortPayloads)
        var padded = doseProgram(steps: 0, boluses: 0, bolusCount: 255)
        padded += [UInt8](repeating: 0, count: FrameLayout.maximumPayloadLength - padded.count)
        expectSkipped(type: .doseProgram, payload: padded, as: \.shortPayloads)
    }

    @Test("a DOSE_PROGRAM claiming more steps or boluses than it carries is short")
    func doseProgramMissingEntries() {
        expectSkipped(type: .doseProgram, payload: doseProgram(steps: 2, boluses: 0, stepCount: 3), as: \.shortPayloads)
        expectSkipped(type: .doseProgram, payload: doseProgram(steps: 13, boluses: 23, bolusCount: 24), as: \.shortPayloads)
        expectSkipped(type: .doseProgram, payload: Array(doseProgram(steps: 1, boluses: 1).dropLast()), as: \.shortPayloads)
    }

    @Test("a DOSE_PROGRAM with 13 flex steps and 24 periodic boluses, the most allowed, is delivered with all of them")
    func doseProgramLargest() throws {
        let body = doseProgram(steps: 13, boluses: 24)
        #expect(body.count == 24 + 8 * 37)
        expectDelivered(type: .doseProgram, payload: body)
        let message = try #require(decodeOneShot(FrameEncoder.frame(type: .doseProgram, sequence: 1, payload: body)).frames.first?.message)
        guard case .doseProgram(let program) = message else {
            Issue.record("not a dose program: \(message)")
            return
        }
        #expect(program.flexSteps.count == 13)
        #expect(program.periodicBoluses.count == 24)
        #expect(program.periodicBoluses.last == .init(startMinute: 23 * 60, durationMin: 15, doseUgX10: 250))
    }

    @Test("an ALARM with detail_length 65, all 65 bytes present, is short: the protocol allows 64")
    func alarmDetail65() {
        expectSkipped(type: .alarm, payload: alarmPayload(alarmID: 1, detail: Array(repeating: UInt8(ascii: "d"), count: 65)), as: \.shortPayloads)
        expectSkipped(type: .alarm, payload: alarmPayload(alarmID: 1, detail: [], detailLength: 255), as: \.shortPayloads)
    }

    @Test("an ALARM with detail_length 64 is delivered with its whole detail")
    func alarmDetail64() throws {
        let detail = Array(String(repeating: "0123456789abcdef", count: 4).utf8)
        expectDelivered(type: .alarm, payload: alarmPayload(alarmID: 1, detail: detail))
        let frame = FrameEncoder.frame(type: .alarm, sequence: 1, payload: alarmPayload(alarmID: 1, detail: detail))
        let message = try #require(decodeOneShot(frame).frames.first?.message)
        guard case .alarm(let alarm) = message else {
            Issue.record("not an alarm: \(message)")
            return
        }
        #expect(Array(alarm.detail.utf8) == detail)
    }

    @Test("an ALARM whose detail is shorter than its detail_length is short")
    func alarmDetailMissingBytes() {
        expectSkipped(type: .alarm, payload: alarmPayload(alarmID: 1, detail: Array("reservoir ".utf8), detailLength: 20), as: \.shortPayloads)
        expectSkipped(type: .alarm, payload: alarmPayload(alarmID: 1, detail: Array(repeating: 0x41, count: 63), detailLength: 64), as: \.shortPayloads)
    }

    @Test("an ALARM whose detail ends at a NUL before detail_length keeps only the text before it")
    func alarmDetailNUL() throws {
        let frame = FrameEncoder.frame(type: .alarm, sequence: 1, payload: alarmPayload(alarmID: 1, detail: Array("valve\0\0junk".utf8)))
        let message = try #require(decodeOneShot(frame).frames.first?.message)
        #expect(message == .alarm(.init(
            onsetTimeMs: 1_776_700_798_412, alarmID: 1, code: .flowFault, priority: .high, transition: .raised, detail: "valve")))
    }

    @Test("unknown and short frames between others leave the sequence, delivery and counters exactly as the spec says")
    func mixedSkippedFrames() {
        var encoder = FrameEncoder(firstSequence: 500)
        let heartbeat = encodedPayload(.heartbeat(Samples.heartbeat))
        let frames = [
            encoder.encode(type: .heartbeat, payload: heartbeat),
            encoder.encode(type: .init(rawValue: 0x0042), payload: [1, 2, 3]),
            encoder.encode(type: .pumpStatus, payload: Array(repeating: 0, count: 20)),
            encoder.encode(type: .heartbeat, payload: heartbeat),
        ]
        let outcome = decodeOneShot(frames.flatMap { $0 })
        #expect(outcome.frames.map(\.sequence) == [500, 503])
        #expect(outcome.counters.unknownTypes == 1)
        #expect(outcome.counters.shortPayloads == 1)
        #expect(outcome.counters.sequenceGaps == 0)
        #expect(outcome.counters.framesAccepted == 4)
    }
}
