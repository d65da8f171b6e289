import CCRC32C
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A streaming decoder for protocol v1 frames that takes bytes in chunks of any size and hands out
/// frames as views into those bytes, without copying them.
///
/// Feed it whatever a `read()` returned; it calls your closure once per delivered frame, in order.
/// Only a frame that straddles two chunks is copied, into a carry buffer of at most one frame
/// (1044 bytes) allocated once when the decoder is made: decoding allocates nothing per frame.
///
/// Resynchronisation follows `protocol-spec/PROTOCOL.md` §2.2: garbage is skipped up to the next
/// magic; a header that fails any check costs one byte; a frame with a bad payload CRC is skipped
/// whole. Frames of unknown types or shorter than their type's minimum are counted and skipped, so
/// a typed view over a delivered frame can read every required field without further checks.
///
/// A decoder is a value owned by one reader (one serial port, one capture); it is not shared.
public struct FrameDecoder: Sendable {
    /// What the decoder has seen so far.
    public private(set) var counters = DecoderCounters()

    /// State of the sequence check (§2.3) and the pending partial frame.
    var scanState = ScanState()
    /// Bytes of a frame that straddles chunks. Capacity reserved once; never grows past one frame.
    var carry: [UInt8]
    /// How many bytes the pending candidate at the start of `carry` needs in total.
    var pendingNeed = 0

    /// Creates a decoder with an empty stream.
    public init() {
        carry = []
        carry.reserveCapacity(FrameLayout.maximumFrameSize)
    }

    /// Bytes held back because they may be the start of a frame still arriving.
    public var pendingByteCount: Int { carry.count }

    /// Forgets a partial frame and the sequence baseline, for a new connection on the same
    /// decoder (a re-plugged programmer). Counters are kept. Pending bytes are counted as discarded.
    public mutating func resetStream() {
        counters.bytesDiscarded &+= UInt64(carry.count)
        carry.removeAll(keepingCapacity: true)
        pendingNeed = 0
        scanState.hasLastSequence = false
    }

    /// Decodes `bytes` and calls `body` for each delivered frame, in stream order.
    ///
    /// The ``Frame`` passed to `body` is valid only during that call. If `body` throws, decoding
    /// stops there and the error propagates; the bytes after that frame in this chunk are not
    /// consumed and are lost to this decoder (call ``resetStream()`` before feeding more).
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ body: (Frame) throws -> Void) rethrows {
        counters.bytesReceived &+= UInt64(bytes.count)
        var state = scanState
        var counts = counters
        defer {
            scanState = state
            counters = counts
        }
        var offset = 0
        if !carry.isEmpty {
            // Complete the straddling frame from the new bytes, copying only what it needs.
            var copiedFromChunk = 0
            while true {
                let take = min(pendingNeed - carry.count, bytes.count - offset)
                if take > 0 {
                    carry.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + take)]))
                    offset += take
                    copiedFromChunk += take
                }
                let (consumed, need) = try carry.withUnsafeBytes { buffer in
                    try Self.scan(buffer, state: &state, counters: &counts, body)
                }
                let remainder = carry.count - consumed
                if remainder == 0 {
                    carry.removeAll(keepingCapacity: true)
                    break
                }
                if remainder <= copiedFromChunk {
                    // What is left came from this chunk: go back to reading it in place.
                    offset -= remainder
                    carry.removeAll(keepingCapacity: true)
                    break
                }
                carry.removeFirst(consumed)
                pendingNeed = need
                if offset == bytes.count { return }
            }
        }
        let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
        let (consumed, need) = try Self.scan(rest, state: &state, counters: &counts, body)
        if consumed < rest.count {
            carry.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[consumed...]))
            pendingNeed = need
        }
    }

    /// Sequence-check state kept between chunks.
    struct ScanState: Sendable {
        var hasLastSequence = false
        var lastSequence: UInt32 = 0
        init() {}
    }

    /// Scans `buffer` from its start, delivering every complete frame, and returns how many bytes
    /// were consumed and, when bytes remain, how many the candidate frame at `consumed` needs in all.
    static func scan(
        _ buffer: UnsafeRawBufferPointer,
        state: inout ScanState,
        counters: inout DecoderCounters,
        _ body: (Frame) throws -> Void
    ) rethrows -> (consumed: Int, need: Int) {
        guard let base = buffer.baseAddress else { return (0, 0) }
        let count = buffer.count
        var i = 0
        while true {
            let remaining = count &- i
            if remaining < 2 {
                if remaining == 1 && buffer[i] != FrameLayout.magic.0 {
                    counters.bytesDiscarded &+= 1
                    i &+= 1
                }
                return (i, remaining == 1 && i < count ? 2 : 0)
            }
            if buffer[i] != FrameLayout.magic.0 || buffer[i &+ 1] != FrameLayout.magic.1 {
                // Search for the next candidate start byte; everything before it is garbage.
                let from = i &+ 1
                if let hit = memchr(base + from, Int32(FrameLayout.magic.0), count &- from) {
                    let next = base.distance(to: UnsafeRawPointer(hit))
                    counters.bytesDiscarded &+= UInt64(next &- i)
                    i = next
                } else {
                    counters.bytesDiscarded &+= UInt64(count &- i)
                    i = count
                }
                continue
            }
            if remaining < FrameLayout.headerSize { return (i, FrameLayout.headerSize) }

            let header = base + i
            let version = header.load(fromByteOffset: FrameLayout.Offset.version, as: UInt8.self)
            let flags = header.load(fromByteOffset: FrameLayout.Offset.flags, as: UInt8.self)
            let length = Int(UInt16(littleEndian: header.loadUnaligned(fromByteOffset: FrameLayout.Offset.length, as: UInt16.self)))
            if version != FrameLayout.majorVersion {
                counters.headerRejectsVersion &+= 1
            } else if flags & FrameLayout.incompatibleFlagsMask != 0 {
                counters.headerRejectsIncompatibleFlags &+= 1
            } else if length > FrameLayout.maximumPayloadLength {
                counters.headerRejectsLength &+= 1
            } else if ccrc32c_update(0xFFFF_FFFF, header, FrameLayout.headerCRCCoverage) ^ 0xFFFF_FFFF
                != UInt32(littleEndian: header.loadUnaligned(fromByteOffset: FrameLayout.Offset.headerCRC, as: UInt32.self))
            {
                counters.headerRejectsHeaderCRC &+= 1
            } else {
                // A trustworthy header: wait for the whole frame, then check the payload.
                let total = FrameLayout.headerSize &+ length &+ FrameLayout.trailerSize
                if remaining < total { return (i, total) }
                let payload = header + FrameLayout.headerSize
                let expected = UInt32(littleEndian: payload.loadUnaligned(fromByteOffset: length, as: UInt32.self))
                if ccrc32c_update(0xFFFF_FFFF, payload, length) ^ 0xFFFF_FFFF != expected {
                    counters.payloadCRCErrors &+= 1
                    counters.bytesDiscarded &+= UInt64(total)
                    i &+= total
                    continue
                }
                counters.framesAccepted &+= 1
                let sequence = UInt32(littleEndian: header.loadUnaligned(fromByteOffset: FrameLayout.Offset.sequence, as: UInt32.self))
                if state.hasLastSequence && sequence != state.lastSequence &+ 1 {
                    if sequence == state.lastSequence {
                        counters.duplicates &+= 1
                    } else {
                        counters.sequenceGaps &+= 1
                    }
                }
                state.hasLastSequence = true
                state.lastSequence = sequence
                let type = MessageType(rawValue: UInt16(littleEndian: header.loadUnaligned(fromByteOffset: FrameLayout.Offset.type, as: UInt16.self)))
                let payloadBuffer = UnsafeRawBufferPointer(start: payload, count: length)
                i &+= total
                if let minimum = type.minimumLength(payload: payloadBuffer) {
                    if length < minimum {
                        counters.shortPayloads &+= 1
                    } else {
                        counters.framesDelivered &+= 1
                        try body(Frame(unchecked: UnsafeRawBufferPointer(start: header, count: total)))
                    }
                } else {
                    counters.unknownTypes &+= 1
                }
                continue
            }
            // Rejected header: give up one byte and search again; a real frame may start inside it.
            counters.bytesDiscarded &+= 1
            i &+= 1
        }
    }
}
