// (6) Side by side with gpsd (issue 12): gpsd (Debian's package) on one pty and itb-bridged on
// another, in the same run, fed by the same loop at the same rate. Per tick the loop writes one
// NMEA record set (GPRMC + GPGGA with a time of their own, so every tick is a new fix) to gpsd's
// pty and one PUMP_STATUS frame (an alarm mask of its own, so every tick is a new status event) to
// itb-bridged's pty, stamping each write; a reader thread per daemon stamps the arrival of the
// matching TPV line (gpsd's JSON on TCP, after `?WATCH={"enable":true,"json":true}`) or SSE
// `status` event (ITBClient on the Unix socket). Which pty is written first alternates by tick.
// Both daemons are warmed up at each rate before it is measured (gpsd needs some sentences to lock
// on to NMEA; itb-bridged has identified its programmer before).
import Foundation
import ITBClient
import ITBProtocol
import ITBSerial
import ITBSimulator
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What the gpsd comparison runs: each rate with its number of measured ticks.
struct GpsdOptions {
    /// Tick rates, per second.
    var rates: [Double] = [10, 100]
    /// Measured ticks at each rate (one count per rate, or one for all).
    var ticks: [Int] = [600, 3000]
    /// The gpsd executable; nil: /usr/sbin/gpsd, else gpsd on PATH.
    var gpsd: String?
}

/// Runs the comparison at each rate and prints, per rate, both distributions, the ratios
/// itb-bridged / gpsd of p50 and p99, and the lost counts.
func runGpsdComparison(_ context: BenchContext, _ options: GpsdOptions) throws {
    let executable = try GpsdUnderTest.locate(options.gpsd)
    let version = (try? runCapturing(executable, ["-V"]))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
    let gpsd = try GpsdUnderTest(executable: executable, directory: context.work + "/gpsd")
    defer { gpsd.stop() }
    let (programmer, daemon) = try startIdentifiedDaemon(context, serial: "PGM-GPSD", name: "gpsd-side")
    defer { daemon.stop() }
    Report.line("gpsd: \(version) (\(executable)) on \(gpsd.pty.slavePath), JSON on 127.0.0.1:\(gpsd.port); itb-bridged on \(programmer.pty.slavePath)")

    let warmUps = options.rates.map { max(30, Int($0)) }
    let measured = options.rates.indices.map { options.ticks[min($0, options.ticks.count - 1)] }
    let capacity = zip(warmUps, measured).reduce(0) { $0 + $1.0 + $1.1 } + 1
    let loop = SideBySideLoop(capacity: capacity, programmer: programmer, gpsd: gpsd, daemon: daemon)
    try loop.startReaders()
    defer { loop.stopReaders() }

    for (index, rate) in options.rates.enumerated() {
        // Warm-up at this rate: gpsd locks on to the sentences, both settle into the rate.
        let warm = try loop.run(ticks: warmUps[index], rate: rate)
        loop.waitForArrivals(warm, timeout: 3)
        let gpsdWarm = loop.received(warm, side: .gpsd), itbWarm = loop.received(warm, side: .itb)
        guard gpsdWarm.suffix(10).allSatisfy({ $0 }) else {
            throw BenchError("gpsd did not report the last 10 of \(warm.count) warm-up ticks at \(fmt(rate, 0)) Hz (\(gpsdWarm.filter { $0 }.count) reported); its log: \(gpsd.logTail())")
        }
        guard itbWarm.suffix(10).allSatisfy({ $0 }) else {
            daemon.checkAlive("the gpsd comparison's warm-up")
            throw BenchError("itb-bridged did not publish the last 10 of \(warm.count) warm-up ticks at \(fmt(rate, 0)) Hz")
        }

        let cpuStart = (itb: cpuTicks(daemon.pid), gpsd: cpuTicks(gpsd.process.processIdentifier), at: monotonicNs())
        let ticks = try loop.run(ticks: measured[index], rate: rate)
        let cpuSeconds = Double(monotonicNs() - cpuStart.at) / 1e9
        loop.waitForArrivals(ticks, timeout: 5)
        let itbCPU = (cpuTicks(daemon.pid) - cpuStart.itb) / clockTicksPerSecond / cpuSeconds * 100
        let gpsdCPU = (cpuTicks(gpsd.process.processIdentifier) - cpuStart.gpsd) / clockTicksPerSecond / cpuSeconds * 100
        daemon.checkAlive("the gpsd comparison")

        let itb = LatencyStats(loop.latencies(ticks, side: .itb), sent: ticks.count)
        let other = LatencyStats(loop.latencies(ticks, side: .gpsd), sent: ticks.count)
        let ratio50 = itb.p50 / other.p50, ratio99 = itb.p99 / other.p99
        let label = "\(fmt(rate, 0)) Hz, \(ticks.count) ticks"
        Report.line("latency_vs_gpsd \(label): itb-bridged pty → SSE   \(itb.text) (CPU \(fmt(itbCPU, 1)) % of a core)")
        Report.line("latency_vs_gpsd \(label): gpsd \(version.split(separator: " ").dropFirst().first ?? "") pty → TCP JSON \(other.text) (CPU \(fmt(gpsdCPU, 1)) % of a core)")
        Report.line("latency_vs_gpsd \(label): ratio itb-bridged / gpsd: p50 \(fmt(ratio50, 2)), p99 \(fmt(ratio99, 2))")
        Report.figure("latency_vs_gpsd_\(fmt(rate, 0))hz", [
            "rate_per_s": fmt(rate, 0), "ticks": ticks.count,
            "itb_received": itb.received, "itb_lost": itb.lost, "itb_p50_ms": fmt(itb.p50), "itb_p90_ms": fmt(itb.p90),
            "itb_p99_ms": fmt(itb.p99), "itb_p99_9_ms": fmt(itb.p999), "itb_min_ms": fmt(itb.min), "itb_max_ms": fmt(itb.max),
            "gpsd_received": other.received, "gpsd_lost": other.lost, "gpsd_p50_ms": fmt(other.p50), "gpsd_p90_ms": fmt(other.p90),
            "gpsd_p99_ms": fmt(other.p99), "gpsd_p99_9_ms": fmt(other.p999), "gpsd_min_ms": fmt(other.min), "gpsd_max_ms": fmt(other.max),
            "ratio_p50": fmt(ratio50, 2), "ratio_p99": fmt(ratio99, 2),
            "itb_cpu_pct": fmt(itbCPU, 1), "gpsd_cpu_pct": fmt(gpsdCPU, 1),
        ])
        if itb.lost > 0 { Report.problem("latency_vs_gpsd \(label): \(itb.lost) status events never reached the subscriber") }
        if other.lost > 0 { Report.note("latency_vs_gpsd \(label): gpsd reported no TPV for \(other.lost) ticks") }
    }
}

/// p50/p90/p99/p99.9/min/max of one side's latencies (ms), and how many ticks were lost.
struct LatencyStats {
    let received: Int
    let lost: Int
    let p50, p90, p99, p999, min, max: Double

    init(_ values: [Double], sent: Int) {
        let sorted = values.sorted()
        received = sorted.count
        lost = sent - sorted.count
        p50 = percentile(sorted, 50)
        p90 = percentile(sorted, 90)
        p99 = percentile(sorted, 99)
        p999 = percentile(sorted, 99.9)
        min = sorted.first ?? .nan
        max = sorted.last ?? .nan
    }

    var text: String {
        "p50 \(fmt(p50)) p90 \(fmt(p90)) p99 \(fmt(p99)) p99.9 \(fmt(p999)) min \(fmt(min)) max \(fmt(max)) ms, \(received) received, \(lost) lost"
    }
}

/// The one writer loop and the two reader threads. Tick `k` (counted over the whole run, warm-ups
/// included) is the NMEA time 01:00:00.000 + k × 10 ms of today (UTC) for gpsd and the alarm mask
/// k + 1 for itb-bridged, so each reader can tell which tick an arrival belongs to.
final class SideBySideLoop {
    enum Side { case itb, gpsd }

    let capacity: Int
    let programmer: ProgrammerEndpoint
    let gpsd: GpsdUnderTest
    let daemon: DaemonUnderTest
    /// Monotonic ns of each write and each first arrival, by tick (0: none). One writer per slot:
    /// the loop writes send times, one reader thread each side's receive times; read after
    /// ``waitForArrivals(_:timeout:)``.
    private let sendItb, sendGpsd, receiveItb, receiveGpsd: UnsafeMutablePointer<UInt64>
    private var nextTick = 0
    private var encoder = FrameEncoder(firstSequence: 2_000_000)
    private let stopping = Atomic<Bool>(false)
    private let readersDone = DispatchSemaphore(value: 0)
    private var readers = 0
    private let dayStartMs: Int64
    private let dateField: String
    private static let baseOfDayMs: Int64 = 3_600_000

    init(capacity: Int, programmer: ProgrammerEndpoint, gpsd: GpsdUnderTest, daemon: DaemonUnderTest) {
        self.capacity = capacity
        self.programmer = programmer
        self.gpsd = gpsd
        self.daemon = daemon
        func buffer() -> UnsafeMutablePointer<UInt64> {
            let p = UnsafeMutablePointer<UInt64>.allocate(capacity: capacity)
            p.initialize(repeating: 0, count: capacity)
            return p
        }
        sendItb = buffer(); sendGpsd = buffer(); receiveItb = buffer(); receiveGpsd = buffer()
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        dayStartMs = now - now % 86_400_000
        var t = time_t(dayStartMs / 1000)
        var parts = tm()
        gmtime_r(&t, &parts)
        dateField = String(format: "%02d%02d%02d", parts.tm_mday, parts.tm_mon + 1, parts.tm_year % 100)
    }

    deinit {
        for p in [sendItb, sendGpsd, receiveItb, receiveGpsd] { p.deallocate() }
    }

    /// Opens the SSE subscription and gpsd's watch, and starts a reader thread for each.
    func startReaders() throws {
        let stream = try daemon.client.events("/v1/events?types=status")
        Thread { [self] in
            defer { stream.close(); readersDone.signal() }
            while !stopping.load(ordering: .relaxed) {
                let event: ServerSentEvent?
                do {
                    event = try stream.next(timeout: .milliseconds(200))
                } catch {
                    if case ClientError.timedOut = error { continue }
                    return
                }
                let now = monotonicNs()
                guard let event else { return }
                if let mask = jsonInt(event.data, "active_alarm_mask"), mask >= 1, mask <= capacity, receiveItb[mask - 1] == 0 {
                    receiveItb[mask - 1] = now
                }
            }
        }.start()
        let fd = try gpsd.watch()
        Thread { [self] in
            defer { close(fd); readersDone.signal() }
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while !stopping.load(ordering: .relaxed) {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                let now = monotonicNs()
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { continue }
                guard n > 0 else { return }
                pending += buffer[0..<n]
                while let newline = pending.firstIndex(of: 10) {
                    let line = String(decoding: pending[..<newline], as: UTF8.self)
                    pending.removeSubrange(...newline)
                    guard line.contains("\"class\":\"TPV\""), let tick = SideBySideLoop.tick(ofTPV: line, dayStartMs: dayStartMs),
                          tick >= 0, tick < capacity, receiveGpsd[tick] == 0 else { continue }
                    receiveGpsd[tick] = now
                }
            }
        }.start()
        readers = 2
    }

    /// Stops the reader threads and waits for them.
    func stopReaders() {
        stopping.store(true, ordering: .relaxed)
        for _ in 0..<readers { readersDone.wait() }
        readers = 0
    }

    /// Writes `count` ticks at `rate` per second; returns their tick numbers.
    func run(ticks count: Int, rate: Double) throws -> Range<Int> {
        precondition(nextTick + count <= capacity, "more ticks than planned")
        let first = nextTick
        let interval = UInt64(1e9 / rate)
        let start = monotonicNs()
        var drain = [UInt8](repeating: 0, count: 4096)
        for k in first..<(first + count) {
            sleepUntil(start + UInt64(k - first) * interval)
            let nmea = sentences(tick: k)
            let frame = encoder.encode(.pumpStatus(PumpStatus(
                deviceTimeMs: Int64(Date().timeIntervalSince1970 * 1000), dailyDoseUgX10: 4000, concentrationUgPerML: 2000,
                activeAlarmMask: UInt32(k + 1), pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: 90)))
            // Stamped just before each write (an arrival can come before the write returns).
            if k % 2 == 0 {
                sendGpsd[k] = monotonicNs(); try gpsd.pty.write(nmea)
                sendItb[k] = monotonicNs(); try programmer.sendRaw(frame)
            } else {
                sendItb[k] = monotonicNs(); try programmer.sendRaw(frame)
                sendGpsd[k] = monotonicNs(); try gpsd.pty.write(nmea)
            }
            if k % 50 == 49 {
                // Take what the daemons wrote back (host heartbeats; gpsd writes nothing with -b).
                try programmer.service(timeout: .zero)
                _ = try? drain.withUnsafeMutableBytes { try gpsd.pty.read(into: $0, timeout: .zero) }
            }
        }
        nextTick = first + count
        return first..<nextTick
    }

    /// Waits until every tick in `ticks` has arrived on both sides, at most `timeout` seconds.
    func waitForArrivals(_ ticks: Range<Int>, timeout: Double) {
        waitFor(timeout: timeout, stepMs: 10) { ticks.allSatisfy { receiveItb[$0] != 0 && receiveGpsd[$0] != 0 } }
    }

    /// Whether each tick arrived on `side`.
    func received(_ ticks: Range<Int>, side: Side) -> [Bool] {
        let receive = side == .itb ? receiveItb : receiveGpsd
        return ticks.map { receive[$0] != 0 }
    }

    /// Arrival − write, ms, of each tick that arrived on `side`.
    func latencies(_ ticks: Range<Int>, side: Side) -> [Double] {
        let (send, receive) = side == .itb ? (sendItb, receiveItb) : (sendGpsd, receiveGpsd)
        return ticks.compactMap { receive[$0] == 0 ? nil : Double(receive[$0] &- send[$0]) / 1e6 }
    }

    /// GPRMC and GPGGA for tick `k`: a valid 3D fix at NMEA time 01:00:00.000 + k × 10 ms.
    func sentences(tick k: Int) -> [UInt8] {
        let ms = Self.baseOfDayMs + Int64(k) * 10
        let time = String(format: "%02ld%02ld%02ld.%03ld", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
        let rmc = Self.nmea("GPRMC,\(time),A,4807.038,N,01131.000,E,022.4,084.4,\(dateField),003.1,W")
        let gga = Self.nmea("GPGGA,\(time),4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
        return Array((rmc + gga).utf8)
    }

    /// `$body*CS\r\n` with NMEA's checksum (xor of the body's bytes).
    static func nmea(_ body: String) -> String {
        let checksum = body.utf8.reduce(UInt8(0), ^)
        return "$" + body + "*" + String(format: "%02X", checksum) + "\r\n"
    }

    /// The tick a TPV line reports, from its `"time":"YYYY-MM-DDTHH:MM:SS.sssZ"`; nil without one.
    static func tick(ofTPV line: String, dayStartMs: Int64) -> Int? {
        guard let range = line.range(of: "\"time\":\"") else { return nil }
        let text = Array(line[range.upperBound...].utf8.prefix(24))
        guard text.count == 24 else { return nil }
        func number(_ from: Int, _ count: Int) -> Int64? {
            var value: Int64 = 0
            for byte in text[from..<(from + count)] {
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int64(byte - 48)
            }
            return value
        }
        guard let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2), let millis = number(20, 3) else { return nil }
        let ofDay = ((hour * 60 + minute) * 60 + second) * 1000 + millis
        let offset = ofDay - baseOfDayMs
        guard offset >= 0, offset % 10 == 0 else { return nil }
        return Int(offset / 10)
    }
}

/// gpsd in the foreground (`-N`) on a pty of its own, reading it at once (`-n`) and never writing
/// to it (`-b`), serving JSON on a free TCP port of 127.0.0.1 (`-S`) with a control socket in the
/// scratch directory (`-F`): a private instance, not the system's service (whose port 2947 and
/// /run/gpsd.sock it does not touch).
final class GpsdUnderTest {
    let pty: PseudoTerminal
    let process = Process()
    let port: UInt16
    let logPath: String

    /// /usr/sbin/gpsd (Debian's), the one given, or gpsd on PATH.
    static func locate(_ given: String?) throws -> String {
        let candidates = given.map { [$0] } ?? ["/usr/sbin/gpsd", "/usr/bin/gpsd"]
            + (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/gpsd" }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw BenchError("gpsd is not installed: apt-get install gpsd (scripts/proof.sh installs it)")
        }
        return found
    }

    init(executable: String, directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        pty = try PseudoTerminal()
        port = try freeLoopbackPort()
        logPath = directory + "/gpsd.log"
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["-N", "-n", "-b", "-S", String(port), "-F", directory + "/gpsd.sock", pty.slavePath]
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: logPath)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        try process.run()
    }

    /// Connects to gpsd's JSON port (retrying while it starts, 10 s at most) and turns on the
    /// JSON watch; returns the socket (reads time out after 200 ms).
    func watch() throws -> Int32 {
        let deadline = monotonicNs() + 10_000_000_000
        while true {
            guard process.isRunning else { throw BenchError("gpsd exited (status \(process.terminationStatus)); its log: \(logTail())") }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            } == 0
            if connected {
                var limit = timeval(tv_sec: 0, tv_usec: 200_000)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
                let command = Array("?WATCH={\"enable\":true,\"json\":true};\n".utf8)
                guard send(fd, command, command.count, Int32(MSG_NOSIGNAL)) == command.count else {
                    close(fd)
                    throw BenchError("gpsd: cannot send ?WATCH")
                }
                return fd
            }
            close(fd)
            guard monotonicNs() < deadline else { throw BenchError("gpsd does not accept connections on 127.0.0.1:\(port); its log: \(logTail())") }
            usleep(20_000)
        }
    }

    func logTail() -> String { DaemonUnderTest.tail(logPath, 10) }

    /// SIGTERM and wait (SIGKILL after 5 s); closes the pty.
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            if !waitFor(timeout: 5, { !process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        pty.close()
    }
}

/// A TCP port of 127.0.0.1 that nothing listens on now (the kernel's pick for port 0).
func freeLoopbackPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard ok else { throw BenchError("no free TCP port on 127.0.0.1") }
    return UInt16(bigEndian: address.sin_port)
}

/// Runs `executable` with `arguments` and returns what it printed (stdout and stderr).
func runCapturing(_ executable: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}
