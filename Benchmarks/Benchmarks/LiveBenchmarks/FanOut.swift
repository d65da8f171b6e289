// (2) Fan-out: N concurrent SSE subscribers (`GET /v1/events?types=status`) following one
// programmer that sends a distinct PUMP_STATUS every 1/rate s (alarm mask = its index, as in the
// latency section). Every subscriber must receive every event sent once all of them were
// connected and had received a warm-up event; each miss is counted, never hidden.
import Foundation
import ITBClient
import ITBProtocol
import ITBSimulator
#if canImport(Glibc)
import Glibc
#endif

struct FanOutOptions {
    var subscribers = 1000
    var seconds = 60.0
    var rate = 100.0
    /// Bench threads reading the subscribers' sockets (epoll each).
    var clientThreads = 1
    /// The daemon's `subscriber_buffer_events` (its default, 4096, when nil): small values
    /// reproduce lagged cut-offs.
    var bufferEvents: Int?
}

func runFanOut(_ context: BenchContext, _ options: FanOutOptions) throws {
    let n = options.subscribers
    let total = max(1, Int((options.seconds * options.rate).rounded()))
    let interval = UInt64(1e9 / options.rate)
    let serial = "PGM-FANOUT"
    let programmer = try ProgrammerEndpoint(info: ProgrammerInfo(bootID: 11, firmwareVersion: 0x020401, protocolMinor: 0,
                                                                 programmerSerial: serial, hardwareModel: "ITB-CP 8840"))

    // Descriptors. systemd gives a service RLIMIT_NOFILE 1024 (soft) : 524288 (hard) unless its unit
    // sets LimitNOFILE= (systemd/itb-bridged.service does not); start the daemon that way, so
    // the figure says whether it raises its own soft limit as it must to serve 1,000 subscribers.
    // (Capped at the bench's own hard limit: raising a hard limit needs CAP_SYS_RESOURCE.)
    let ownHard = ownOpenFileHardLimit()
    let systemdLimits = "1024:\(min(ownHard, 524_288))"
    let needed = n + 64
    let config = options.bufferEvents.map { ["subscriber_buffer_events = \($0)"] } ?? []
    var daemon = try DaemonUnderTest(context, device: programmer.pty.slavePath, name: "fanout", prlimit: systemdLimits, configLines: config)
    let startLimits = openFileLimits(daemon.pid)
    let softAtStart = startLimits?.soft ?? -1
    var measuredUnder = "as started (RLIMIT_NOFILE \(systemdLimits), like systemd)"
    var prlimitUsed = "none"
    if softAtStart >= needed {
        Report.line("fanout: daemon started with RLIMIT_NOFILE \(systemdLimits) (systemd's default); its soft limit is now \(softAtStart): it raised it itself")
    } else {
        let why = softAtStart < (startLimits?.hard ?? 0) ? "it does not raise it towards its hard limit (\(startLimits!.hard))" : "that is its hard limit"
        Report.problem("fanout: the daemon's RLIMIT_NOFILE soft limit is \(softAtStart) after start-up (started with \(systemdLimits), systemd's default for a unit without LimitNOFILE=): \(why), and \(n) subscribers need about \(needed) descriptors; under systemd, subscribers beyond that limit would fail")
        let raised = min(ownHard, 65_536)
        prlimitUsed = "\(raised):\(raised)"
        Report.note("fanout: to measure meanwhile, the daemon is restarted under `prlimit --nofile=\(prlimitUsed)` (the figures below are with that limit, not the daemon's own)")
        daemon.stop()
        daemon = try DaemonUnderTest(context, device: programmer.pty.slavePath, name: "fanout-prlimit", prlimit: prlimitUsed, configLines: config)
        measuredUnder = "under prlimit --nofile=\(prlimitUsed)"
    }
    defer { daemon.stop() }
    let pid = daemon.pid
    try identify(programmer, daemon, serial: serial)

    // Connect the subscribers while warm-up statuses flow; each must receive one.
    let warmBase: Int64 = 1_000_000_000
    let pool = SSEClientPool(socketPath: daemon.socketPath, path: "/v1/events?types=status", count: n,
                             threads: options.clientThreads, measuredTotal: total, warmBase: warmBase)
    var encoder = FrameEncoder(firstSequence: 1_000_000)
    func status(_ mask: Int64) -> [UInt8] {
        encoder.encode(.pumpStatus(PumpStatus(deviceTimeMs: Int64(Date().timeIntervalSince1970 * 1000), dailyDoseUgX10: 4000,
                                              concentrationUgPerML: 2000, activeAlarmMask: UInt32(mask), pumpState: .infusing,
                                              dosingMode: .simpleContinuous, linkQualityPct: 90)))
    }
    let connectStart = monotonicNs()
    pool.start()
    let warmDeadline = connectStart + UInt64(30 + n / 50) * 1_000_000_000
    var warmups: Int64 = 0
    var next = monotonicNs()
    func failedSubscribers() -> Int {
        pool.connectFailures.load(ordering: .relaxed) + pool.httpErrors.load(ordering: .relaxed) + pool.closedEarlyCount.load(ordering: .relaxed)
    }
    while pool.warmedCount.load(ordering: .relaxed) + failedSubscribers() < n, monotonicNs() < warmDeadline, daemon.isRunning {
        next += interval
        sleepUntil(next)
        try programmer.sendRaw(status(warmBase + warmups))
        warmups += 1
        if warmups % 50 == 0 { try programmer.service(timeout: .zero) }
    }
    let connectSeconds = Double(monotonicNs() - connectStart) / 1e9
    let confirmed = pool.warmedCount.load(ordering: .relaxed)
    let health = try? daemon.client.get("/v1/health")
    let hubSubscribers = health.flatMap { jsonInt(String(decoding: $0.body, as: UTF8.self), "subscribers") }
    Report.line("fanout: \(pool.responses200.load(ordering: .relaxed)) responses 200 OK; \(confirmed) of \(n) subscribers connected and receiving after \(fmt(connectSeconds, 1)) s (\(warmups) warm-up events); the daemon counts \(hubSubscribers.map(String.init) ?? "?") subscribers")
    if !daemon.checkAlive("the fan-out connect phase") {
        pool.stopAndJoin()
        return
    }

    // The measured window.
    let sendNs = UnsafeMutablePointer<UInt64>.allocate(capacity: total)
    sendNs.initialize(repeating: 0, count: total)
    defer { sendNs.deallocate() }
    let cpu = CPUWindow(daemon: pid)
    let t0 = monotonicNs()
    var sent = 0
    var sendError: String?
    for i in 1...total {
        sleepUntil(t0 + UInt64(i) * interval)
        let frame = status(Int64(i))
        sendNs[i - 1] = monotonicNs()
        do {
            try programmer.sendRaw(frame)
            if i % 50 == 0 { try programmer.service(timeout: .zero) }
        } catch {
            sendError = "\(error)"
            break
        }
        sent = i
        if i % max(1, Int(options.rate)) == 0, !daemon.isRunning { break }
    }
    let sendEnd = monotonicNs()
    // Drain: until every confirmed subscriber has every event, or 10 s without progress.
    let expected = confirmed * sent
    var lastCount = pool.measuredReceived.load(ordering: .relaxed)
    var lastChange = monotonicNs()
    while pool.measuredReceived.load(ordering: .relaxed) < expected, monotonicNs() - lastChange < 10_000_000_000 {
        usleep(5_000)
        let count = pool.measuredReceived.load(ordering: .relaxed)
        if count != lastCount { lastCount = count; lastChange = monotonicNs() }
    }
    let usage = cpu.measure()
    let elapsed = usage.seconds
    let daemonCPU = usage.daemon, benchCPU = usage.bench
    let load = loadAverage()
    let statusFields = procStatus(pid)
    let descriptors = openDescriptorCount(pid)
    let healthAfter = try? daemon.client.get("/v1/health")
    pool.stopAndJoin()
    if confirmed < n {
        Report.problem("fanout: \(n - confirmed) of \(n) subscribers never received an event within \(fmt(connectSeconds, 1)) s of connecting: \(describeFailures(pool))")
    }
    let alive = daemon.checkAlive("the fan-out window")
    if let sendError { Report.problem("fanout: writing to the programmer's pty failed after \(sent) of \(total) events: \(sendError)") }
    if let healthAfter, healthAfter.status != 200 {
        Report.problem("fanout: GET /v1/health answered \(healthAfter.status) after the window: \(String(decoding: healthAfter.body.prefix(300), as: UTF8.self))")
    } else if alive, healthAfter == nil {
        Report.problem("fanout: GET /v1/health failed after the window (no answer within 10 s)")
    }

    // Results.
    var latencies: [Double] = []
    latencies.reserveCapacity(expected)
    // The same per sixth of the window (by send time): a backlog that keeps growing shows here.
    let slices = 6
    var sliceLatencies = [[Double]](repeating: [], count: slices)
    var lost = 0, subscribersWithLoss = 0, maxLostOne = 0
    var duplicates = 0, idNotIncreasing = 0
    let base = Double(pool.baseNs)
    for c in 0..<n where pool.clients[c].warmed {
        var lostHere = 0
        let row = pool.receiveUs! + c * total
        for i in 0..<sent {
            let us = row[i]
            if us == 0 { lostHere += 1; continue }
            let ms = (Double(us) * 1000 + base - Double(sendNs[i])) / 1e6
            latencies.append(ms)
            sliceLatencies[min(slices - 1, i * slices / max(1, sent))].append(ms)
        }
        lost += lostHere
        if lostHere > 0 { subscribersWithLoss += 1; maxLostOne = max(maxLostOne, lostHere) }
        duplicates += pool.clients[c].duplicates
        idNotIncreasing += pool.clients[c].idNotIncreasing
    }
    latencies.sort()
    let sliceP99 = sliceLatencies.map { slice -> String in
        let sorted = slice.sorted()
        return "\(fmt(percentile(sorted, 50), 1))/\(fmt(percentile(sorted, 99), 1))"
    }
    var connectAttempts = 0, bytesReceived = 0, eventsReceived = 0
    for c in 0..<n {
        connectAttempts += pool.clients[c].connectAttempts
        bytesReceived += pool.clients[c].bytes
        eventsReceived += pool.clients[c].events
    }
    let bytesPerEvent = Double(bytesReceived) / Double(max(1, eventsReceived))
    let backlog = pool.backlog.withLock { $0 }
    let meanPending = backlog.sumBytes / Double(max(1, backlog.socketSamples))
    var cutOff = 0
    var cutReasons: [String: Int] = [:]
    for c in 0..<n where pool.clients[c].warmed {
        if let reason = pool.clients[c].closedEarly {
            cutOff += 1
            cutReasons[reason, default: 0] += 1
        }
    }
    let lagged = pool.laggedCount.load(ordering: .relaxed)
    let httpErrors = pool.httpErrors.load(ordering: .relaxed)
    let connectFailures = pool.connectFailures.load(ordering: .relaxed)
    let p50 = percentile(latencies, 50), p99 = percentile(latencies, 99), p999 = percentile(latencies, 99.9), maxLatency = latencies.last ?? .nan
    let rssMB = statusMB(statusFields, "VmRSS"), hwmMB = statusMB(statusFields, "VmHWM")

    Report.line("fanout: \(n) subscribers (\(confirmed) confirmed), \(sent) status events at \(fmt(options.rate, 0))/s over \(fmt(Double(sendEnd - t0) / 1e9, 1)) s, daemon \(measuredUnder), subscriber_buffer_events \(options.bufferEvents.map(String.init) ?? "default (4096)")")
    Report.line("fanout: deliveries expected \(grouped(expected)), delivered \(grouped(latencies.count)), lost \(grouped(lost)) (\(subscribersWithLoss) subscribers missed events, at most \(maxLostOne) each); cut off \(cutOff), lagged \(lagged), HTTP errors \(httpErrors), connect failures \(connectFailures), duplicates \(duplicates), ids not increasing \(idNotIncreasing)")
    Report.line("fanout: delivery latency, pty write → event read by the subscriber: p50 \(fmt(p50)) ms, p99 \(fmt(p99)) ms, p99.9 \(fmt(p999)) ms, max \(fmt(maxLatency)) ms (\(pool.threadCount) bench thread(s) read all \(n) sockets with epoll: their queueing is included)")
    Report.line("fanout: latency p50/p99 ms by sixth of the window: \(sliceP99.joined(separator: ", "))")
    Report.line("fanout: unread bytes in the subscribers' sockets (the bench's own backlog, sampled each second): mean \(fmt(meanPending, 0)) B (\(fmt(meanPending / bytesPerEvent, 2)) events of \(fmt(bytesPerEvent, 0)) B), max in one socket \(grouped(backlog.maxOneSocket)) B (\(fmt(Double(backlog.maxOneSocket) / bytesPerEvent, 1)) events); a large backlog here means the latency is the bench's, not the daemon's")
    Report.line("fanout: connecting took \(fmt(connectSeconds, 1)) s and \(connectAttempts) connect() calls for \(n) subscribers (a full listen backlog answers EAGAIN; the bench retries after 2 ms)")
    Report.line("fanout: daemon CPU \(fmt(daemonCPU, 1)) % of one core over \(fmt(elapsed, 1)) s, RSS \(fmt(rssMB, 1)) MB, peak RSS (VmHWM) \(fmt(hwmMB, 1)) MB, \(statusFields["Threads"] ?? "?") threads, \(descriptors) descriptors; the bench itself used \(fmt(benchCPU, 1)) %")
    Report.line("fanout: machine (\(ProcessInfo.processInfo.processorCount) cores, shared) busy \(fmt(usage.busy, 0)) % of one core over the window: daemon \(fmt(daemonCPU, 0)), bench \(fmt(benchCPU, 0)), other processes \(fmt(usage.others, 0)); load average \(load)")
    Report.figure("fanout", [
        "subscribers": n, "confirmed": confirmed, "seconds": fmt(Double(sendEnd - t0) / 1e9, 1), "rate_per_s": fmt(options.rate, 0),
        "events": sent, "expected": expected, "delivered": latencies.count, "lost": lost, "subscribers_with_loss": subscribersWithLoss,
        "cut_off": cutOff, "lagged": lagged, "http_errors": httpErrors, "connect_failures": connectFailures, "duplicates": duplicates,
        "p50_ms": fmt(p50), "p99_ms": fmt(p99), "p99_9_ms": fmt(p999), "max_ms": fmt(maxLatency),
        "last_sixth_p99_ms": fmt(percentile(sliceLatencies[slices - 1].sorted(), 99)),
        "bench_backlog_mean_events": fmt(meanPending / bytesPerEvent, 2), "bench_backlog_max_events": fmt(Double(backlog.maxOneSocket) / bytesPerEvent, 1), "connect_s": fmt(connectSeconds, 1),
        "daemon_cpu_percent": fmt(daemonCPU, 1), "daemon_rss_mb": fmt(rssMB, 1), "daemon_hwm_mb": fmt(hwmMB, 1),
        "daemon_threads": statusFields["Threads"] ?? "?", "daemon_fds": descriptors, "bench_cpu_percent": fmt(benchCPU, 1), "others_cpu_percent": fmt(usage.others, 0),
        "bench_threads": pool.threadCount, "buffer_events": options.bufferEvents.map(String.init) ?? "default", "daemon_nofile_soft_at_start": softAtStart, "prlimit": prlimitUsed,
    ])
    if lost > 0 {
        Report.problem("fanout: \(lost) of \(expected) deliveries lost: \(subscribersWithLoss) of \(confirmed) subscribers missed events (at most \(maxLostOne) each)")
    }
    if cutOff > 0 {
        let reasons = cutReasons.sorted { $0.value > $1.value }.map { "\($0.value)× \($0.key)" }.joined(separator: "; ")
        Report.problem("fanout: \(cutOff) subscribers were cut off during the window (\(lagged) got `event: lagged` first): \(reasons)")
    }
    if duplicates > 0 || idNotIncreasing > 0 {
        Report.problem("fanout: \(duplicates) events delivered twice, \(idNotIncreasing) event ids not above the previous one")
    }
    if httpErrors > 0 || connectFailures > 0, confirmed == n {
        Report.problem("fanout: \(httpErrors) HTTP errors and \(connectFailures) connect failures: \(describeFailures(pool))")
    }
}

/// Why subscribers failed: connect errors, HTTP statuses with the start of their body, early closes.
func describeFailures(_ pool: SSEClientPool) -> String {
    var reasons: [String: Int] = [:]
    for c in 0..<pool.count where !pool.clients[c].warmed {
        let client = pool.clients[c]
        let reason: String
        if client.status != 0 && client.status != 200 {
            reason = "HTTP \(client.status): \(String(decoding: client.errorBody.prefix(200), as: UTF8.self))"
        } else if let early = client.closedEarly {
            reason = early
        } else if client.status == 200 {
            reason = client.events > 0
                ? "HTTP 200, first event only after the connect phase ended"
                : (client.preamble ? "HTTP 200 and the stream's opening comment, then no event" : "HTTP 200, then nothing (not even the stream's opening comment)")
        } else if client.connectErrno != 0 {
            reason = "still connecting (last error: \(String(cString: strerror(client.connectErrno))), \(client.connectAttempts) attempts)"
        } else {
            reason = "no response head"
        }
        reasons[reason, default: 0] += 1
    }
    return reasons.sorted { $0.value > $1.value }.map { "\($0.value)× \($0.key)" }.joined(separator: "; ")
}
