import Foundation
import ITBClient
import ITBProtocol
import ITBSerial
import ITBSimulator
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Issue 8, proof under faults, device side: the programmer unplugged and plugged in again, many
// times, at the same followed path (a symbolic link re-pointed at each new pty, as udev's
// /dev/itb/programmer-… link is, and as `itbctl simulate --link` does).

@Suite("Fault: programmer unplugged and replugged", .serialized)
struct ReplugTests {
    @Test("unplugged and replugged at the same path cycle after cycle, the daemon reconnects every time (programmer identified again, a fresh host heartbeat, a new status read) and keeps the same descriptor count, with memory growth bounded")
    func replugCycles() async throws {
        let cycles = ProofScale.count(short: 20, full: 200)
        let warmUp = 5
        let directory = try ScratchDirectory("fault-replug")
        defer { directory.remove() }
        let link = directory.path + "/programmer"
        let socketPath = directory.path + "/api.sock"
        let config = directory.path + "/itb-bridged.conf"
        try "heartbeat_interval_s = 0.1\n".write(toFile: config, atomically: true, encoding: .utf8)
        var programmer = try ProgrammerEndpoint(info: testProgrammer)
        // Programmers whose pty another process took (see `Reconnection.takenOver`): kept open, so
        // that their pty numbers stay taken and the next pty gets another one.
        var setAside: [ProgrammerEndpoint] = []
        defer {
            programmer.pty.close()
            for endpoint in setAside { endpoint.pty.close() }
        }
        try Self.point(link, at: programmer.pty.slavePath)
        let daemon = try DaemonProcess(
            arguments: ["--no-discovery", "--device", link, "--socket", socketPath, "--state-dir", directory.path + "/state",
                        "--config", config, "--log-level", "warning"],
            socketPath: socketPath, log: directory.path + "/daemon.log")
        defer { daemon.terminate() }
        try await daemon.waitReady()
        let client = UnixHTTPClient(socketPath: socketPath, timeout: .seconds(5))
        let pid = daemon.process.processIdentifier
        try await DeviceFaults.identify(programmer, client: client, daemon: pid)
        let started = ContinuousClock.now

        var before: ProcessFootprint?
        var journalBefore = 0
        var reconnected = 0
        var reconnectMs: [Double] = []
        var takenOver: [String] = []
        for cycle in 1...(warmUp + cycles) {
            if cycle == warmUp + 1 {
                before = try await ProcessFootprint.settled(pid: pid)
                journalBefore = Self.journalKB(directory.path + "/state")
            }
            let current = programmer
            var outcome = try await blocking { try Self.replugOnce(cycle, programmer: current, link: link, client: client, daemon: pid) }
            while case .takenOver(let holder) = outcome, takenOver.count < 10 {
                takenOver.append(holder)
                setAside.append(programmer)
                programmer = try ProgrammerEndpoint(info: testProgrammer)
                try Self.point(link, at: programmer.pty.slavePath)
                let replacement = programmer
                outcome = try await blocking { try Self.awaitReconnection(cycle, programmer: replacement, client: client, daemon: pid) }
            }
            guard case .reconnected(let took) = outcome else {
                Issue.record("cycle \(cycle): the daemon did not reconnect to the replugged programmer: \(outcome)")
                break
            }
            if cycle > warmUp {
                reconnected += 1
                reconnectMs.append(Double(took.components.seconds) * 1000 + Double(took.components.attoseconds) / 1e15)
            }
        }
        let baseline = try #require(before)
        let after = try await ProcessFootprint.settled(pid: pid, towards: baseline.descriptors.count)
        // The bound on memory growth: every cycle adds to the journal (link lost and back, the
        // session, the status: about 4.5 kB of database pages a cycle, measured), and SQLite's page
        // cache (2000 KiB by default) keeps the pages written, so it may grow by up to 10 kB a
        // cycle until it is full; plus 1 MiB of allocator slack. Measured with the debug build:
        // +0.2 MB after 20 cycles, +1.5 MB after 200, +2.6 MB after 1500 (it levels off, as a
        // cache does and a leak does not).
        let journalGrowthKB = Self.journalKB(directory.path + "/state") - journalBefore
        let rssGrowthBoundKB = 1024 + min(2000, 10 * cycles)
        #expect(reconnected == cycles)
        #expect(after.descriptors.count == baseline.descriptors.count,
                "descriptors \(baseline.descriptors.count) → \(after.descriptors.count); before: \(baseline.descriptors), after: \(after.descriptors)")
        #expect(after.rssKB - baseline.rssKB <= rssGrowthBoundKB,
                "resident memory grew \(after.rssKB - baseline.rssKB) kB over \(cycles) cycles (bound \(rssGrowthBoundKB) kB)")
        if !takenOver.isEmpty { print("note: ptys taken by other processes on this machine (replaced by new ones): \(takenOver)") }

        let sorted = reconnectMs.sorted()
        ProofScale.figure("fault.replug", [
            "cycles": cycles, "reconnected": reconnected, "fds_before": baseline.descriptors.count, "fds_after": after.descriptors.count,
            "rss_before_kb": baseline.rssKB, "rss_after_kb": after.rssKB, "rss_growth_kb": after.rssKB - baseline.rssKB,
            "rss_bound_kb": rssGrowthBoundKB, "journal_growth_kb": journalGrowthKB,
            "reconnect_ms_p50": Int(sorted.isEmpty ? 0 : sorted[sorted.count / 2]), "reconnect_ms_max": Int(sorted.last ?? 0),
            "ptys_taken_by_other_processes": takenOver.count, "seconds": DeviceFaults.seconds(since: started),
        ])
    }

    /// How one replug ended.
    enum Reconnection: Sendable, CustomStringConvertible {
        /// The daemon reconnected, in this time.
        case reconnected(Duration)
        /// Another process (not the daemon) opened the new pty first: on a shared machine, a
        /// daemon of someone else's that follows a stale `/dev/pts/N` opens whatever pty gets
        /// that number next. Not the daemon's fault; the test plugs in another pty.
        case takenOver(String)
        /// Neither within 15 s.
        case timedOut

        var description: String {
            switch self {
            case .reconnected(let took): "reconnected after \(took)"
            case .takenOver(let holder): "pty taken by \(holder)"
            case .timedOut: "timed out"
            }
        }
    }

    /// One unplug/replug: closes the programmer's pty, opens a new one, re-points `link` at it,
    /// and waits for the daemon to reconnect (``awaitReconnection(_:programmer:client:daemon:)``).
    static func replugOnce(_ cycle: Int, programmer: ProgrammerEndpoint, link: String, client: UnixHTTPClient, daemon: pid_t) throws -> Reconnection {
        try programmer.replug()
        try point(link, at: programmer.pty.slavePath)
        return try awaitReconnection(cycle, programmer: programmer, client: client, daemon: daemon)
    }

    /// Services the programmer until the daemon has identified it again (its `link_state_since`
    /// moved on), heartbeated its new pty, and shows a status sent on it.
    static func awaitReconnection(_ cycle: Int, programmer: ProgrammerEndpoint, client: UnixHTTPClient, daemon: pid_t) throws -> Reconnection {
        let start = ContinuousClock.now
        let path = "/v1/devices/\(programmer.info.programmerSerial)"
        let since = (try? JSONObject.parse(client.get(path).body))?["link_state_since"] as? String
        let heartbeats = programmer.hostHeartbeats
        var holder: String?
        var lastHolderCheck = ContinuousClock.now
        let identified = try programmer.service(until: { programmer in
            if ContinuousClock.now - lastHolderCheck > .milliseconds(250) {
                lastHolderCheck = ContinuousClock.now
                holder = DeviceFaults.foreignHolders(of: programmer.pty, daemon: daemon).first
                if holder != nil { return true }
            }
            guard programmer.hostHeartbeats > heartbeats, let response = try? client.get(path),
                  let device = try? JSONObject.parse(response.body) else { return false }
            return device["link_state"] as? String == "connected" && device["link_state_since"] as? String != since
        }, timeout: .seconds(15))
        if let holder { return .takenOver(holder) }
        guard identified else { return .timedOut }
        // Read on the new line: a status the daemon has not seen before.
        let dailyDoseUgX10 = UInt32(1000 + cycle)
        try programmer.send(.pumpStatus(PumpStatus(deviceTimeMs: nowMs(), dailyDoseUgX10: dailyDoseUgX10, concentrationUgPerML: 2000,
                                                   activeAlarmMask: 0, pumpState: .infusing, dosingMode: .simpleContinuous,
                                                   linkQualityPct: UInt8(cycle % 101))))
        let read = try programmer.service(until: { _ in
            guard let response = try? client.get(path + "/status"), let status = try? JSONObject.parse(response.body),
                  let dose = status["daily_dose_ug"] as? Double else { return false }
            return Int((dose * 10).rounded()) == Int(dailyDoseUgX10)
        }, timeout: .seconds(15))
        return read ? .reconnected(ContinuousClock.now - start) : .timedOut
    }

    /// The size of the journal's files (database and write-ahead log) in `directory`, kB.
    static func journalKB(_ directory: String) -> Int {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let bytes = files.filter { $0.hasSuffix(".sqlite") || $0.hasSuffix(".sqlite-wal") }.reduce(0) { total, name in
            total + ((try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)[.size] as? Int) ?? 0)
        }
        return bytes / 1024
    }

    /// Points the symbolic link `link` at `target` atomically (a new link renamed over the old), so
    /// the path never dangles or disappears, as udev replaces its device links.
    static func point(_ link: String, at target: String) throws {
        let temporary = link + ".new"
        unlink(temporary)
        guard symlink(target, temporary) == 0 else { throw HarnessError("symlink \(temporary): errno \(errno)") }
        guard rename(temporary, link) == 0 else { throw HarnessError("rename \(temporary) → \(link): errno \(errno)") }
    }
}

/// What a process holds, from `/proc`: its open descriptors (what each points at) and its
/// resident memory.
struct ProcessFootprint: Sendable {
    /// The targets of `/proc/PID/fd/*`, sorted (`socket:[…]`, `/dev/pts/3`, the journal files…).
    var descriptors: [String]
    /// `VmRSS`, kB.
    var rssKB: Int

    /// Reads it once.
    static func read(pid: pid_t) throws -> ProcessFootprint {
        let directory = "/proc/\(pid)/fd"
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        let targets = names.map { (try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/" + $0)) ?? "?" }
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kB = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else {
            throw HarnessError("no VmRSS in /proc/\(pid)/status")
        }
        return ProcessFootprint(descriptors: targets.sorted(), rssKB: kB)
    }

    /// Reads it once the descriptor count has settled: the same in three reads 50 ms apart (an
    /// API connection the test just closed may take a moment to close on the daemon's side), or
    /// equal to `towards` when given. Gives the last read after 5 s.
    static func settled(pid: pid_t, towards expected: Int? = nil) async throws -> ProcessFootprint {
        let deadline = ContinuousClock.now + .seconds(5)
        var last = try read(pid: pid)
        var same = 1
        while ContinuousClock.now < deadline {
            if let expected, last.descriptors.count == expected { return last }
            if expected == nil, same >= 3 { return last }
            try await Task.sleep(for: .milliseconds(50))
            let next = try read(pid: pid)
            same = next.descriptors.count == last.descriptors.count ? same + 1 : 1
            last = next
        }
        return last
    }
}
