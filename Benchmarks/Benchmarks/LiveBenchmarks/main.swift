// Live benchmarks of the running daemon (issue: proof under load). A plain executable, not an
// ordo-one benchmark: it drives a real itb-bridged process through a real pty and reads its real
// Unix socket, and prints the figures for BENCHMARKS.md.
//
//   swift build -c release --product itb-bridged
//   swift run -c release --package-path Benchmarks itb-live-bench --daemon .build/release/itb-bridged
//
// Measured here: (1) latency from the last byte of a frame written to the pty master to the
// matching SSE event read by a subscriber; (4) idle footprint; (5) start-up time to READY=1.
import Foundation
import ITBClient
import ITBProtocol
import ITBSerial
import ITBSimulator
#if canImport(Glibc)
import Glibc
#endif

func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let index = min(sorted.count - 1, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1)
    return sorted[max(0, index)]
}

func fmt(_ value: Double, _ digits: Int = 3) -> String { String(format: "%.\(digits)f", value) }

/// /proc/PID/status fields.
func procStatus(_ pid: Int32) -> [String: String] {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return [:] }
    var out: [String: String] = [:]
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 1)
        if parts.count == 2 { out[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
    }
    return out
}

/// utime + stime of a process, in clock ticks.
func cpuTicks(_ pid: Int32) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = text.lastIndex(of: ")") else { return 0 }
    let fields = text[text.index(after: close)...].split(separator: " ")
    return (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
}

struct Options {
    var daemon = ".build/release/itb-bridged"
    var latencyFrames = 10_000
    var rate = 100.0
    var idleSeconds = 10.0
    var startups = 10
}

var options = Options()
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--daemon": options.daemon = arguments.popFirst() ?? options.daemon
    case "--frames": options.latencyFrames = Int(arguments.popFirst() ?? "") ?? options.latencyFrames
    case "--idle-seconds": options.idleSeconds = Double(arguments.popFirst() ?? "") ?? options.idleSeconds
    case "--startups": options.startups = Int(arguments.popFirst() ?? "") ?? options.startups
    default:
        FileHandle.standardError.write(Data("usage: itb-live-bench [--daemon PATH] [--frames N] [--idle-seconds S] [--startups N]\n".utf8))
        exit(2)
    }
}

let work = FileManager.default.temporaryDirectory.appendingPathComponent("itb-live-\(getpid())").path
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: work) }

/// Starts the daemon with a notify socket; returns the process and the exec → READY=1 time.
func startDaemon(device: String?, name: String) throws -> (Process, Double) {
    let directory = work + "/" + name
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let notifyPath = directory + "/notify"
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        let bytes = Array(notifyPath.utf8)
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    defer { close(fd) }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: options.daemon)
    var args = ["--no-discovery", "--socket", directory + "/api.sock", "--state-dir", directory + "/state", "--log-level", "warning"]
    if let device { args += ["--device", device] }
    process.arguments = args
    var environment = ProcessInfo.processInfo.environment
    environment["NOTIFY_SOCKET"] = notifyPath
    process.environment = environment
    process.standardError = FileHandle(forWritingAtPath: "/dev/null")
    let started = monotonicNs()
    try process.run()
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 10_000) > 0 else { throw NSError(domain: "itb-live-bench", code: 1, userInfo: [NSLocalizedDescriptionKey: "no READY=1 within 10 s"]) }
        let n = recv(fd, &buffer, buffer.count, 0)
        if n > 0, String(decoding: buffer[0..<n], as: UTF8.self).contains("READY=1") { break }
    }
    return (process, Double(monotonicNs() - started) / 1e6)
}

func stop(_ process: Process) {
    kill(process.processIdentifier, SIGTERM)
    process.waitUntilExit()
}

print("# itb-live-bench on \(ProcessInfo.processInfo.processorCount) CPUs, \(Date())")

// (5) Start-up to READY=1.
var startups: [Double] = []
for i in 0..<options.startups {
    let (process, ms) = try startDaemon(device: nil, name: "startup\(i)")
    startups.append(ms)
    stop(process)
}
startups.sort()
print("startup_to_ready_ms: n=\(startups.count) p50=\(fmt(percentile(startups, 50), 1)) max=\(fmt(startups.last ?? .nan, 1))")

// (1) Latency and (4) idle footprint with one connected programmer.
let programmer = try ProgrammerEndpoint(info: ProgrammerInfo(bootID: 9, firmwareVersion: 0x020401, protocolMinor: 0,
                                                             programmerSerial: "PGM-BENCH", hardwareModel: "ITB-CP 8840"))
let (daemon, _) = try startDaemon(device: programmer.pty.slavePath, name: "live")
defer { stop(daemon) }
let client = UnixHTTPClient(socketPath: work + "/live/api.sock")
// Identify the programmer.
let identifyDeadline = ContinuousClock.now + .seconds(10)
while ContinuousClock.now < identifyDeadline {
    try programmer.service(timeout: .milliseconds(20))
    if let r = try? client.get("/v1/devices/PGM-BENCH"), r.status == 200 { break }
}

// Latency: each frame is a PUMP_STATUS whose alarm mask carries its index, so each one changes
// the status and becomes one `status` event; the subscriber matches events to send times.
let stream = try client.events("/v1/events?types=status")
let sendTimes = UnsafeMutablePointer<UInt64>.allocate(capacity: options.latencyFrames)
sendTimes.initialize(repeating: 0, count: options.latencyFrames)
let receiveTimes = UnsafeMutablePointer<UInt64>.allocate(capacity: options.latencyFrames)
receiveTimes.initialize(repeating: 0, count: options.latencyFrames)
let total = options.latencyFrames
let readerDone = DispatchSemaphore(value: 0)
Thread {
    var seen = 0
    while seen < total, let event = try? stream.next(timeout: .seconds(15)) {
        let now = monotonicNs()
        guard let range = event.data.range(of: "\"active_alarm_mask\":") else { continue }
        let digits = event.data[range.upperBound...].prefix { $0.isNumber }
        if let index = Int(digits), index >= 1, index <= total {
            receiveTimes[index - 1] = now
            seen += 1
        }
    }
    readerDone.signal()
}.start()
var encoder = FrameEncoder(firstSequence: 1_000_000)
let interval = UInt64(1e9 / options.rate)
let firstSend = monotonicNs()
for i in 1...total {
    let due = firstSend + UInt64(i) * interval
    while monotonicNs() < due { usleep(100) }
    let frame = encoder.encode(.pumpStatus(PumpStatus(deviceTimeMs: Int64(Date().timeIntervalSince1970 * 1000), dailyDoseUgX10: 4000,
                                                      concentrationUgPerML: 2000, activeAlarmMask: UInt32(i), pumpState: .infusing,
                                                      dosingMode: .simpleContinuous, linkQualityPct: 90)))
    // Stamped just before the write: the event can reach the subscriber before the write call
    // even returns. The figure therefore also includes the write itself (conservative).
    sendTimes[i - 1] = monotonicNs()
    try programmer.sendRaw(frame)
    if i % 50 == 0 { try programmer.service(timeout: .zero) }
}
_ = readerDone.wait(timeout: .now() + 20)
var latencies: [Double] = []
var lost = 0
for i in 0..<total {
    if receiveTimes[i] == 0 { lost += 1 } else { latencies.append(Double(receiveTimes[i] &- sendTimes[i]) / 1e6) }
}
latencies.sort()
print("latency_ms: frames=\(total) rate=\(options.rate)/s received=\(latencies.count) lost=\(lost) p50=\(fmt(percentile(latencies, 50))) p99=\(fmt(percentile(latencies, 99))) p99.9=\(fmt(percentile(latencies, 99.9))) max=\(fmt(latencies.last ?? .nan))")
stream.close()

// Idle footprint: 1 Hz telemetry (status, reservoir, heartbeat), measured over idleSeconds.
let pid = daemon.processIdentifier
/// Context switches of every thread of the daemon (/proc/PID/status counts only the main one).
func switches() -> Double {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    var total = 0.0
    for task in tasks {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8) else { continue }
        for line in text.split(separator: "\n") where line.hasPrefix("voluntary_ctxt_switches") || line.hasPrefix("nonvoluntary_ctxt_switches") {
            total += Double(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
        }
    }
    return total
}
// Settle first.
for _ in 0..<3 { try programmer.heartbeat(uptimeS: 1); try programmer.service(timeout: .seconds(1)) }
let ticks0 = cpuTicks(pid)
let switches0 = switches()
let idleStart = monotonicNs()
var second = 0
while Double(monotonicNs() - idleStart) / 1e9 < options.idleSeconds {
    let now = Int64(Date().timeIntervalSince1970 * 1000)
    try programmer.send(.pumpStatus(PumpStatus(deviceTimeMs: now, dailyDoseUgX10: 4000, concentrationUgPerML: 2000, activeAlarmMask: 0,
                                               pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: 90)))
    try programmer.send(.reservoir(Reservoir(deviceTimeMs: now, lastRefillTimeMs: now - 86_400_000, volumeULX10: 300_000, capacityUL: 40_000,
                                             lowReservoirThresholdUL: 2000, deliveredSinceRefillULX10: 0, volumeSource: .calculated)))
    try programmer.heartbeat(uptimeS: UInt32(second))
    second += 1
    try programmer.service(timeout: .seconds(1))
}
let elapsed = Double(monotonicNs() - idleStart) / 1e9
let cpuPercent = (cpuTicks(pid) - ticks0) / Double(sysconf(Int32(_SC_CLK_TCK))) / elapsed * 100
let wakeups = (switches() - switches0) / elapsed
let status = procStatus(pid)
print("idle: seconds=\(fmt(elapsed, 1)) rss=\(status["VmRSS"] ?? "?") cpu_percent=\(fmt(cpuPercent, 2)) context_switches_per_s=\(fmt(wakeups, 1)) threads=\(status["Threads"] ?? "?")")
