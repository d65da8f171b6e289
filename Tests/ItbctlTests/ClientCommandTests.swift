import Foundation
import ITBBridge
import ITBClient
import ITBProtocol
import ITBSimulator
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The built `itbctl` as a process against the real daemon (in this process), which follows a
/// simulated programmer on a pty.
@Suite("itbctl client commands against a running daemon")
struct ClientCommandTests {
    let device = testProgrammer.programmerSerial

    @Test("devices, status and alarms show what the programmer reported, and --json prints the daemon's documents")
    func reportsShowTheReportedValues() async throws {
        let daemon = try await TestDaemon(name: "report")
        do {
            let socket = daemon.socketPath
            let scratch = daemon.directory.path
            try await daemon.connectProgrammer()

            // Before any status or reservoir reading: shown as such, not an error.
            let early = try await Itbctl.run(["status", device, "--socket", socket], directory: scratch)
            #expect(early.status == 0, "\(early)")
            #expect(early.stdout.contains("pump status") && early.stdout.contains("not reported yet"), "\(early)")

            let now = nowMs()
            let day: Int64 = 86_400_000
            try await daemon.withProgrammer { p in
                try p.send(.pumpSession(PumpSession(implantDateMs: now - 400 * day, eriDateMs: now + 900 * day, reservoirCapacityUL: 40_000,
                                                    manufacturerCode: 7, event: .begin, batteryState: .ok, pumpModel: "SynchroMed-T",
                                                    pumpSerial: "SN-4711")))
                try p.send(.pumpStatus(PumpStatus(deviceTimeMs: now, dailyDoseUgX10: 4000, concentrationUgPerML: 2000,
                                                  activeAlarmMask: 1 << 4, pumpState: .infusing, dosingMode: .simpleContinuous,
                                                  linkQualityPct: 90)))
                // Filled 20 mL expecting 2 mL left, found none: discrepancy −2000/18000 ≈ −0.11, beyond the ±0.10 bound.
                try p.send(.refill(Refill(refillTimeMs: now - 10 * day, concentrationUgPerML: 2000, volumeFilledUL: 20_000,
                                          expectedResidualUL: 2000, measuredResidualUL: 0, drugLot: "LOT-42")))
                try p.send(.reservoir(Reservoir(deviceTimeMs: now, lastRefillTimeMs: now - 10 * day, volumeULX10: 390_000,
                                                capacityUL: 40_000, lowReservoirThresholdUL: 2000, deliveredSinceRefillULX10: 10_000,
                                                volumeSource: .calculated)))
            }
            let reservoir = try await daemon.waitFor("/v1/devices/\(device)/reservoir") {
                $0["volume_ul"] as? Double == 39_000 && $0["last_refill"] is [String: Any]
            }
            _ = try await daemon.waitFor("/v1/devices/\(device)") { ($0["pump_session"] as? [String: Any])?["pump_serial"] as? String == "SN-4711" }
            try await daemon.raiseAndStore(.motorStall, .high, detail: "motor stalled")
            try await daemon.raiseAndStore(.lowReservoir, .medium, detail: "2.0 mL left")

            // devices: one row with the identity, link, path, pump serial and counters.
            let devices = try await Itbctl.run(["devices", "--socket", socket], directory: scratch)
            #expect(devices.status == 0, "\(devices)")
            let deviceLines = devices.stdout.split(separator: "\n").map(String.init)
            #expect(deviceLines.first?.contains("FRAMES ACCEPTED") == true && deviceLines.first?.contains("CRC ERRORS") == true, "\(devices)")
            let row = try #require(deviceLines.first { $0.hasPrefix(device) }, "\(devices)")
            #expect(row.contains("connected"))
            #expect(row.contains(daemon.programmer.pty.slavePath))
            #expect(row.contains("SN-4711"))
            let devicesJSON = try await Itbctl.run(["devices", "--json", "--socket", socket], directory: scratch)
            #expect(devicesJSON.status == 0)
            let deviceList = try #require(try parseObject(devicesJSON.stdout)["devices"] as? [[String: Any]])
            #expect(deviceList.first?["id"] as? String == device)
            #expect((deviceList.first?["counters"] as? [String: Any])?["frames_accepted"] as? Int ?? 0 > 0)

            // status: the pump's figures, the derived values and the last refill, flagged.
            let status = try await Itbctl.run(["status", "--socket", socket], directory: scratch)
            #expect(status.status == 0, "\(status)")
            let derived = try #require(reservoir["derived"] as? [String: Any])
            let refillDue = try #require(derived["refill_due_date"] as? String)
            // Numbers as the daemon writes them: tenths with one decimal, derived values with theirs.
            for expected in ["infusing, simple_continuous", "400.0 µg/day", "2000 µg/mL", "39000.0 µL of 40000 µL",
                             "low-reservoir threshold 2000 µL", "200.000 µL/day", "185.00 days", refillDue + " (drug_stability)",
                             "FLAGGED", "SN-4711", "pump alarms         motor_stall", "motor_stall (high, active, pump)", "low_reservoir (medium, active, pump)",
                             "refill_discrepancy (medium, active, bridge)"] {
                #expect(status.stdout.contains(expected), "status should show `\(expected)`:\n\(status.stdout)")
            }
            let one = try await Itbctl.run(["status", device, "--json", "--socket", socket], directory: scratch)
            #expect(one.status == 0, "\(one)")
            let oneJSON = try parseObject(one.stdout)
            #expect((oneJSON["device"] as? [String: Any])?["id"] as? String == device)
            #expect((oneJSON["status"] as? [String: Any])?["pump_state"] as? String == "infusing")
            #expect(((oneJSON["reservoir"] as? [String: Any])?["derived"] as? [String: Any])?["flow_ul_per_day"] as? Double == 200)
            #expect(((oneJSON["reservoir"] as? [String: Any])?["last_refill"] as? [String: Any])?["discrepancy_flagged"] as? Bool == true)
            // The pump's two, and the bridge's own about the refill discrepancy.
            #expect((oneJSON["active_alarms"] as? [[String: Any]])?.count == 3)
            let all = try await Itbctl.run(["status", "--json", "--socket", socket], directory: scratch)
            #expect((try parseObject(all.stdout)["devices"] as? [[String: Any]])?.count == 1, "\(all)")

            // alarms: a table of both, and the daemon's document with --json and its filters.
            let alarms = try await Itbctl.run(["alarms", "--socket", socket], directory: scratch)
            #expect(alarms.status == 0, "\(alarms)")
            #expect(alarms.stdout.split(separator: "\n").first?.contains("RAISED AT") == true)
            for code in ["motor_stall", "low_reservoir", "refill_discrepancy"] {
                let line = alarms.stdout.split(separator: "\n").first { $0.contains(code) }
                #expect(line?.contains(device) == true && line?.contains("active") == true, "\(alarms)")
            }
            func alarmCount(_ arguments: [String]) async throws -> Int? {
                let result = try await Itbctl.run(["alarms", "--json", "--socket", socket] + arguments, directory: scratch)
                #expect(result.status == 0, "\(result)")
                return (try parseObject(result.stdout)["alarms"] as? [[String: Any]])?.count
            }
            #expect(try await alarmCount([]) == 3)
            #expect(try await alarmCount(["--active", "--device", device]) == 3)
            #expect(try await alarmCount(["--priority", "high"]) == 1)
            #expect(try await alarmCount(["--state", "active", "--priority", "medium"]) == 2)
            // A programmer the bridge has never seen: not found (exit 5), never "No alarms.".
            let other = try await Itbctl.run(["alarms", "--device", "PGM-OTHER", "--socket", socket], directory: scratch)
            #expect(other.status == 5, "\(other)")
            #expect(other.stderr.contains("no programmer with serial PGM-OTHER"), "\(other)")
            #expect(try await alarmCount(["--limit", "1"]) == 1)
        } catch {
            await daemon.shutdown()
            throw error
        }
        await daemon.shutdown()
    }

    @Test("ack acknowledges an active alarm as the calling user, with a note, and says the pump is unchanged; alarms lists by id with the user name and note; an ended alarm exits 1, an unknown one 5")
    func acknowledgeAnAlarm() async throws {
        let daemon = try await TestDaemon(name: "ack")
        do {
            let socket = daemon.socketPath
            let scratch = daemon.directory.path
            try await daemon.connectProgrammer()
            try await daemon.raiseAndStore(.motorStall, .high)
            try await daemon.raiseAndStore(.lowReservoir, .medium)
            let list = try #require(try await daemon.json("/v1/alarms?active=true&priority=high")["alarms"] as? [[String: Any]])
            let id = try #require(list.first?["id"] as? Int)
            let userName = try #require(getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) })

            let acked = try await Itbctl.run(["ack", String(id), "--note", "called patient", "--socket", socket], directory: scratch)
            #expect(acked.status == 0, "\(acked)")
            #expect(acked.stdout.contains("acknowledged by \(userName) at "), "\(acked)")
            #expect(acked.stdout.contains("(note: called patient)"), "\(acked)")
            #expect(acked.stdout.contains("Nothing changes on the pump"), "\(acked)")
            let stored = try await daemon.json("/v1/alarms/\(id)")
            #expect((stored["alarm"] as? [String: Any])?["state"] as? String == "acknowledged")
            #expect((stored["alarm"] as? [String: Any])?["acknowledgement_note"] as? String == "called patient")
            let table = try await Itbctl.run(["alarms", "--socket", socket], directory: scratch)
            let lines = table.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first?.contains("ACK BY") == true && lines.first?.contains("NOTE") == true, "\(table)")
            let row = lines.first { $0.contains("motor_stall") }
            #expect(row?.contains("acknowledged") == true && row?.contains(" \(userName) ") == true, "\(table)")
            #expect(row?.hasSuffix("called patient") == true, "\(table)")
            // The acknowledgement made the first alarm the last changed; the table still reads by id.
            let ids = lines.dropFirst().compactMap { Int($0.split(separator: " ").first ?? "") }
            #expect(ids.count == 2 && ids == ids.sorted(), "\(table)")
            let apiOrder = try #require(try await daemon.json("/v1/alarms")["alarms"] as? [[String: Any]]).compactMap { $0["id"] as? Int }
            #expect(apiOrder != apiOrder.sorted(), "the API lists by last change: \(apiOrder)")

            // Again, with --json: harmless, and the alarm as the daemon renders it.
            let again = try await Itbctl.run(["ack", String(id), "--json", "--socket", socket], directory: scratch)
            #expect(again.status == 0, "\(again)")
            #expect(try parseObject(again.stdout)["state"] as? String == "acknowledged")

            // The pump clears it: acknowledging now fails with the daemon's reason.
            try await daemon.raiseAndStore(.motorStall, .high, transition: .cleared)
            let ended = try await Itbctl.run(["ack", String(id), "--socket", socket], directory: scratch)
            #expect(ended.status == 1, "\(ended)")
            #expect(ended.stderr.contains("has already ended"), "\(ended)")
            #expect(ended.stdout.isEmpty)

            let unknown = try await Itbctl.run(["ack", "99999", "--socket", socket], directory: scratch)
            #expect(unknown.status == 5, "\(unknown)")
            #expect(unknown.stderr.contains("no alarm with id 99999"), "\(unknown)")
        } catch {
            await daemon.shutdown()
            throw error
        }
        await daemon.shutdown()
    }

    @Test("an unknown device exits 5 with the daemon's message")
    func unknownDeviceExits5() async throws {
        let daemon = try await TestDaemon(name: "unknown")
        do {
            let result = try await Itbctl.run(["status", "PGM-NOPE", "--socket", daemon.socketPath], directory: daemon.directory.path)
            #expect(result.status == 5, "\(result)")
            #expect(result.stderr.contains("no programmer with serial PGM-NOPE is known to the bridge"), "\(result)")
            #expect(result.stdout.isEmpty)
        } catch {
            await daemon.shutdown()
            throw error
        }
        await daemon.shutdown()
    }
}

@Suite("itbctl watch")
struct WatchCommandTests {
    let device = testProgrammer.programmerSerial

    @Test("watch --json prints each event once and in order, including those published while it was reconnecting after a daemon restart")
    func watchResumesAcrossADaemonRestart() async throws {
        let daemon = try await TestDaemon(name: "watch-restart")
        var watch: WatchProcess?
        do {
            try await daemon.connectProgrammer()
            // An alarm from before the watch started is not printed: it starts at the newest event.
            try await daemon.raiseAndStore(.eri, .low, detail: "before watch")
            let process = try WatchProcess(["--json", "--types", "alarm", "--socket", daemon.socketPath], directory: daemon.directory.path)
            watch = process
            _ = try await daemon.waitFor("/v1/health") { ($0["subscribers"] as? Int) == 1 }

            try await daemon.raiseAndStore(.motorStall, .high, detail: "one")
            _ = try await process.waitForLines { $0.count >= 1 }

            // The daemon stops. An alarm raised meanwhile waits on the programmer (unacknowledged).
            await daemon.stop()
            try await process.waitForStderr(containing: "reconnecting")
            _ = try await daemon.withProgrammer { p in
                _ = try? p.raise(code: .lowReservoir, priority: .medium, detail: "two", onsetTimeMs: nowMs())
            }
            // The daemon comes back where watch cannot see it (another socket), stores that alarm
            // and a new one, and stops again: watch must get both from the journal when it resumes.
            try await daemon.start(otherSocket: daemon.directory.path + "/hidden.sock")
            try await daemon.connectProgrammer()
            let delivered = try await daemon.serviceProgrammer(timeout: .seconds(20)) { $0.pending.isEmpty }
            #expect(delivered, "the alarm raised while the daemon was down is stored after its restart")
            try await daemon.raiseAndStore(.flowFault, .high, detail: "three")
            await daemon.stop()
            #expect(process.lines.count == 1, "nothing printed while watch could not reach the daemon")

            // Back on its socket: watch reconnects and resumes with Last-Event-ID; then live events.
            try await daemon.start()
            try await daemon.connectProgrammer()
            _ = try await daemon.waitFor("/v1/health", timeout: .seconds(20)) { ($0["subscribers"] as? Int) == 1 }
            try await daemon.raiseAndStore(.memoryError, .high, detail: "four")

            // The pump's alarms (the bridge may add its own, e.g. about the link, around the restart).
            @Sendable func pumpAlarms(_ lines: [String]) -> [[String: Any]] {
                lines.compactMap { try? parseObject($0) }.filter { ($0["data"] as? [String: Any])?["source"] as? String == "pump" }
            }
            _ = try await process.waitForLines { pumpAlarms($0).count >= 4 }
            // Nothing more arrives: no event is printed twice.
            try await Task.sleep(for: .milliseconds(500))
            let final = process.lines
            let events = try final.map { try parseObject($0) }
            #expect(events.allSatisfy { $0["event"] as? String == "alarm" }, "\(final)")
            let details = pumpAlarms(final).map { ($0["data"] as? [String: Any])?["detail"] as? String }
            #expect(details == ["one", "two", "three", "four"], "\(final)")
            let ids = events.compactMap { $0["id"] as? Int }
            #expect(ids.count == events.count && ids == ids.sorted() && Set(ids).count == ids.count, "\(ids)")
            #expect(events.allSatisfy { ($0["data"] as? [String: Any])?["event_id"] as? Int == $0["id"] as? Int })
            #expect(process.stderr.contains("reconnected"), "\(process.stderr)")

            #expect(try await process.stop(with: SIGINT) == 0, "SIGINT stops watch cleanly")
        } catch {
            if let watch { _ = try? await watch.stop(with: SIGKILL) }
            await daemon.shutdown()
            throw error
        }
        await daemon.shutdown()
    }

    @Test("watch reports a lagged disconnect as a warning on stderr and resumes, so every event is still printed once, in order")
    func watchResumesAfterBeingLagged() async throws {
        // A two-event allowance per subscriber, and a watch that is stopped (SIGSTOP) during a burst
        // larger than its socket's buffers: the daemon must cut it off.
        let daemon = try await TestDaemon(name: "watch-lagged") { $0.subscriberBufferEvents = 2 }
        var watch: WatchProcess?
        do {
            try await daemon.connectProgrammer()
            let process = try WatchProcess(["--json", "--types", "status", "--socket", daemon.socketPath], directory: daemon.directory.path)
            watch = process
            _ = try await daemon.waitFor("/v1/health") { ($0["subscribers"] as? Int) == 1 }
            let total = 3000
            kill(process.process.processIdentifier, SIGSTOP)
            try await daemon.withProgrammer { p in
                for i in 0..<total {
                    // Each status differs (the alarm mask), so each becomes an event.
                    try p.send(.pumpStatus(PumpStatus(deviceTimeMs: nowMs(), dailyDoseUgX10: 4000, concentrationUgPerML: 2000,
                                                      activeAlarmMask: UInt32(i), pumpState: .infusing, dosingMode: .simpleContinuous,
                                                      linkQualityPct: 90)))
                }
            }
            // Every status has reached the daemon once the device shows the last one.
            _ = try await daemon.waitFor("/v1/devices/\(testProgrammer.programmerSerial)/status") {
                ($0["active_alarm_mask"] as? Int) == total - 1
            }
            kill(process.process.processIdentifier, SIGCONT)
            let lines = try await process.waitForLines(timeout: .seconds(60)) { $0.count >= total }
            try await Task.sleep(for: .milliseconds(300))
            let final = process.lines
            #expect(final.count == total, "each event printed once (\(final.count) lines for \(total) events)")
            let events = try final.map { try parseObject($0) }
            let masks = events.map { ($0["data"] as? [String: Any])?["active_alarm_mask"] as? Int }
            #expect(masks == Array(0..<total).map { Optional($0) }, "in the order they were sent")
            let ids = events.compactMap { $0["id"] as? Int }
            #expect(ids == ids.sorted() && Set(ids).count == ids.count)
            #expect(process.stderr.contains("warning: lagged:"), "the daemon cut the client off at least once: \(process.stderr)")
            #expect(lines.count >= total)
            #expect(try await process.stop(with: SIGINT) == 0)
        } catch {
            if let watch { _ = try? await watch.stop(with: SIGKILL) }
            await daemon.shutdown()
            throw error
        }
        await daemon.shutdown()
    }

    @Test("watch prints one human-readable line per event, filtered by device, and stops with exit 0 on SIGTERM")
    func watchPrintsHumanLines() async throws {
        let daemon = try await TestDaemon(name: "watch-human")
        var watch: WatchProcess?
        do {
            try await daemon.connectProgrammer()
            let process = try WatchProcess(["--device", device, "--types", "alarm,status", "--socket", daemon.socketPath],
                                           directory: daemon.directory.path)
            watch = process
            _ = try await daemon.waitFor("/v1/health") { ($0["subscribers"] as? Int) == 1 }
            try await daemon.raiseAndStore(.motorStall, .high, detail: "stalled at 03:12")
            try await daemon.withProgrammer { p in
                try p.send(.pumpStatus(PumpStatus(deviceTimeMs: nowMs(), dailyDoseUgX10: 4000, concentrationUgPerML: 2000,
                                                  activeAlarmMask: 1 << 4, pumpState: .criticalAlarm, dosingMode: .simpleContinuous,
                                                  linkQualityPct: 90)))
            }
            let lines = try await process.waitForLines { $0.count >= 2 }
            let alarm = try #require(lines.first { $0.contains("  alarm  ") }, "\(lines)")
            #expect(alarm.contains(device) && alarm.contains("motor_stall (high, pump) active: stalled at 03:12"), "\(alarm)")
            #expect(alarm.prefix(4).allSatisfy { $0.isNumber }, "each line starts with the event's RFC 3339 time: \(alarm)")
            let status = try #require(lines.first { $0.contains("  status  ") }, "\(lines)")
            #expect(status.contains("critical_alarm, 400.0 µg/day at 2000 µg/mL, pump alarms: motor_stall"), "\(status)")
            #expect(try await process.stop(with: SIGTERM) == 0, "SIGTERM stops watch cleanly")
        } catch {
            if let watch { _ = try? await watch.stop(with: SIGKILL) }
            await daemon.shutdown()
            throw error
        }
        await daemon.shutdown()
    }
}

/// Whether the permission test can run: as an unprivileged user, or as root able to become one.
let canTestPermissionDenied = getuid() != 0 || Itbctl.asNobody != nil

@Suite("itbctl connection failures")
struct ConnectionFailureTests {
    @Test("with no daemon at the socket, every client command exits 3 with the not-running message, and ITB_SOCKET chooses the socket")
    func daemonNotRunningExits3() async throws {
        let scratch = try ScratchDirectory("down")
        defer { scratch.remove() }
        let missing = scratch.path + "/missing.sock"
        for arguments in [["devices"], ["status"], ["alarms", "--active"], ["ack", "1"], ["watch"]] {
            let result = try await Itbctl.run(arguments + ["--socket", missing], directory: scratch.path)
            #expect(result.status == 3, "\(arguments): \(result)")
            #expect(result.stderr.contains("itb-bridged is not running (no socket at \(missing))"), "\(result)")
        }
        // From the environment, when --socket is not given.
        let fromEnvironment = scratch.path + "/from-env.sock"
        let env = try await Itbctl.run(["devices"], environment: ["ITB_SOCKET": fromEnvironment], directory: scratch.path)
        #expect(env.status == 3, "\(env)")
        #expect(env.stderr.contains("no socket at \(fromEnvironment)"), "\(env)")

        // A stale socket file that nobody listens on is the same.
        let stale = scratch.path + "/stale.sock"
        let fd = try listeningSocket(at: stale)
        close(fd)
        let staleResult = try await Itbctl.run(["devices", "--socket", stale], directory: scratch.path)
        #expect(staleResult.status == 3, "\(staleResult)")
    }

    @Test("a socket this user may not open exits 4 with the permission message",
          .enabled(if: canTestPermissionDenied, "running as root without setpriv or runuser to become another user (root ignores socket file modes)"))
    func permissionDeniedExits4() async throws {
        let scratch = try ScratchDirectory("perm")
        defer { scratch.remove() }
        let path = scratch.path + "/api.sock"
        let fd = try listeningSocket(at: path)
        defer { close(fd) }
        #expect(chmod(path, 0) == 0)
        // Root may open any socket whatever its mode: then the client runs as `nobody`.
        let prefix = getuid() == 0 ? try #require(Itbctl.asNobody) : []
        for arguments in [["devices"], ["alarms"], ["watch"]] {
            let result = try await Itbctl.run(arguments + ["--socket", path], prefix: prefix, directory: scratch.path)
            #expect(result.status == 4, "\(arguments): \(result)")
            #expect(result.stderr.contains("permission denied on \(path)"), "\(result)")
        }
    }

    /// A Unix socket listening at `path`; returns its descriptor.
    func listeningSocket(at path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket failed") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 4) == 0 else {
            close(fd)
            throw HarnessError("bind/listen on \(path) failed: \(String(cString: strerror(errno)))")
        }
        return fd
    }
}
