/// The capture file format (`protocol-spec/CAPTURE.md`): a header, then timestamped records of
/// raw line bytes with a CRC each. Encoding and parsing only; files are the caller's business.
public enum CaptureFormat {
    /// `ITBCAP\r\n`.
    public static let magic: [UInt8] = Array("ITBCAP\r\n".utf8)
    /// Format version written.
    public static let version: UInt16 = 1
    /// Bytes in the version-1 header.
    public static let headerSize = 32
    /// The bytes that begin every record.
    public static let recordMagic: [UInt8] = [0xC0, 0xA7, 0x1E, 0x5B]
    /// Record header bytes before the data.
    public static let recordHeaderSize = 20
    /// The largest data length of one record.
    public static let maximumRecordLength = 1 << 20

    /// Which way the bytes went.
    public enum Direction: UInt8, Sendable, Hashable {
        /// Programmer → host.
        case deviceToHost = 0
        /// Host → programmer (ACKs, heartbeats).
        case hostToDevice = 1
        /// Context: whole programmer → host frames the recorder had received before this file
        /// began (the last `PROGRAMMER_INFO` and `PUMP_SESSION`), written first in a file that
        /// starts mid-conversation so that the file can be decoded and replayed on its own. Not
        /// carried on the line at this record's time.
        case context = 2
    }

    /// The file header for a capture begun at `startTimeNs`.
    public static func header(startTimeNs: Int64) -> [UInt8] {
        var w = PayloadWriter(reservingCapacity: headerSize)
        w.writeBytes(magic)
        w.write(version)
        w.write(UInt16(headerSize))
        w.write(UInt32(0))
        w.write(startTimeNs)
        w.write(CRC32C.checksum(w.bytes))
        w.write(UInt32(0))
        return w.bytes
    }

    /// Appends one record to `out`.
    public static func appendRecord(timestampNs: Int64, direction: Direction, data: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        precondition(data.count <= maximumRecordLength, "capture record above 1 MiB")
        out.append(contentsOf: recordMagic)
        let start = out.count
        withUnsafeBytes(of: timestampNs.littleEndian) { out.append(contentsOf: $0) }
        out.append(direction.rawValue)
        out.append(contentsOf: [0, 0, 0])
        withUnsafeBytes(of: UInt32(data.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: data)
        let crc = out.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[start...])) }
        withUnsafeBytes(of: crc.littleEndian) { out.append(contentsOf: $0) }
    }

    /// Parses a file header; nil when `bytes` does not start with the capture magic (a raw dump).
    /// Throws when it starts with the magic but the header is damaged or of an unknown version.
    public static func parseHeader(_ bytes: UnsafeRawBufferPointer) throws(CaptureError) -> (startTimeNs: Int64, headerLength: Int)? {
        guard bytes.count >= magic.count, bytes.prefix(magic.count).elementsEqual(magic) else { return nil }
        guard bytes.count >= headerSize else { throw .damagedHeader("the file ends inside its header") }
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<24])) == bytes.littleEndian(at: 24, as: UInt32.self) else {
            throw .damagedHeader("header CRC mismatch")
        }
        let version: UInt16 = bytes.littleEndian(at: 8)
        guard version == 1 else { throw .unsupportedVersion(version) }
        let length = Int(bytes.littleEndian(at: 10, as: UInt16.self))
        guard length >= headerSize else { throw .damagedHeader("header length \(length) below \(headerSize)") }
        return (bytes.littleEndian(at: 16), length)
    }
}

/// A problem with a capture file as a whole.
public enum CaptureError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The header is damaged.
    case damagedHeader(String)
    /// Written by a newer format.
    case unsupportedVersion(UInt16)

    public var description: String {
        switch self {
        case .damagedHeader(let why): "the capture's header is damaged (\(why))"
        case .unsupportedVersion(let v): "capture format version \(v) is newer than this tool (1): update itbctl"
        }
    }
}

/// One record as a view into the reader's buffer (valid during the callback only).
public struct CaptureRecord {
    /// Wall-clock ns since the epoch.
    public let timestampNs: Int64
    /// Which way the bytes went.
    public let direction: CaptureFormat.Direction
    /// The raw line bytes.
    public let data: UnsafeRawBufferPointer

    /// Creates a record view (readers of raw dumps make records without timestamps).
    public init(timestampNs: Int64, direction: CaptureFormat.Direction, data: UnsafeRawBufferPointer) {
        self.timestampNs = timestampNs
        self.direction = direction
        self.data = data
    }
}

/// Parses capture records from bytes fed in chunks of any size, resynchronising after damage.
///
/// Feed the bytes after the file header. Records are handed out as views into the reader's
/// buffer; damage is reported through ``damage`` with the file offset where it began.
public struct CaptureRecordReader: Sendable {
    /// Where damage was found (file offsets) and how many bytes were skipped in all.
    public private(set) var damage: [Int] = []
    /// Bytes skipped while resynchronising.
    public private(set) var bytesSkipped = 0
    /// Records read.
    public private(set) var records = 0
    private var buffer: [UInt8] = []
    private var bufferOffset: Int
    private var inDamage = false

    /// Creates a reader whose first byte is at file offset `offset`.
    public init(fileOffset offset: Int) {
        bufferOffset = offset
    }

    /// Bytes held that do not yet form a whole record.
    public var pendingByteCount: Int { buffer.count }

    /// Parses `chunk` and calls `body` with each complete, intact record.
    public mutating func feed(_ chunk: UnsafeRawBufferPointer, _ body: (CaptureRecord) throws -> Void) rethrows {
        buffer.append(contentsOf: chunk)
        var consumed = 0
        defer {
            if consumed > 0 {
                buffer.removeFirst(consumed)
                bufferOffset += consumed
            }
        }
        try buffer.withUnsafeBytes { all in
            let magic = CaptureFormat.recordMagic
            while true {
                let remaining = all.count - consumed
                if remaining < 4 { return }
                let here = UnsafeRawBufferPointer(rebasing: all[consumed...])
                if !here.prefix(4).elementsEqual(magic) {
                    skip(&consumed)
                    continue
                }
                if remaining < CaptureFormat.recordHeaderSize { return }
                let length = Int(here.littleEndian(at: 16, as: UInt32.self))
                if length > CaptureFormat.maximumRecordLength {
                    skip(&consumed)
                    continue
                }
                let total = CaptureFormat.recordHeaderSize + length + 4
                if remaining < total { return }
                let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: here[4..<(CaptureFormat.recordHeaderSize + length)]))
                guard crc == here.littleEndian(at: CaptureFormat.recordHeaderSize + length, as: UInt32.self),
                      let direction = CaptureFormat.Direction(rawValue: here[12])
                else {
                    skip(&consumed)
                    continue
                }
                inDamage = false
                records += 1
                consumed += total
                try body(CaptureRecord(
                    timestampNs: here.littleEndian(at: 4), direction: direction,
                    data: UnsafeRawBufferPointer(rebasing: here[CaptureFormat.recordHeaderSize..<(CaptureFormat.recordHeaderSize + length)])))
            }
        }
    }

    private mutating func skip(_ consumed: inout Int) {
        if !inDamage {
            inDamage = true
            damage.append(bufferOffset + consumed)
        }
        bytesSkipped += 1
        consumed += 1
    }
}
