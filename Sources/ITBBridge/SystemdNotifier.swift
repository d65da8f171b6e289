import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Tells the service manager about the daemon's life: `READY=1`, `STATUS=…`, `STOPPING=1` and
/// the watchdog's `WATCHDOG=1`, over the `sd_notify(3)` protocol written directly (no libsystemd).
///
/// The protocol is one datagram per message to the `AF_UNIX` socket named by `$NOTIFY_SOCKET`:
/// an absolute path, or an abstract-namespace name written with a leading `@`. The datagram holds
/// newline-separated `KEY=value` assignments. systemd reads the sender's credentials from the
/// kernel, so nothing else is needed; with `NotifyAccess=main` the messages must come from the
/// main process, which they do (threads share its PID).
///
/// When `$NOTIFY_SOCKET` is unset (run by hand, in a container, in tests) every call is a no-op,
/// so the daemon needs no flag to say whether it runs under systemd.
///
/// The watchdog is enabled when `$WATCHDOG_USEC` is set (from `WatchdogSec=` in the unit) and
/// `$WATCHDOG_PID`, if present, is this process. ``watchdogTick(now:)`` is meant to be called from
/// the loop that does the work (the daemon's ticker), never from a free-running timer, so that a
/// hung daemon stops pinging and systemd restarts it.
///
/// Thread-safe: the socket is opened once, the watchdog and status bookkeeping is behind a mutex.
public final class SystemdNotifier: Sendable {
    /// What went wrong talking to the service manager; each says what to check.
    public enum Failure: Error, CustomStringConvertible, Sendable, Hashable {
        /// `$NOTIFY_SOCKET` is neither an absolute path nor an `@abstract` name, or too long.
        case badAddress(String)
        /// `$WATCHDOG_USEC` is not a positive whole number of microseconds.
        case badWatchdogInterval(String)
        /// The datagram socket could not be created.
        case socket(String)
        /// The message could not be sent.
        case send(String, String)

        public var description: String {
            switch self {
            case .badAddress(let value):
                "NOTIFY_SOCKET=\(value) is neither an absolute path nor an @abstract socket name of at most 107 bytes; systemd readiness and watchdog notifications are off"
            case .badWatchdogInterval(let value):
                "WATCHDOG_USEC=\(value) is not a positive number of microseconds; the systemd watchdog is not being pinged (check WatchdogSec= in the unit)"
            case .socket(let why):
                "cannot create the datagram socket for systemd notifications: \(why)"
            case .send(let address, let why):
                "cannot notify systemd through NOTIFY_SOCKET=\(address): \(why) (is the unit Type=notify with NotifyAccess=main?)"
            }
        }
    }

    /// The socket address as given in `$NOTIFY_SOCKET`, nil when notifications are off.
    public let socketAddress: String?
    /// The watchdog timeout systemd enforces (`$WATCHDOG_USEC`), nil when there is no watchdog
    /// for this process.
    public let watchdogInterval: Duration?
    /// A problem found in the environment at start-up (a malformed variable), for the daemon to log.
    public let configurationProblem: Failure?

    private let address: sockaddr_un?
    private let addressLength: socklen_t
    private let descriptor: Int32
    private struct Bookkeeping {
        var lastPing: ContinuousClock.Instant?
        var lastStatus: String?
    }
    private let bookkeeping = Mutex(Bookkeeping())

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from `environment` (nil: the
    /// process's environment) and opens the datagram socket when notifications are on;
    /// `processID` (nil: this process's) is compared with `WATCHDOG_PID`. Never fails: a malformed
    /// variable turns the affected feature off and is reported in ``configurationProblem``.
    public init(environment: [String: String]? = nil, processID: Int32? = nil) {
        let environment = environment ?? ProcessInfo.processInfo.environment
        let processID = processID ?? getpid()
        var problem: Failure?
        var parsedAddress: (sockaddr_un, socklen_t)?
        if let value = environment["NOTIFY_SOCKET"], !value.isEmpty {
            parsedAddress = Self.parseAddress(value)
            if parsedAddress == nil { problem = .badAddress(value) }
        }
        var interval: Duration?
        if let value = environment["WATCHDOG_USEC"] {
            if let usec = UInt64(value), usec > 0, usec < UInt64(Int64.max) {
                let forUs = environment["WATCHDOG_PID"].map { Int32($0) == processID } ?? true
                interval = forUs ? .microseconds(Int64(usec)) : nil
            } else {
                problem = problem ?? .badWatchdogInterval(value)
            }
        }
        var fd: Int32 = -1
        if parsedAddress != nil {
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 {
                problem = problem ?? .socket(String(cString: strerror(errno)))
                parsedAddress = nil
            }
        }
        socketAddress = parsedAddress == nil ? nil : environment["NOTIFY_SOCKET"]
        address = parsedAddress?.0
        addressLength = parsedAddress?.1 ?? 0
        descriptor = fd
        // Without a socket there is nobody to ping.
        watchdogInterval = parsedAddress == nil ? nil : interval
        configurationProblem = problem
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    /// True when `$NOTIFY_SOCKET` named a usable socket: messages are really sent.
    public var isEnabled: Bool { address != nil }

    /// The longest the daemon's main loop may sleep so that ``watchdogTick(now:)`` can ping in
    /// time: a quarter of the watchdog timeout (pings then go out every half to three quarters of
    /// the timeout, whatever the loop's jitter), and at most 5 s, so the status line stays fresh.
    /// The loop wakes sooner when it has work due (a device about to go stale).
    public var recommendedTickInterval: Duration {
        guard let watchdogInterval else { return .seconds(5) }
        return min(.seconds(5), max(.milliseconds(10), watchdogInterval / 4))
    }

    /// Sends one notification: newline-separated `KEY=value` assignments (`sd_notify(3)`'s state
    /// string). A no-op when notifications are off.
    public func send(_ state: String) throws(Failure) {
        guard var address else { return }
        let bytes = Array(state.utf8)
        let length = addressLength
        var sent: Int
        repeat {
            sent = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                    bytes.withUnsafeBytes { buffer in
                        sendto(descriptor, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                    }
                }
            }
        } while sent < 0 && errno == EINTR
        if sent < 0 {
            throw .send(socketAddress ?? "", String(cString: strerror(errno)))
        }
    }

    /// `READY=1` with a status line: start-up is complete (the journal is open and the API socket
    /// is published). systemd then reports the unit started and starts what is ordered after it.
    public func ready(status: String) throws(Failure) {
        bookkeeping.withLock { $0.lastStatus = status }
        try send("READY=1\nSTATUS=\(Self.oneLine(status))")
    }

    /// `STATUS=…`, the free-form line `systemctl status` shows; sent only when it changed since the
    /// last one, so it can be called from every tick. Returns whether a message was sent.
    @discardableResult
    public func status(_ text: String) throws(Failure) -> Bool {
        let changed = bookkeeping.withLock { state -> Bool in
            guard state.lastStatus != text else { return false }
            state.lastStatus = text
            return true
        }
        guard changed else { return false }
        try send("STATUS=\(Self.oneLine(text))")
        return true
    }

    /// `STOPPING=1` with a status line: graceful shutdown has begun.
    public func stopping(status: String = "shutting down") throws(Failure) {
        bookkeeping.withLock { $0.lastStatus = status }
        try send("STOPPING=1\nSTATUS=\(Self.oneLine(status))")
    }

    /// Called from every turn of the daemon's main loop: sends `WATCHDOG=1` when the watchdog is on
    /// and half its timeout has passed since the last ping (or there was none yet). Returns whether
    /// a ping was sent.
    @discardableResult
    public func watchdogTick(now: ContinuousClock.Instant = .now) throws(Failure) -> Bool {
        guard let watchdogInterval else { return false }
        let due = bookkeeping.withLock { state -> Bool in
            if let last = state.lastPing, now - last < watchdogInterval / 2 { return false }
            state.lastPing = now
            return true
        }
        guard due else { return false }
        try send("WATCHDOG=1")
        return true
    }

    /// The `sockaddr_un` for `$NOTIFY_SOCKET`: `/absolute/path`, or `@name` for the abstract
    /// namespace (a leading NUL byte, and a length that counts only the name's bytes).
    static func parseAddress(_ value: String) -> (sockaddr_un, socklen_t)? {
        var bytes = Array(value.utf8)
        guard let first = bytes.first, first == UInt8(ascii: "/") || first == UInt8(ascii: "@") else { return nil }
        var address = sockaddr_un()
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path) ?? 2
        let length: Int
        if first == UInt8(ascii: "@") {
            bytes[0] = 0
            guard bytes.count <= capacity else { return nil }
            length = pathOffset + bytes.count
        } else {
            guard bytes.count < capacity else { return nil }
            length = pathOffset + bytes.count + 1
        }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        return (address, socklen_t(length))
    }

    /// A status line must not contain a newline (it would start a new assignment).
    static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }
}
