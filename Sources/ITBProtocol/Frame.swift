/// One accepted frame: a view into the decoder's receive buffer, not a copy.
///
/// A `Frame` is valid only inside the closure the ``FrameDecoder`` passes it to: its bytes belong
/// to the caller's read buffer (or, for a frame that straddled two reads, to the decoder's small
/// carry buffer) and are reused after the closure returns. Keep what you need by reading fields
/// through a typed view (``PumpStatusView`` …) or converting to an owned ``Message``.
public struct Frame {
    /// The whole frame: header, payload and payload CRC.
    public let bytes: UnsafeRawBufferPointer

    /// Wraps bytes the decoder has already checked (both CRCs, length).
    @inlinable init(unchecked bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// Checks `bytes` as exactly one frame, as the decoder would (magic, version, flags, length,
    /// both CRCs, known type and minimum length); nil if any check fails. For tools and tests
    /// that hold one frame; streams go through ``FrameDecoder``.
    public init?(validating bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= FrameLayout.headerSize + FrameLayout.trailerSize,
              bytes[0] == FrameLayout.magic.0, bytes[1] == FrameLayout.magic.1,
              bytes[FrameLayout.Offset.version] == FrameLayout.majorVersion,
              bytes[FrameLayout.Offset.flags] & FrameLayout.incompatibleFlagsMask == 0
        else { return nil }
        let length = Int(bytes.littleEndian(at: FrameLayout.Offset.length, as: UInt16.self))
        guard length <= FrameLayout.maximumPayloadLength,
              bytes.count == FrameLayout.headerSize + length + FrameLayout.trailerSize,
              CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<FrameLayout.headerCRCCoverage]))
                == bytes.littleEndian(at: FrameLayout.Offset.headerCRC, as: UInt32.self)
        else { return nil }
        let payload = UnsafeRawBufferPointer(rebasing: bytes[FrameLayout.headerSize..<(FrameLayout.headerSize + length)])
        guard CRC32C.checksum(payload) == bytes.littleEndian(at: FrameLayout.headerSize + length, as: UInt32.self),
              let minimum = MessageType(rawValue: bytes.littleEndian(at: FrameLayout.Offset.type)).minimumLength(payload: payload),
              length >= minimum
        else { return nil }
        self.bytes = bytes
    }

    /// The message type (header offset 4).
    @inlinable public var type: MessageType {
        MessageType(rawValue: bytes.littleEndian(at: FrameLayout.Offset.type))
    }
    /// The flags byte (header offset 3).
    @inlinable public var flags: FrameFlags { FrameFlags(rawValue: bytes[FrameLayout.Offset.flags]) }
    /// The sender's sequence number (header offset 8).
    @inlinable public var sequence: UInt32 { bytes.littleEndian(at: FrameLayout.Offset.sequence) }
    /// The payload length from the header.
    @inlinable public var payloadLength: Int { Int(bytes.littleEndian(at: FrameLayout.Offset.length, as: UInt16.self)) }
    /// The payload, a view into the same buffer.
    @inlinable public var payload: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[FrameLayout.headerSize..<(FrameLayout.headerSize + payloadLength)])
    }
    /// True when the sender marked this frame as a retransmission.
    @inlinable public var isRetransmission: Bool { flags.contains(.retransmission) }
}
