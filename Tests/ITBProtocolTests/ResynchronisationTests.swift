// Resynchronisation (PROTOCOL.md §2.2): garbage before, between and after frames is skipped and
// counted; the magic bytes inside payloads never split a frame; a false header costs one byte.

import ITBProtocol
import Testing

@Suite("Garbage and magic bytes inside payloads")
struct ResynchronisationTests {
    /// Ten frames of all ten types, numbered from 7000.
    private func tenFrames() -> [[UInt8]] {
        var encoder = FrameEncoder(firstSequence: 7000)
        return Samples.oneOfEachType.map { encoder.encode($0) }
    }

    @Test("garbage before, between and after frames is discarded and counted; every frame is delivered exactly")
    func garbageAroundFrames() {
        var rng = SplitMix64(seed: 0x6A5B_0000_0000_0001)
        let frames = tenFrames()
        var stream: [UInt8] = []
        var garbageCount = 0
        for frame in frames {
            let garbage = rng.garbage(Int.random(in: 0...80, using: &rng))
            garbageCount += garbage.count
            stream += garbage + frame
        }
        let trailing = rng.garbage(33)
        garbageCount += trailing.count
        stream += trailing

        for outcome in [decodeOneShot(stream), decodeByteByByte(stream), decodeInRandomChunks(stream, maximum: 50, using: &rng)] {
            #expect(outcome.frames.map(\.bytes) == frames)
            #expect(outcome.frames.map(\.message) == Samples.oneOfEachType)
            #expect(outcome.counters.bytesDiscarded == UInt64(garbageCount))
            #expect(outcome.counters.headerRejects == 0)
            #expect(outcome.counters.payloadCRCErrors == 0)
            #expect(outcome.counters.sequenceGaps == 0)
            #expect(outcome.counters.framesDelivered == 10)
            #expect(outcome.pending == 0)
            expectCountersAddUp(outcome, consumedByAcceptedFrames: frames.map(\.count).reduce(0, +))
        }
    }

    @Test("many seeded streams of frames and garbage deliver every frame and account for every byte")
    func randomGarbageStreams() {
        var rng = SplitMix64(seed: 0x6A5B_0000_0000_0002)
        var encoder = FrameEncoder(firstSequence: 1)
        for round in 0..<300 {
            var frames: [[UInt8]] = []
            var stream: [UInt8] = []
            var garbageCount = 0
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let garbage = rng.garbage(Int.random(in: 0...40, using: &rng))
                let frame = encoder.encode(Samples.randomProgrammerMessage(using: &rng))
                garbageCount += garbage.count
                frames.append(frame)
                stream += garbage + frame
            }
            // A trailing partial frame stays pending rather than discarded.
            let partial = Array(encoder.encode(Samples.randomProgrammerMessage(using: &rng)).prefix(Int.random(in: 0...30, using: &rng)))
            stream += partial
            let outcome = decodeInRandomChunks(stream, maximum: 64, using: &rng)
            #expect(outcome.frames.map(\.bytes) == frames, "round \(round)")
            #expect(outcome.counters.bytesDiscarded == UInt64(garbageCount), "round \(round)")
            #expect(outcome.pending == partial.count, "round \(round)")
            expectCountersAddUp(outcome, consumedByAcceptedFrames: frames.map(\.count).reduce(0, +))
        }
    }

    @Test("garbage full of lone B7 bytes (never followed by E1) is discarded without a header reject")
    func loneMagicFirstBytes() {
        let frames = tenFrames()
        // B7 followed by anything but E1 is not a magic; a trailing B7 before a frame's own B7 is
        // discarded as soon as the next byte shows it is not a magic.
        let garbage: [UInt8] = [0xB7, 0x00, 0xB7, 0xB7, 0x12, 0xE1, 0xE1, 0xB7]
        let stream = frames.flatMap { garbage + $0 } + garbage
        let outcome = decodeOneShot(stream)
        #expect(outcome.frames.map(\.bytes) == frames)
        #expect(outcome.counters.headerRejects == 0)
        // The last B7 of the trailing garbage may still begin a frame: it is pending.
        #expect(outcome.pending == 1)
        #expect(outcome.counters.bytesDiscarded == UInt64(garbage.count * 11 - 1))
        expectCountersAddUp(outcome, consumedByAcceptedFrames: frames.map(\.count).reduce(0, +))
        #expect(decodeByteByByte(stream) == outcome)
    }

    @Test("an ALARM whose detail holds the magic and a whole encoded frame is delivered whole, and the inner frame is not")
    func wholeFrameInsideAlarmDetail() throws {
        let inner = FrameEncoder.frame(type: .heartbeat, sequence: 9, payload: encodedPayload(.heartbeat(Samples.heartbeat)))
        #expect(inner.count == 44)
        let detail: [UInt8] = [0xB7, 0xE1] + Array("x".utf8) + inner + [0xB7, 0xE1, 0x01]
        #expect(detail.count <= Alarm.maximumDetailLength)
        let alarm = FrameEncoder.frame(type: .alarm, sequence: 10, payload: alarmPayload(alarmID: 63, detail: detail))
        let after = FrameEncoder.frame(type: .heartbeat, sequence: 11, payload: encodedPayload(.heartbeat(Samples.heartbeat)))
        let stream = alarm + after

        let reference = decodeOneShot(stream)
        #expect(reference.frames.map(\.bytes) == [alarm, after])
        #expect(reference.frames.map(\.sequence) == [10, 11])
        #expect(reference.counters.bytesDiscarded == 0)
        #expect(reference.counters.headerRejects == 0)
        #expect(reference.counters.sequenceGaps == 0)
        expectCountersAddUp(reference, consumedByAcceptedFrames: stream.count)
        for split in 0...stream.count {
            #expect(decode(stream, splitAt: split) == reference, "split at \(split)")
        }
        // The detail keeps its bytes, escaped only when rendered: the view reads them verbatim
        // up to the first NUL.
        let delivered = try #require(reference.frames.first)
        try delivered.bytes.withUnsafeBytes { raw in
            let frame = try #require(Frame(validating: raw))
            let view = try #require(AlarmView(frame))
            let firstNUL = detail.firstIndex(of: 0) ?? detail.count
            #expect(Array(view.detailBytes) == Array(detail[..<firstNUL]))
        }
    }

    @Test("the magic bytes in integer fields, text and dose steps never split a frame")
    func magicInsideIntegerFields() {
        let magicWord: UInt16 = 0xE1B7  // little-endian: B7 E1
        let messages: [Message] = [
            .programmerInfo(.init(
                bootID: 0xB7E1_B7E1_B7E1_B7E1, firmwareVersion: 0x00E1_B7E1, protocolMinor: magicWord,
                programmerSerial: "PGM-000123", hardwareModel: "ITB-CP 8840")),
            .heartbeat(.init(bootID: 0xE1B7_E1B7_E1B7_E1B7, uptimeS: 0xE1B7_E1B7, highestAlarmID: 0xB7E1_01B7, unackedAlarmCount: 0x01E1_B7E1)),
            .doseProgram(.init(
                deviceTimeMs: 0x01E1_B7E1_B7E1_B7E1, dailyDoseUgX10: 0xE1B7_E1B7, patientBolusDoseUgX10: 0xB7E1_B7E1,
                patientBolusLockoutMin: magicWord, patientBolusMaxPerDay: magicWord, mode: .flex,
                flexSteps: (0..<13).map { _ in .init(startMinute: magicWord, rateUgPerDayX10: 0xE1B7_E1B7) },
                periodicBoluses: (0..<24).map { _ in .init(startMinute: magicWord, durationMin: magicWord, doseUgX10: 0x01E1_B7E1) })),
            .ack(.init(ackedSequence: 0xE1B7_E1B7, alarmID: 0xE1B7_0000, ackedType: .init(rawValue: magicWord), status: .stored)),
        ]
        var encoder = FrameEncoder(firstSequence: 0xE1B7_E1B7)
        let frames = messages.map { encoder.encode($0) }
        let stream = frames.flatMap { $0 }
        let reference = decodeOneShot(stream)
        #expect(reference.frames.map(\.message) == messages)
        #expect(reference.counters.bytesDiscarded == 0)
        #expect(reference.counters.headerRejects == 0)
        expectCountersAddUp(reference, consumedByAcceptedFrames: stream.count)
        #expect(decodeByteByByte(stream) == reference)
    }

    @Test("a false header costs one byte: a real frame starting inside it is found")
    func realFrameInsideFalseHeader() {
        var rng = SplitMix64(seed: 0x6A5B_0000_0000_0003)
        let real = FrameEncoder.frame(type: .pumpStatus, sequence: 600, payload: encodedPayload(.pumpStatus(Samples.pumpStatus)))
        for offset in 2..<FrameLayout.headerSize {
            // A header-like prefix that starts with the magic but whose header CRC cannot match,
            // with the real frame starting `offset` bytes in.
            let prefix = [0xB7, 0xE1, 0x01, 0x00] + rng.garbage(offset).prefix(offset - 2).map { $0 }
            let falseStart = Array(prefix.prefix(offset))
            let stream = falseStart + real
            let outcome = decodeOneShot(stream)
            #expect(outcome.frames.map(\.bytes) == [real], "offset \(offset)")
            #expect(outcome.counters.bytesDiscarded == UInt64(offset), "offset \(offset)")
            #expect(outcome.counters.headerRejects == 1, "offset \(offset)")
            expectCountersAddUp(outcome, consumedByAcceptedFrames: real.count)
            #expect(decodeByteByByte(stream) == outcome, "offset \(offset)")
        }
    }

    @Test("a frame with a bad payload CRC is discarded whole, taking a frame embedded in its payload with it")
    func payloadCRCErrorDiscardsWholeFrame() {
        let inner = FrameEncoder.frame(type: .heartbeat, sequence: 1, payload: encodedPayload(.heartbeat(Samples.heartbeat)))
        var outer = FrameEncoder.frame(type: .alarm, sequence: 2, payload: alarmPayload(alarmID: 5, detail: inner))
        outer[outer.count - 1] ^= 0x80  // break the payload CRC only
        let after = FrameEncoder.frame(type: .heartbeat, sequence: 3, payload: encodedPayload(.heartbeat(Samples.heartbeat)))
        let outcome = decodeOneShot(outer + after)
        #expect(outcome.frames.map(\.bytes) == [after])
        #expect(outcome.counters.payloadCRCErrors == 1)
        #expect(outcome.counters.bytesDiscarded == UInt64(outer.count))
        expectCountersAddUp(outcome, consumedByAcceptedFrames: after.count)
    }
}
