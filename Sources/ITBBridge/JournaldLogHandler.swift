import Foundation
public import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A swift-log handler that writes to systemd-journald with its native protocol, so that every
/// metadata key becomes a journal field operators can filter on:
/// `journalctl -u itb-bridged DEVICE=PGM-000123`, `journalctl -u itb-bridged ALARM_CODE=motor_stall`.
///
/// Each entry is one datagram to journald's socket (`/run/systemd/journal/socket`) holding
/// `KEY=value` lines: `MESSAGE` (the same text the stderr handler writes: message, then the
/// metadata as `key=value`, so plain `journalctl` output keeps them), `PRIORITY` (syslog level,
/// 2 … 7), `SYSLOG_IDENTIFIER`, `CODE_FILE`/`CODE_LINE`/`CODE_FUNC`, `LOGGER` (the logger's
/// label), and each metadata key upper-cased with anything but `A-Z`, `0-9` and `_` turned into
/// `_` (`device` → `DEVICE`, `alarm_code` → `ALARM_CODE`). A value with a newline is sent in the
/// protocol's binary form (name, newline, 64-bit little-endian length, bytes, newline).
///
/// When the datagram cannot be sent (journald restarting, an entry larger than a datagram), the
/// line goes to stderr through ``DaemonLogHandler`` instead, which journald also collects when
/// the daemon runs as a service: nothing is lost, only the extra fields.
///
/// Choose it with ``shouldUse(environment:socketPath:)``: when stderr is connected to the journal
/// (`$JOURNAL_STREAM` names stderr's device and inode) and the socket exists.
public struct JournaldLogHandler: LogHandler {
    /// journald's native-protocol socket.
    public static let defaultSocketPath = "/run/systemd/journal/socket"

    /// Entries below this level are not logged.
    public var logLevel: Logger.Level
    /// Metadata added to every entry (as `key=value` in the message and as a journal field).
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let identifier: String
    private let connection: JournaldConnection
    private let fallback: DaemonLogHandler

    /// Creates a handler sending through `connection` (share one connection between all handlers
    /// of the process), with `identifier` as `SYSLOG_IDENTIFIER`.
    public init(label: String, level: Logger.Level, identifier: String = "itb-bridged", connection: JournaldConnection) {
        self.label = label
        self.logLevel = level
        self.identifier = identifier
        self.connection = connection
        self.fallback = DaemonLogHandler(label: label, level: level)
    }

    /// One metadata value added to every entry.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// True when the native protocol should be used: `$JOURNAL_STREAM` is set and names the
    /// device and inode of this process's stderr (so stderr really goes to the journal, rather
    /// than the variable having been inherited by a process run by hand), and journald's socket
    /// exists at `socketPath`. `environment` nil means the process's environment.
    public static func shouldUse(environment: [String: String]? = nil, socketPath: String = defaultSocketPath) -> Bool {
        let environment = environment ?? ProcessInfo.processInfo.environment
        guard let stream = environment["JOURNAL_STREAM"] else { return false }
        let parts = stream.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var st = stat()
        guard fstat(STDERR_FILENO, &st) == 0, UInt64(st.st_dev) == device, UInt64(st.st_ino) == inode else { return false }
        var socketStat = stat()
        return stat(socketPath, &socketStat) == 0 && (socketStat.st_mode & S_IFMT) == S_IFSOCK
    }

    /// Sends one entry to journald, or writes it to stderr when that fails.
    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let sorted = merged.sorted { $0.key < $1.key }
        var message = event.message.description
        for (key, value) in sorted {
            let text = "\(value)"
            message += " \(key)=" + (text.contains(" ") || text.isEmpty ? "\"\(text)\"" : text)
        }
        var fields: [(String, String)] = [
            ("MESSAGE", message),
            ("PRIORITY", String(DaemonLogHandler.priority(event.level))),
            ("SYSLOG_IDENTIFIER", identifier),
            ("LOGGER", label),
            ("CODE_FILE", event.file),
            ("CODE_LINE", String(event.line)),
            ("CODE_FUNC", event.function),
        ]
        for (key, value) in sorted {
            if let name = Self.fieldName(forMetadataKey: key) { fields.append((name, "\(value)")) }
        }
        if !connection.send(Self.encode(fields)) {
            fallback.log(event: event)
        }
    }

    /// Fields this handler sets itself; a metadata key that maps onto one of them is sent as
    /// `ITB_<NAME>` instead, so that it cannot forge the message or the priority.
    static let reservedFields: Set<String> = ["MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "LOGGER", "CODE_FILE", "CODE_LINE",
                                              "CODE_FUNC", "MESSAGE_ID", "SYSLOG_FACILITY", "SYSLOG_PID", "ERRNO"]

    /// The journal field name for a metadata key: upper case, `A-Z0-9_` only, not starting with
    /// `_` (journald keeps those for fields it sets itself) or a digit, at most 64 bytes. Nil when
    /// nothing is left.
    static func fieldName(forMetadataKey key: String) -> String? {
        var name = String(key.uppercased().unicodeScalars.map { scalar -> Character in
            (scalar >= "A" && scalar <= "Z") || (scalar >= "0" && scalar <= "9") ? Character(scalar) : "_"
        })
        while name.hasPrefix("_") { name.removeFirst() }
        guard let first = name.first else { return nil }
        if first.isNumber || reservedFields.contains(name) { name = "ITB_" + name }
        return String(name.prefix(64))
    }

    /// Encodes fields in journald's native format: `NAME=value\n`, or for a value containing a
    /// newline `NAME\n` + little-endian UInt64 length + value + `\n`.
    static func encode(_ fields: [(String, String)]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(fields.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 10 })
        for (name, value) in fields {
            bytes.append(contentsOf: name.utf8)
            if value.utf8.contains(UInt8(ascii: "\n")) {
                bytes.append(UInt8(ascii: "\n"))
                withUnsafeBytes(of: UInt64(value.utf8.count).littleEndian) { bytes.append(contentsOf: $0) }
                bytes.append(contentsOf: value.utf8)
            } else {
                bytes.append(UInt8(ascii: "="))
                bytes.append(contentsOf: value.utf8)
            }
            bytes.append(UInt8(ascii: "\n"))
        }
        return bytes
    }
}

/// The datagram socket a process's ``JournaldLogHandler``s send through: opened once, shared,
/// closed when the last handler goes. Each send names journald's socket path, so a journald
/// restart needs no reconnect.
public final class JournaldConnection: Sendable {
    /// Where journald listens.
    public let socketPath: String
    private let descriptor: Int32
    private let address: sockaddr_un?

    /// Opens a datagram socket for journald's socket at `socketPath`. If the socket cannot be
    /// created or the path is too long, every send fails and handlers fall back to stderr.
    public init(socketPath: String = JournaldLogHandler.defaultSocketPath) {
        self.socketPath = socketPath
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(socketPath.utf8)
        if bytes.count < MemoryLayout.size(ofValue: address.sun_path) {
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
            self.address = address
        } else {
            self.address = nil
        }
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if descriptor >= 0 {
            // As sd-journal does: a large send buffer, so that a burst of entries does not block.
            var size: Int32 = 8 << 20
            _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    /// Sends one entry; false when it could not be delivered (no journald at the path, the entry
    /// too large for one datagram, …), for the caller to fall back to stderr.
    public func send(_ entry: [UInt8]) -> Bool {
        guard descriptor >= 0, var address else { return false }
        var sent: Int
        repeat {
            sent = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                    entry.withUnsafeBytes { buffer in
                        sendto(descriptor, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), socketAddress,
                               socklen_t(MemoryLayout<sockaddr_un>.size))
                    }
                }
            }
        } while sent < 0 && errno == EINTR
        return sent == entry.count
    }
}
