// Truncated frames: a frame cut anywhere delivers nothing and keeps its bytes pending (never
// discarding them), and the rest of it completes the frame.

import ITBProtocol
import Testing

@Suite("Truncated frames")
struct TruncationTests {
    @Test("a golden frame cut at every length delivers nothing, keeps the bytes pending, and its rest completes it", arguments: Vectors.frames)
    func cutEverywhere(_ vector: FrameVector) {
        let bytes = vector.bytes
        for cut in 0..<bytes.count {
            var decoder = FrameDecoder()
            let early = decoder.collect(bytes[..<cut])
            guard early.isEmpty else {
                Issue.record("cut at \(cut): delivered \(early)")
                return
            }
            let fed = UInt64(cut)
            guard UInt64(decoder.pendingByteCount) + decoder.counters.bytesDiscarded == fed,
                  decoder.counters.bytesDiscarded == 0,
                  decoder.counters.bytesReceived == fed
            else {
                Issue.record("cut at \(cut): pending \(decoder.pendingByteCount), counters \(decoder.counters.named)")
                return
            }
            let late = decoder.collect(bytes[cut...])
            guard late.map(\.bytes) == [bytes], decoder.pendingByteCount == 0, decoder.counters.framesDelivered == 1,
                  decoder.counters.bytesDiscarded == 0
            else {
                Issue.record("cut at \(cut): the rest delivered \(late), counters \(decoder.counters.named)")
                return
            }
        }
    }

    @Test("a golden frame cut at every length, then its rest byte by byte, is delivered exactly once at its last byte", arguments: Vectors.frames.filter { $0.bytes.count < 100 })
    func cutThenByteByByte(_ vector: FrameVector) {
        let bytes = vector.bytes
        for cut in 0..<bytes.count {
            var decoder = FrameDecoder()
            var delivered = decoder.collect(bytes[..<cut])
            for index in cut..<bytes.count {
                delivered += decoder.collect(bytes[index...index])
                if index < bytes.count - 1 && !delivered.isEmpty {
                    Issue.record("cut at \(cut): delivered before the last byte (at \(index))")
                    return
                }
            }
            #expect(delivered.map(\.bytes) == [bytes], "cut at \(cut)")
        }
    }

    @Test("a frame cut short and followed by nothing else stays pending until the stream is reset")
    func cutFrameStaysPending() {
        let frame = FrameEncoder.frame(type: .pumpStatus, sequence: 1, payload: encodedPayload(.pumpStatus(Samples.pumpStatus)))
        var decoder = FrameDecoder()
        decoder.collect(frame.dropLast())
        #expect(decoder.pendingByteCount == frame.count - 1)
        // Feeding nothing changes nothing.
        #expect(decoder.collect([UInt8]()).isEmpty)
        #expect(decoder.pendingByteCount == frame.count - 1)
        #expect(decoder.counters.bytesReceived == UInt64(frame.count - 1))
    }

    @Test("a cut frame followed by a new frame is lost, the decoder resynchronises, and every byte is accounted for")
    func cutFrameFollowedByFrames() {
        var encoder = FrameEncoder(firstSequence: 50)
        let cut = Array(encoder.encode(.pumpStatus(Samples.pumpStatus)).prefix(30))
        let following = (0..<40).map { _ in encoder.encode(.heartbeat(Samples.heartbeat)) }
        let stream = cut + following.flatMap { $0 }
        let outcome = decodeOneShot(stream)
        // The cut frame's header claims 44 bytes, so it takes 14 bytes of the next frame into
        // its payload window, fails its payload CRC and is discarded whole; the remainder of that
        // next frame is garbage. From then on every frame is delivered.
        #expect(outcome.counters.payloadCRCErrors == 1)
        #expect(outcome.frames.map(\.bytes) == Array(following.dropFirst()))
        #expect(outcome.pending == 0)
        expectCountersAddUp(outcome, consumedByAcceptedFrames: following.dropFirst().map(\.count).reduce(0, +))
        #expect(decodeByteByByte(stream) == outcome)
    }
}
