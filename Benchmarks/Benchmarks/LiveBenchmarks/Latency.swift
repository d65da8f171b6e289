// (1) Latency: last byte of a frame written to the pty master → the matching SSE event read by
// one subscriber (ITBClient's blocking reader on its own thread).
import Foundation
import ITBClient
import ITBProtocol
import ITBSimulator
#if canImport(Glibc)
import Glibc
#endif

/// A daemon following one simulated programmer, identified and ready: what the latency and idle
/// sections measure.
func startIdentifiedDaemon(_ context: BenchContext, serial: String, name: String, prlimit: String? = nil) throws -> (ProgrammerEndpoint, DaemonUnderTest) {
    let programmer = try ProgrammerEndpoint(info: ProgrammerInfo(bootID: 9, firmwareVersion: 0x020401, protocolMinor: 0,
                                                                 programmerSerial: serial, hardwareModel: "ITB-CP 8840"))
    let daemon = try DaemonUnderTest(context, device: programmer.pty.slavePath, name: name, prlimit: prlimit)
    try identify(programmer, daemon, serial: serial)
    return (programmer, daemon)
}

/// Services the programmer until the daemon knows it by its serial (10 s at most).
func identify(_ programmer: ProgrammerEndpoint, _ daemon: DaemonUnderTest, serial: String) throws {
    let client = daemon.client
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
        try programmer.service(timeout: .milliseconds(20))
        if let r = try? client.get("/v1/devices/\(serial)"), r.status == 200 { return }
    }
    daemon.checkAlive("identification")
    throw BenchError("\(daemon.name): the daemon did not identify programmer \(serial) within 10 s")
}

// Each frame is a PUMP_STATUS whose alarm mask carries its index, so each one changes the status
// and becomes one `status` event; the subscriber matches events to send times.
func runLatency(_ programmer: ProgrammerEndpoint, _ daemon: DaemonUnderTest, frames total: Int, rate: Double) throws {
    let stream = try daemon.client.events("/v1/events?types=status")
    let sendTimes = UnsafeMutablePointer<UInt64>.allocate(capacity: total)
    sendTimes.initialize(repeating: 0, count: total)
    let receiveTimes = UnsafeMutablePointer<UInt64>.allocate(capacity: total)
    receiveTimes.initialize(repeating: 0, count: total)
    defer { sendTimes.deallocate(); receiveTimes.deallocate() }
    let readerDone = DispatchSemaphore(value: 0)
    // One writer per slot: the reader thread stamps receive times, read after it is done.
    struct Slots: @unchecked Sendable { let receiveTimes: UnsafeMutablePointer<UInt64> }
    let slots = Slots(receiveTimes: receiveTimes)
    Thread {
        let receiveTimes = slots.receiveTimes
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
    let interval = UInt64(1e9 / rate)
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
    stream.close()
    let p50 = percentile(latencies, 50), p99 = percentile(latencies, 99), p999 = percentile(latencies, 99.9), max = latencies.last ?? .nan
    Report.line("latency_ms: frames=\(total) rate=\(rate)/s received=\(latencies.count) lost=\(lost) p50=\(fmt(p50)) p99=\(fmt(p99)) p99.9=\(fmt(p999)) max=\(fmt(max))")
    Report.figure("latency", ["frames": total, "rate_per_s": fmt(rate, 0), "received": latencies.count, "lost": lost,
                              "p50_ms": fmt(p50), "p99_ms": fmt(p99), "p99_9_ms": fmt(p999), "max_ms": fmt(max)])
    daemon.checkAlive("the latency section")
    if lost > 0 { Report.problem("latency: \(lost) of \(total) status events never reached the subscriber (20 s after the last frame)") }
}
