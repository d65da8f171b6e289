#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Applies the line settings the protocol needs: raw, 8N1, receiver on, modem lines ignored,
/// hang-up on close, the chosen speed and flow control.
enum Termios {
    static func configure(fd: Int32, path: String, speed: speed_t, flowControl: SerialConfiguration.FlowControl) throws(SerialPortError) {
        var t = termios()
        guard tcgetattr(fd, &t) == 0 else { throw .systemCallFailed(path: path, call: "tcgetattr", errno: errno) }
        cfmakeraw(&t)
        t.c_cflag &= ~tcflag_t(CSIZE | PARENB | CSTOPB)
        t.c_cflag |= tcflag_t(CS8 | CREAD | CLOCAL | HUPCL)
        switch flowControl {
        case .none: t.c_cflag &= ~tcflag_t(CRTSCTS)
        case .rtsCts: t.c_cflag |= tcflag_t(CRTSCTS)
        }
        t.c_iflag &= ~tcflag_t(IXON | IXOFF | IXANY)
        // Non-blocking descriptor: VMIN/VTIME 0 so a read returns what is there.
        withUnsafeMutableBytes(of: &t.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
        guard cfsetispeed(&t, speed) == 0, cfsetospeed(&t, speed) == 0 else {
            throw .systemCallFailed(path: path, call: "cfsetspeed", errno: errno)
        }
        guard tcsetattr(fd, TCSANOW, &t) == 0 else { throw .systemCallFailed(path: path, call: "tcsetattr", errno: errno) }
    }
}

/// A terminal's settings as read back from the kernel: the raw flag words (check them against the
/// C library's constants) and the speeds decoded to bits per second.
public struct LineSettings: Hashable, Sendable {
    /// `c_iflag`: input modes.
    public var inputFlags: UInt32
    /// `c_oflag`: output modes.
    public var outputFlags: UInt32
    /// `c_cflag`: control modes (size, parity, stop bits, CREAD, CLOCAL, HUPCL, CRTSCTS).
    public var controlFlags: UInt32
    /// `c_lflag`: local modes (ICANON, ECHO, ISIG).
    public var localFlags: UInt32
    /// Input speed in bits per second (nil when the constant is not a known rate).
    public var inputBaudRate: Int?
    /// Output speed in bits per second.
    public var outputBaudRate: Int?

    init(_ t: termios) {
        var copy = t
        inputFlags = UInt32(t.c_iflag)
        outputFlags = UInt32(t.c_oflag)
        controlFlags = UInt32(t.c_cflag)
        localFlags = UInt32(t.c_lflag)
        let inSpeed = cfgetispeed(&copy)
        let outSpeed = cfgetospeed(&copy)
        inputBaudRate = SerialConfiguration.supportedBaudRates.first { SerialConfiguration.speed(for: $0) == inSpeed }
        outputBaudRate = SerialConfiguration.supportedBaudRates.first { SerialConfiguration.speed(for: $0) == outSpeed }
    }
}
