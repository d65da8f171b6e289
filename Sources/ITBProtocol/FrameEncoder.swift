/// Builds protocol v1 frames for one direction of a link, numbering them in sequence.
///
/// The simulator uses it for the programmer side, the daemon for its `ACK` and `HOST_HEARTBEAT`
/// frames, and the tests for everything. Sequence numbers start at ``nextSequence`` and wrap
/// modulo 2³² (`protocol-spec/PROTOCOL.md` §2.3).
public struct FrameEncoder: Sendable {
    /// The sequence number the next frame gets.
    public var nextSequence: UInt32

    /// Creates an encoder whose first frame carries `firstSequence`.
    public init(firstSequence: UInt32 = 0) {
        nextSequence = firstSequence
    }

    /// Encodes `message` as the next frame in sequence.
    public mutating func encode(_ message: Message, flags: FrameFlags = []) -> [UInt8] {
        var writer = PayloadWriter()
        message.payload.encode(into: &writer)
        return encode(type: message.type, payload: writer.bytes, flags: flags)
    }

    /// Encodes a payload of any type (unknown types and malformed payloads too, for tests) as the
    /// next frame in sequence. The payload must not exceed 1024 bytes.
    public mutating func encode(type: MessageType, payload: [UInt8], flags: FrameFlags = []) -> [UInt8] {
        let frame = Self.frame(type: type, sequence: nextSequence, payload: payload, flags: flags)
        nextSequence &+= 1
        return frame
    }

    /// One frame with an explicit sequence number, for tests and retransmissions.
    public static func frame(
        type: MessageType, sequence: UInt32, payload: [UInt8], flags: FrameFlags = [], version: UInt8 = FrameLayout.majorVersion
    ) -> [UInt8] {
        precondition(payload.count <= FrameLayout.maximumPayloadLength, "payload above the protocol's 1024-byte limit")
        var frame = PayloadWriter(reservingCapacity: FrameLayout.headerSize + payload.count + FrameLayout.trailerSize)
        frame.write(FrameLayout.magic.0)
        frame.write(FrameLayout.magic.1)
        frame.write(version)
        frame.write(flags.rawValue)
        frame.write(type.rawValue)
        frame.write(UInt16(payload.count))
        frame.write(sequence)
        frame.write(CRC32C.checksum(frame.bytes))
        frame.writeBytes(payload)
        frame.write(CRC32C.checksum(payload))
        return frame.bytes
    }
}
