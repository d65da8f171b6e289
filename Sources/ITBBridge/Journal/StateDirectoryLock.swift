#if canImport(Glibc)
import Glibc
#endif

/// An exclusive lock on a state directory: one daemon per journal. Two bridges on one journal
/// would both store and acknowledge alarms, each believing it is the only one.
///
/// `flock(LOCK_EX)` on `itb-bridged.lock` in the directory, taken before the journal is opened
/// and held until ``release()`` (the daemon holds it for as long as it runs; the kernel drops it
/// when the process dies, so a crash never leaves a stale lock). The holder's pid is written into
/// the file, so the one refused can say who holds it.
public final class StateDirectoryLock: Sendable {
    /// The lock file's name inside the state directory.
    public static let fileName = "itb-bridged.lock"

    /// The lock file.
    public let path: String
    private let descriptor: Int32

    /// Takes the lock on `directory` (creating the directory, mode 0700, when it is missing), or
    /// throws ``StateDirectoryLockError/held(directory:path:holder:)`` at once if another process
    /// holds it.
    public init(directory: String) throws(StateDirectoryLockError) {
        path = directory.hasSuffix("/") ? directory + Self.fileName : directory + "/" + Self.fileName
        try Self.createDirectory(directory)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            let holder = Self.readPID(fd)
            close(fd)
            if code == EWOULDBLOCK { throw .held(directory: directory, path: path, holder: holder) }
            throw .cannotOpen(path: path, reason: String(cString: strerror(code)))
        }
        descriptor = fd
        // Ours now: record who holds it.
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    /// Releases the lock (closing the file); the next daemon may start.
    public func release() {
        close(descriptor)
    }

    private static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Int32(String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: "\n "))
    }

    /// Creates `directory` and its missing parents; the directory itself with mode 0700 (the
    /// journal is the patients' alarm history).
    static func createDirectory(_ directory: String) throws(StateDirectoryLockError) {
        var info = stat()
        if stat(directory, &info) == 0 { return }
        if let slash = directory.dropLast().lastIndex(of: "/"), slash != directory.startIndex {
            try createDirectory(String(directory[..<slash]))
        }
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw .cannotOpen(path: directory, reason: "cannot create the state directory: \(String(cString: strerror(errno)))")
        }
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let first = s.first, set.contains(first) { s = s.dropFirst() }
        while let last = s.last, set.contains(last) { s = s.dropLast() }
        return String(s)
    }
}

/// Why the state directory could not be locked.
public enum StateDirectoryLockError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Another process holds the lock: another itb-bridged uses this state directory.
    case held(directory: String, path: String, holder: Int32?)
    /// The lock file (or the directory) could not be created or opened.
    case cannotOpen(path: String, reason: String)

    public var description: String {
        switch self {
        case .held(let directory, let path, let holder):
            "another itb-bridged (\(holder.map { "pid \($0)" } ?? "pid unknown")) is using the state directory \(directory) "
                + "(it holds \(path)); nothing was opened or changed. Stop it first, or give this one another --state-dir"
        case .cannotOpen(let path, let reason):
            "cannot lock the state directory: \(path): \(reason)"
        }
    }
}
