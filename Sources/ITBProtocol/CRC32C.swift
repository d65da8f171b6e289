import CCRC32C

/// CRC-32C (Castagnoli), the checksum of every frame header and payload.
///
/// The CPU instruction (SSE4.2 on x86-64, the ARMv8 CRC extension on arm64) is used where the CPU
/// has it, the portable table elsewhere; the choice is made at run time, so one binary runs on
/// any CPU of its architecture. Both give identical results (the test suite compares them).
public enum CRC32C {
    /// Which implementation computes the checksum.
    public enum Implementation: String, Sendable, CaseIterable {
        /// The CPU's CRC-32C instruction. Only valid where ``hardwareAvailable`` is true.
        case hardware
        /// The slicing-by-8 table implementation, valid everywhere.
        case portable
    }

    /// True when this CPU has a CRC-32C instruction.
    public static let hardwareAvailable: Bool = ccrc32c_hardware_available() != 0

    /// The implementation ``checksum(_:)`` uses on this CPU.
    public static var preferred: Implementation { hardwareAvailable ? .hardware : .portable }

    /// The CRC-32C of `bytes` (init 0xFFFFFFFF, final xor 0xFFFFFFFF) with the preferred
    /// implementation.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        ccrc32c_update(0xFFFF_FFFF, bytes.baseAddress, bytes.count) ^ 0xFFFF_FFFF
    }

    /// The CRC-32C of `bytes` with a chosen implementation; `.hardware` falls back to the
    /// table where the CPU lacks the instruction, so the call is always safe.
    public static func checksum(_ bytes: UnsafeRawBufferPointer, using implementation: Implementation) -> UInt32 {
        switch implementation {
        case .hardware where hardwareAvailable:
            return ccrc32c_update_hardware(0xFFFF_FFFF, bytes.baseAddress, bytes.count) ^ 0xFFFF_FFFF
        case .hardware, .portable:
            return ccrc32c_update_portable(0xFFFF_FFFF, bytes.baseAddress, bytes.count) ^ 0xFFFF_FFFF
        }
    }

    /// The CRC-32C of a byte collection (convenience for encoders and tests; not the hot path).
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        let array = Array(bytes)
        return array.withUnsafeBytes { checksum($0) }
    }
}
