// The `negative` and `streams` vectors: each byte stream delivers exactly the listed frames and
// leaves all thirteen counters exactly at the vector's values.

import ITBProtocol
import Testing

@Suite("Negative and stream vectors")
struct StreamVectorTests {
    @Test("every vector lists all thirteen counters under the names DecoderCounters uses", arguments: Vectors.allStreams)
    func vectorNamesEveryCounter(_ vector: StreamVector) {
        let names = DecoderCounters().namedValues.map(\.name)
        #expect(names.count == 13)
        #expect(Set(vector.counters.keys) == Set(names))
    }

    @Test("a negative vector fed at once delivers exactly its frames and leaves every counter at its value", arguments: Vectors.negative)
    func negativeVector(_ vector: StreamVector) {
        let outcome = decodeOneShot(vector.bytes)
        #expect(outcome.deliveries == vector.delivered)
        #expect(outcome.namedCounters == vector.counters)
        #expect(outcome.counters.bytesReceived == UInt64(vector.bytes.count))
        // Each negative vector ends with a complete, valid HEARTBEAT: nothing is left pending.
        #expect(outcome.pending == 0)
    }

    @Test("a stream vector fed at once delivers exactly its frames and leaves every counter at its value", arguments: Vectors.streams)
    func streamVector(_ vector: StreamVector) {
        let outcome = decodeOneShot(vector.bytes)
        #expect(outcome.deliveries == vector.delivered)
        #expect(outcome.namedCounters == vector.counters)
        #expect(outcome.counters.bytesReceived == UInt64(vector.bytes.count))
    }

    @Test("accepted frames add up to delivered plus unknown plus short in every vector", arguments: Vectors.allStreams)
    func acceptedAddsUp(_ vector: StreamVector) {
        let c = decodeOneShot(vector.bytes).counters
        #expect(c.framesAccepted == c.framesDelivered + c.unknownTypes + c.shortPayloads)
    }

    @Test("every frame delivered from a vector is a complete valid frame whose owned message decodes", arguments: Vectors.allStreams)
    func deliveredFramesValidate(_ vector: StreamVector) {
        for frame in decodeOneShot(vector.bytes).frames {
            frame.bytes.withUnsafeBytes { #expect(Frame(validating: $0) != nil) }
            #expect(frame.message != nil)
            #expect(frame.message?.type == frame.type)
        }
    }

    @Test("the pending bytes at the end of the partial-frame streams are exactly the cut frame's bytes")
    func trailingPartialIsPending() throws {
        let expectations = [
            "garbage_five_frames_garbage_between_trailing_partial": 57,
            "trailing_partial_header_9_bytes": 9,
            "trailing_lone_b7_is_pending": 1,
        ]
        for (name, pending) in expectations {
            let vector = try #require(Vectors.streams.first { $0.name == name })
            let outcome = decodeOneShot(vector.bytes)
            #expect(outcome.pending == pending, "\(name)")
            #expect(Array(vector.bytes.suffix(pending)).first == FrameLayout.magic.0, "\(name)")
        }
    }
}
