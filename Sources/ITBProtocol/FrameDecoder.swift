// Public: the decoder's hot loop is @inlinable (so a caller's frame closure is specialised and
// inlined into it), and inlinable code may only call publicly imported C functions.
public import CCRC32C
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
    public var counters: DecoderCounters { _counters }

    @usableFromInline var _counters = DecoderCounters()
    /// State of the sequence check (§2.3).
    @usableFromInline var scanState = ScanState()
    /// Bytes of a frame that straddles chunks. Capacity reserved once; never grows past one frame.
    @usableFromInline var carry: [UInt8]
    /// How many bytes the pending candidate at the start of `carry` needs in total.
    @usableFromInline var pendingNeed = 0
    /// Whether to use the CPU's CRC instruction (decided once, at creation).
    @usableFromInline let hardwareCRC: Int32

    /// Creates a decoder with an empty stream, using the fastest CRC-32C this CPU has.
    public init() {
        self.init(crc: CRC32C.preferred)
    }

    /// Creates a decoder that checks CRCs with a chosen implementation (tests compare them).
    public init(crc: CRC32C.Implementation) {
        carry = []
        carry.reserveCapacity(FrameLayout.maximumFrameSize)
        hardwareCRC = crc == .hardware && CRC32C.hardwareAvailable ? 1 : 0
    }

    /// Bytes held back because they may be the start of a frame still arriving.
    public var pendingByteCount: Int { carry.count }

    /// Forgets a partial frame and the sequence baseline, for a new connection on the same
    /// decoder (a re-plugged programmer). Counters are kept. Pending bytes are counted as discarded.
    public mutating func resetStream() {
        _counters.bytesDiscarded &+= UInt64(carry.count)
        carry.removeAll(keepingCapacity: true)
        pendingNeed = 0
        scanState.hasLastSequence = false
    }

    /// Decodes `bytes` and calls `body` for each delivered frame, in stream order.
    ///
    /// The ``Frame`` passed to `body` is valid only during that call. If `body` throws, decoding
    /// stops there and the error propagates; the bytes after that frame in this chunk are not
    /// consumed and are lost to this decoder (call ``resetStream()`` before feeding more).
    @inlinable
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ body: (Frame) throws -> Void) rethrows {
        _counters.bytesReceived &+= UInt64(bytes.count)
        var state = scanState
        var counts = _counters
        defer {
            scanState = state
            _counters = counts
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
                let hardware = hardwareCRC
                let (consumed, need) = try carry.withUnsafeBytes { buffer in
                    try Self.scan(buffer, state: &state, counters: &counts, hardware: hardware, body)
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
        let (consumed, need) = try Self.scan(rest, state: &state, counters: &counts, hardware: hardwareCRC, body)
        if consumed < rest.count {
            carry.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[consumed...]))
            pendingNeed = need
        }
    }

    /// Sequence-check state kept between chunks.
    @usableFromInline
    struct ScanState: Sendable {
        @usableFromInline var hasLastSequence = false
        @usableFromInline var lastSequence: UInt32 = 0
        @inlinable init() {}
    }

    /// The offset of the next possible frame start (`0xB7`) in `base[from..<count]`, or `count`.
    @usableFromInline
    static func nextCandidate(_ base: UnsafeRawPointer, from: Int, count: Int) -> Int {
        guard from < count, let hit = memchr(base + from, Int32(FrameLayout.magic.0), count - from) else { return count }
        return base.distance(to: UnsafeRawPointer(hit))
    }

    /// Scans `buffer` from its start, delivering every complete frame, and returns how many bytes
    /// were consumed and, when bytes remain, how many the candidate frame at `consumed` needs in all.
    @inlinable
    static func scan(
        _ buffer: UnsafeRawBufferPointer,
        state: inout ScanState,
        counters: inout DecoderCounters,
        hardware: Int32,
        _ body: (Frame) throws -> Void
    ) rethrows -> (consumed: Int, need: Int) {
        guard let base = buffer.baseAddress else { return (0, 0) }
        let count = buffer.count
        var i = 0
        while true {
            let remaining = count &- i
            if remaining < 2 {
                if remaining == 1 && base.load(fromByteOffset: i, as: UInt8.self) != 0xB7 {
                    counters.bytesDiscarded &+= 1
                    return (count, 0)
                }
                return (i, remaining == 1 ? 2 : 0)
            }
            let header = base + i
            if header.loadUnaligned(as: UInt16.self) != UInt16(littleEndian: 0xE1B7) {
                // Garbage: skip to the next candidate start byte.
                let next = nextCandidate(base, from: i &+ 1, count: count)
                counters.bytesDiscarded &+= UInt64(next &- i)
                i = next
                continue
            }
            if remaining < FrameLayout.headerSize { return (i, FrameLayout.headerSize) }

            // Header fields: version, flags, type, length in one 8-byte load.
            let word = UInt64(littleEndian: header.loadUnaligned(as: UInt64.self))
            let version = UInt8(truncatingIfNeeded: word >> 16)
            let flags = UInt8(truncatingIfNeeded: word >> 24)
            let type = MessageType(rawValue: UInt16(truncatingIfNeeded: word >> 32))
            let length = Int(UInt16(truncatingIfNeeded: word >> 48))
            let total = FrameLayout.headerSize &+ length &+ FrameLayout.trailerSize
            var rejected = true
            if version != FrameLayout.majorVersion {
                counters.headerRejectsVersion &+= 1
            } else if flags & FrameLayout.incompatibleFlagsMask != 0 {
                counters.headerRejectsIncompatibleFlags &+= 1
            } else if length > FrameLayout.maximumPayloadLength {
                counters.headerRejectsLength &+= 1
            } else if remaining < total {
                // The frame is not all here. Wait for it only if the header is genuine.
                if ccrc32c_check_header(header, hardware) != 0 { return (i, total) }
                counters.headerRejectsHeaderCRC &+= 1
            } else {
                let check = ccrc32c_check_frame(header, length, hardware)
                if check & 1 != 0 {
                    counters.headerRejectsHeaderCRC &+= 1
                } else if check & 2 != 0 {
                    // A trustworthy header with a bad payload: skip the whole frame.
                    counters.payloadCRCErrors &+= 1
                    counters.bytesDiscarded &+= UInt64(total)
                    i &+= total
                    continue
                } else {
                    rejected = false
                }
            }
            if rejected {
                // A rejected header gives up one byte; a real frame may start inside it.
                counters.bytesDiscarded &+= 1
                i &+= 1
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
            let payload = UnsafeRawBufferPointer(start: header + FrameLayout.headerSize, count: length)
            i &+= total
            if let minimum = type.minimumLength(payload: payload) {
                if length < minimum {
                    counters.shortPayloads &+= 1
                } else {
                    counters.framesDelivered &+= 1
                    try body(Frame(unchecked: UnsafeRawBufferPointer(start: header, count: total)))
                }
            } else {
                counters.unknownTypes &+= 1
            }
        }
    }
}
