// Chunking never matters: a stream fed at every split point, byte by byte, or in random chunks
// delivers the same frames and leaves the same counters and pending bytes as one feed.

import ITBProtocol
import Testing

@Suite("Streams split anywhere")
struct StreamSplitTests {
    /// All golden frames back to back, one stream.
    static let allGoldenFrames: [UInt8] = Vectors.frames.flatMap(\.bytes)

    /// Compares two outcomes and names the first difference, without flooding the log.
    private func expectSame(
        _ outcome: DecodeOutcome, as reference: DecodeOutcome, _ how: String, sourceLocation: SourceLocation = #_sourceLocation
    ) -> Bool {
        guard outcome != reference else { return true }
        Issue.record(
            """
            \(how) differs from one feed:
              frames   \(outcome.frames.map(\.description)) vs \(reference.frames.map(\.description))
              counters \(outcome.namedCounters.filter { reference.namedCounters[$0.key] != $0.value }) vs \(reference.namedCounters)
              pending  \(outcome.pending) vs \(reference.pending)
            """, sourceLocation: sourceLocation)
        return false
    }

    @Test("a vector fed in two parts at every possible split point decodes as when fed at once", arguments: Vectors.allStreams)
    func everySplitPoint(_ vector: StreamVector) {
        let reference = decodeOneShot(vector.bytes)
        #expect(reference.deliveries == vector.delivered)
        #expect(reference.namedCounters == vector.counters)
        for split in 0...vector.bytes.count {
            guard expectSame(decode(vector.bytes, splitAt: split), as: reference, "split at \(split)") else { return }
        }
    }

    @Test("a vector fed byte by byte decodes as when fed at once", arguments: Vectors.allStreams)
    func byteByByte(_ vector: StreamVector) {
        let outcome = decodeByteByByte(vector.bytes)
        _ = expectSame(outcome, as: decodeOneShot(vector.bytes), "byte by byte")
        #expect(outcome.deliveries == vector.delivered)
        #expect(outcome.namedCounters == vector.counters)
    }

    @Test("a vector fed in seeded random chunk sizes decodes as when fed at once", arguments: Vectors.allStreams)
    func randomChunks(_ vector: StreamVector) {
        let reference = decodeOneShot(vector.bytes)
        var rng = SplitMix64(seed: 0x5EED_0000_0000_0004 ^ UInt64(vector.bytes.count))
        for round in 0..<200 {
            let maximum = [3, 17, 64, 1100][round % 4]
            let outcome = decodeInRandomChunks(vector.bytes, maximum: maximum, using: &rng)
            guard expectSame(outcome, as: reference, "random chunks (round \(round), maximum \(maximum))") else { return }
        }
    }

    @Test("all golden frames concatenated deliver every frame in order, with the expected sequence gaps")
    func concatenatedGoldenFrames() {
        let outcome = decodeOneShot(Self.allGoldenFrames)
        #expect(outcome.frames.map(\.bytes) == Vectors.frames.map(\.bytes))
        #expect(outcome.deliveries == Vectors.frames.map { Delivery(type: $0.type, seq: $0.seq) })
        var expectedGaps: UInt64 = 0
        var expectedDuplicates: UInt64 = 0
        for (previous, next) in zip(Vectors.frames, Vectors.frames.dropFirst()) where next.seq != previous.seq &+ 1 {
            if next.seq == previous.seq { expectedDuplicates += 1 } else { expectedGaps += 1 }
        }
        #expect(outcome.counters.sequenceGaps == expectedGaps)
        #expect(outcome.counters.duplicates == expectedDuplicates)
        #expect(outcome.counters.bytesDiscarded == 0)
        #expect(outcome.pending == 0)
        expectCountersAddUp(outcome, consumedByAcceptedFrames: Self.allGoldenFrames.count)
    }

    @Test("all golden frames concatenated and fed in two parts at every split point decode as when fed at once")
    func concatenatedGoldenFramesEverySplit() {
        let stream = Self.allGoldenFrames
        let reference = decodeOneShot(stream)
        for split in 0...stream.count {
            guard expectSame(decode(stream, splitAt: split), as: reference, "split at \(split)") else { return }
        }
    }

    @Test("all golden frames concatenated and fed byte by byte or in random chunks decode as when fed at once")
    func concatenatedGoldenFramesSmallChunks() {
        let stream = Self.allGoldenFrames
        let reference = decodeOneShot(stream)
        _ = expectSame(decodeByteByByte(stream), as: reference, "byte by byte")
        var rng = SplitMix64(seed: 0x5EED_0000_0000_0005)
        for round in 0..<100 {
            let maximum = [2, 20, 300, 2100][round % 4]
            guard expectSame(decodeInRandomChunks(stream, maximum: maximum, using: &rng), as: reference, "random chunks \(round)")
            else { return }
        }
    }

    /// A seeded stream mixing valid frames with everything that makes a decoder work: magic-heavy
    /// garbage, false headers, cut frames, bit-flipped frames, unknown types and short payloads.
    private static func noisyStream(using rng: inout SplitMix64, encoder: inout FrameEncoder) -> [UInt8] {
        var stream: [UInt8] = []
        let target = Int.random(in: 100...2500, using: &rng)
        while stream.count < target {
            switch Int.random(in: 0..<7, using: &rng) {
            case 0, 1:
                stream += encoder.encode(Samples.randomProgrammerMessage(using: &rng))
            case 2:
                // Garbage made mostly of the bytes that begin a frame header.
                let alphabet: [UInt8] = [0xB7, 0xB7, 0xE1, 0xE1, 0x01, 0x00, 0x10, 0xFF]
                stream += (0..<Int.random(in: 1...40, using: &rng)).map { _ in
                    Bool.random(using: &rng) ? alphabet.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
                }
            case 3:
                // A false header: the magic and version, then noise.
                stream += [0xB7, 0xE1, 0x01, 0x00] + rng.bytes(Int.random(in: 0...20, using: &rng))
            case 4:
                let frame = encoder.encode(Samples.randomProgrammerMessage(using: &rng))
                stream += frame.prefix(Int.random(in: 1..<frame.count, using: &rng))
            case 5:
                var frame = encoder.encode(Samples.randomProgrammerMessage(using: &rng))
                let bit = Int.random(in: 0..<(frame.count * 8), using: &rng)
                frame[bit / 8] ^= 1 << UInt8(bit % 8)
                stream += frame
            default:
                if Bool.random(using: &rng) {
                    stream += encoder.encode(type: MessageType(rawValue: 0x0042), payload: rng.bytes(Int.random(in: 0...30, using: &rng)))
                } else {
                    stream += encoder.encode(type: .alarm, payload: rng.bytes(Int.random(in: 0...23, using: &rng)))
                }
            }
        }
        return stream
    }

    @Test("seeded noisy streams of frames, magic-heavy garbage, false headers and cut frames decode the same in any chunking")
    func noisyStreams() {
        var rng = SplitMix64(seed: 0x5EED_0000_0000_0006)
        var encoder = FrameEncoder(firstSequence: 1)
        for round in 0..<150 {
            let stream = Self.noisyStream(using: &rng, encoder: &encoder)
            let reference = decodeOneShot(stream)
            let c = reference.counters
            #expect(c.framesAccepted == c.framesDelivered + c.unknownTypes + c.shortPayloads)
            guard expectSame(decodeByteByByte(stream), as: reference, "round \(round) byte by byte") else { return }
            for chunking in 0..<30 {
                let maximum = [2, 5, 17, 45, 200, 1100][chunking % 6]
                guard expectSame(decodeInRandomChunks(stream, maximum: maximum, using: &rng), as: reference, "round \(round) chunking \(chunking)")
                else { return }
            }
            if round < 10 {
                for split in 0...stream.count {
                    guard expectSame(decode(stream, splitAt: split), as: reference, "round \(round) split at \(split)") else { return }
                }
            }
        }
    }

    @Test("a cut golden frame followed by every vector, fed in two parts at every split point, decodes as when fed at once")
    func vectorsAfterGoldenFrames() {
        // A straddling frame completed from the carry buffer, followed by a negative or stream
        // vector: the carry path must hand over to in-place scanning at any point.
        let stream = Self.allGoldenFrames.suffix(200) + Vectors.allStreams.flatMap(\.bytes)
        let bytes = Array(stream)
        let reference = decodeOneShot(bytes)
        for split in stride(from: 0, through: bytes.count, by: 1) {
            guard expectSame(decode(bytes, splitAt: split), as: reference, "split at \(split)") else { return }
        }
    }
}
