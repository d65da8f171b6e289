// (4) Idle footprint with one programmer at 1 Hz telemetry (status, reservoir, heartbeat).
import Foundation
import ITBProtocol
import ITBSimulator
#if canImport(Glibc)
import Glibc
#endif

func runIdle(_ programmer: ProgrammerEndpoint, _ daemon: DaemonUnderTest, seconds: Double) throws {
    let pid = daemon.pid
    // Settle first.
    for _ in 0..<3 { try programmer.heartbeat(uptimeS: 1); try programmer.service(timeout: .seconds(1)) }
    let ticks0 = cpuTicks(pid)
    let switches0 = contextSwitches(pid)
    let mainSwitches0 = mainThreadSwitches(pid)
    // A pump's last refill does not move: a fixed time, so that an unchanged reservoir report is
    // recognised as unchanged (and not journaled every second).
    let lastRefillMs = Int64(Date().timeIntervalSince1970 * 1000) - 86_400_000
    let idleStart = monotonicNs()
    var second = 0
    while Double(monotonicNs() - idleStart) / 1e9 < seconds {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        try programmer.send(.pumpStatus(PumpStatus(deviceTimeMs: now, dailyDoseUgX10: 4000, concentrationUgPerML: 2000, activeAlarmMask: 0,
                                                   pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: 90)))
        try programmer.send(.reservoir(Reservoir(deviceTimeMs: now, lastRefillTimeMs: lastRefillMs, volumeULX10: 300_000, capacityUL: 40_000,
                                                 lowReservoirThresholdUL: 2000, deliveredSinceRefillULX10: 0, volumeSource: .calculated)))
        try programmer.heartbeat(uptimeS: UInt32(second))
        second += 1
        try programmer.service(timeout: .seconds(1))
    }
    let elapsed = Double(monotonicNs() - idleStart) / 1e9
    let cpuPercent = (cpuTicks(pid) - ticks0) / clockTicksPerSecond / elapsed * 100
    let wakeups = contextSwitches(from: switches0, to: contextSwitches(pid)) / elapsed
    let mainWakeups = (mainThreadSwitches(pid) - mainSwitches0) / elapsed
    let status = procStatus(pid)
    // What the RSS is made of: pages of shared libraries and the executable (file-backed, shared
    // with every other process mapping them) against the daemon's own anonymous memory.
    let rollup = smapsRollup(pid)
    Report.line("idle: RSS breakdown: file-backed \(fmt(rollup["Rss"].map { $0 - (rollup["Anonymous"] ?? 0) } ?? .nan, 1)) MB, anonymous \(fmt(rollup["Anonymous"] ?? .nan, 1)) MB; PSS \(fmt(rollup["Pss"] ?? .nan, 1)) MB")
    Report.line("idle: seconds=\(fmt(elapsed, 1)) rss=\(status["VmRSS"] ?? "?") cpu_percent=\(fmt(cpuPercent, 2)) context_switches_per_s=\(fmt(wakeups, 1)) (all threads; the main thread alone, what /proc/PID/status shows: \(fmt(mainWakeups, 1))) threads=\(status["Threads"] ?? "?")")
    Report.figure("idle", ["seconds": fmt(elapsed, 1), "rss_mb": fmt(statusMB(status, "VmRSS"), 1), "cpu_percent": fmt(cpuPercent, 2),
                           "context_switches_per_s": fmt(wakeups, 1), "main_thread_switches_per_s": fmt(mainWakeups, 1),
                           "threads": status["Threads"] ?? "?", "anonymous_mb": fmt(rollup["Anonymous"] ?? .nan, 1),
                           "pss_mb": fmt(rollup["Pss"] ?? .nan, 1)])
    daemon.checkAlive("the idle section")
}
