// (3) Throughput: a telemetry stream built in memory, written to the pty master as fast as the
// pty accepts it; the daemon decodes, journals and publishes it to one SSE subscriber. Then the
// offline decoder (`itbctl decode`) on a capture of the same frames.
import Foundation
import ITBCapture
import ITBClient
import ITBProtocol
import ITBSimulator
#if canImport(Glibc)
import Glibc
#endif

/// The replayed stream: per cycle a `PUMP_STATUS` (link quality changes every cycle, so each
/// status differs from the one before and is journaled as an event), a `RESERVOIR` (the volume
/// falls every cycle: an event each) and a `HEARTBEAT` (no event); every 1,000 cycles an `ALARM`
/// (motor stall raised; cleared 500 cycles later), which the daemon must ACK after its commit.
/// Device time advances 1 ms a cycle from the host's clock, so no clock-drift alarm is raised.
struct ReplayStream {
    var bytes: [UInt8] = []
    /// Where each cycle ends: one capture record per cycle, as a programmer sends them in a burst.
    var recordEnds: [Int] = []
    var frames = 0
    var statuses = 0
    var reservoirs = 0
    var heartbeats = 0
    var alarms = 0
    /// Status, reservoir and alarm frames: each should become one journaled event.
    var expectedEvents: Int { statuses + reservoirs + alarms }

    init(frames target: Int, firstSequence: UInt32) {
        var encoder = FrameEncoder(firstSequence: firstSequence)
        bytes.reserveCapacity(target * 52)
        let start = Int64(Date().timeIntervalSince1970 * 1000)
        var volume: UInt32 = 380_000
        var alarmID: UInt32 = 0
        var cycle: Int64 = 0
        func add(_ message: Message) {
            guard frames < target else { return }
            bytes.append(contentsOf: encoder.encode(message))
            frames += 1
        }
        while frames < target {
            let now = start + cycle
            let before = frames
            add(.pumpStatus(PumpStatus(deviceTimeMs: now, dailyDoseUgX10: 4000, concentrationUgPerML: 2000, activeAlarmMask: 0,
                                       pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: UInt8(85 + cycle % 10))))
            if frames > before { statuses += 1 }
            var mark = frames
            add(.reservoir(Reservoir(deviceTimeMs: now, lastRefillTimeMs: start - 86_400_000, volumeULX10: volume, capacityUL: 40_000,
                                     lowReservoirThresholdUL: 2000, deliveredSinceRefillULX10: 380_000 - volume, volumeSource: .calculated)))
            if frames > mark { reservoirs += 1 }
            mark = frames
            add(.heartbeat(Heartbeat(bootID: 12, uptimeS: UInt32(cycle / 1000), highestAlarmID: alarmID, unackedAlarmCount: 0)))
            if frames > mark { heartbeats += 1 }
            let raise = cycle % 1000 == 999, clear = cycle % 1000 == 499 && cycle > 999
            if raise || clear {
                alarmID += 1
                mark = frames
                add(.alarm(Alarm(onsetTimeMs: now, alarmID: alarmID, code: .motorStall, priority: .high,
                                 transition: raise ? .raised : .cleared, detail: "motor stall (bench)")))
                if frames > mark { alarms += 1 }
            }
            recordEnds.append(bytes.count)
            cycle += 1
            volume = volume > 200_000 ? volume - 1 : 380_000
        }
    }
}

func runThroughput(_ context: BenchContext, frames: Int) throws {
    let serial = "PGM-TPUT"
    let buildStart = monotonicNs()
    let stream = ReplayStream(frames: frames, firstSequence: 1000)
    Report.line("throughput: stream of \(grouped(stream.frames)) frames (\(grouped(stream.statuses)) PUMP_STATUS, \(grouped(stream.reservoirs)) RESERVOIR, \(grouped(stream.heartbeats)) HEARTBEAT, \(stream.alarms) ALARM), \(grouped(stream.bytes.count)) bytes, built in \(fmt(Double(monotonicNs() - buildStart) / 1e9, 2)) s")

    let (programmer, daemon) = try startIdentifiedDaemon(context, serial: serial, name: "throughput")
    defer { daemon.stop() }
    let pid = daemon.pid
    let client = daemon.client
    func counters() -> String? {
        guard let r = try? client.get("/v1/devices/\(serial)"), r.status == 200 else { return nil }
        return String(decoding: r.body, as: UTF8.self)
    }
    func lastEventID() -> Int? {
        guard let r = try? client.get("/v1/health"), r.status == 200 else { return nil }
        return jsonInt(String(decoding: r.body, as: UTF8.self), "last_event_id")
    }
    // Let identification settle (its events, the host's first heartbeat and our announce).
    try programmer.service(timeout: .milliseconds(300))
    guard let framesBefore = counters().flatMap({ jsonInt($0, "frames_accepted") }), let eventsBefore = lastEventID() else {
        daemon.checkAlive("the throughput set-up")
        throw BenchError("throughput: cannot read the daemon's counters before the run")
    }

    // One subscriber to all of this device's events.
    let pool = SSEClientPool(socketPath: daemon.socketPath, path: "/v1/events?device=\(serial)", count: 1, threads: 1)
    pool.start()
    guard waitFor(timeout: 10, { pool.responses200.load(ordering: .relaxed) == 1 }) else {
        pool.stopAndJoin()
        throw BenchError("throughput: the SSE subscriber got no response: \(describeFailures(pool))")
    }

    // From here on the bench speaks for the programmer directly on the pty master (the endpoint
    // is not serviced, so it sends nothing of its own); host frames are read and ACKs counted.
    let fd = programmer.pty.descriptor
    var hostDecoder = FrameDecoder()
    var acksStored = 0, acksOther = 0, hostHeartbeats = 0
    var readBuffer = [UInt8](repeating: 0, count: 16 << 10)
    func drainHost() {
        while true {
            let n = readBuffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return }
            readBuffer.withUnsafeBytes { raw in
                hostDecoder.feed(UnsafeRawBufferPointer(rebasing: raw[0..<n])) { frame in
                    switch Message(frame) {
                    case .ack(let ack)?: if ack.status == .stored { acksStored += 1 } else { acksOther += 1 }
                    case .hostHeartbeat?: hostHeartbeats += 1
                    default: break
                    }
                }
            }
        }
    }
    let cpu = CPUWindow(daemon: pid)
    let tStart = monotonicNs()
    var offset = 0
    var writeError: String?
    var stalls = 0
    stream.bytes.withUnsafeBytes { raw in
        while offset < raw.count {
            let n = write(fd, raw.baseAddress! + offset, min(64 << 10, raw.count - offset))
            if n > 0 { offset += n; continue }
            let code = errno
            guard code == EAGAIN || code == EINTR else {
                writeError = "write(pty master): \(String(cString: strerror(code))) after \(offset) of \(raw.count) bytes"
                return
            }
            var p = pollfd(fd: fd, events: Int16(POLLOUT | POLLIN), revents: 0)
            if poll(&p, 1, 1000) == 0 {
                stalls += 1
                if !daemon.isRunning { writeError = "the daemon is gone after \(offset) of \(raw.count) bytes"; return }
                if stalls >= 30 { writeError = "the pty accepted nothing for 30 s after \(offset) of \(raw.count) bytes"; return }
            }
            if p.revents & Int16(POLLIN) != 0 { drainHost() }
        }
    }
    let tWritten = monotonicNs()
    if let writeError { Report.problem("throughput: \(writeError)") }

    // Decoded: the device's frames_accepted counter has every frame (polled every 20 ms).
    var tDecoded: UInt64 = 0
    // CPU use up to the moment the work was seen done (not through the waits that confirm it).
    var usage = cpu.measure()
    var finalCounters = ""
    var lastFrames = -1
    var lastChange = monotonicNs()
    while true {
        drainHost()
        if let text = counters(), let accepted = jsonInt(text, "frames_accepted") {
            finalCounters = text
            if accepted - framesBefore >= stream.frames { tDecoded = monotonicNs(); usage = cpu.measure(); break }
            if accepted != lastFrames { lastFrames = accepted; lastChange = monotonicNs() }
        }
        if monotonicNs() - lastChange > 10_000_000_000 || !daemon.isRunning { break }
        usleep(20_000)
    }
    let accepted = (jsonInt(finalCounters, "frames_accepted") ?? framesBefore) - framesBefore
    // Journaled: last_event_id stops moving (1 s without change after everything was decoded).
    var journalLast = lastEventID() ?? eventsBefore
    var tJournal = monotonicNs()
    var stableSince = monotonicNs()
    while monotonicNs() - stableSince < 1_000_000_000, daemon.isRunning {
        usleep(20_000)
        drainHost()
        if let id = lastEventID(), id != journalLast {
            journalLast = id
            tJournal = monotonicNs()
            stableSince = tJournal
            usage = cpu.measure()
        }
    }
    let journaled = journalLast - eventsBefore
    // Delivered: the subscriber has as many events as the journal gained (10 s at most).
    waitFor(timeout: 10, stepMs: 10) { pool.eventsReceived.load(ordering: .relaxed) >= journaled }
    let delivered = pool.eventsReceived.load(ordering: .relaxed)
    let tSubscriber = max(pool.lastEventNs.load(ordering: .relaxed), tStart + 1)
    let tEnd = max(tDecoded, tJournal, tSubscriber)
    let elapsed = Double(tEnd - tStart) / 1e9
    let daemonCPU = usage.daemon, benchCPU = usage.bench
    let statusFields = procStatus(pid)
    drainHost()
    pool.stopAndJoin()
    daemon.checkAlive("the throughput section")

    let writeSeconds = Double(tWritten - tStart) / 1e9
    let decodeSeconds = Double((tDecoded > 0 ? tDecoded : lastChange) - tStart) / 1e9
    let journalSeconds = Double(tJournal - tStart) / 1e9
    let subscriberSeconds = Double(tSubscriber - tStart) / 1e9
    let framesPerS = Double(accepted) / decodeSeconds
    let journalPerS = Double(journaled) / journalSeconds
    let subscriberPerS = Double(delivered) / subscriberSeconds
    let mbPerS = Double(stream.bytes.count) / decodeSeconds / 1e6
    let crcErrors = jsonInt(finalCounters, "payload_crc_errors") ?? -1
    let discarded = jsonInt(finalCounters, "bytes_discarded") ?? -1
    let gaps = jsonInt(finalCounters, "sequence_gaps") ?? -1
    Report.line("throughput: wrote \(grouped(offset)) bytes to the pty in \(fmt(writeSeconds, 2)) s; the daemon accepted \(grouped(accepted)) of \(grouped(stream.frames)) frames in \(fmt(decodeSeconds, 2)) s = \(grouped(Int(framesPerS))) frames/s (\(fmt(mbPerS, 2)) MB/s); payload CRC errors \(crcErrors), bytes discarded \(discarded), sequence gaps \(gaps) (one expected: the bench's own numbering takes over from the simulator's)")
    Report.line("throughput: journal +\(grouped(journaled)) events (stream has \(grouped(stream.expectedEvents)) status/reservoir/alarm frames) in \(fmt(journalSeconds, 2)) s = \(grouped(Int(journalPerS))) events/s; subscriber got \(grouped(delivered)) in \(fmt(subscriberSeconds, 2)) s = \(grouped(Int(subscriberPerS))) events/s; ACKs stored \(acksStored) of \(stream.alarms) alarms (other ACKs \(acksOther)); wall \(fmt(elapsed, 2)) s")
    Report.line("throughput: daemon CPU \(fmt(daemonCPU, 1)) % of one core, RSS \(fmt(statusMB(statusFields, "VmRSS"), 1)) MB, peak RSS (VmHWM) \(fmt(statusMB(statusFields, "VmHWM"), 1)) MB; the bench used \(fmt(benchCPU, 1)) %, other processes \(fmt(usage.others, 0)) % (load average \(loadAverage()))")
    Report.figure("throughput", [
        "frames": stream.frames, "bytes": stream.bytes.count, "accepted": accepted, "wall_s": fmt(elapsed, 2), "write_s": fmt(writeSeconds, 2),
        "frames_per_s": Int(framesPerS), "mb_per_s": fmt(mbPerS, 2), "journal_events": journaled, "journal_events_per_s": Int(journalPerS),
        "subscriber_events": delivered, "subscriber_events_per_s": Int(subscriberPerS), "expected_events": stream.expectedEvents,
        "alarms": stream.alarms, "acks_stored": acksStored, "payload_crc_errors": crcErrors, "bytes_discarded": discarded,
        "daemon_cpu_percent": fmt(daemonCPU, 1), "daemon_rss_mb": fmt(statusMB(statusFields, "VmRSS"), 1),
        "daemon_hwm_mb": fmt(statusMB(statusFields, "VmHWM"), 1), "bench_cpu_percent": fmt(benchCPU, 1), "others_cpu_percent": fmt(usage.others, 0),
    ])
    if accepted < stream.frames { Report.problem("throughput: the daemon accepted \(accepted) of \(stream.frames) frames (10 s without progress)") }
    if crcErrors > 0 || discarded > 0 { Report.problem("throughput: \(crcErrors) payload CRC errors and \(discarded) bytes discarded on a clean pty stream") }
    if journaled < stream.expectedEvents { Report.problem("throughput: the journal gained \(journaled) events for \(stream.expectedEvents) status/reservoir/alarm frames that each change the state") }
    if delivered != journaled { Report.problem("throughput: the subscriber received \(delivered) events, the journal gained \(journaled)") }
    if pool.laggedCount.load(ordering: .relaxed) > 0 || pool.clients[0].closedEarly != nil {
        Report.problem("throughput: the subscriber was cut off: \(pool.clients[0].closedEarly ?? "lagged")")
    }
    if acksStored < stream.alarms { Report.problem("throughput: \(acksStored) `ACK stored` for \(stream.alarms) alarms") }

    try offlineDecode(context, stream)
}

/// `itbctl decode --stats` and `itbctl decode > /dev/null` on a capture of the same frames.
func offlineDecode(_ context: BenchContext, _ stream: ReplayStream) throws {
    guard FileManager.default.isExecutableFile(atPath: context.itbctlPath) else {
        Report.note("throughput: offline decode skipped: no itbctl at \(context.itbctlPath) (swift build -c release --product itbctl, or --itbctl PATH)")
        return
    }
    let path = context.work + "/throughput.itbcap"
    let writer = try CaptureFileWriter(file: path)
    var start = 0
    var timestamp: Int64 = 1_795_514_400_000_000_000
    stream.bytes.withUnsafeBytes { raw in
        for end in stream.recordEnds {
            writer.record(.deviceToHost, UnsafeRawBufferPointer(rebasing: raw[start..<end]), timestampNs: timestamp)
            start = end
            timestamp += 1_000_000
        }
    }
    writer.close()
    if let failure = writer.failure { throw BenchError("throughput: cannot write \(path): \(failure)") }
    let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0

    func run(_ arguments: [String]) throws -> (seconds: Double, stdout: String, status: Int32) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: context.itbctlPath)
        process.arguments = arguments
        let out = context.work + "/itbctl.out"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        // `--stats` prints its one JSON line of counters on stderr; the full decode's JSON lines go
        // to /dev/null and its counters (stderr) to the same file.
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: out)
        let t0 = monotonicNs()
        try process.run()
        process.waitUntilExit()
        let seconds = Double(monotonicNs() - t0) / 1e9
        return (seconds, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "", process.terminationStatus)
    }
    let stats = try run(["decode", "--stats", path])
    let full = try run(["decode", path])
    let framesDecoded = jsonInt(stats.stdout, "frames_accepted") ?? -1
    if stats.status != 0 || full.status != 0 || framesDecoded != stream.frames {
        Report.problem("throughput: itbctl decode: exit \(stats.status)/\(full.status), \(framesDecoded) frames of \(stream.frames)")
    }
    let records = stream.recordEnds.count
    Report.line("offline: itbctl decode --stats on \(grouped(size)) bytes (\(grouped(records)) records, \(grouped(stream.frames)) frames): \(fmt(stats.seconds * 1000, 1)) ms = \(grouped(Int(Double(stream.frames) / stats.seconds))) frames/s, \(fmt(Double(size) / stats.seconds / 1e6, 1)) MB/s")
    Report.line("offline: itbctl decode (JSON lines to /dev/null): \(fmt(full.seconds * 1000, 1)) ms = \(grouped(Int(Double(stream.frames) / full.seconds))) frames/s, \(fmt(Double(size) / full.seconds / 1e6, 1)) MB/s (both include starting the process)")
    Report.figure("offline_decode", [
        "frames": stream.frames, "bytes": size, "records": records, "stats_ms": fmt(stats.seconds * 1000, 1),
        "stats_frames_per_s": Int(Double(stream.frames) / stats.seconds), "json_ms": fmt(full.seconds * 1000, 1),
        "json_frames_per_s": Int(Double(stream.frames) / full.seconds), "json_mb_per_s": fmt(Double(size) / full.seconds / 1e6, 1),
    ])
}
