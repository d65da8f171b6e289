#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a serial device stopped being usable: reported once, with the descriptor already closed.
public enum DisconnectCause: Hashable, Sendable, CustomStringConvertible {
    /// `read()` returned 0: the other end is gone (a pty whose master closed).
    case endOfFile
    /// The line hung up (`POLLHUP`): the USB device was unplugged or the pty master closed.
    case hangUp
    /// The kernel reported an I/O error typical of a vanished device (`EIO`, `ENXIO`, `ENODEV`).
    case deviceError(errno: Int32)

    public var description: String {
        switch self {
        case .endOfFile: "end of file (device closed)"
        case .hangUp: "hang-up (device unplugged or closed)"
        case .deviceError(let code): "device error: \(String(cString: strerror(code))) (errno \(code))"
        }
    }
}

/// Errors from opening and using a serial port, with messages an operator can act on.
public enum SerialPortError: Error, Hashable, Sendable, CustomStringConvertible {
    /// No such device node: not plugged in, or the path is wrong.
    case notFound(path: String)
    /// The daemon's user may not open the device.
    case permissionDenied(path: String)
    /// Another process holds the port (exclusive open or lock). `holder` names it when `/proc`
    /// shows it, e.g. `pid 1234 (minicom)`.
    case busy(path: String, holder: String?)
    /// The path is not a terminal device.
    case notATerminal(path: String)
    /// The configured baud rate is not one the kernel's termios supports.
    case unsupportedBaudRate(Int)
    /// A system call failed while opening or configuring the port.
    case systemCallFailed(path: String, call: String, errno: Int32)
    /// The device went away; the descriptor has been closed.
    case disconnected(path: String, cause: DisconnectCause)
    /// A write did not complete within its timeout (the device stopped draining).
    case writeTimedOut(path: String, written: Int, of: Int)
    /// The port was closed, or a blocked read was interrupted by ``SerialPort/interrupt()``.
    case closed(path: String)

    public var description: String {
        switch self {
        case .notFound(let path):
            "serial device \(path) does not exist: is the programmer plugged in, and is the path right?"
        case .permissionDenied(let path):
            "no permission to open \(path): the daemon's user must be in the device's group (see udev-rules/)"
        case .busy(let path, let holder):
            "serial device \(path) is in use by \(holder ?? "another process"): close that program; the bridge retries"
        case .notATerminal(let path):
            "\(path) is not a serial (terminal) device"
        case .unsupportedBaudRate(let rate):
            "baud rate \(rate) is not supported; use a standard rate such as 115200 or 921600"
        case .systemCallFailed(let path, let call, let code):
            "\(call) failed on \(path): \(String(cString: strerror(code))) (errno \(code))"
        case .disconnected(let path, let cause):
            "serial device \(path) disconnected: \(cause)"
        case .writeTimedOut(let path, let written, let total):
            "write to \(path) timed out after \(written) of \(total) bytes"
        case .closed(let path):
            "serial port \(path) was closed"
        }
    }
}
