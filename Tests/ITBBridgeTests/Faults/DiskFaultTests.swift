import Foundation
import ITBClient
import ITBProtocol
import ITBSimulator
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The journal's disk failing under a running daemon (a real process, on a file system the test
/// mounts): the daemon must say so loudly, keep serving live data, never acknowledge as stored
/// an alarm it could not store, and store every pending alarm exactly once when the disk is back.
///
/// Two faults:
/// - **full**: the state directory is a small tmpfs that the test fills with a file, then empties;
///   the daemon recovers without a restart.
/// - **read-only**: `mount -o remount,ro` is refused (EBUSY) while any file on the file system is
///   open for writing, as the journal always is, so a running daemon's state directory cannot be
///   made read-only that way. What does happen in the field is the kernel forcing the file system
///   read-only after an I/O error (ext4 `errors=remount-ro`); the test does that with ext4's
///   `trigger_fs_error` on an image on a loop device. Such a file system stays read-only until it
///   is unmounted, which needs the daemon stopped: recovery is stop, fsck, mount, start.
@Suite("Faults: the journal's disk", .serialized)
struct DiskFaultTests {
    enum Fault: String, CustomStringConvertible, CaseIterable, Sendable {
        case full
        case readOnly = "read-only"
        var description: String { rawValue }
    }

    /// Why the test cannot mount here, or nil when it can.
    static let mountProblem: String? = {
        guard getuid() == 0 else { return "mounting a test file system needs root" }
        guard let scratch = try? ScratchDirectory("mount-probe") else { return "no scratch directory" }
        defer { scratch.remove() }
        guard let mounted = try? runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", scratch.path]), mounted.status == 0 else {
            return "mount -t tmpfs is not permitted here"
        }
        _ = try? runCommand("/bin/umount", [scratch.path])
        return nil
    }()

    /// Why the read-only case cannot run here (no loop devices, mkfs.ext4, or ext4's error trigger).
    static let ext4Problem: String? = {
        if let mountProblem { return mountProblem }
        guard FileManager.default.fileExists(atPath: "/dev/loop-control") else { return "no loop devices (/dev/loop-control)" }
        guard which("mkfs.ext4") != nil || FileManager.default.isExecutableFile(atPath: "/sbin/mkfs.ext4") else { return "mkfs.ext4 is not installed (e2fsprogs)" }
        guard FileManager.default.fileExists(atPath: "/sys/fs/ext4/features") else { return "the kernel has no ext4" }
        return nil
    }()

    @Test("with the journal's disk full or forced read-only, the daemon logs it as critical, reports it in /v1/health, keeps serving live status, never ACKs as stored an alarm it could not store, and stores each pending alarm exactly once when the disk is back",
          .enabled(if: mountProblem == nil, "\(mountProblem ?? "")"),
          arguments: Fault.allCases)
    func journalDiskFault(_ fault: Fault) async throws {
        if fault == .readOnly, let ext4Problem = Self.ext4Problem {
            // Swift Testing has no run-time skip: say why and stop.
            print("fault.disk \(fault): not run: \(ext4Problem)")
            return
        }
        let alarmsDuringFault = ProofScale.count(short: 6, full: 60)
        let faultHold = Duration.seconds(ProofScale.count(short: 3, full: 20))
        let started = ContinuousClock.now

        let directory = try ScratchDirectory("disk-\(fault)")
        defer { directory.remove() }
        let state = directory.path + "/state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let disk = try await StateDisk(fault: fault, mountPoint: state, scratch: directory.path)
        defer { disk.unmount() }

        let socketPath = directory.path + "/api.sock"
        let log = directory.path + "/daemon.log"
        let programmer = try ProgrammerEndpoint(info: testProgrammer, initialRetransmitDelay: .milliseconds(200),
                                                maximumRetransmitDelay: .milliseconds(800))
        defer { programmer.pty.close() }
        let arguments = ["--no-discovery", "--device", programmer.pty.slavePath, "--socket", socketPath,
                         "--state-dir", state, "--log-level", "notice"]
        var daemon = try DaemonProcess(arguments: arguments, socketPath: socketPath, log: log)
        defer { daemon.terminate() }
        try await daemon.waitReady()
        let client = UnixHTTPClient(socketPath: socketPath, timeout: .seconds(10))
        try await waitUntilIdentified(programmer, client: client)
        let driver = ProgrammerDriver(programmer)
        let statusPath = "/v1/devices/\(testProgrammer.programmerSerial)/status"
        let stopSubscriber = StopFlag()

        try await withCleanup({
            // A live subscriber, to see what is published during the fault.
            let subscriber = try await blocking { try client.events("/v1/events?types=status,alarm") }
            let events = Locked<[ServerSentEvent]>([])
            let subscribed = onThread {
                defer { subscriber.close() }
                while !stopSubscriber.isStopped {
                    do {
                        guard let event = try subscriber.next(timeout: .milliseconds(300)) else { return }
                        events.withLock { $0.append(event) }
                    } catch ClientError.timedOut {
                        continue
                    } catch {
                        return
                    }
                }
            }
            // Alarm k has a code of its own (raw 1000 + k, kept as `unknown`), so it is one alarm
            // condition of its own in the journal whatever order the retransmissions come in, and a
            // duplicate would show as a second transition of that condition.
            @Sendable func raiseNext(_ programmer: ProgrammerEndpoint) throws -> UInt32 {
                let k = programmer.highestAlarmID + 1
                return try programmer.raise(code: AlarmCode(rawValue: UInt16(Self.codeBase + Int(k))), priority: .high,
                                            detail: "disk fault alarm \(k)", onsetTimeMs: nowMs()).alarmID
            }

            // Healthy first: one alarm stored and acknowledged. It comes before any status, as the
            // retransmitted alarms of a programmer do when the daemon has just started.
            let first = try await driver.perform(raiseNext)
            try await waitUntil("the first alarm is acknowledged as stored", timeout: .seconds(10)) {
                try await driver.perform { $0.pending[first] == nil }
            }
            driver.streamStatus(.init(interval: .milliseconds(50)) { distinctStatus($0) })
            _ = try await waitForJSON(client, statusPath) { _ in true }
            let healthBefore = try await waitForJSON(client, "/v1/health") { _ in true }
            #expect(healthBefore["status"] as? String == "ok")

            // The fault.
            let faultStarted = ContinuousClock.now
            try await disk.induce()
            if fault == .full {
                // A full disk fails a write only when SQLite must grow a file: keep the status
                // stream busy until the daemon reports the first failed write.
                driver.streamStatus(.init(interval: .milliseconds(10)) { distinctStatus($0) })
            }
            try await waitUntil("the daemon logs a critical journal write failure", timeout: .seconds(60)) {
                Self.criticalJournalLine(in: log) != nil
            }
            let detected = ContinuousClock.now - faultStarted
            driver.streamStatus(.init(interval: .milliseconds(50)) { distinctStatus($0, dailyDoseUgX10: 77_777) })
            let eventsAtFault = events.value.count
            var faultAlarms: [UInt32] = []
            for _ in 0..<alarmsDuringFault {
                faultAlarms.append(try await driver.perform(raiseNext))
            }
            // Live data still served: the status sent during the fault (7777.7 µg/day).
            let live = try await waitForJSON(client, statusPath, timeout: .seconds(10)) { ($0["daily_dose_ug"] as? Double) == 7777.7 }
            #expect(live["daily_dose_ug"] as? Double == 7777.7)
            let healthDuring = try await waitForJSON(client, "/v1/health", timeout: .seconds(10)) { ($0["database_ok"] as? Bool) == false }
            // Let the programmer retransmit a few times into the fault.
            try await Task.sleep(for: faultHold)
            let healthLater = try await waitForJSON(client, "/v1/health") { _ in true }
            let (pendingAtEnd, acksDuring) = try await driver.perform { p in (Set(p.pending.keys), p.acks) }
            let faultSet = Set(faultAlarms)
            let storedDuring = acksDuring.filter { faultSet.contains($0.alarmID) && $0.status == .stored }
            let rejectedDuring = acksDuring.filter { faultSet.contains($0.alarmID) && $0.status == .rejected }
            let eventsDuringFault = events.value.dropFirst(eventsAtFault)
            let liveStatusEvents = eventsDuringFault.filter { $0.event == "status" && $0.data.contains("7777.7") }
            #expect(!liveStatusEvents.isEmpty, "live status still reaches the event stream during the fault")
            #expect(liveStatusEvents.allSatisfy { $0.id == nil }, "events not in the journal carry no SSE id (nothing to resume from)")
            let servedDuring = try await blocking { try client.get("/v1/devices/\(testProgrammer.programmerSerial)") }

            #expect(faultSet.isSubset(of: pendingAtEnd), "every alarm raised during the fault is still pending at the programmer: \(faultSet.subtracting(pendingAtEnd).sorted()) were not")
            #expect(storedDuring.isEmpty, "no alarm is acknowledged as stored while the journal cannot store it: \(storedDuring.map(\.alarmID))")
            #expect(!rejectedDuring.isEmpty, "the daemon answers ACK rejected to alarms it cannot store")
            #expect(healthDuring["status"] as? String == "degraded", "health during the fault: \(healthDuring)")
            #expect(healthLater["database_ok"] as? Bool == false, "health stays degraded while the fault lasts: \(healthLater)")
            #expect(servedDuring.status == 200, "GET /v1/devices/{id} during the fault")
            let critical = Self.criticalJournalLine(in: log) ?? ""
            #expect(critical.contains("journal"), "the critical line names the journal: \(critical)")

            // Recovery.
            let recoveryStarted = ContinuousClock.now
            switch fault {
            case .full:
                try await disk.repair()
            case .readOnly:
                // The file system stays read-only until unmounted: stop, repair, start.
                let stopped = daemon
                try await blocking { stopped.terminate() }
                try await disk.repair()
                daemon = try DaemonProcess(arguments: arguments, socketPath: socketPath, log: log)
                try await daemon.waitReady()
            }
            try await waitUntil("every pending alarm is acknowledged as stored after recovery", timeout: .seconds(60)) {
                try await driver.perform { $0.pending.isEmpty }
            }
            let recovered = ContinuousClock.now - recoveryStarted
            let healthAfter = try await waitForJSON(client, "/v1/health", timeout: .seconds(10)) { ($0["status"] as? String) == "ok" }
            #expect(healthAfter["database_ok"] as? Bool == true)
            let acks = try await driver.perform { $0.acks }
            let highest = try await driver.perform { $0.highestAlarmID }
            let storedIDs = Set(acks.filter { $0.status == .stored && $0.ackedType == .alarm }.map(\.alarmID))
            #expect(storedIDs == Set(1...highest), "every alarm acknowledged as stored in the end")

            // Exactly once in the journal: one condition per alarm id, with one transition.
            let stored = try await Self.storedAlarmMessages(client)
            let pendingIDs = Set(Int(first + 1)...Int(highest))
            let pendingStored = stored.filter { pendingIDs.contains($0.key) }
            #expect(pendingStored.count == pendingIDs.count && pendingStored.values.allSatisfy { $0 == 1 },
                    "each alarm that was pending during the fault is stored exactly once: missing \(pendingIDs.subtracting(stored.keys).sorted()), more than once \(pendingStored.filter { $0.value > 1 })")
            #expect(Set(stored.keys).isSubset(of: Set(1...Int(highest))), "no alarm the programmer never sent: \(stored.keys.sorted())")
            let idsSeen = stored.keys.sorted()
            let firstKept = stored[Int(first)] == 1
            // For the read-only case the kernel's journal abort drops whatever was not fsynced, as a
            // power cut does: the alarm ACKed before the fault must have been.
            #expect(firstKept, "the alarm acknowledged as stored before the fault is in the journal once: \(idsSeen)")
            let daemonLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if fault == .full {
                #expect(daemon.process.isRunning, "the daemon recovered without a restart")
                #expect(daemonLog.contains("journal writes succeed again"), "the daemon logs the recovery")
            }
            stopSubscriber.stop()
            try await subscribed.value

            ProofScale.figure("fault.disk", [
                "case": fault.rawValue, "detected_s": oneDecimal(milliseconds(detected) / 1000),
                "alarms_during_fault": faultAlarms.count, "acked_stored_during_fault": storedDuring.count,
                "acked_rejected_during_fault": rejectedDuring.count, "pending_at_recovery": pendingAtEnd.count,
                "live_status_served": live["daily_dose_ug"] as? Double == 7777.7 ? "yes" : "no",
                "sse_status_events_during_fault": liveStatusEvents.count,
                "health_during": "\(healthDuring["status"] ?? "?")", "health_after": "\(healthAfter["status"] ?? "?")",
                "recovered_s": oneDecimal(milliseconds(recovered) / 1000),
                "restart_needed": fault == .readOnly ? "yes" : "no",
                "pending_stored_exactly_once": pendingStored.count == pendingIDs.count && pendingStored.values.allSatisfy { $0 == 1 } ? "yes" : "no",
                "acked_before_fault_survived": firstKept ? "yes" : "no",
                "seconds": oneDecimal(milliseconds(ContinuousClock.now - started) / 1000),
            ])
        }, cleanup: {
            stopSubscriber.stop()
            await driver.stop()
        })
    }

    /// Alarm k's code is raw `codeBase + k`.
    static let codeBase = 1000

    /// How many times each alarm message (by the programmer's alarm id) is in the journal: the
    /// transitions of the condition whose code is `codeBase + id`.
    static func storedAlarmMessages(_ client: UnixHTTPClient) async throws -> [Int: Int] {
        let answer = try await blocking { try client.get("/v1/alarms?device=\(testProgrammer.programmerSerial)&limit=10000") }
        let list = try #require(try JSONObject.parse(answer.body)["alarms"] as? [[String: Any]])
        var counts: [Int: Int] = [:]
        for alarm in list where alarm["source"] as? String == "pump" {
            let id = try #require(alarm["id"] as? Int)
            let k = try #require(alarm["code_raw"] as? Int) - codeBase
            let detail = try await blocking { try client.get("/v1/alarms/\(id)") }
            let transitions = try #require(try JSONObject.parse(detail.body)["transitions"] as? [[String: Any]])
            counts[k, default: 0] += transitions.count
        }
        return counts
    }

    /// The daemon's first critical log line about the journal, if any.
    static func criticalJournalLine(in log: String) -> String? {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").first { $0.contains("CRITICAL") && $0.lowercased().contains("journal") }.map(String.init)
    }
}

/// Polls `condition` every 50 ms until it holds; throws with `what` after `timeout`.
func waitUntil(_ what: String, timeout: Duration, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    if try await condition() { return }
    throw HarnessError("timed out after \(timeout): \(what)")
}

/// The file system the test mounts at the daemon's state directory, and the fault it injects.
final class StateDisk: Sendable {
    let fault: DiskFaultTests.Fault
    let mountPoint: String
    let image: String
    private let mounted = Mutex(false)

    init(fault: DiskFaultTests.Fault, mountPoint: String, scratch: String) async throws {
        self.fault = fault
        self.mountPoint = mountPoint
        image = scratch + "/state.ext4"
        switch fault {
        case .full:
            // 8 MiB: room for the journal, small enough to fill at once.
            try await Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", mountPoint])
        case .readOnly:
            try await Self.run("/usr/bin/truncate", ["-s", "64M", image])
            try await Self.run(which("mkfs.ext4") ?? "/sbin/mkfs.ext4", ["-q", "-F", image])
            try await Self.run("/bin/mount", ["-o", "loop,errors=remount-ro", image, mountPoint])
        }
        mounted.withLock { $0 = true }
    }

    /// Fills the tmpfs, or forces the ext4 file system read-only as an I/O error would.
    func induce() async throws {
        switch fault {
        case .full:
            let filler = mountPoint + "/filler"
            try await blocking {
                let fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
                guard fd >= 0 else { throw HarnessError("open \(filler): \(String(cString: strerror(errno)))") }
                defer { close(fd) }
                let chunk = [UInt8](repeating: 0xAA, count: 64 << 10)
                var size = chunk.count
                while size > 0 {
                    let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, size) }
                    if n < 0 {
                        guard errno == ENOSPC else { throw HarnessError("filling: \(String(cString: strerror(errno)))") }
                        size /= 2  // fill the last bytes too
                    }
                }
            }
        case .readOnly:
            let (status, source) = try await blocking { try runCommand("/bin/findmnt", ["-n", "-o", "SOURCE", self.mountPoint]) }
            let device = (source.trimmingCharacters(in: .whitespacesAndNewlines) as NSString).lastPathComponent
            guard status == 0, !device.isEmpty else { throw HarnessError("findmnt \(mountPoint): \(source)") }
            let trigger = "/sys/fs/ext4/\(device)/trigger_fs_error"
            try "itb-bridge disk fault test\n".write(toFile: trigger, atomically: false, encoding: .utf8)
        }
    }

    /// Frees the space, or (daemon stopped) unmounts, checks and mounts the file system again.
    func repair() async throws {
        switch fault {
        case .full:
            guard unlink(mountPoint + "/filler") == 0 else { throw HarnessError("unlink filler: \(String(cString: strerror(errno)))") }
        case .readOnly:
            try await Self.run("/bin/umount", [mountPoint])
            // e2fsck exits 1 when it corrected errors (the one the test triggered).
            let (status, output) = try await blocking { try runCommand(which("e2fsck") ?? "/sbin/e2fsck", ["-f", "-y", self.image]) }
            guard status <= 1 else { throw HarnessError("e2fsck: \(status) \(output)") }
            try await Self.run("/bin/mount", ["-o", "loop,errors=remount-ro", image, mountPoint])
        }
    }

    /// Unmounts (lazily if busy: the daemon may still be stopping); safe to call more than once.
    func unmount() {
        guard mounted.withLock({ was in defer { was = false }; return was }) else { return }
        if (try? runCommand("/bin/umount", [mountPoint]))?.status != 0 {
            _ = try? runCommand("/bin/umount", ["-l", mountPoint])
        }
    }

    private static func run(_ executable: String, _ arguments: [String]) async throws {
        let (status, output) = try await blocking { try runCommand(executable, arguments) }
        guard status == 0 else { throw HarnessError("\(executable) \(arguments.joined(separator: " ")): exit \(status): \(output)") }
    }
}
