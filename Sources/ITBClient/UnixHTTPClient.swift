#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A small HTTP/1.1 client over a Unix-domain socket: what `itbctl` and the end-to-end tests use
/// to talk to `itb-bridged`, the way `curl --unix-socket` does. Blocking, one request per
/// connection; call it from a thread that may block (a command-line tool, a test's own thread).
public struct UnixHTTPClient: Sendable {
    /// The daemon's socket.
    public var socketPath: String
    /// How long to wait for connecting, sending and each read.
    public var timeout: Duration

    /// Creates a client for the socket at `socketPath`.
    public init(socketPath: String, timeout: Duration = .seconds(10)) {
        self.socketPath = socketPath
        self.timeout = timeout
    }

    /// Sends one request and reads the whole response.
    public func request(_ method: String, _ path: String, body: [UInt8] = [], headers: [(String, String)] = []) throws(ClientError) -> HTTPResponse {
        let connection = try Connection(socketPath: socketPath, timeout: timeout)
        defer { connection.close() }
        try connection.send(Self.requestBytes(method, path, body: body, headers: headers + [("Connection", "close")]))
        var reader = ResponseReader(connection: connection)
        let head = try reader.readHead()
        let bytes = try reader.readBody(head)
        return HTTPResponse(status: head.status, headers: head.headers, body: bytes)
    }

    /// `GET` shorthand.
    public func get(_ path: String) throws(ClientError) -> HTTPResponse {
        try request("GET", path)
    }

    /// Opens `GET path` as a Server-Sent Events stream.
    public func events(_ path: String, lastEventID: Int64? = nil) throws(ClientError) -> EventStreamReader {
        let connection = try Connection(socketPath: socketPath, timeout: timeout)
        var headers: [(String, String)] = [("Accept", "text/event-stream")]
        if let lastEventID { headers.append(("Last-Event-ID", String(lastEventID))) }
        do throws(ClientError) {
            try connection.send(Self.requestBytes("GET", path, body: [], headers: headers))
            var reader = ResponseReader(connection: connection)
            let head = try reader.readHead()
            guard head.status == 200 else {
                let body = (try? reader.readBody(head)) ?? []
                throw ClientError.httpStatus(head.status, String(decoding: body, as: UTF8.self))
            }
            return EventStreamReader(reader: reader, head: head)
        } catch {
            connection.close()
            throw error
        }
    }

    static func requestBytes(_ method: String, _ path: String, body: [UInt8], headers: [(String, String)]) -> [UInt8] {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nUser-Agent: itbctl\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" || method == "PUT" { text += "Content-Length: \(body.count)\r\n" }
        text += "\r\n"
        return Array(text.utf8) + body
    }
}

/// A response.
public struct HTTPResponse: Sendable {
    /// Status code.
    public var status: Int
    /// Header fields in order, names as sent.
    public var headers: [(String, String)]
    /// The body, de-chunked.
    public var body: [UInt8]

    /// The first header of that name (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    /// The body as text.
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// Why a request failed, worded for the person at the terminal.
public enum ClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Nothing listens at the socket: the daemon is not running, or the path is wrong; `reason`
    /// says which of the cases the path is in.
    case daemonNotRunning(socket: String, reason: NotListeningReason)
    /// The socket exists but this user may not connect (not in the socket's group).
    case permissionDenied(socket: String)
    /// The daemon did not answer in time.
    case timedOut(socket: String)
    /// The connection broke or the answer was not HTTP.
    case protocolError(String)
    /// A non-success status where one was required.
    case httpStatus(Int, String)
    /// Another system error.
    case system(call: String, errno: Int32)

    public var description: String {
        switch self {
        case .daemonNotRunning(let socket, let reason): reason.message(socket: socket)
        case .permissionDenied(let socket): "permission denied on \(socket): add your user to the socket's group (see README, Install)"
        case .timedOut(let socket): "itb-bridged did not answer in time on \(socket)"
        case .protocolError(let why): "unexpected answer from itb-bridged: \(why)"
        case .httpStatus(let status, let body): "itb-bridged answered \(status): \(body)"
        case .system(let call, let code): "\(call) failed: \(String(cString: strerror(code)))"
        }
    }
}

/// Why nothing answers at a socket path: each case has its own remedy, so each has its own words.
public enum NotListeningReason: Hashable, Sendable {
    /// The directory that should hold the socket does not exist (or a component is not a directory).
    case missingDirectory(String)
    /// The directory exists, the socket file does not.
    case noSuchFile
    /// Something other than a socket is at the path (a regular file, a directory).
    case notASocket(kind: String)
    /// A socket file nobody listens on: left by a daemon that stopped without removing it.
    case staleSocket

    /// Tells the cases apart by looking at the path after `connect()` failed with `ENOENT`,
    /// `ENOTDIR` or `ECONNREFUSED`.
    public static func diagnose(socket path: String) -> NotListeningReason {
        var info = stat()
        if stat(path, &info) == 0 {
            switch info.st_mode & S_IFMT {
            case S_IFSOCK: return .staleSocket
            case S_IFDIR: return .notASocket(kind: "a directory")
            case S_IFREG: return .notASocket(kind: "a regular file")
            default: return .notASocket(kind: "a device or pipe")
            }
        }
        if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK {
            return .notASocket(kind: "a symbolic link to nothing")
        }
        let directory: String
        if let slash = path.lastIndex(of: "/") {
            directory = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            directory = "."
        }
        var directoryInfo = stat()
        if stat(directory, &directoryInfo) != 0 || directoryInfo.st_mode & S_IFMT != S_IFDIR {
            return .missingDirectory(directory)
        }
        return .noSuchFile
    }

    /// The sentence for the person at the terminal.
    public func message(socket: String) -> String {
        switch self {
        case .missingDirectory(let directory):
            "itb-bridged is not running with this socket: the directory \(directory) does not exist (is the path right? "
                + "pass --socket or set ITB_SOCKET; under systemd, `systemctl start itb-bridged` creates /run/itb-bridge)"
        case .noSuchFile:
            "itb-bridged is not running (no socket at \(socket)); start it with `systemctl start itb-bridged`, "
                + "or pass --socket (or set ITB_SOCKET) if it uses another socket"
        case .notASocket(let kind):
            "\(socket) is not a socket but \(kind): that is not itb-bridged's API; pass the daemon's socket with --socket "
                + "(default /run/itb-bridge/api.sock)"
        case .staleSocket:
            "itb-bridged is not running (nothing listens at \(socket): a stale socket left by a daemon that stopped); "
                + "start it with `systemctl start itb-bridged`"
        }
    }
}
