public import ITBProtocol
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Writes capture files (`protocol-spec/CAPTURE.md`), rotating to a new file when one reaches
/// its size limit. Thread-safe: the link thread records what it reads, the ACK path what it writes.
public final class CaptureFileWriter: Sendable {
    /// The directory, or the single file, being written.
    public let destination: String
    /// Rotate when a file exceeds this many bytes (nil: never; `destination` is then one file).
    public let rotateBytes: Int?
    private let prefix: String

    private struct State {
        var fd: Int32 = -1
        var path = ""
        var size = 0
        var buffer: [UInt8] = []
        var failed: String?
    }
    private let state = Mutex(State())

    /// A single capture file at `path` (truncated if it exists).
    public init(file path: String) throws(CaptureWriteError) {
        destination = path
        rotateBytes = nil
        prefix = ""
        try state.withLock { s throws(CaptureWriteError) in try CaptureFileWriter.open(path, into: &s) }
    }

    /// Rotating captures in `directory`, named `<prefix>-<UTC start time>.itbcap`.
    public init(directory: String, prefix: String, rotateBytes: Int) throws(CaptureWriteError) {
        destination = directory
        self.rotateBytes = rotateBytes
        self.prefix = prefix
        mkdir(directory, 0o750)
        let path = CaptureFileWriter.rotatedName(directory: directory, prefix: prefix)
        try state.withLock { s throws(CaptureWriteError) in try CaptureFileWriter.open(path, into: &s) }
    }

    deinit { close() }

    /// The file being written now.
    public var currentPath: String { state.withLock { $0.path } }

    /// Appends a record of `bytes` read from (or written to) the line now.
    public func record(_ direction: CaptureFormat.Direction, _ bytes: UnsafeRawBufferPointer, timestampNs: Int64 = wallClockNs()) {
        state.withLock { s in
            guard s.fd >= 0, s.failed == nil else { return }
            s.buffer.removeAll(keepingCapacity: true)
            CaptureFormat.appendRecord(timestampNs: timestampNs, direction: direction, data: bytes, to: &s.buffer)
            if !Self.writeAll(s.fd, s.buffer) {
                s.failed = "write to \(s.path) failed: \(String(cString: strerror(errno)))"
                return
            }
            s.size += s.buffer.count
            if let rotateBytes, s.size >= rotateBytes {
                Glibc.close(s.fd)
                s.fd = -1
                do throws(CaptureWriteError) {
                    try Self.open(Self.rotatedName(directory: destination, prefix: prefix), into: &s)
                } catch {
                    s.failed = error.description
                }
            }
        }
    }

    /// The first write error, if writing stopped.
    public var failure: String? { state.withLock { $0.failed } }

    /// Flushes and closes the file. Idempotent.
    public func close() {
        state.withLock { s in
            if s.fd >= 0 {
                fsync(s.fd)
                Glibc.close(s.fd)
                s.fd = -1
            }
        }
    }

    private static func open(_ path: String, into s: inout State) throws(CaptureWriteError) {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw .cannotCreate(path: path, reason: String(cString: strerror(errno))) }
        let header = CaptureFormat.header(startTimeNs: wallClockNs())
        guard writeAll(fd, header) else {
            Glibc.close(fd)
            throw .cannotCreate(path: path, reason: String(cString: strerror(errno)))
        }
        s.fd = fd
        s.path = path
        s.size = header.count
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            written += n
        }
        return true
    }

    static func rotatedName(directory: String, prefix: String) -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var tmValue = tm()
        var seconds = ts.tv_sec
        gmtime_r(&seconds, &tmValue)
        let stamp = String(format4: Int(tmValue.tm_year) + 1900) + Self.two(Int(tmValue.tm_mon) + 1) + Self.two(Int(tmValue.tm_mday)) + "T"
            + Self.two(Int(tmValue.tm_hour)) + Self.two(Int(tmValue.tm_min)) + Self.two(Int(tmValue.tm_sec)) + "." + String(ts.tv_nsec / 1_000_000)
        let safePrefix = String(prefix.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" })
        return directory + "/itb-" + safePrefix + "-" + stamp + "Z.itbcap"
    }

    static func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
}

extension String {
    init(format4 n: Int) {
        let digits = String(n)
        self = String(repeating: "0", count: Swift.max(0, 4 - digits.count)) + digits
    }
}

/// Wall-clock time now, ns since the epoch.
public func wallClockNs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// A capture file could not be written.
public enum CaptureWriteError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Creating or starting the file failed.
    case cannotCreate(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotCreate(let path, let reason): "cannot write the capture \(path): \(reason)"
        }
    }
}
