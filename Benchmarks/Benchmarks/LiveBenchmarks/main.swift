// Live benchmarks of the running daemon (issue: proof under load). A plain executable, not an
// ordo-one benchmark: it drives real itb-bridged processes through real ptys and reads their real
// Unix sockets, and prints the figures for BENCHMARKS.md.
//
//   swift build -c release --product itb-bridged
//   swift build -c release --product itbctl          # for the offline part of `throughput`
//   swift run -c release --package-path Benchmarks itb-live-bench --daemon .build/release/itb-bridged
//
// Sections, in the order they run (each prints readable lines and one `FIGURE perf.<section>:`
// line; `--only` picks some):
//   startup     (5) exec → READY=1                                            Startup.swift
//   latency     (1) pty write → matching SSE event, one subscriber            Latency.swift
//   idle        (4) footprint with one programmer at 1 Hz                     Idle.swift
//   fanout      (2) N SSE subscribers × one device at 100 events/s            FanOut.swift, SSEClientPool.swift
//   throughput  (3) a stream replayed at full speed through a pty; then       Throughput.swift
//                   `itbctl decode` on a capture of the same frames (offline_decode)
//   gpsd        (6) pty → subscriber beside gpsd (Debian's `gpsd`) on a pty     GpsdLatency.swift
//                   of its own, one writer loop for both, at 10 and 100 Hz
// Daemon problems (a crash, lost events, cut-off subscribers, HTTP errors) are printed as
// `PROBLEM:` lines, repeated in the summary, and make the exit status 1.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

let usage = """
    usage: itb-live-bench [--daemon PATH] [--itbctl PATH] [--quick] [--only SECTION[,SECTION…]]
                          [--startups N] [--frames N] [--idle-seconds S]
                          [--fanout-subscribers N] [--fanout-seconds S] [--fanout-rate R] [--fanout-threads 1|2]
                          [--fanout-buffer-events N]
                          [--throughput-frames N]
                          [--gpsd PATH] [--gpsd-rates R[,R…]] [--gpsd-ticks N[,N…]]
      sections: startup, latency, idle, fanout, throughput, gpsd (default: all)
      --quick   small sizes for a CI smoke test: 3 startups, 1,000 latency frames, 3 s idle,
                50 subscribers × 5 s, 20,000 throughput frames (flags given explicitly still win)
      --fanout-buffer-events N   start the fan-out daemon with subscriber_buffer_events = N (≥ 16;
                default: the daemon's own, 4096), to reproduce lagged cut-offs
      --gpsd PATH   the gpsd to compare with (default /usr/sbin/gpsd; apt-get install gpsd)
      --gpsd-rates R,…  tick rates of the gpsd comparison (default 10,100)
      --gpsd-ticks N,…  measured ticks at each of those rates (default 600,3000; --quick 100,500)
      defaults: 10 startups, 10,000 latency frames at 100/s, 10 s idle, 1,000 subscribers × 60 s
                at 100 events/s read by 1 bench thread, 200,000 throughput frames, gpsd comparison
                600 ticks at 10 Hz and 3,000 at 100 Hz
    """

struct Options {
    var daemon = ".build/release/itb-bridged"
    var itbctl: String?
    var startups = 10
    var latencyFrames = 10_000
    var rate = 100.0
    var idleSeconds = 10.0
    var fanout = FanOutOptions()
    var throughputFrames = 200_000
    var gpsd = GpsdOptions()
    var sections: Set<String> = ["startup", "latency", "idle", "fanout", "throughput", "gpsd"]
}

let allSections = ["startup", "latency", "idle", "fanout", "throughput", "gpsd"]
var options = Options()
var explicit: [(inout Options) -> Void] = []
var quick = false
var arguments = CommandLine.arguments.dropFirst()
func value(_ flag: String) -> String {
    guard let text = arguments.popFirst() else {
        FileHandle.standardError.write(Data("itb-live-bench: \(flag) needs a value\n\(usage)\n".utf8))
        exit(2)
    }
    return text
}
func number<T: LosslessStringConvertible>(_ flag: String) -> T {
    let text = value(flag)
    guard let n = T(text) else {
        FileHandle.standardError.write(Data("itb-live-bench: \(flag): not a number: \(text)\n".utf8))
        exit(2)
    }
    return n
}
while let argument = arguments.popFirst() {
    switch argument {
    case "--daemon": options.daemon = value(argument)
    case "--itbctl": options.itbctl = value(argument)
    case "--quick": quick = true
    case "--only":
        let list = value(argument).split(separator: ",").map { String($0) }
        let unknown = list.filter { !allSections.contains($0) }
        guard unknown.isEmpty, !list.isEmpty else {
            FileHandle.standardError.write(Data("itb-live-bench: --only: unknown section \(unknown.joined(separator: ", "))\n\(usage)\n".utf8))
            exit(2)
        }
        options.sections = Set(list)
    case "--startups": let n: Int = number(argument); explicit.append { $0.startups = n }
    case "--frames": let n: Int = number(argument); explicit.append { $0.latencyFrames = n }
    case "--idle-seconds": let s: Double = number(argument); explicit.append { $0.idleSeconds = s }
    case "--fanout-subscribers": let n: Int = number(argument); explicit.append { $0.fanout.subscribers = n }
    case "--fanout-seconds": let s: Double = number(argument); explicit.append { $0.fanout.seconds = s }
    case "--fanout-rate": let r: Double = number(argument); explicit.append { $0.fanout.rate = r }
    case "--fanout-threads": let n: Int = number(argument); explicit.append { $0.fanout.clientThreads = n }
    case "--fanout-buffer-events": let n: Int = number(argument); explicit.append { $0.fanout.bufferEvents = n }
    case "--throughput-frames": let n: Int = number(argument); explicit.append { $0.throughputFrames = n }
    case "--gpsd": options.gpsd.gpsd = value(argument)
    case "--gpsd-rates", "--gpsd-ticks":
        let flag = argument
        let list = value(flag).split(separator: ",").map { Double($0) }
        guard !list.isEmpty, list.allSatisfy({ ($0 ?? 0) > 0 }) else {
            FileHandle.standardError.write(Data("itb-live-bench: \(flag): a comma-separated list of positive numbers\n".utf8))
            exit(2)
        }
        let numbers = list.map { $0! }
        if flag == "--gpsd-rates" {
            explicit.append { $0.gpsd.rates = numbers }
        } else {
            explicit.append { $0.gpsd.ticks = numbers.map { Int($0) } }
        }
    case "-h", "--help":
        print(usage)
        exit(0)
    default:
        FileHandle.standardError.write(Data("itb-live-bench: unknown argument \(argument)\n\(usage)\n".utf8))
        exit(2)
    }
}
if quick {
    options.startups = 3
    options.latencyFrames = 1000
    options.idleSeconds = 3
    options.fanout.subscribers = 50
    options.fanout.seconds = 5
    options.throughputFrames = 20_000
    options.gpsd.ticks = [100, 500]
}
for apply in explicit { apply(&options) }
let sizes: [(String, Double)] = [
    ("--startups", Double(options.startups)), ("--frames", Double(options.latencyFrames)), ("--idle-seconds", options.idleSeconds),
    ("--fanout-subscribers", Double(options.fanout.subscribers)), ("--fanout-seconds", options.fanout.seconds),
    ("--fanout-rate", options.fanout.rate), ("--fanout-threads", Double(options.fanout.clientThreads)),
    ("--throughput-frames", Double(options.throughputFrames)),
]
for (flag, size) in sizes where !(size > 0) {
    FileHandle.standardError.write(Data("itb-live-bench: \(flag) must be positive\n".utf8))
    exit(2)
}
if let buffer = options.fanout.bufferEvents, buffer < 16 {
    FileHandle.standardError.write(Data("itb-live-bench: --fanout-buffer-events must be at least 16 (the daemon's minimum)\n".utf8))
    exit(2)
}
Report.scale = quick ? "quick" : (explicit.isEmpty ? "full" : "custom")

let work = FileManager.default.temporaryDirectory.appendingPathComponent("itb-live-\(getpid())").path
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
let itbctl = options.itbctl ?? URL(fileURLWithPath: options.daemon).deletingLastPathComponent().appendingPathComponent("itbctl").path
let context = BenchContext(daemonPath: options.daemon, itbctlPath: itbctl, work: work)
guard FileManager.default.isExecutableFile(atPath: options.daemon) else {
    FileHandle.standardError.write(Data("itb-live-bench: no daemon at \(options.daemon) (swift build -c release --product itb-bridged)\n".utf8))
    exit(2)
}

// The fan-out section holds one socket per subscriber.
let ownLimit = raiseOwnOpenFileLimit()
print("# itb-live-bench on \(ProcessInfo.processInfo.processorCount) CPUs (load average \(loadAverage())), \(Date()); daemon \(options.daemon); scale \(Report.scale); sections \(allSections.filter(options.sections.contains).joined(separator: ","))")
print("# bench RLIMIT_NOFILE soft limit \(ownLimit.before) → \(ownLimit.after)")
let benchStart = monotonicNs()
var timings: [String] = []

func section(_ name: String, _ body: () throws -> Void) {
    guard options.sections.contains(name) else { return }
    let start = monotonicNs()
    do {
        try body()
    } catch {
        Report.problem("\(name): the section failed: \(error)")
    }
    timings.append("\(name) \(fmt(Double(monotonicNs() - start) / 1e9, 1)) s")
}

section("startup") { try runStartup(context, count: options.startups) }

// Latency and idle share one daemon following one programmer, as they always have.
if !options.sections.isDisjoint(with: ["latency", "idle"]) {
    do {
        let (programmer, daemon) = try startIdentifiedDaemon(context, serial: "PGM-BENCH", name: "live")
        section("latency") { try runLatency(programmer, daemon, frames: options.latencyFrames, rate: options.rate) }
        section("idle") { try runIdle(programmer, daemon, seconds: options.idleSeconds) }
        daemon.stop()
    } catch {
        Report.problem("latency/idle: cannot start the daemon with a programmer: \(error)")
    }
}

section("fanout") { try runFanOut(context, options.fanout) }
section("throughput") { try runThroughput(context, frames: options.throughputFrames) }
section("gpsd") { try runGpsdComparison(context, options.gpsd) }

print("# sections: \(timings.joined(separator: ", ")); load average now \(loadAverage()); total \(fmt(Double(monotonicNs() - benchStart) / 1e9, 1)) s")
if !Report.notes.isEmpty {
    print("# notes:")
    for note in Report.notes { print("#   \(note)") }
}
if Report.problems.isEmpty {
    print("# no problems found")
    try? FileManager.default.removeItem(atPath: work)
} else {
    print("# \(Report.problems.count) problem(s); scratch directory with the daemons' logs kept: \(work)")
    for problem in Report.problems { print("#   \(problem.split(separator: "\n").first ?? "")") }
    exit(1)
}
