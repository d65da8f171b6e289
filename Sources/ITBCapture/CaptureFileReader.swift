public import ITBProtocol
#if canImport(Glibc)
import Glibc
#endif

/// Reads a capture file, or a raw dump, in constant memory: chunks of 1 MiB, records handed out
/// as views. A raw dump (no capture header) is read as device → host bytes without timestamps.
public struct CaptureFileReader {
    /// What the file turned out to be.
    public enum Kind: Sendable, Hashable {
        /// A capture with its start time.
        case capture(startTimeNs: Int64)
        /// Plain bytes from a serial line.
        case raw
    }

    /// The input path (`-` for standard input).
    public let path: String
    private let fd: Int32

    /// Opens `path` (`-` reads standard input).
    public init(path: String) throws(CaptureReadError) {
        self.path = path
        if path == "-" {
            fd = 0
        } else {
            fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        }
    }

    /// Closes the file.
    public func close() {
        if fd > 0 { Glibc.close(fd) }
    }

    /// Reads the whole input and calls `body` for every record (a raw dump gives records with
    /// timestamp 0, one per chunk). Returns the kind and the record reader's damage report.
    public func read(chunkSize: Int = 1 << 20, _ body: (CaptureRecord) throws -> Void) throws -> (Kind, CaptureRecordReader) {
        var chunk = [UInt8](repeating: 0, count: chunkSize)
        var first = true
        var kind = Kind.raw
        var reader = CaptureRecordReader(fileOffset: 0)
        var headerPending: [UInt8] = []
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CaptureReadError.readFailed(path: path, reason: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            try chunk.withUnsafeBytes { raw in
                var data = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                if first {
                    // Decide capture or raw from the first bytes (collect at least the header).
                    headerPending += data
                    if headerPending.count < CaptureFormat.headerSize && headerPending.count < CaptureFormat.magic.count + 1 { return }
                    first = false
                    let parsed = try headerPending.withUnsafeBytes { try CaptureFormat.parseHeader($0) }
                    let pending = headerPending
                    headerPending = []
                    if let (start, length) = parsed {
                        kind = .capture(startTimeNs: start)
                        reader = CaptureRecordReader(fileOffset: length)
                        try pending.withUnsafeBytes { p in
                            try reader.feed(UnsafeRawBufferPointer(rebasing: p[length...]), body)
                        }
                    } else {
                        try pending.withUnsafeBytes { p in
                            try body(CaptureRecord(timestampNs: 0, direction: .deviceToHost, data: p))
                        }
                    }
                    return
                }
                switch kind {
                case .capture: try reader.feed(data, body)
                case .raw: try body(CaptureRecord(timestampNs: 0, direction: .deviceToHost, data: data))
                }
                data = UnsafeRawBufferPointer(rebasing: data[0..<0])
            }
        }
        if first && !headerPending.isEmpty {
            // A tiny file: shorter than a header.
            let parsed = try headerPending.withUnsafeBytes { try CaptureFormat.parseHeader($0) }
            if parsed == nil {
                try headerPending.withUnsafeBytes { try body(CaptureRecord(timestampNs: 0, direction: .deviceToHost, data: $0)) }
            }
        }
        return (kind, reader)
    }
}

/// A capture could not be read.
public enum CaptureReadError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Opening failed.
    case cannotOpen(path: String, reason: String)
    /// Reading failed.
    case readFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason): "cannot open \(path): \(reason)"
        case .readFailed(let path, let reason): "cannot read \(path): \(reason)"
        }
    }
}
