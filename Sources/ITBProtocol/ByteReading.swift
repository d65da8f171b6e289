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
    /// A string from protocol ASCII bytes; bytes outside ASCII are kept as U+FFFD rather than lost.
    init(protocolASCII bytes: UnsafeRawBufferPointer) {
        self = String(decoding: bytes, as: UTF8.self)
    }
}
