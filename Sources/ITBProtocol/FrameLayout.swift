/// The fixed layout of a protocol v1 frame (see `protocol-spec/PROTOCOL.md` §2).
///
/// ```
/// magic(2) version(1) flags(1) type(2) length(2) sequence(4) headerCRC(4) | payload(n) | payloadCRC(4)
/// ```
/// All integers little-endian.
public enum FrameLayout {
    /// The two bytes every frame starts with.
    public static let magic: (UInt8, UInt8) = (0xB7, 0xE1)
    /// The protocol major version this library speaks; frames of another major are rejected.
    public static let majorVersion: UInt8 = 1
    /// Bytes in the header, header CRC included.
    public static let headerSize = 16
    /// Bytes of the header covered by the header CRC.
    public static let headerCRCCoverage = 12
    /// Bytes after the payload (its CRC).
    public static let trailerSize = 4
    /// The largest payload a frame may carry.
    public static let maximumPayloadLength = 1024
    /// The largest frame on the wire: header, maximum payload, trailer.
    public static let maximumFrameSize = headerSize + maximumPayloadLength + trailerSize
    /// Flag bits a v1 receiver must understand: any of them set rejects the header.
    public static let incompatibleFlagsMask: UInt8 = 0x0F

    /// Field offsets within the header.
    enum Offset {
        static let version = 2
        static let flags = 3
        static let type = 4
        static let length = 6
        static let sequence = 8
        static let headerCRC = 12
    }
}

/// The flags byte of a frame: bits 0–3 incompatible, 4–7 compatible.
public struct FrameFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    /// Creates flags from the raw byte.
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Bit 4: this frame is a retransmission of an earlier one (reliable alarms, §2.4).
    public static let retransmission = FrameFlags(rawValue: 0x10)
}
