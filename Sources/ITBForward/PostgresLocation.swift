/// Where the PostgreSQL server is and who to log in as, read from a libpq connection URL:
/// `postgresql://user@host:port/database` (TCP) or `postgresql://user@/database?host=/run/postgresql`
/// (a Unix-socket directory, as libpq names it). A password in the URL is refused: it would show
/// in `ps` and in the unit file; it comes from a file or systemd credentials instead.
public struct PostgresLocation: Hashable, Sendable, CustomStringConvertible {
    /// How the server is reached.
    public enum Endpoint: Hashable, Sendable {
        /// TCP to a host name or address and port.
        case tcp(host: String, port: Int)
        /// A Unix socket: the directory (as libpq's `host=/dir`) and the port that names the
        /// socket file `.s.PGSQL.<port>` in it.
        case unixSocket(directory: String, port: Int)
    }

    /// How the server is reached.
    public var endpoint: Endpoint
    /// The role to log in as.
    public var user: String
    /// The database.
    public var database: String
    /// `sslmode` from the URL, if it named one (`--tls` wins over it).
    public var sslMode: TLSMode?

    /// The socket file of a Unix-socket endpoint (`<dir>/.s.PGSQL.<port>`), nil for TCP.
    public var socketFile: String? {
        if case .unixSocket(let directory, let port) = endpoint { return "\(directory)/.s.PGSQL.\(port)" }
        return nil
    }

    /// The URL without secrets, for logs.
    public var description: String {
        switch endpoint {
        case .tcp(let host, let port): "postgresql://\(user)@\(host):\(port)/\(database)"
        case .unixSocket(let directory, let port): "postgresql://\(user)@/\(database)?host=\(directory)&port=\(port)"
        }
    }

    /// A URL that is not a libpq URL this tool understands, said so that the operator can fix it.
    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        /// What is wrong.
        public var message: String
        public var description: String { "--postgres: \(message)" }
    }

    /// Parses a libpq URL (`postgresql://` or `postgres://`). The user defaults to `itb_forward`
    /// and the database to the user's name, as libpq does; the port to 5432.
    public init(url: String) throws(ParseError) {
        var rest = Substring(url)
        if rest.hasPrefix("postgresql://") {
            rest = rest.dropFirst("postgresql://".count)
        } else if rest.hasPrefix("postgres://") {
            rest = rest.dropFirst("postgres://".count)
        } else {
            throw ParseError(message: "expected a URL such as postgresql://itb_forward@db.example:5432/itb, found `\(url)`")
        }
        var query: [(String, String)] = []
        if let mark = rest.firstIndex(of: "?") {
            for pair in rest[rest.index(after: mark)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                query.append((try Self.decode(parts[0]), parts.count > 1 ? try Self.decode(parts[1]) : ""))
            }
            rest = rest[..<mark]
        }
        var database: String?
        if let slash = rest.firstIndex(of: "/") {
            let name = try Self.decode(rest[rest.index(after: slash)...])
            if !name.isEmpty { database = name }
            rest = rest[..<slash]
        }
        var user: String?
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            if userInfo.contains(":") {
                throw ParseError(message: "a password in the URL is refused (it would show in `ps` and in unit files): put it in --password-file or the systemd credential postgres-password")
            }
            user = try Self.decode(userInfo)
            rest = rest[rest.index(after: at)...]
        }
        var host = ""
        var port = 5432
        if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]") {
            guard let number = Int(rest[rest.index(after: colon)...]), (1...65535).contains(number) else {
                throw ParseError(message: "bad port `\(rest[rest.index(after: colon)...])`")
            }
            port = number
            host = try Self.decode(rest[..<colon])
        } else {
            host = try Self.decode(rest)
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var sslMode: TLSMode?
        for (key, value) in query {
            switch key {
            case "host": host = value
            case "port":
                guard let number = Int(value), (1...65535).contains(number) else { throw ParseError(message: "bad port `\(value)`") }
                port = number
            case "user": user = value
            case "dbname": database = value
            case "sslmode":
                guard let mode = TLSMode(rawValue: value) else {
                    throw ParseError(message: "sslmode `\(value)` is not one of disable, require, verify-full")
                }
                sslMode = mode
            case "password":
                throw ParseError(message: "a password in the URL is refused: put it in --password-file or the systemd credential postgres-password")
            default:
                throw ParseError(message: "unknown URL parameter `\(key)` (known: host, port, user, dbname, sslmode)")
            }
        }
        let role = user.flatMap { $0.isEmpty ? nil : $0 } ?? "itb_forward"
        self.user = role
        self.database = database ?? role
        self.sslMode = sslMode
        if host.hasPrefix("/") {
            endpoint = .unixSocket(directory: host, port: port)
        } else if host.isEmpty {
            throw ParseError(message: "no host: give a host (postgresql://user@db.example/itb) or a socket directory (?host=/run/postgresql)")
        } else {
            endpoint = .tcp(host: host, port: port)
        }
    }

    /// Percent-decodes one URL component.
    private static func decode(_ text: Substring) throws(ParseError) -> String {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard let high = iterator.next(), let low = iterator.next(),
                  let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else {
                throw ParseError(message: "bad percent escape in `\(text)`")
            }
            bytes.append(value)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// TLS towards PostgreSQL, named as libpq's `sslmode` values.
public enum TLSMode: String, Hashable, Sendable, CaseIterable {
    /// No TLS (a Unix socket, or a trusted loopback).
    case disable
    /// TLS is required, the server's certificate is not checked (protects against eavesdropping
    /// only).
    case require
    /// TLS with the server's certificate checked against the CA (`--tls-ca-file`, else the system's
    /// roots) and its name against the host name.
    case verifyFull = "verify-full"
}
