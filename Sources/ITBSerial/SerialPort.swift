import CITBShims
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An open serial device (a USB-serial tty, or a pty standing in for one), owned exclusively.
///
/// Opening takes the port exclusively twice over: `flock(LOCK_EX | LOCK_NB)`, which every
/// cooperating program honours and which also stops a second open by root, and `TIOCEXCL`,
/// which makes the kernel refuse other non-root opens. The line is raw 8N1 with `HUPCL`, stale
/// input is flushed, and the descriptor is non-blocking: ``read(into:timeout:)`` waits in
/// `poll()`, never spins, and can be woken by ``interrupt()`` from another thread.
///
/// Ownership: the port owns its descriptor and closes it exactly once, on ``close()`` or when the
/// last reference goes, and never while a read or write is using it (so a descriptor number is
/// never reused under a reader's feet). After a disconnect the descriptor is already closed.
public final class SerialPort: Sendable {
    /// The path the port was opened with.
    public let path: String
    /// The configuration applied.
    public let configuration: SerialConfiguration

    private let fd: Int32
    /// An eventfd a blocked `poll()` also waits on, so ``interrupt()`` can wake it.
    private let wakeFD: Int32

    private struct State {
        var users = 0
        var closeRequested = false
        var closed = false
        var disconnect: DisconnectCause?
    }
    private let state = Mutex(State())

    private init(path: String, configuration: SerialConfiguration, fd: Int32, wakeFD: Int32) {
        self.path = path
        self.configuration = configuration
        self.fd = fd
        self.wakeFD = wakeFD
    }

    deinit {
        // No user can exist any more: close what is still open.
        let closed = state.withLock { $0.closed }
        if !closed { closeDescriptors() }
    }

    /// Opens `path` exclusively and configures it. Throws ``SerialPortError`` with the reason,
    /// naming the process that holds a busy port where `/proc` shows it.
    public static func open(path: String, configuration: SerialConfiguration = .init()) throws(SerialPortError) -> SerialPort {
        guard let speed = SerialConfiguration.speed(for: configuration.baudRate) else {
            throw .unsupportedBaudRate(configuration.baudRate)
        }
        let fd = Glibc.open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            switch code {
            case ENOENT, ENXIO, ENODEV: throw .notFound(path: path)
            case EACCES, EPERM: throw .permissionDenied(path: path)
            // Our failed open left no descriptor behind, so every holder /proc shows is another
            // opener, this process included (a second open from the same program).
            case EBUSY: throw .busy(path: path, holder: DeviceHolders.describe(path: path, excludingPID: nil))
            default: throw .systemCallFailed(path: path, call: "open", errno: code)
            }
        }
        func fail(_ error: SerialPortError) -> SerialPortError {
            Glibc.close(fd)
            return error
        }
        guard isatty(fd) == 1 else { throw fail(.notATerminal(path: path)) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EWOULDBLOCK {
                throw fail(.busy(path: path, holder: DeviceHolders.describe(path: path, excludingPID: nil, skippingFD: fd)))
            }
            throw fail(.systemCallFailed(path: path, call: "flock", errno: code))
        }
        if itb_tty_set_exclusive(fd) != 0 {
            throw fail(.systemCallFailed(path: path, call: "ioctl(TIOCEXCL)", errno: errno))
        }
        do {
            try Termios.configure(fd: fd, path: path, speed: speed, flowControl: configuration.flowControl)
        } catch {
            throw fail(error)
        }
        // Stale input from before we opened is not this session's data.
        tcflush(fd, TCIFLUSH)
        let wake = itb_eventfd_create()
        if wake < 0 { throw fail(.systemCallFailed(path: path, call: "eventfd", errno: errno)) }
        return SerialPort(path: path, configuration: configuration, fd: fd, wakeFD: wake)
    }

    /// True once the port is closed (by ``close()`` or after a disconnect).
    public var isClosed: Bool { state.withLock { $0.closed || $0.closeRequested } }

    /// The line settings as the kernel has them now, read back with `tcgetattr` (diagnostics, tests).
    public func currentSettings() throws(SerialPortError) -> LineSettings {
        try withDescriptor { fd throws(SerialPortError) in
            var settings = termios()
            guard tcgetattr(fd, &settings) == 0 else { throw .systemCallFailed(path: path, call: "tcgetattr", errno: errno) }
            return LineSettings(settings)
        }
    }

    /// Reads what is available into `buffer`, waiting up to `timeout` (nil: until data, a
    /// disconnect or ``interrupt()``). Returns the byte count, 0 on timeout.
    ///
    /// Throws ``SerialPortError/disconnected(path:cause:)`` when the device is gone (the port is
    /// then closed) and ``SerialPortError/closed(path:)`` after ``close()`` or ``interrupt()``.
    public func read(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration? = nil) throws(SerialPortError) -> Int {
        let result: Result<Int, SerialPortError> = withDescriptorResult { fd in
            let deadline = timeout.map { ContinuousClock.now + $0 }
            while true {
                var fds = (pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
                let waitMs: Int32 = deadline.map { Self.milliseconds(until: $0) } ?? -1
                let ready = withUnsafeMutableBytes(of: &fds) { raw in
                    poll(raw.baseAddress!.assumingMemoryBound(to: pollfd.self), 2, waitMs)
                }
                if ready < 0 {
                    if errno == EINTR { continue }
                    return .failure(.systemCallFailed(path: path, call: "poll", errno: errno))
                }
                if fds.1.revents != 0 { return .failure(.closed(path: path)) }
                if ready == 0 {
                    if let deadline, ContinuousClock.now >= deadline { return .success(0) }
                    continue
                }
                let events = Int32(fds.0.revents)
                if events & Int32(POLLNVAL) != 0 { return .failure(.closed(path: path)) }
                let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
                if n > 0 { return .success(n) }
                if n == 0 { return .failure(.disconnected(path: path, cause: .endOfFile)) }
                let code = errno
                switch code {
                case EAGAIN, EINTR:
                    if events & Int32(POLLHUP | POLLERR) != 0 { return .failure(.disconnected(path: path, cause: .hangUp)) }
                    continue
                case EIO, ENXIO, ENODEV:
                    return .failure(.disconnected(path: path, cause: .deviceError(errno: code)))
                default:
                    return .failure(.systemCallFailed(path: path, call: "read", errno: code))
                }
            }
        }
        if case .failure(.disconnected(_, let cause)) = result { markDisconnected(cause) }
        return try result.get()
    }

    /// Writes all of `bytes` (an ACK or heartbeat frame), waiting for the device to drain for at
    /// most the configured write timeout.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(SerialPortError) {
        let result: Result<Void, SerialPortError> = withDescriptorResult { fd in
            let deadline = ContinuousClock.now + configuration.writeTimeout
            var written = 0
            while written < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + written, bytes.count - written)
                if n > 0 {
                    written += n
                    continue
                }
                let code = errno
                switch code {
                case EAGAIN, EINTR:
                    let waitMs = Self.milliseconds(until: deadline)
                    if waitMs == 0 { return .failure(.writeTimedOut(path: path, written: written, of: bytes.count)) }
                    var fds = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&fds, 1, waitMs)
                    if Int32(fds.revents) & Int32(POLLHUP | POLLERR) != 0 {
                        return .failure(.disconnected(path: path, cause: .hangUp))
                    }
                case EIO, ENXIO, ENODEV:
                    return .failure(.disconnected(path: path, cause: .deviceError(errno: code)))
                default:
                    return .failure(.systemCallFailed(path: path, call: "write", errno: code))
                }
            }
            return .success(())
        }
        if case .failure(.disconnected(_, let cause)) = result { markDisconnected(cause) }
        try result.get()
    }

    /// Convenience for byte arrays.
    public func write(_ bytes: [UInt8]) throws(SerialPortError) {
        let result: Result<Void, SerialPortError> = bytes.withUnsafeBytes { raw in
            do throws(SerialPortError) { try write(raw); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    /// Wakes a read blocked in another thread; that read, and every later one, throws
    /// ``SerialPortError/closed(path:)``. The descriptor stays open until ``close()``.
    public func interrupt() {
        // Under the lock: the wake descriptor cannot be closed (and its number reused) meanwhile.
        state.withLock { s in
            if !s.closed { signalWake() }
        }
    }

    private func signalWake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    /// Closes the port: wakes any blocked read, and closes the descriptor as soon as no read or
    /// write is using it. Idempotent; safe from any thread.
    public func close() {
        let closeNow = state.withLock { s -> Bool in
            if s.closed || s.closeRequested { return false }
            s.closeRequested = true
            if s.users == 0 {
                s.closed = true
                return true
            }
            // A read or write is using the port: wake it; the last user closes the descriptors.
            signalWake()
            return false
        }
        if closeNow { closeDescriptors() }
    }

    /// Ends exclusive mode and closes both descriptors. Called exactly once.
    private func closeDescriptors() {
        _ = itb_tty_clear_exclusive(fd)
        Glibc.close(fd)
        Glibc.close(wakeFD)
    }

    /// The cause of the disconnect that closed this port, if one did.
    public var disconnectCause: DisconnectCause? { state.withLock { $0.disconnect } }

    private func markDisconnected(_ cause: DisconnectCause) {
        state.withLock { $0.disconnect = $0.disconnect ?? cause }
        close()
    }

    /// Runs `body` with the descriptor, counted as a user so that ``close()`` waits for it.
    private func withDescriptorResult<T>(_ body: (Int32) -> Result<T, SerialPortError>) -> Result<T, SerialPortError> {
        let usable = state.withLock { s -> Bool in
            if s.closed || s.closeRequested { return false }
            s.users += 1
            return true
        }
        guard usable else { return .failure(.closed(path: path)) }
        let result = body(fd)
        let closeNow = state.withLock { s -> Bool in
            s.users -= 1
            if s.closeRequested && s.users == 0 && !s.closed {
                s.closed = true
                return true
            }
            return false
        }
        if closeNow { closeDescriptors() }
        return result
    }

    private func withDescriptor<T>(_ body: (Int32) throws(SerialPortError) -> T) throws(SerialPortError) -> T {
        try withDescriptorResult { fd in
            do throws(SerialPortError) { return .success(try body(fd)) } catch { return .failure(error) }
        }.get()
    }

    static func milliseconds(until deadline: ContinuousClock.Instant) -> Int32 {
        let remaining = deadline - ContinuousClock.now
        if remaining <= .zero { return 0 }
        let ms = remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000
        return Int32(clamping: max(1, ms))
    }
}
