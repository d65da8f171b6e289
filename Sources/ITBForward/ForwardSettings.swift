import Foundation

/// What itb-forward runs with: from its config file, then its flags.
public struct ForwardSettings: Sendable {
    /// The bridge's API socket.
    public var socketPath = "/run/itb-bridge/api.sock"
    /// The PostgreSQL URL (required).
    public var postgres: PostgresLocation?
    /// The bridge's name in `itb_event.bridge_id` (default: the host name).
    public var bridgeID: String?
    /// A file holding the PostgreSQL password (its first line). When unset,
    /// `$CREDENTIALS_DIRECTORY/postgres-password` (systemd `LoadCredential=`) if it exists.
    public var passwordFile: String?
    /// TLS towards PostgreSQL; unset: `sslmode` of the URL, else `disable` on a Unix socket and
    /// `verify-full` over TCP.
    public var tls: TLSMode?
    /// CA certificates (PEM) that verify the server in `require`/`verify-full`; unset: the system's.
    public var tlsCAFile: String?
    /// How events are grouped into transactions.
    public var batch = BatchRule()
    /// Log level name (swift-log's).
    public var logLevel = "info"

    /// Default settings.
    public init() {}

    /// The TLS mode in force.
    public var effectiveTLS: TLSMode {
        if let tls { return tls }
        if let mode = postgres?.sslMode { return mode }
        if case .tcp = postgres?.endpoint { return .verifyFull }
        return .disable
    }

    /// The bridge id in force: the setting, else the host name.
    public var effectiveBridgeID: String {
        if let bridgeID, !bridgeID.isEmpty { return bridgeID }
        return ProcessInfo.processInfo.hostName
    }

    /// The password: the first line of the password file, or of systemd's credential
    /// `postgres-password`; nil when neither is given (peer or trust authentication).
    /// `environment` defaults to the process's.
    public func password(environment: [String: String]? = nil) throws(ForwardError) -> String? {
        let environment = environment ?? ProcessInfo.processInfo.environment
        var path = passwordFile
        if path == nil, let directory = environment["CREDENTIALS_DIRECTORY"] {
            let credential = directory + "/postgres-password"
            if FileManager.default.fileExists(atPath: credential) { path = credential }
        }
        guard let path else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .configuration("cannot read the password file \(path): check that it exists and that itb-forward may read it")
        }
        let text = String(decoding: data, as: UTF8.self)
        let line = String(text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        // An empty file: no password (peer, trust or certificate authentication); the unit's
        // LoadCredential= needs the file to exist.
        return line.isEmpty ? nil : line
    }

    /// Applies a config file's `key = value` lines (`#` comments) on top of these settings.
    /// Keys: socket, postgres, bridge_id, password_file, tls, tls_ca_file, batch_max_events,
    /// batch_max_delay_ms, log_level. Unknown keys and bad values are errors with their line.
    public mutating func apply(configFile text: String) throws(ForwardError) {
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            func fail(_ message: String) -> ForwardError { .configuration("config line \(index + 1): \(message)") }
            guard let eq = trimmed.firstIndex(of: "=") else { throw fail("expected `key = value`, found `\(trimmed)`") }
            let key = trimmed[..<eq].trimmingCharacters(in: .whitespaces)
            let value = trimmed[trimmed.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            switch key {
            case "socket": socketPath = value
            case "postgres":
                do { postgres = try PostgresLocation(url: value) } catch { throw fail(error.message) }
            case "bridge_id": bridgeID = value
            case "password_file": passwordFile = value
            case "tls":
                guard let mode = TLSMode(rawValue: value) else { throw fail("tls: expected disable, require or verify-full") }
                tls = mode
            case "tls_ca_file": tlsCAFile = value
            case "batch_max_events":
                guard let n = Int(value), n > 0 else { throw fail("batch_max_events: expected a whole number above 0") }
                batch.maxEvents = n
            case "batch_max_delay_ms":
                guard let n = Int(value), n >= 0 else { throw fail("batch_max_delay_ms: expected a whole number of milliseconds") }
                batch.maxDelay = .milliseconds(n)
            case "log_level": logLevel = value
            default:
                throw fail("unknown key `\(key)` (known: socket, postgres, bridge_id, password_file, tls, tls_ca_file, batch_max_events, batch_max_delay_ms, log_level)")
            }
        }
    }
}
