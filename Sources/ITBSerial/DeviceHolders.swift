#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Finds which processes hold a device open, from `/proc/PID/fd`, to name them in a busy error.
///
/// Best effort: processes of other users are invisible without privilege, and the answer may be
/// stale by the time it is read. It is for the operator's message only, never for decisions.
public enum DeviceHolders {
    /// `pid 1234 (minicom)` for each process holding `path`, joined; nil when none is visible.
    public static func describe(path: String, excludingPID: Int32?, skippingFD: Int32? = nil) -> String? {
        let holders = find(path: path).filter { holder in
            if holder.pid == excludingPID { return false }
            if let skippingFD, holder.pid == getpid(), holder.fd == skippingFD { return false }
            return true
        }
        guard !holders.isEmpty else { return nil }
        return holders.map { "pid \($0.pid) (\($0.command))" }.joined(separator: ", ")
    }

    /// Every (pid, fd, command) whose descriptor points at the same device as `path`.
    public static func find(path: String) -> [(pid: Int32, fd: Int32, command: String)] {
        var target = stat()
        guard stat(path, &target) == 0 else { return [] }
        var found: [(Int32, Int32, String)] = []
        guard let proc = opendir("/proc") else { return [] }
        defer { closedir(proc) }
        while let entry = readdir(proc) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = Int32(name) else { continue }
            let fdDir = "/proc/\(pid)/fd"
            guard let dir = opendir(fdDir) else { continue }
            while let fdEntry = readdir(dir) {
                let fdName = withUnsafeBytes(of: fdEntry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard let fd = Int32(fdName) else { continue }
                var st = stat()
                guard stat("\(fdDir)/\(fdName)", &st) == 0 else { continue }
                if (st.st_mode & S_IFMT) == S_IFCHR && st.st_rdev == target.st_rdev {
                    found.append((pid, fd, command(of: pid)))
                }
            }
            closedir(dir)
        }
        return found
    }

    private static func command(of pid: Int32) -> String {
        guard let file = fopen("/proc/\(pid)/comm", "r") else { return "?" }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 64)
        guard fgets(&buffer, 64, file) != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
