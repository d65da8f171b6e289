/// What a ``FrameDecoder`` has seen, for diagnostics, metrics and the fault tests.
///
/// The counters always add up: `framesAccepted == framesDelivered + unknownTypes + shortPayloads`,
/// and every byte fed is either consumed by an accepted frame, discarded, or still pending.
/// Names follow `protocol-spec/PROTOCOL.md` §6.
public struct DecoderCounters: Hashable, Sendable {
    /// Every byte fed to the decoder.
    public var bytesReceived: UInt64 = 0
    /// Bytes skipped while searching for a frame: garbage, a rejected header's first byte, and
    /// whole frames with a bad payload CRC.
    public var bytesDiscarded: UInt64 = 0
    /// Headers rejected for a protocol major version other than 1.
    public var headerRejectsVersion: UInt64 = 0
    /// Headers rejected for an incompatible flag bit (0–3) set.
    public var headerRejectsIncompatibleFlags: UInt64 = 0
    /// Headers rejected for a payload length above 1024.
    public var headerRejectsLength: UInt64 = 0
    /// Headers rejected for a header CRC mismatch (most false syncs end here).
    public var headerRejectsHeaderCRC: UInt64 = 0
    /// Frames skipped whole because the payload CRC did not match.
    public var payloadCRCErrors: UInt64 = 0
    /// Frames whose header and payload CRCs both matched.
    public var framesAccepted: UInt64 = 0
    /// Accepted frames handed to the application.
    public var framesDelivered: UInt64 = 0
    /// Accepted frames whose sequence number was neither the last + 1 nor a repeat of the last.
    public var sequenceGaps: UInt64 = 0
    /// Accepted frames that repeated the previous frame's sequence number.
    public var duplicates: UInt64 = 0
    /// Accepted frames of a message type this library does not know, skipped.
    public var unknownTypes: UInt64 = 0
    /// Accepted frames shorter than their type's minimum length, skipped.
    public var shortPayloads: UInt64 = 0

    /// Creates zeroed counters.
    public init() {}

    /// All header rejects, whatever the reason.
    public var headerRejects: UInt64 {
        headerRejectsVersion + headerRejectsIncompatibleFlags + headerRejectsLength + headerRejectsHeaderCRC
    }

    /// The counters as (name, value) pairs with the spec's snake_case names, in the spec's order.
    public var namedValues: [(name: String, value: UInt64)] {
        [
            ("bytes_received", bytesReceived),
            ("bytes_discarded", bytesDiscarded),
            ("header_rejects_version", headerRejectsVersion),
            ("header_rejects_incompatible_flags", headerRejectsIncompatibleFlags),
            ("header_rejects_length", headerRejectsLength),
            ("header_rejects_header_crc", headerRejectsHeaderCRC),
            ("payload_crc_errors", payloadCRCErrors),
            ("frames_accepted", framesAccepted),
            ("frames_delivered", framesDelivered),
            ("sequence_gaps", sequenceGaps),
            ("duplicates", duplicates),
            ("unknown_types", unknownTypes),
            ("short_payloads", shortPayloads),
        ]
    }
}
