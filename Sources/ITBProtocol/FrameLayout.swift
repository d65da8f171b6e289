/// The fixed layout of a protocol v1 frame (see `protocol-spec/PROTOCOL.md` §2).
///
/// ```
/// magic(2) version(1) flags(1) type(2) length(2) sequence(4) headerCRC(4) | payload(n) | payloadCRC(4)
/// ```
/// All integers little-endian.
public enum FrameLayout {
    /// The two bytes every frame starts with.
    @inlinable public static var magic: (UInt8, UInt8) { (0xB7, 0xE1) }
    /// The protocol major version this library speaks; frames of another major are rejected.
    @inlinable public static var majorVersion: UInt8 { 1 }
    /// Bytes in the header, header CRC included.
    @inlinable public static var headerSize: Int { 16 }
    /// Bytes of the header covered by the header CRC.
    @inlinable public static var headerCRCCoverage: Int { 12 }
    /// Bytes after the payload (its CRC).
    @inlinable public static var trailerSize: Int { 4 }
    /// The largest payload a frame may carry.
    @inlinable public static var maximumPayloadLength: Int { 1024 }
    /// The largest frame on the wire: header, maximum payload, trailer.
    @inlinable public static var maximumFrameSize: Int { headerSize + maximumPayloadLength + trailerSize }
    /// Flag bits a v1 receiver must understand: any of them set rejects the header.
    @inlinable public static var incompatibleFlagsMask: UInt8 { 0x0F }

    /// Field offsets within the header.
    @usableFromInline
    enum Offset {
        @usableFromInline static var version: Int { 2 }
        @usableFromInline static var flags: Int { 3 }
        @usableFromInline static var type: Int { 4 }
        @usableFromInline static var length: Int { 6 }
        @usableFromInline static var sequence: Int { 8 }
        @usableFromInline static var headerCRC: Int { 12 }
    }
}

/// The flags byte of a frame: bits 0–3 incompatible, 4–7 compatible.
public struct FrameFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    /// Creates flags from the raw byte.
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Bit 4: this frame is a retransmission of an earlier one (reliable alarms, §2.4).
    @inlinable public static var retransmission: FrameFlags { FrameFlags(rawValue: 0x10) }
}
