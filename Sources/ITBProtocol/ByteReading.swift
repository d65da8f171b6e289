extension UnsafeRawBufferPointer {
    /// Reads a little-endian integer at `offset` without alignment requirements.
    ///
    /// Callers check the length once per frame (the decoder's minimum-length check); this read is
    /// bounds-checked only in debug builds, as `loadUnaligned` is.
    @inlinable @inline(__always)
    func littleEndian<T: FixedWidthInteger>(at offset: Int, as type: T.Type = T.self) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// The bytes of a fixed-width NUL-padded ASCII field, up to its first NUL.
    @inlinable
    func fixedASCII(at offset: Int, width: Int) -> UnsafeRawBufferPointer {
        let field = UnsafeRawBufferPointer(rebasing: self[offset..<(offset + width)])
        let end = field.firstIndex(of: 0) ?? width
        return UnsafeRawBufferPointer(rebasing: field[0..<end])
    }
}

extension String {
    /// A string from protocol text bytes (`char[N]`, alarm detail). Every byte is kept as the
    /// code point of the same value (ISO 8859-1 is a 1:1 byte-to-code-point mapping), so a byte
    /// outside ASCII survives the round trip through ``protocolBytes`` and is rendered escaped as
    /// `\u00XX` (PROTOCOL.md §1, §7) instead of becoming U+FFFD.
    init(protocolASCII bytes: UnsafeRawBufferPointer) {
        var scalars = String.UnicodeScalarView()
        for byte in bytes { scalars.append(Unicode.Scalar(byte)) }
        self = String(scalars)
    }

    /// The protocol bytes of a text field: each code point up to U+00FF is its byte (the inverse
    /// of `init(protocolASCII:)`); a code point above U+00FF, which no decoded field holds, is
    /// sent as `?`.
    public var protocolBytes: [UInt8] {
        unicodeScalars.map { $0.value <= 0xFF ? UInt8($0.value) : UInt8(ascii: "?") }
    }
}
