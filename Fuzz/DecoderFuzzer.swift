// libFuzzer target for the protocol decoder and the JSON rendering of every delivered frame.
//
// Built by Fuzz/run.sh into one module with the ITBProtocol and ITBJSON sources (so it needs no
// package build), with `-sanitize=fuzzer,address`. Each input is decoded twice, in one piece and
// in chunks whose sizes come from the input itself, and the two runs must agree exactly; every
// delivered frame must re-validate, convert to an owned message, re-encode to a frame that decodes
// to the same message, and render as JSON. The counters must add up. Any violation traps.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)

    // 1. One piece.
    var whole = FrameDecoder()
    var wholeFrames: [[UInt8]] = []
    var json = JSONWriter()
    whole.feed(input) { frame in
        wholeFrames.append(Array(frame.bytes))
        guard Frame(validating: frame.bytes) != nil else { fatalError("delivered frame does not validate") }
        guard let message = Message(frame) else { fatalError("delivered frame has no message") }
        var encoder = FrameEncoder(firstSequence: frame.sequence)
        let again = encoder.encode(message, flags: frame.flags)
        var check = FrameDecoder()
        var roundTrip: Message?
        again.withUnsafeBytes { raw in check.feed(raw) { roundTrip = Message($0) } }
        guard roundTrip == message else { fatalError("re-encoded message differs: \(message)") }
        json.removeAll()
        MessageJSON.writeFrame(frame, into: &json)
    }

    // 2. Chunked, sizes 1...64 drawn from the input bytes.
    var chunked = FrameDecoder()
    var chunkedFrames: [[UInt8]] = []
    var offset = 0
    var cursor = 0
    while offset < size {
        let step = size > 0 ? Int(input[cursor % size]) % 64 + 1 : 1
        cursor += 1
        let end = min(offset + step, size)
        chunked.feed(UnsafeRawBufferPointer(rebasing: input[offset..<end])) { chunkedFrames.append(Array($0.bytes)) }
        offset = end
    }

    guard wholeFrames == chunkedFrames else { fatalError("chunked decoding delivered different frames") }
    guard whole.counters == chunked.counters else { fatalError("chunked decoding counted differently") }
    let c = whole.counters
    guard c.framesAccepted == c.framesDelivered + c.unknownTypes + c.shortPayloads else { fatalError("frame counters do not add up") }
    guard c.bytesReceived == UInt64(size) else { fatalError("bytes received miscounted") }
    guard c.bytesDiscarded + UInt64(whole.pendingByteCount) <= UInt64(size) else { fatalError("discarded more than received") }
    guard whole.pendingByteCount <= FrameLayout.maximumFrameSize else { fatalError("pending bytes beyond one frame") }
    return 0
}
