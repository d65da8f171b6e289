// Payload length limits (PROTOCOL.md §2): 0…1024 bytes; a header announcing more is rejected.

import ITBProtocol
import Testing

@Suite("Frame lengths")
struct FrameLengthTests {
    /// A header announcing `length` with a correct header CRC.
    private func header(type: MessageType, length: UInt16, sequence: UInt32) -> [UInt8] {
        payload { w in
            w.write(FrameLayout.magic.0)
            w.write(FrameLayout.magic.1)
            w.write(FrameLayout.majorVersion)
            w.write(UInt8(0))
            w.write(type.rawValue)
            w.write(length)
            w.write(sequence)
            let crc = CRC32C.checksum(w.bytes)
            w.write(crc)
        }
    }

    @Test("a frame with the largest payload, 1024 bytes, is accepted whole and its trailing bytes are ignored", arguments: Samples.oneOfEachType)
    func largestPayloadAccepted(_ message: Message) throws {
        var rng = SplitMix64(seed: 0x1E06_0000_0000_0001)
        let body = encodedPayload(message)
        let padded = body + rng.bytes(FrameLayout.maximumPayloadLength - body.count)
        let frame = FrameEncoder.frame(type: message.type, sequence: 77, payload: padded)
        #expect(frame.count == FrameLayout.maximumFrameSize)
        let outcome = decodeOneShot(frame)
        #expect(outcome.frames.map(\.bytes) == [frame])
        #expect(outcome.frames.first?.message == message)
        #expect(decodeByteByByte(frame) == outcome)
        frame.withUnsafeBytes { #expect(Frame(validating: $0)?.payloadLength == 1024) }
    }

    @Test("a header announcing 1025 bytes is rejected for its length, and the frame after it is delivered")
    func length1025Rejected() {
        var rng = SplitMix64(seed: 0x1E06_0000_0000_0002)
        // The announced 1025 payload bytes and 4 CRC bytes follow, none of them a B7.
        let oversized = header(type: .programmerInfo, length: 1025, sequence: 1) + rng.garbage(1025 + 4)
        let next = FrameEncoder.frame(type: .heartbeat, sequence: 2, payload: encodedPayload(.heartbeat(Samples.heartbeat)))
        let outcome = decodeOneShot(oversized + next)
        #expect(outcome.frames.map(\.bytes) == [next])
        #expect(outcome.counters.headerRejectsLength == 1)
        #expect(outcome.counters.headerRejects == 1)
        #expect(outcome.counters.bytesDiscarded == UInt64(oversized.count))
        #expect(outcome.counters.payloadCRCErrors == 0)
        expectCountersAddUp(outcome, consumedByAcceptedFrames: next.count)
        #expect(decodeByteByByte(oversized + next) == outcome)
        oversized.withUnsafeBytes { #expect(Frame(validating: $0) == nil) }
    }

    @Test("every announced length above 1024 is rejected as soon as the 16 header bytes are in", arguments: [1025, 1026, 2048, 0x7FFF, 0xFFFF])
    func rejectedOnHeaderAlone(_ length: Int) {
        var decoder = FrameDecoder()
        decoder.collect(header(type: .alarm, length: UInt16(length), sequence: 3))
        #expect(decoder.counters.headerRejectsLength == 1)
        #expect(decoder.counters.bytesDiscarded == 16)
        #expect(decoder.pendingByteCount == 0)
    }

    @Test("a header announcing 1024 bytes waits for the whole 1044-byte frame before deciding")
    func length1024Waits() {
        var rng = SplitMix64(seed: 0x1E06_0000_0000_0003)
        let frame = FrameEncoder.frame(type: .init(rawValue: 0x0042), sequence: 4, payload: rng.bytes(1024))
        var decoder = FrameDecoder()
        decoder.collect(frame.dropLast())
        #expect(decoder.pendingByteCount == 1043)
        #expect(decoder.counters.framesAccepted == 0)
        decoder.collect(frame.suffix(1))
        #expect(decoder.counters.framesAccepted == 1)
        #expect(decoder.counters.unknownTypes == 1)
        #expect(decoder.pendingByteCount == 0)
    }

    @Test("an empty payload is a valid 20-byte frame whose payload CRC is 0")
    func emptyPayload() {
        let frame = FrameEncoder.frame(type: .init(rawValue: 0x0042), sequence: 5, payload: [])
        #expect(frame.count == 20)
        #expect(Array(frame.suffix(4)) == [0, 0, 0, 0])
        let outcome = decodeOneShot(frame)
        #expect(outcome.counters.framesAccepted == 1)
        #expect(outcome.counters.unknownTypes == 1)
    }
}
