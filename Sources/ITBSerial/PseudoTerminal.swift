import CITBShims
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The master side of a pseudo-terminal: what the simulator, replay and the tests hold while the
/// bridge opens the slave path as if it were a programmer's USB-serial port.
///
/// The line is put in raw mode at creation, so bytes written before the bridge opens the slave
/// are neither echoed nor translated. Closing the master is what unplugging looks like to the
/// bridge: its reads end with a hang-up or `EIO`.
public final class PseudoTerminal: Sendable {
    /// The slave device path (`/dev/pts/N`) to give the bridge.
    public let slavePath: String
    private let fd: Int32
    private let closed = Mutex(false)

    /// Creates a new pseudo-terminal pair in raw mode.
    public init() throws(SerialPortError) {
        let master = itb_pty_open_master()
        guard master >= 0 else { throw .systemCallFailed(path: "/dev/ptmx", call: "posix_openpt", errno: errno) }
        var name = [CChar](repeating: 0, count: 128)
        guard itb_pty_slave_path(master, &name, name.count) == 0 else {
            let code = errno
            Glibc.close(master)
            throw .systemCallFailed(path: "/dev/ptmx", call: "ptsname", errno: code)
        }
        var t = termios()
        if tcgetattr(master, &t) == 0 {
            cfmakeraw(&t)
            tcsetattr(master, TCSANOW, &t)
        }
        let flags = fcntl(master, F_GETFL)
        _ = fcntl(master, F_SETFL, flags | O_NONBLOCK)
        fd = master
        slavePath = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { close() }

    /// The master descriptor (for `poll()` in callers that multiplex).
    public var descriptor: Int32 { fd }

    /// Writes all of `bytes` to the master (the bridge reads them from the slave), waiting up to
    /// `timeout` for buffer space.
    public func write(_ bytes: [UInt8], timeout: Duration = .seconds(5)) throws(SerialPortError) {
        let deadline = ContinuousClock.now + timeout
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n > 0 {
                written += n
                continue
            }
            let code = errno
            guard code == EAGAIN || code == EINTR else {
                throw .systemCallFailed(path: slavePath, call: "write(master)", errno: code)
            }
            let waitMs = SerialPort.milliseconds(until: deadline)
            if waitMs == 0 { throw .writeTimedOut(path: slavePath, written: written, of: bytes.count) }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&p, 1, min(waitMs, 50))
        }
    }

    /// Reads what the bridge wrote to the slave (ACKs, heartbeats), waiting up to `timeout`.
    /// Returns 0 on timeout, and also while no process has the slave open.
    public func read(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration) throws(SerialPortError) -> Int {
        let deadline = ContinuousClock.now + timeout
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n > 0 { return n }
            let code = n == 0 ? EAGAIN : errno
            // EIO on a master means "no slave open right now": the bridge has not opened it yet,
            // or closed it. Not an error for the programmer side; wait and try again.
            guard code == EAGAIN || code == EINTR || code == EIO else {
                throw .systemCallFailed(path: slavePath, call: "read(master)", errno: code)
            }
            let waitMs = SerialPort.milliseconds(until: deadline)
            if waitMs == 0 { return 0 }
            if code == EIO {
                usleep(UInt32(min(waitMs, 10)) * 1000)
            } else {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, waitMs)
            }
        }
    }

    /// Closes the master: to the bridge, the device was unplugged. Idempotent.
    public func close() {
        let first = closed.withLock { c -> Bool in
            defer { c = true }
            return !c
        }
        if first { Glibc.close(fd) }
    }
}
