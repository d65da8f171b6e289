import Foundation
import ITBClient
import ITBProtocol
import ITBSimulator
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// What the API, disk and permission fault tests share: raw client connections that do what a
// well-behaved client never does, and the daemon process's descriptor count. (The programmer
// driven by a thread of its own, ProgrammerDriver, is in ITBBridgeTestSupport.)

/// One client connection to a Unix stream socket, by hand: for what ``UnixHTTPClient`` never does
/// (partial requests, silence, half-close, dropping a connection mid-response).
struct RawConnection: Sendable {
    let fd: Int32

    /// Why a connect failed.
    struct ConnectError: Error, CustomStringConvertible {
        let code: Int32
        var description: String { "connect: \(String(cString: strerror(code))) (errno \(code))" }
    }

    /// Connects to the socket at `path`.
    init(path: String) throws(ConnectError) {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ConnectError(code: errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        precondition(bytes.count < MemoryLayout.size(ofValue: address.sun_path), "socket path too long: \(path)")
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if result != 0 {
            let code = errno
            Glibc.close(fd)
            throw ConnectError(code: code)
        }
        // A peer that stops reading must not block a sender for ever.
        var limit = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends all of `bytes`; false when the peer closed first (no SIGPIPE).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                sent += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return false
            }
        }
        return true
    }

    /// `send` of text.
    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// Half-closes: no more bytes from this side.
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    func close() { Glibc.close(fd) }

    /// The status code of the response's status line; nil when the connection closed (or
    /// `timeout` passed) without one. `line` is what came instead, for messages.
    func readStatus(timeout: Duration) -> (status: Int?, line: String) {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = ContinuousClock.now + timeout
        while !received.contains(10), received.count < 8192 {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { break }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ms = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            let ready = poll(&entry, 1, ms)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { break }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            received += buffer[0..<n]
        }
        let line = String(decoding: received.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let parts = line.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else { return (nil, line) }
        return (status, line)
    }

    /// True when the peer has closed its side: a read would give end of stream (or an error)
    /// at once. Unread response bytes are skipped (drained) to find out.
    func peerClosed() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { continue }
            if n == 0 { return true }
            return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
        }
    }
}

/// The number of open descriptors of process `pid` (its `/proc/PID/fd` entries).
func descriptorCount(of pid: pid_t) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
}

/// The soft `RLIMIT_NOFILE` of process `pid`, from `/proc/PID/limits` ("unlimited" as Int.max).
func openFilesSoftLimit(of pid: pid_t) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Max open files") }) else { return nil }
    let fields = line.dropFirst("Max open files".count).split(separator: " ")
    guard let soft = fields.first else { return nil }
    return soft == "unlimited" ? Int.max : Int(soft)
}

/// The `q` quantile (0…1) of `values` by nearest rank; 0 for none.
func quantile(_ values: [Double], _ q: Double) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let rank = Int((q * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

/// Milliseconds of a duration, as a Double.
func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
}

/// `value` with one decimal, for figure lines.
func oneDecimal(_ value: Double) -> String { String(format: "%.1f", value) }

/// A value shared between a test and its helper threads.
final class Locked<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    init(_ value: Value) { storage = Mutex(value) }
    var value: Value { storage.withLock { $0 } }
    @discardableResult
    func withLock<T: Sendable>(_ body: (inout Value) -> T) -> T { storage.withLock { body(&$0) } }
}

/// Runs `body`, then `cleanup` whether `body` threw or not (an async `defer`).
func withCleanup<T>(_ body: () async throws -> T, cleanup: () async -> Void) async throws -> T {
    do {
        let result = try await body()
        await cleanup()
        return result
    } catch {
        await cleanup()
        throw error
    }
}

/// Starts `body` on a thread of its own and returns a task that waits for it.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) -> Task<T, any Error> {
    Task { try await blocking(body) }
}
