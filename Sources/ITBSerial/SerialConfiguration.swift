#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// How a serial port is set up: raw 8N1 at a chosen rate, optional RTS/CTS flow control.
public struct SerialConfiguration: Hashable, Sendable {
    /// Flow control on the line.
    public enum FlowControl: String, Hashable, Sendable, CaseIterable {
        /// None (the default: the programmer's adapter does not use it).
        case none
        /// Hardware RTS/CTS.
        case rtsCts = "rts-cts"
    }

    /// Line speed in bits per second (default 115200).
    public var baudRate: Int
    /// Flow control (default none).
    public var flowControl: FlowControl
    /// How long a write (an ACK) may wait for the device to drain before failing.
    public var writeTimeout: Duration

    /// Creates a configuration.
    public init(baudRate: Int = 115_200, flowControl: FlowControl = .none, writeTimeout: Duration = .milliseconds(500)) {
        self.baudRate = baudRate
        self.flowControl = flowControl
        self.writeTimeout = writeTimeout
    }

    /// The standard rates this port accepts, up to 4 Mbit/s.
    public static let supportedBaudRates: [Int] = [
        1200, 2400, 4800, 9600, 19200, 38400, 57600, 115_200, 230_400, 460_800, 500_000, 576_000,
        921_600, 1_000_000, 1_152_000, 1_500_000, 2_000_000, 2_500_000, 3_000_000, 3_500_000, 4_000_000,
    ]

    /// The termios speed constant for a rate, or nil when termios has none.
    static func speed(for rate: Int) -> speed_t? {
        switch rate {
        case 1200: speed_t(B1200)
        case 2400: speed_t(B2400)
        case 4800: speed_t(B4800)
        case 9600: speed_t(B9600)
        case 19200: speed_t(B19200)
        case 38400: speed_t(B38400)
        case 57600: speed_t(B57600)
        case 115_200: speed_t(B115200)
        case 230_400: speed_t(B230400)
        case 460_800: speed_t(B460800)
        case 500_000: speed_t(B500000)
        case 576_000: speed_t(B576000)
        case 921_600: speed_t(B921600)
        case 1_000_000: speed_t(B1000000)
        case 1_152_000: speed_t(B1152000)
        case 1_500_000: speed_t(B1500000)
        case 2_000_000: speed_t(B2000000)
        case 2_500_000: speed_t(B2500000)
        case 3_000_000: speed_t(B3000000)
        case 3_500_000: speed_t(B3500000)
        case 4_000_000: speed_t(B4000000)
        default: nil
        }
    }
}
