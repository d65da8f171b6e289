// The decoder between connections and when its consumer fails: resetStream() and a throwing body.

import ITBProtocol
import Testing

@Suite("Decoder reset and errors")
struct DecoderLifecycleTests {
    struct StopDecoding: Error, Equatable {
        let sequence: UInt32
    }

    private static func heartbeat(_ seq: UInt32) -> [UInt8] {
        FrameEncoder.frame(type: .heartbeat, sequence: seq, payload: encodedPayload(.heartbeat(Samples.heartbeat)))
    }

    @Test("resetStream() drops a pending partial frame and counts its bytes as discarded")
    func resetDropsPartialFrame() {
        let frame = Self.heartbeat(1)
        var decoder = FrameDecoder()
        decoder.collect(frame.prefix(30))
        #expect(decoder.pendingByteCount == 30)
        decoder.resetStream()
        #expect(decoder.pendingByteCount == 0)
        #expect(decoder.counters.bytesDiscarded == 30)
        #expect(decoder.counters.bytesReceived == 30)
        // The rest of the old frame is now garbage, and a new frame after it is delivered.
        let next = Self.heartbeat(2)
        let delivered = decoder.collect(frame.dropFirst(30) + next)
        #expect(delivered.map(\.bytes) == [next])
        #expect(decoder.pendingByteCount == 0)
        #expect(decoder.counters.bytesDiscarded == UInt64(frame.count))
        #expect(decoder.counters.bytesReceived == UInt64(frame.count + next.count))
    }

    @Test("resetStream() on an empty stream, and twice, changes no counter")
    func resetWhenEmpty() {
        var decoder = FrameDecoder()
        decoder.collect(Self.heartbeat(1))
        let before = decoder.counters
        decoder.resetStream()
        decoder.resetStream()
        #expect(decoder.counters == before)
    }

    @Test("resetStream() forgets the sequence baseline but keeps the counters")
    func resetForgetsSequence() {
        var decoder = FrameDecoder()
        decoder.collect(Self.heartbeat(5))
        decoder.resetStream()
        decoder.collect(Self.heartbeat(100))
        #expect(decoder.counters.sequenceGaps == 0)
        #expect(decoder.counters.framesDelivered == 2)
        decoder.collect(Self.heartbeat(100))
        #expect(decoder.counters.duplicates == 1)
    }

    @Test("resetStream() drops a lone pending B7 and a pending partial header")
    func resetDropsShortPending() {
        for prefix in [1, 2, 9, 15, 16, 43] {
            var decoder = FrameDecoder()
            decoder.collect(Self.heartbeat(1).prefix(prefix))
            #expect(decoder.pendingByteCount == prefix)
            decoder.resetStream()
            #expect(decoder.pendingByteCount == 0)
            #expect(decoder.counters.bytesDiscarded == UInt64(prefix))
            #expect(decoder.collect(Self.heartbeat(2)).map(\.sequence) == [2])
        }
    }

    @Test("an error thrown by the body propagates out of feed and stops decoding at that frame")
    func throwingBodyPropagates() {
        var decoder = FrameDecoder()
        let stream = Self.heartbeat(1) + Self.heartbeat(2) + Self.heartbeat(3)
        var seen: [UInt32] = []
        #expect(throws: StopDecoding(sequence: 2)) {
            try stream.withUnsafeBytes { raw in
                try decoder.feed(raw) { frame in
                    seen.append(frame.sequence)
                    if frame.sequence == 2 { throw StopDecoding(sequence: 2) }
                }
            }
        }
        #expect(seen == [1, 2])
        #expect(decoder.counters.framesDelivered == 2)
        #expect(decoder.counters.bytesReceived == UInt64(stream.count))
    }

    @Test("an error thrown for a frame completed from the carry buffer propagates too")
    func throwingBodyOnStraddlingFrame() {
        var decoder = FrameDecoder()
        let frame = Self.heartbeat(7)
        decoder.collect(frame.prefix(20))
        var seen: [UInt32] = []
        #expect(throws: StopDecoding(sequence: 7)) {
            try Array(frame.dropFirst(20)).withUnsafeBytes { raw in
                try decoder.feed(raw) { frame in
                    seen.append(frame.sequence)
                    throw StopDecoding(sequence: frame.sequence)
                }
            }
        }
        #expect(seen == [7])
    }

    @Test("after a throwing body, resetStream() makes the decoder deliver new frames normally")
    func usableAfterThrowAndReset() {
        var decoder = FrameDecoder()
        let stream = Self.heartbeat(1) + Self.heartbeat(2)
        #expect(throws: StopDecoding.self) {
            try stream.withUnsafeBytes { raw in
                try decoder.feed(raw) { _ in throw StopDecoding(sequence: 0) }
            }
        }
        decoder.resetStream()
        let delivered = decoder.collect(Self.heartbeat(50) + Self.heartbeat(51))
        #expect(delivered.map(\.sequence) == [50, 51])
        #expect(decoder.pendingByteCount == 0)
        let c = decoder.counters
        #expect(c.framesAccepted == c.framesDelivered + c.unknownTypes + c.shortPayloads)
    }

    @Test("a decoder that never throws delivers the same frames through feed as through collect")
    func feedMatchesCollect() {
        let stream = Vectors.streams.flatMap(\.bytes)
        var decoder = FrameDecoder()
        var sequences: [UInt32] = []
        stream.withUnsafeBytes { raw in decoder.feed(raw) { sequences.append($0.sequence) } }
        #expect(sequences == decodeOneShot(stream).frames.map(\.sequence))
    }
}
