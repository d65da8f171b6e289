#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Process limits the daemon adjusts for itself at start.
public enum ProcessLimits {
    /// Raises the soft limit on open descriptors to the hard limit and returns the limit now in
    /// force. Every API client (each event stream) holds a descriptor, and the soft limit is often
    /// 1,024 while the hard one is far higher (systemd's default is 1,024:524,288, and its advice
    /// is that a program needing more raises its own soft limit, as this does). Returns nil when
    /// the limit cannot be read.
    @discardableResult
    public static func raiseDescriptorLimit() -> UInt64? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return UInt64(raised.rlim_cur) }
        }
        return UInt64(limit.rlim_cur)
    }
}
