// Clocks, percentiles and /proc readings shared by the sections.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Sleeps until the monotonic clock reaches `deadlineNs` (one wake-up, no polling loop, so the
/// bench's pacing does not take CPU from the daemon it measures).
func sleepUntil(_ deadlineNs: UInt64) {
    var ts = timespec(tv_sec: Int(deadlineNs / 1_000_000_000), tv_nsec: Int(deadlineNs % 1_000_000_000))
    while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil) == EINTR {}
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let index = min(sorted.count - 1, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1)
    return sorted[max(0, index)]
}

func fmt(_ value: Double, _ digits: Int = 3) -> String { String(format: "%.\(digits)f", value) }

/// 12,345,678 → "12345678" is what FIGURE lines want; readable text uses this.
func grouped(_ value: Int) -> String {
    let digits = String(abs(value))
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return value < 0 ? "-" + out : out
}

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

/// A `/proc/PID/status` size field ("39304 kB") in MB (10^6 bytes), NaN when absent.
/// /proc/PID/smaps_rollup, in MB by field (Rss, Pss, Anonymous…).
func smapsRollup(_ pid: Int32) -> [String: Double] {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8) else { return [:] }
    var out: [String: Double] = [:]
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, let kb = Double(parts[1].split(separator: " ").first ?? "") else { continue }
        out[String(parts[0])] = kb * 1024 / 1e6
    }
    return out
}

func statusMB(_ status: [String: String], _ key: String) -> Double {
    guard let text = status[key], let kb = Double(text.split(separator: " ").first ?? "") else { return .nan }
    return kb * 1024 / 1e6
}

let clockTicksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

/// utime + stime of a process, in clock ticks.
func cpuTicks(_ pid: Int32) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = text.lastIndex(of: ")") else { return 0 }
    let fields = text[text.index(after: close)...].split(separator: " ")
    return (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
}

/// utime + stime of this process (every thread), in seconds.
func ownCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Context switches of each thread of a process, by thread id (/proc/PID/status counts only the main one).
func contextSwitches(_ pid: Int32) -> [String: Double] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    var counts: [String: Double] = [:]
    for task in tasks { counts[task] = switches(inStatusFile: "/proc/\(pid)/task/\(task)/status") }
    return counts
}

/// Context switches between two per-thread snapshots: threads present at the end count from
/// their start value (0 when new). A thread that exited in between (an idle dispatch worker)
/// takes its switches with it, so the figure can only err low by those.
func contextSwitches(from start: [String: Double], to end: [String: Double]) -> Double {
    end.reduce(0) { $0 + max(0, $1.value - (start[$1.key] ?? 0)) }
}

/// Context switches of the main thread only: what /proc/PID/status shows.
func mainThreadSwitches(_ pid: Int32) -> Double { switches(inStatusFile: "/proc/\(pid)/status") }

/// voluntary + nonvoluntary context switches in one status file.
private func switches(inStatusFile path: String) -> Double {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return 0 }
    var total = 0.0
    for line in text.split(separator: "\n") where line.hasPrefix("voluntary_ctxt_switches") || line.hasPrefix("nonvoluntary_ctxt_switches") {
        total += Double(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
    }
    return total
}

/// The "Max open files" soft and hard limits of a process, from /proc/PID/limits ("unlimited"
/// reads as Int.max); nil when unreadable.
func openFileLimits(_ pid: Int32) -> (soft: Int, hard: Int)? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("Max open files") {
        let fields = line.dropFirst("Max open files".count).split(separator: " ")
        guard fields.count >= 2 else { return nil }
        func value(_ s: Substring) -> Int { s == "unlimited" ? Int.max : Int(s) ?? -1 }
        return (value(fields[0]), value(fields[1]))
    }
    return nil
}

/// Descriptors a process has open now.
func openDescriptorCount(_ pid: Int32) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count ?? -1
}

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit (the SSE subscribers of the
/// fan-out section are 1,000 sockets). Returns the soft limit before and after.
func raiseOwnOpenFileLimit() -> (before: UInt64, after: UInt64) {
    let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    var limit = rlimit()
    getrlimit(resource, &limit)
    let before = UInt64(limit.rlim_cur)
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        setrlimit(resource, &limit)
        getrlimit(resource, &limit)
    }
    return (before, UInt64(limit.rlim_cur))
}

/// This process's RLIMIT_NOFILE hard limit.
func ownOpenFileHardLimit() -> UInt64 {
    var limit = rlimit()
    getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    return UInt64(limit.rlim_max)
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Waits, polling every `stepMs`, until `condition` holds or `timeout` seconds pass.
@discardableResult
func waitFor(timeout: Double, stepMs: UInt32 = 20, _ condition: () -> Bool) -> Bool {
    let deadline = monotonicNs() + UInt64(timeout * 1e9)
    while monotonicNs() < deadline {
        if condition() { return true }
        usleep(stepMs * 1000)
    }
    return condition()
}

/// The first integer after `"key":` in a JSON text (the daemon's JSON is flat enough for this).
func jsonInt(_ text: String, _ key: String) -> Int? {
    guard let range = text.range(of: "\"\(key)\":") else { return nil }
    let digits = text[range.upperBound...].prefix { $0.isNumber || $0 == "-" }
    return Int(digits)
}

/// Busy and total CPU time of the whole machine (all cores), in clock ticks, from /proc/stat:
/// what else runs while a figure is measured (the build machine is shared).
func machineTicks() -> (busy: Double, total: Double) {
    guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
          let first = text.split(separator: "\n").first else { return (0, 0) }
    let v = first.split(separator: " ").dropFirst().map { Double($0) ?? 0 }
    guard v.count >= 8 else { return (0, 0) }
    let idle = v[3] + v[4]
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return (busy, busy + idle)
}

/// The 1, 5 and 15 minute load averages.
func loadAverage() -> String {
    ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
}

/// CPU use over a window: the daemon, the bench and everything else on the machine, each in %
/// of one core.
struct CPUWindow {
    let pid: Int32
    let start = monotonicNs()
    let daemon0: Double
    let own0 = ownCPUSeconds()
    let machine0 = machineTicks()

    init(daemon pid: Int32) {
        self.pid = pid
        daemon0 = cpuTicks(pid)
    }

    /// (daemon, bench, others, machine busy) in % of one core, from `start` until now.
    func measure() -> (daemon: Double, bench: Double, others: Double, busy: Double, seconds: Double) {
        let elapsed = Double(monotonicNs() - start) / 1e9
        let daemon = (cpuTicks(pid) - daemon0) / clockTicksPerSecond / elapsed * 100
        let bench = (ownCPUSeconds() - own0) / elapsed * 100
        let machine = machineTicks()
        let busy = (machine.busy - machine0.busy) / clockTicksPerSecond / elapsed * 100
        return (daemon, bench, max(0, busy - daemon - bench), busy, elapsed)
    }
}

/// A Unix-domain socket address for `path`.
func unixAddress(_ path: String) -> sockaddr_un {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        let bytes = Array(path.utf8.prefix(raw.count - 1))
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return address
}
