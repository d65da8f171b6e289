// Many Server-Sent Events subscribers on non-blocking Unix sockets, followed by one or two threads
// with epoll instead of a thread each. Each subscriber sends `GET <path> HTTP/1.1`, and its
// response is parsed incrementally: the head, the chunked transfer coding, then SSE lines (`id:`,
// `event:`, `data:` with `"active_alarm_mask":N`, blank line = dispatch).
import CLiveBench
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

final class SSEClientPool {
    /// One subscriber's connection, parser and results. Touched only by the thread that owns it
    /// while the pool runs; read by the main thread after ``stopAndJoin()``.
    struct Client {
        enum Phase: UInt8 { case waiting, connecting, head, chunkSize, chunkData, chunkDataEnd, identity, finished, closed }
        var fd: Int32 = -1
        var phase: Phase = .waiting
        var notBefore: UInt64 = 0
        var connectAttempts = 0
        var firstAttemptNs: UInt64 = 0
        /// errno of the last failed connect, 0 if none.
        var connectErrno: Int32 = 0
        /// The response's status code, 0 until the head is read.
        var status = 0
        var chunked = false
        var chunkRemaining = 0
        var chunkSize = 0
        var chunkExtension = false
        var head: [UInt8] = []
        /// The start of a non-200 response's body.
        var errorBody: [UInt8] = []
        var line: [UInt8] = []
        // The event being read.
        var eventID: Int64 = -1
        var eventMask: Int64 = -1
        var eventLagged = false
        var eventHasFields = false
        // Results.
        var bytes = 0
        /// Events dispatched (not counting `lagged`).
        var events = 0
        var lastID: Int64 = 0
        /// Events whose id was not above the previous one.
        var idNotIncreasing = 0
        /// Measured events received twice.
        var duplicates = 0
        /// Measured events received (distinct).
        var measured = 0
        /// Received at least one warm-up event.
        var warmed = false
        /// Got the stream's opening lines (`retry:` or a comment).
        var preamble = false
        /// Got `event: lagged`.
        var laggedEvent = false
        /// Why the connection ended before ``stopAndJoin()``: nil while open or closed by the bench.
        var closedEarly: String?
        var closedEarlyNs: UInt64 = 0
    }

    let count: Int
    let threadCount: Int
    /// Monotonic time that receive stamps (µs) count from.
    let baseNs: UInt64
    /// Masks `1...measuredTotal` are the measured events; receive times go to
    /// `receiveUs[client * measuredTotal + mask - 1]` (0 = not received).
    let measuredTotal: Int
    let receiveUs: UnsafeMutablePointer<UInt32>?
    /// Masks from here up are warm-up events.
    let warmBase: Int64

    let clients: UnsafeMutablePointer<Client>
    private let request: [UInt8]
    private var address = sockaddr_un()
    private let pattern: [UInt8] = Array("\"active_alarm_mask\":".utf8)
    private let connectGiveUpNs: UInt64 = 30_000_000_000

    // Progress, read by the main thread while the pool runs.
    let responses200 = Atomic<Int>(0)
    let httpErrors = Atomic<Int>(0)
    let connectFailures = Atomic<Int>(0)
    let warmedCount = Atomic<Int>(0)
    let measuredReceived = Atomic<Int>(0)
    let eventsReceived = Atomic<Int>(0)
    let closedEarlyCount = Atomic<Int>(0)
    let laggedCount = Atomic<Int>(0)
    let lastEventNs = Atomic<UInt64>(0)
    /// Bytes the daemon has written that the bench has not read yet, sampled in every open
    /// subscriber socket once a second (FIONREAD): what the bench's own reading adds to latency.
    struct Backlog {
        var socketSamples = 0
        var sumBytes = 0.0
        var maxOneSocket = 0
        /// Sample rounds in which any socket held more than 64 KiB.
        var roundsOver64KiB = 0
        var rounds = 0
    }
    let backlog = Mutex(Backlog())
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    /// Creates `count` subscribers of `path`; ``start()`` connects them.
    init(socketPath: String, path: String, count: Int, threads: Int, measuredTotal: Int = 0, warmBase: Int64 = .max) {
        self.count = count
        threadCount = max(1, min(threads, count))
        baseNs = monotonicNs()
        self.measuredTotal = measuredTotal
        self.warmBase = warmBase
        if measuredTotal > 0 {
            let slots = count * measuredTotal
            receiveUs = .allocate(capacity: slots)
            receiveUs!.initialize(repeating: 0, count: slots)
        } else {
            receiveUs = nil
        }
        clients = .allocate(capacity: count)
        clients.initialize(repeating: Client(), count: count)
        request = Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\nUser-Agent: itb-live-bench\r\nAccept: text/event-stream\r\n\r\n".utf8)
        address = unixAddress(socketPath)
    }

    deinit {
        clients.deinitialize(count: count)
        clients.deallocate()
        receiveUs?.deallocate()
    }

    /// Starts the threads; each connects its share of the subscribers (client i belongs to thread
    /// i % threads), a few at a time, retrying while the daemon's listen backlog is full.
    func start() {
        for t in 0..<threadCount {
            let thread = Thread { [self] in run(thread: t) }
            thread.name = "sse-pool-\(t)"
            thread.start()
        }
    }

    /// Stops the threads, which close every connection, and waits for them.
    func stopAndJoin() {
        stopping.store(true, ordering: .relaxed)
        for _ in 0..<threadCount { finished.wait() }
    }

    // MARK: - The loop

    private func run(thread t: Int) {
        let ep = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(ep >= 0, "epoll_create1: errno \(errno)")
        let maxEvents: Int32 = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: Int(maxEvents))
        let bufferSize = 64 << 10
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 16)
        defer {
            events.deallocate()
            buffer.deallocate()
            close(ep)
            finished.signal()
        }
        var toConnect = Array(stride(from: t, to: count, by: threadCount))
        var nextSample = monotonicNs() + 1_000_000_000
        while !stopping.load(ordering: .relaxed) {
            if monotonicNs() >= nextSample {
                sampleBacklog(thread: t)
                nextSample += 1_000_000_000
            }
            // Connect a few at a time, so replies flow while the rest are connecting.
            if !toConnect.isEmpty {
                let now = monotonicNs()
                var budget = 16
                var retry: [Int] = []
                while budget > 0, let c = toConnect.first {
                    toConnect.removeFirst()
                    if clients[c].notBefore > now { retry.append(c); continue }
                    budget -= 1
                    if !connect(c, ep, now: now) { retry.append(c) }
                }
                toConnect = retry + toConnect
            }
            let n = epoll_wait(ep, events, maxEvents, toConnect.isEmpty ? 50 : 2)
            if n < 0 { continue }  // EINTR
            for k in 0..<Int(n) {
                let c = Int(events[k].data.u64)
                if clients[c].phase == .connecting {
                    connected(c, ep)
                } else {
                    readable(c, ep, buffer, bufferSize)
                }
            }
        }
        for c in stride(from: t, to: count, by: threadCount) where clients[c].fd >= 0 {
            close(clients[c].fd)
            clients[c].fd = -1
        }
    }

    private func sampleBacklog(thread t: Int) {
        var round = Backlog()
        for c in stride(from: t, to: count, by: threadCount) where clients[c].fd >= 0 && clients[c].status == 200 {
            let pending = Int(clb_pending_bytes(clients[c].fd))
            guard pending >= 0 else { continue }
            round.socketSamples += 1
            round.sumBytes += Double(pending)
            round.maxOneSocket = max(round.maxOneSocket, pending)
        }
        backlog.withLock { total in
            total.socketSamples += round.socketSamples
            total.sumBytes += round.sumBytes
            total.maxOneSocket = max(total.maxOneSocket, round.maxOneSocket)
            total.rounds += 1
            if round.maxOneSocket > 64 << 10 { total.roundsOver64KiB += 1 }
        }
    }

    /// One connect attempt; false to try again later.
    private func connect(_ c: Int, _ ep: Int32, now: UInt64) -> Bool {
        if clients[c].firstAttemptNs == 0 { clients[c].firstAttemptNs = now }
        clients[c].connectAttempts += 1
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return connectFailed(c, errno, now: now, retryable: false) }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 {
            let code = errno
            if code == EINPROGRESS {
                clients[c].fd = fd
                clients[c].phase = .connecting
                watch(c, ep, EPOLLOUT.rawValue)
                return true
            }
            close(fd)
            // A full listen backlog answers EAGAIN on a non-blocking Unix socket.
            return connectFailed(c, code, now: now, retryable: code == EAGAIN || code == ECONNREFUSED || code == EINTR)
        }
        clients[c].fd = fd
        watch(c, ep, EPOLLIN.rawValue)
        sendRequest(c, ep)
        return true
    }

    private func connectFailed(_ c: Int, _ code: Int32, now: UInt64, retryable: Bool) -> Bool {
        clients[c].connectErrno = code
        if retryable, now - clients[c].firstAttemptNs < connectGiveUpNs {
            clients[c].notBefore = now + 2_000_000
            return false
        }
        clients[c].phase = .closed
        clients[c].closedEarly = "connect failed: \(String(cString: strerror(code))) after \(clients[c].connectAttempts) attempts"
        connectFailures.add(1, ordering: .relaxed)
        return true
    }

    private func watch(_ c: Int, _ ep: Int32, _ mask: UInt32) {
        var event = epoll_event()
        event.events = mask
        event.data.u64 = UInt64(c)
        epoll_ctl(ep, EPOLL_CTL_ADD, clients[c].fd, &event)
    }

    /// A connect that was in progress finished.
    private func connected(_ c: Int, _ ep: Int32) {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(clients[c].fd, SOL_SOCKET, SO_ERROR, &error, &length)
        if error != 0 {
            finish(c, ep, reason: "connect failed: \(String(cString: strerror(error)))")
            connectFailures.add(1, ordering: .relaxed)
            return
        }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = UInt64(c)
        epoll_ctl(ep, EPOLL_CTL_MOD, clients[c].fd, &event)
        sendRequest(c, ep)
    }

    private func sendRequest(_ c: Int, _ ep: Int32) {
        clients[c].phase = .head
        let n = request.withUnsafeBytes { write(clients[c].fd, $0.baseAddress, $0.count) }
        if n != request.count {
            finish(c, ep, reason: "request not sent: \(n < 0 ? String(cString: strerror(errno)) : "\(n) of \(request.count) bytes")")
        }
    }

    private func readable(_ c: Int, _ ep: Int32, _ buffer: UnsafeMutableRawPointer, _ size: Int) {
        guard clients[c].fd >= 0 else { return }
        let n = read(clients[c].fd, buffer, size)
        if n > 0 {
            clients[c].bytes += n
            parse(c, UnsafeRawBufferPointer(start: buffer, count: n), now: monotonicNs())
            if clients[c].phase == .finished { finish(c, ep, reason: "the response ended (last chunk)") }
        } else if n == 0 {
            finish(c, ep, reason: "the daemon closed the connection")
        } else if errno != EAGAIN && errno != EINTR {
            finish(c, ep, reason: "read: \(String(cString: strerror(errno)))")
        }
    }

    /// Closes a connection the daemon ended (or that failed) while the pool runs.
    private func finish(_ c: Int, _ ep: Int32, reason: String) {
        if clients[c].fd >= 0 {
            epoll_ctl(ep, EPOLL_CTL_DEL, clients[c].fd, nil)
            close(clients[c].fd)
            clients[c].fd = -1
        }
        clients[c].phase = .closed
        if !stopping.load(ordering: .relaxed), clients[c].closedEarly == nil {
            clients[c].closedEarly = clients[c].laggedEvent ? "lagged, then: " + reason : reason
            clients[c].closedEarlyNs = monotonicNs()
            closedEarlyCount.add(1, ordering: .relaxed)
        }
    }

    // MARK: - HTTP/1.1 response and chunked transfer coding

    private func parse(_ c: Int, _ input: UnsafeRawBufferPointer, now: UInt64) {
        var i = 0
        let n = input.count
        while i < n {
            switch clients[c].phase {
            case .head:
                // The head is small and comes once: collect it, then parse it as text.
                let start = clients[c].head.count
                clients[c].head.append(contentsOf: input[i..<n])
                guard let end = headEnd(clients[c].head) else { return }
                let headText = String(decoding: clients[c].head[0..<end], as: UTF8.self)
                i += end + 4 - start
                clients[c].head = []
                let statusLine = headText.prefix { $0 != "\r" }.split(separator: " ")
                clients[c].status = statusLine.count >= 2 ? Int(statusLine[1]) ?? -1 : -1
                clients[c].chunked = headText.lowercased().contains("transfer-encoding: chunked")
                clients[c].phase = clients[c].chunked ? .chunkSize : .identity
                if clients[c].status == 200 {
                    responses200.add(1, ordering: .relaxed)
                } else {
                    httpErrors.add(1, ordering: .relaxed)
                }
            case .chunkSize:
                let b = input[i]
                i += 1
                if b == UInt8(ascii: "\n") {
                    if clients[c].chunkSize == 0 {
                        clients[c].phase = .finished
                        return
                    }
                    clients[c].chunkRemaining = clients[c].chunkSize
                    clients[c].chunkSize = 0
                    clients[c].chunkExtension = false
                    clients[c].phase = .chunkData
                } else if b == UInt8(ascii: ";") {
                    clients[c].chunkExtension = true
                } else if !clients[c].chunkExtension, let v = hexValue(b) {
                    clients[c].chunkSize = clients[c].chunkSize &* 16 &+ v
                }
            case .chunkData:
                let take = min(clients[c].chunkRemaining, n - i)
                body(c, UnsafeRawBufferPointer(rebasing: input[i..<(i + take)]), now: now)
                i += take
                clients[c].chunkRemaining -= take
                if clients[c].chunkRemaining == 0 { clients[c].phase = .chunkDataEnd }
            case .chunkDataEnd:
                if input[i] == UInt8(ascii: "\n") { clients[c].phase = .chunkSize }
                i += 1
            case .identity:
                body(c, UnsafeRawBufferPointer(rebasing: input[i..<n]), now: now)
                return
            case .waiting, .connecting, .finished, .closed:
                return
            }
        }
    }

    private func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for k in 0...(bytes.count - 4) where bytes[k] == 13 && bytes[k + 1] == 10 && bytes[k + 2] == 13 && bytes[k + 3] == 10 {
            return k
        }
        return nil
    }

    private func hexValue(_ b: UInt8) -> Int? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(b - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(b - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(b - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }

    // MARK: - Server-Sent Events

    /// De-chunked body bytes: an SSE stream, or an error response's body.
    private func body(_ c: Int, _ bytes: UnsafeRawBufferPointer, now: UInt64) {
        guard !bytes.isEmpty else { return }
        if clients[c].status != 200 {
            if clients[c].errorBody.count < 512 { clients[c].errorBody.append(contentsOf: bytes.prefix(512 - clients[c].errorBody.count)) }
            return
        }
        let base = bytes.baseAddress!
        var j = 0
        while j < bytes.count {
            guard let newline = memchr(base + j, 10, bytes.count - j) else {
                clients[c].line.append(contentsOf: UnsafeRawBufferPointer(start: base + j, count: bytes.count - j))
                return
            }
            let end = base.distance(to: UnsafeRawPointer(newline))
            if clients[c].line.isEmpty {
                line(c, UnsafeRawBufferPointer(start: base + j, count: end - j), now: now)
            } else {
                clients[c].line.append(contentsOf: UnsafeRawBufferPointer(start: base + j, count: end - j))
                let whole = clients[c].line
                whole.withUnsafeBytes { line(c, $0, now: now) }
                clients[c].line.removeAll(keepingCapacity: true)
            }
            j = end + 1
        }
    }

    private func line(_ c: Int, _ raw: UnsafeRawBufferPointer, now: UInt64) {
        var length = raw.count
        if length > 0, raw[length - 1] == 13 { length -= 1 }
        if length == 0 {
            dispatch(c, now: now)
            return
        }
        let text = UnsafeRawBufferPointer(rebasing: raw[0..<length])
        switch text[0] {
        case UInt8(ascii: "d") where startsWith(text, "data:"):
            clients[c].eventHasFields = true
            if let mask = findNumber(after: pattern, in: text) { clients[c].eventMask = mask }
        case UInt8(ascii: "i") where startsWith(text, "id:"):
            clients[c].eventHasFields = true
            clients[c].eventID = number(text, from: 3) ?? -1
        case UInt8(ascii: "e") where startsWith(text, "event:"):
            clients[c].eventHasFields = true
            if startsWith(text, "event: lagged") || startsWith(text, "event:lagged") { clients[c].eventLagged = true }
        default:
            clients[c].preamble = true  // comments (`: keep-alive`), `retry:`
        }
    }

    private func dispatch(_ c: Int, now: UInt64) {
        guard clients[c].eventHasFields else { return }
        defer {
            clients[c].eventHasFields = false
            clients[c].eventID = -1
            clients[c].eventMask = -1
            clients[c].eventLagged = false
        }
        if clients[c].eventLagged {
            clients[c].laggedEvent = true
            laggedCount.add(1, ordering: .relaxed)
            return
        }
        clients[c].events += 1
        eventsReceived.add(1, ordering: .relaxed)
        lastEventNs.store(now, ordering: .relaxed)
        let id = clients[c].eventID
        if id >= 0 {
            if id <= clients[c].lastID { clients[c].idNotIncreasing += 1 }
            clients[c].lastID = id
        }
        let mask = clients[c].eventMask
        if mask >= warmBase {
            if !clients[c].warmed {
                clients[c].warmed = true
                warmedCount.add(1, ordering: .relaxed)
            }
        } else if mask >= 1, mask <= Int64(measuredTotal), let receiveUs {
            let slot = c * measuredTotal + Int(mask) - 1
            if receiveUs[slot] == 0 {
                receiveUs[slot] = UInt32(clamping: max(1, (now - baseNs) / 1000))
                clients[c].measured += 1
                measuredReceived.add(1, ordering: .relaxed)
            } else {
                clients[c].duplicates += 1
            }
        }
    }

    private func startsWith(_ text: UnsafeRawBufferPointer, _ prefix: StaticString) -> Bool {
        let count = prefix.utf8CodeUnitCount
        guard text.count >= count else { return false }
        return memcmp(text.baseAddress!, prefix.utf8Start, count) == 0
    }

    /// The whole number after a leading space in `text[from...]`.
    private func number(_ text: UnsafeRawBufferPointer, from: Int) -> Int64? {
        var k = from
        while k < text.count, text[k] == 32 { k += 1 }
        var value: Int64 = 0
        var digits = 0
        while k < text.count, text[k] >= 48, text[k] <= 57 {
            value = value &* 10 &+ Int64(text[k] - 48)
            k += 1
            digits += 1
        }
        return digits > 0 ? value : nil
    }

    /// The number that follows the first occurrence of `key` in `text`.
    private func findNumber(after key: [UInt8], in text: UnsafeRawBufferPointer) -> Int64? {
        let base = text.baseAddress!
        let n = text.count
        return key.withUnsafeBytes { k -> Int64? in
            var j = 0
            while j + k.count <= n {
                guard let quote = memchr(base + j, Int32(k[0]), n - j) else { return nil }
                let at = base.distance(to: UnsafeRawPointer(quote))
                if at + k.count <= n, memcmp(base + at, k.baseAddress!, k.count) == 0 {
                    return number(text, from: at + k.count)
                }
                j = at + 1
            }
            return nil
        }
    }
}
