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

    /// When rotating, the oldest capture files of the directory are deleted once all of them
    /// together exceed this many bytes (nil: no bound). The file being written is never deleted.
    public let maximumTotalBytes: Int?

    private struct State {
        var fd: Int32 = -1
        var path = ""
        var size = 0
        var buffer: [UInt8] = []
        var failed: String?
        /// Whole frames written as context at the start of each new rotated file.
        var context: [[UInt8]] = []
    }
    private let state = Mutex(State())

    /// A single capture file at `path` (truncated if it exists).
    public init(file path: String) throws(CaptureWriteError) {
        destination = path
        rotateBytes = nil
        maximumTotalBytes = nil
        prefix = ""
        try state.withLock { s throws(CaptureWriteError) in try CaptureFileWriter.open(path, into: &s) }
    }

    /// Rotating captures in `directory`, named `<prefix>-<UTC start time>.itbcap`; with
    /// `maximumTotalBytes`, the directory's oldest captures are deleted at each rotation (and
    /// now) until all of them together fit (``CaptureRetention``).
    public init(directory: String, prefix: String, rotateBytes: Int, maximumTotalBytes: Int? = nil) throws(CaptureWriteError) {
        destination = directory
        self.rotateBytes = rotateBytes
        self.maximumTotalBytes = maximumTotalBytes
        self.prefix = prefix
        mkdir(directory, 0o750)
        let path = CaptureFileWriter.rotatedName(directory: directory, prefix: prefix)
        try state.withLock { s throws(CaptureWriteError) in try CaptureFileWriter.open(path, into: &s) }
        if let maximumTotalBytes { CaptureRetention.enforce(directory: directory, maximumTotalBytes: maximumTotalBytes, keeping: path) }
    }

    /// Sets the frames (whole, as received) that each new rotated file starts with, as
    /// ``CaptureFormat/Direction/context`` records: what the recorder knew when the file began
    /// (the last `PROGRAMMER_INFO` and `PUMP_SESSION`), so that a file can be replayed on its own.
    public func setContext(_ frames: [[UInt8]]) {
        state.withLock { $0.context = frames }
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
                    let now = wallClockNs()
                    for frame in s.context {
                        s.buffer.removeAll(keepingCapacity: true)
                        frame.withUnsafeBytes { CaptureFormat.appendRecord(timestampNs: now, direction: .context, data: $0, to: &s.buffer) }
                        guard Self.writeAll(s.fd, s.buffer) else {
                            throw .cannotCreate(path: s.path, reason: String(cString: strerror(errno)))
                        }
                        s.size += s.buffer.count
                    }
                } catch {
                    s.failed = error.description
                }
                if let maximumTotalBytes, s.failed == nil {
                    CaptureRetention.enforce(directory: destination, maximumTotalBytes: maximumTotalBytes, keeping: s.path)
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

/// The bound on a capture directory's total size, as a rule on plain values plus the one
/// function that applies it to a directory.
public enum CaptureRetention {
    /// One capture file.
    public struct File: Hashable, Sendable {
        /// Its path.
        public var path: String
        /// Its size in bytes.
        public var size: Int
        /// Its modification time, ns since the epoch.
        public var modifiedNs: Int64

        /// Creates a description.
        public init(path: String, size: Int, modifiedNs: Int64) {
            self.path = path
            self.size = size
            self.modifiedNs = modifiedNs
        }
    }

    /// The files to delete, oldest first, so that the rest total at most `maximumTotalBytes`;
    /// `keeping` (the file being written) is never among them, even when it alone is larger.
    public static func filesToDelete(_ files: [File], maximumTotalBytes: Int, keeping: String) -> [String] {
        var total = files.reduce(0) { $0 + $1.size }
        var deleted: [String] = []
        for file in files.sorted(by: { ($0.modifiedNs, $0.path) < ($1.modifiedNs, $1.path) }) where total > maximumTotalBytes {
            guard file.path != keeping else { continue }
            deleted.append(file.path)
            total -= file.size
        }
        return deleted
    }

    /// Applies the rule to the `itb-*.itbcap` files of `directory` (every device's); returns
    /// what was deleted.
    @discardableResult
    public static func enforce(directory: String, maximumTotalBytes: Int, keeping: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        var files: [File] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.hasPrefix("itb-"), name.hasSuffix(".itbcap") else { continue }
            let path = directory + "/" + name
            var info = stat()
            guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            files.append(File(path: path, size: Int(info.st_size),
                              modifiedNs: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)))
        }
        closedir(dir)
        let doomed = filesToDelete(files, maximumTotalBytes: maximumTotalBytes, keeping: keeping)
        for path in doomed { unlink(path) }
        return doomed
    }
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
