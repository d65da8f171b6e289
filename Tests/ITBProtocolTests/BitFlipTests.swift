// Random bit errors (PROTOCOL.md §2.1): no frame with 1–3 flipped bits is ever accepted, and the
// valid frame after it is always delivered.

import ITBProtocol
import Testing

@Suite("Random bit flips")
struct BitFlipTests {
    /// Flips `count` distinct random bits of `frame`.
    private static func flip(_ frame: [UInt8], bits count: Int, using rng: inout SplitMix64) -> [UInt8] {
        var copy = frame
        var positions = Set<Int>()
        while positions.count < count { positions.insert(Int.random(in: 0..<(frame.count * 8), using: &rng)) }
        for position in positions { copy[position / 8] ^= 1 << UInt8(position % 8) }
        return copy
    }

    @Test("100,000 realistic frames with 1–3 random bits flipped: zero corrupted frames accepted, the next frame always delivered")
    func hundredThousandFlippedFrames() {
        let count = 100_000
        var rng = SplitMix64(seed: 0xB17F_11B5_0000_0001)
        var encoder = FrameEncoder(firstSequence: 0)
        // Frame i carries sequence number i, so a delivered frame is checked against the one
        // original that has its number.
        let originals = (0..<count).map { _ in encoder.encode(Samples.randomProgrammerMessage(using: &rng)) }
        #expect(Set(originals.map { $0[4] }).count == 8, "all eight programmer → host types are in the mix")

        var corruptedAccepted: [String] = []
        var followingLost: [Int] = []
        var rejectedByHeader = 0
        var rejectedByPayloadCRC = 0
        var flippedBits = [0, 0, 0, 0]
        for index in 0..<count {
            let bits = Int.random(in: 1...3, using: &rng)
            flippedBits[bits] += 1
            let flipped = Self.flip(originals[index], bits: bits, using: &rng)
            let nextIndex = (index + 1) % count
            var decoder = FrameDecoder()
            let delivered = decoder.collect(flipped + originals[nextIndex])
            for frame in delivered {
                let seq = Int(frame.sequence)
                if seq >= count || frame.bytes != originals[seq] {
                    corruptedAccepted.append("frame \(index) (\(bits) bits): delivered \(frame)")
                }
            }
            if delivered.last?.bytes != originals[nextIndex] || delivered.count != 1 { followingLost.append(index) }
            rejectedByHeader += decoder.counters.headerRejects > 0 ? 1 : 0
            rejectedByPayloadCRC += Int(decoder.counters.payloadCRCErrors)
        }
        #expect(corruptedAccepted.isEmpty, "\(corruptedAccepted.count) corrupted frames accepted, e.g. \(corruptedAccepted.prefix(5))")
        #expect(followingLost.isEmpty, "the valid frame after a flipped one was lost \(followingLost.count) times, e.g. after \(followingLost.prefix(10))")
        #expect(flippedBits[1] > 0 && flippedBits[2] > 0 && flippedBits[3] > 0)
        // Both defences were exercised: flips in the header and flips in the payload or its CRC.
        #expect(rejectedByHeader > 0)
        #expect(rejectedByPayloadCRC > 0)
    }

    @Test("a long stream with every third frame bit-flipped, fed in random chunks, delivers exactly the intact frames")
    func flippedFramesInOneStream() {
        let count = 10_000
        var rng = SplitMix64(seed: 0xB17F_11B5_0000_0002)
        var encoder = FrameEncoder(firstSequence: 0xFFFF_F000)
        var stream: [UInt8] = []
        var intact: [[UInt8]] = []
        for index in 0..<count {
            let frame = encoder.encode(Samples.randomProgrammerMessage(using: &rng))
            if index % 3 == 1 {
                stream += Self.flip(frame, bits: Int.random(in: 1...3, using: &rng), using: &rng)
            } else {
                stream += frame
                intact.append(frame)
            }
        }
        let outcome = decodeInRandomChunks(stream, maximum: 4096, using: &rng)
        // A flipped frame can swallow the start of the next one only if its length field were
        // trusted; the header CRC prevents that, so every intact frame survives.
        #expect(outcome.frames.count == intact.count)
        #expect(outcome.frames.map(\.bytes) == intact)
        #expect(outcome.counters.framesAccepted == UInt64(intact.count))
        #expect(outcome.counters.sequenceGaps == UInt64(count / 3))
        expectCountersAddUp(outcome, consumedByAcceptedFrames: intact.map(\.count).reduce(0, +))
    }
}
