#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One connected Unix stream socket with poll-bounded reads and writes.
///
/// `Sendable` for real: every stored property is immutable, and each call is one system call on
/// the descriptor (`send`, `poll`, `recv`), which the kernel serialises. Bytes of two calls made
/// at once could interleave on the stream, so a request and its response are read by one caller
/// (``UnixHTTPClient`` makes one connection per request; an ``EventStreamReader`` owns its own).
final class Connection: Sendable {
    let fd: Int32
    let socketPath: String
    let timeout: Duration

    init(socketPath: String, timeout: Duration) throws(ClientError) {
        self.socketPath = socketPath
        self.timeout = timeout
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system(call: "socket", errno: errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(socketPath.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            Glibc.close(fd)
            throw .protocolError("socket path too long: \(socketPath)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if result != 0 {
            let code = errno
            Glibc.close(fd)
            switch code {
            case ENOENT, ENOTDIR, ECONNREFUSED: throw .daemonNotRunning(socket: socketPath, reason: .diagnose(socket: socketPath))
            case EACCES, EPERM: throw .permissionDenied(socket: socketPath)
            default: throw .system(call: "connect", errno: code)
            }
        }
    }

    func close() { Glibc.close(fd) }

    var timeoutMs: Int32 {
        Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
    }

    func send(_ bytes: [UInt8]) throws(ClientError) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                sent += n
            } else if errno != EINTR {
                throw .protocolError("the connection closed while sending (\(String(cString: strerror(errno))))")
            }
        }
    }

    /// Reads what is available, waiting up to `waitMs` (-1: the configured timeout). 0 at end
    /// of stream; nil on timeout.
    func receive(into buffer: inout [UInt8], waitMs: Int32 = -1) throws(ClientError) -> Int? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&p, 1, waitMs < 0 ? timeoutMs : waitMs)
        if ready == 0 { return nil }
        if ready < 0 {
            if errno == EINTR { return nil }
            throw .system(call: "poll", errno: errno)
        }
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 {
            if errno == EINTR || errno == EAGAIN { return nil }
            throw .protocolError("the connection broke (\(String(cString: strerror(errno))))")
        }
        return n
    }
}

/// Parses an HTTP/1.1 response from a connection: head, then a body by length, by chunks, or to
/// the end of the stream.
///
/// `Sendable` for real: a value (its buffers are copied with it) over a `Sendable` ``Connection``.
struct ResponseReader: Sendable {
    struct Head: Sendable {
        var status: Int
        var headers: [(String, String)]
        var chunked: Bool { headers.contains { $0.0.lowercased() == "transfer-encoding" && $0.1.lowercased().contains("chunked") } }
        var contentLength: Int? { headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } }
    }

    let connection: Connection
    var buffer: [UInt8] = []
    var scratch = [UInt8](repeating: 0, count: 16 << 10)
    var ended = false

    init(connection: Connection) { self.connection = connection }

    /// Reads more bytes into `buffer`; false at end of stream; nil on timeout.
    mutating func fill(waitMs: Int32 = -1) throws(ClientError) -> Bool? {
        if ended { return false }
        guard let n = try connection.receive(into: &scratch, waitMs: waitMs) else { return nil }
        if n == 0 {
            ended = true
            return false
        }
        buffer += scratch[0..<n]
        return true
    }

    mutating func readHead() throws(ClientError) -> Head {
        while true {
            if let end = Self.find([13, 10, 13, 10], in: buffer) {
                let text = String(decoding: buffer[0..<end], as: UTF8.self)
                buffer.removeFirst(end + 4)
                var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
                let statusLine = lines.removeFirst().split(separator: " ")
                guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else {
                    throw .protocolError("not an HTTP response: \(text.prefix(80))")
                }
                let headers = lines.compactMap { line -> (String, String)? in
                    guard let colon = line.firstIndex(of: ":") else { return nil }
                    return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters())
                }
                return Head(status: status, headers: headers)
            }
            guard let more = try fill() else { throw .timedOut(socket: connection.socketPath) }
            if !more { throw .protocolError("the connection closed before a response") }
        }
    }

    mutating func readBody(_ head: Head) throws(ClientError) -> [UInt8] {
        if head.chunked {
            var body: [UInt8] = []
            while let chunk = try readChunk() { body += chunk }
            return body
        }
        if let length = head.contentLength {
            while buffer.count < length {
                guard let more = try fill() else { throw .timedOut(socket: connection.socketPath) }
                if !more { throw .protocolError("the body ended after \(buffer.count) of \(length) bytes") }
            }
            return Array(buffer.prefix(length))
        }
        while true {
            guard let more = try fill() else { throw .timedOut(socket: connection.socketPath) }
            if !more { return buffer }
        }
    }

    /// The next chunk of a chunked body; nil after the last (zero-length) chunk.
    mutating func readChunk(waitMs: Int32 = -1) throws(ClientError) -> [UInt8]? {
        while true {
            if let lineEnd = Self.find([13, 10], in: buffer) {
                let sizeText = String(decoding: buffer[0..<lineEnd], as: UTF8.self).split(separator: ";").first.map(String.init) ?? ""
                guard let size = Int(sizeText.trimmingCharacters(), radix: 16) else {
                    throw .protocolError("bad chunk size `\(sizeText)`")
                }
                if buffer.count >= lineEnd + 2 + size + 2 {
                    let chunk = Array(buffer[(lineEnd + 2)..<(lineEnd + 2 + size)])
                    buffer.removeFirst(lineEnd + 2 + size + 2)
                    return size == 0 ? nil : chunk
                }
            }
            guard let more = try fill(waitMs: waitMs) else { throw .timedOut(socket: connection.socketPath) }
            if !more { throw .protocolError("the connection closed inside a chunked body") }
        }
    }

    /// The offset of the first `needle` in `haystack`. Compares in place, without a copy per
    /// candidate: an event stream replaying a journal calls it once per event on a buffer of many.
    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        let count = needle.count
        guard count > 0, haystack.count >= count else { return nil }
        return haystack.withUnsafeBufferPointer { h in
            needle.withUnsafeBufferPointer { n in
                let first = n[0]
                var i = 0
                while i <= h.count - count {
                    if h[i] == first {
                        var j = 1
                        while j < count && h[i + j] == n[j] { j += 1 }
                        if j == count { return i }
                    }
                    i += 1
                }
                return nil
            }
        }
    }
}

extension Substring {
    func trimmingCharacters() -> String {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

extension String {
    func trimmingCharacters() -> String { Substring(self).trimmingCharacters() }
}
