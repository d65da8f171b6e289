/// A typed, read-in-place view over the payload of one message type.
///
/// Views read each field from the frame's bytes when asked, so decoding a frame copies nothing.
/// A view is valid as long as the bytes it views (inside the decoder's closure). Every view checks
/// the type and the minimum length once, in ``init(_:)``; its required fields are then read without
/// further bounds checks.
public protocol MessageView {
    /// The message type this view reads.
    static var messageType: MessageType { get }
    /// The payload bytes.
    var payload: UnsafeRawBufferPointer { get }
    /// Wraps a payload already checked to be of ``messageType`` and at least its minimum length.
    init(uncheckedPayload: UnsafeRawBufferPointer)
}

extension MessageView {
    /// A view over `frame`, or nil when the frame is of another type or shorter than this type's
    /// minimum (frames delivered by ``FrameDecoder`` always pass the length check).
    @inlinable
    public init?(_ frame: Frame) {
        guard frame.type == Self.messageType else { return nil }
        self.init(payload: frame.payload)
    }

    /// A view over a bare payload, or nil when it is shorter than this type's minimum.
    @inlinable
    public init?(payload: UnsafeRawBufferPointer) {
        guard let minimum = Self.messageType.minimumLength(payload: payload), payload.count >= minimum else {
            return nil
        }
        self.init(uncheckedPayload: payload)
    }
}

/// An owned message value: what a consumer keeps, and what the encoder writes.
public protocol MessagePayload: Hashable, Sendable {
    /// The view type that reads this message in place.
    associatedtype View: MessageView
    /// The message type on the wire.
    static var messageType: MessageType { get }
    /// Copies every field out of a view.
    init(_ view: View)
    /// Appends this message's payload (not the frame) to `writer`, in the v1 layout.
    func encode(into writer: inout PayloadWriter)
}

/// Builds a payload in the protocol's little-endian layout.
public struct PayloadWriter: Sendable {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8]

    /// Creates an empty writer, reserving room for a typical payload.
    public init(reservingCapacity capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Appends a little-endian integer.
    public mutating func write<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// Appends `count` zero bytes (reserved fields).
    public mutating func writeZeros(_ count: Int) {
        bytes.append(contentsOf: repeatElement(0, count: count))
    }

    /// Appends a fixed-width text field: the string's protocol bytes (``Swift/String/protocolBytes``,
    /// one byte per code point) cut to `width`, NUL-padded.
    public mutating func writeASCII(_ string: String, width: Int) {
        let utf8 = Array(string.protocolBytes.prefix(width))
        bytes.append(contentsOf: utf8)
        writeZeros(width - utf8.count)
    }

    /// Appends raw bytes.
    public mutating func writeBytes(_ raw: some Sequence<UInt8>) {
        bytes.append(contentsOf: raw)
    }
}
