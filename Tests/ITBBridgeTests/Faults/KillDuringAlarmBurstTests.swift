import Foundation
import ITBClient
import ITBProtocol
import ITBSerial
import ITBSimulator
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Issue 8, proof under faults, device side: SIGKILL of the daemon process at random moments of
// alarm bursts, many times over one journal. (`EndToEndCrashTests` keeps its three single-kill
// rounds on fresh journals with the known alarm codes; this test is the long, randomised one.)

@Suite("Fault: SIGKILL during alarm bursts, one journal across every kill", .serialized)
struct KillDuringAlarmBurstTests {
    @Test("SIGKILLed at seeded random moments of alarm bursts and restarted on the same journal each time, the bridge ends with every alarm message stored exactly once and every one acknowledged as stored")
    func killsDuringAlarmBursts() async throws {
        let kills = ProofScale.count(short: 5, full: 50)
        let burst = 20
        var random = SplitMix64(seed: 0x5EED_0008_0001)
        let directory = try ScratchDirectory("fault-kill9")
        defer { directory.remove() }
        let socketPath = directory.path + "/api.sock"
        let client = UnixHTTPClient(socketPath: socketPath)
        let programmer = try ProgrammerEndpoint(info: testProgrammer, initialRetransmitDelay: .milliseconds(100),
                                                maximumRetransmitDelay: .milliseconds(400))
        defer { programmer.pty.close() }
        let arguments = ["--no-discovery", "--device", programmer.pty.slavePath, "--socket", socketPath,
                         "--state-dir", directory.path + "/state", "--log-level", "warning"]
        let log = directory.path + "/daemon.log"
        let started = ContinuousClock.now

        var killsWithAlarmsInFlight = 0
        var killsAfterSomeStored = 0
        for round in 0..<kills {
            // The plan of this burst: when each alarm goes out (0–3 ms apart, about 30 ms in all)
            // and when the kill comes (from 0.5 ms after the first alarm to 5 ms after the last):
            // between any two of the bridge's commits and ACKs, while retransmissions of earlier
            // rounds may be in flight too.
            let gapsUs = (0..<burst).map { _ in Int.random(in: 0...3000, using: &random) }
            let killAtUs = Int.random(in: 500...(gapsUs.dropLast().reduce(0, +) + 5000), using: &random)
            let firstID = programmer.highestAlarmID + 1
            let daemon = try DaemonProcess(arguments: arguments, socketPath: socketPath, log: log)
            let atKill: (inFlight: Int, storedOfRound: Int)
            do {
                try await daemon.waitReady()
                try await DeviceFaults.identify(programmer, client: client, daemon: daemon.process.processIdentifier)
                atKill = try await blocking {
                    let start = ContinuousClock.now
                    var next = 0
                    var nextAt = start
                    while ContinuousClock.now < start + .microseconds(killAtUs) {
                        if next < burst, ContinuousClock.now >= nextAt {
                            try DeviceFaults.raiseNextAlarm(programmer, detail: "kill \(round) burst \(next)")
                            nextAt = ContinuousClock.now + .microseconds(gapsUs[next])
                            next += 1
                        }
                        try programmer.service(timeout: .zero)
                        usleep(100)
                    }
                    daemon.kill9()
                    let storedOfRound = Set(programmer.acks.filter { $0.status == .stored && $0.alarmID >= firstID }.map(\.alarmID)).count
                    return (programmer.pending.count, storedOfRound)
                }
            } catch {
                // Never leave a daemon behind following a pty that is about to close.
                daemon.kill9()
                throw error
            }
            if atKill.inFlight > 0 { killsWithAlarmsInFlight += 1 }
            if atKill.storedOfRound > 0 && atKill.inFlight > 0 { killsAfterSomeStored += 1 }
            // The rest of a burst cut short by the kill is raised while no daemon runs: the line
            // buffers it and the next daemon flushes it at open, so it arrives by retransmission.
            while programmer.highestAlarmID < firstID + UInt32(burst) - 1 {
                try DeviceFaults.raiseNextAlarm(programmer, detail: "kill \(round) after")
            }
        }

        // The last restart: everything still queued on the programmer is retransmitted and stored.
        let daemon = try DaemonProcess(arguments: arguments, socketPath: socketPath, log: log)
        defer { daemon.terminate() }
        try await daemon.waitReady()
        let drained = try await blocking { try programmer.service(until: { $0.pending.isEmpty }, timeout: .seconds(60)) }
        let total = Int(programmer.highestAlarmID)
        #expect(total == kills * burst)
        #expect(drained, "\(programmer.pending.count) alarms never acknowledged as stored: \(programmer.pending.keys.sorted())")

        let acked = Set(programmer.acks.filter { $0.status == .stored }.map { Int($0.alarmID) })
        let rejected = programmer.acks.filter { $0.status != .stored }.count
        #expect(acked == Set(1...total), "not acknowledged as stored: \(Set(1...total).subtracting(acked).sorted())")
        #expect(rejected == 0, "\(rejected) ACKs other than stored: the journal refused a write")

        // Exactly once, seen two ways: the alarms the API lists carry each message id once, and the
        // journal holds one alarm event per message (a duplicate would be a second event).
        let listed = try await blocking { try DeviceFaults.listedAlarmMessageIDs(client, device: testProgrammer.programmerSerial) }
        #expect(listed == Array(1...total), "GET /v1/alarms does not show each alarm message once")
        let perMessage = try await blocking { try DeviceFaults.alarmEventsPerMessage(client) }
        let once = (1...total).filter { perMessage[$0] == 1 }.count
        let lost = (1...total).filter { perMessage[$0] == nil }
        let duplicated = perMessage.filter { $0.value > 1 }.keys.sorted()
        let unknown = perMessage.keys.filter { !(1...total).contains($0) }.sorted()
        #expect(lost.isEmpty, "alarm messages never stored: \(lost)")
        #expect(duplicated.isEmpty, "alarm messages stored more than once: \(duplicated)")
        #expect(unknown.isEmpty, "alarm events for messages never sent: \(unknown)")
        // Not vacuous: the kills must have caught alarms between the programmer and the journal.
        #expect(killsWithAlarmsInFlight > 0, "no kill left an alarm unacknowledged: the kills missed the bursts")

        ProofScale.figure("fault.sigkill", [
            "kills": kills, "alarms": total, "stored_exactly_once": once, "acked": acked.count,
            "lost": lost.count, "duplicates": duplicated.count, "rejected_acks": rejected,
            "kills_with_alarms_in_flight": killsWithAlarmsInFlight, "kills_after_some_stored": killsAfterSomeStored,
            "seconds": DeviceFaults.seconds(since: started),
        ])
    }
}

// MARK: - What the device-side fault tests share

/// Helpers of the device-side fault tests (SIGKILL, replug, line noise).
enum DeviceFaults {
    /// Sends the programmer's next alarm message: odd ids raise, even ids clear, and each
    /// raise/clear pair has a code of its own (unknown codes from 0x0100, which the bridge keeps
    /// with their raw value). A retransmission arriving after later messages then cannot fold two
    /// raises of one code into one alarm row, so every message id stays visible in `GET /v1/alarms`
    /// as its row's `device_alarm_id` or `cleared_device_alarm_id`.
    @discardableResult
    static func raiseNextAlarm(_ programmer: ProgrammerEndpoint, detail: String) throws -> Alarm {
        let id = programmer.highestAlarmID + 1
        let code = AlarmCode(rawValue: 0x0100 + UInt16(truncatingIfNeeded: (id - 1) / 2 % 0xFE00))
        return try programmer.raise(code: code, priority: .high, transition: id % 2 == 1 ? .raised : .cleared,
                                    detail: detail, onsetTimeMs: nowMs())
    }

    /// The pump alarm message ids `GET /v1/alarms` shows for `device` (each alarm's
    /// `device_alarm_ids`, which hold its `device_alarm_id` and `cleared_device_alarm_id`), sorted.
    static func listedAlarmMessageIDs(_ client: UnixHTTPClient, device: String) throws -> [Int] {
        let limit = 10_000
        let response = try client.get("/v1/alarms?device=\(device)&limit=\(limit)")
        guard response.status == 200, let list = try JSONObject.parse(response.body)["alarms"] as? [[String: Any]] else {
            throw HarnessError("GET /v1/alarms: \(response.status) \(response.text)")
        }
        guard list.count < limit else { throw HarnessError("\(limit) alarms or more: the list may be cut short") }
        var ids: [Int] = []
        for alarm in list where alarm["source"] as? String == "pump" {
            guard let covered = alarm["device_alarm_ids"] as? [Int] else { throw HarnessError("alarm without device_alarm_ids: \(alarm)") }
            if let raised = alarm["device_alarm_id"] as? Int, !covered.contains(raised) { throw HarnessError("raise \(raised) not in device_alarm_ids \(covered)") }
            if let cleared = alarm["cleared_device_alarm_id"] as? Int, !covered.contains(cleared) { throw HarnessError("clear \(cleared) not in device_alarm_ids \(covered)") }
            ids += covered
        }
        return ids.sorted()
    }

    /// Replays the journal over SSE (`Last-Event-ID: 0`) from its first event to the newest one
    /// at the time of the call, handing each to `body`; returns how many were read.
    @discardableResult
    static func forEachJournaledEvent(_ client: UnixHTTPClient, _ body: (ServerSentEvent) throws -> Void) throws -> Int {
        let health = try JSONObject.parse(client.get("/v1/health").body)
        guard let newest = (health["last_event_id"] as? NSNumber)?.int64Value else {
            throw HarnessError("no last_event_id in /v1/health: \(health)")
        }
        guard newest > 0 else { return 0 }
        let stream = try client.events("/v1/events", lastEventID: 0)
        defer { stream.close() }
        var count = 0
        while let event = try stream.next(timeout: .seconds(30)) {
            guard let id = event.id else { continue }
            try body(event)
            count += 1
            if id >= newest { return count }
        }
        throw HarnessError("the event stream ended after \(count) events, before event \(newest)")
    }

    /// How many `alarm` events the journal holds for each pump alarm message id. Each stored
    /// message adds exactly one event to its alarm: a raise shows the row active with its id as
    /// `device_alarm_id`; a clear shows it ended with its id as `cleared_device_alarm_id` (with
    /// ``raiseNextAlarm(_:detail:)``'s codes no other transition exists).
    static func alarmEventsPerMessage(_ client: UnixHTTPClient) throws -> [Int: Int] {
        // Each stored message appends its id to its alarm's `device_alarm_ids` and publishes one
        // event: the message behind an event is the id that event added (a raise that arrives
        // after its clear joins the ended alarm, so the state alone does not say which it was).
        var counts: [Int: Int] = [:]
        var seen: [Int: Int] = [:]  // alarm id → how many of its device_alarm_ids were seen
        try forEachJournaledEvent(client) { event in
            guard event.event == "alarm" else { return }
            let alarm = try parseObject(event.data)
            guard alarm["source"] as? String == "pump", let alarmID = alarm["id"] as? Int else { return }
            guard let ids = alarm["device_alarm_ids"] as? [Int] else { throw HarnessError("alarm event without device_alarm_ids: \(event.data)") }
            let before = seen[alarmID] ?? 0
            guard ids.count > before else { return }  // an acknowledgement: no new message
            for id in ids[before...] { counts[id, default: 0] += 1 }
            seen[alarmID] = ids.count
        }
        return counts
    }

    /// Other processes than the test and `daemon` that hold the slave of `pty` open, as
    /// `pid (command)`. On a shared machine a daemon of someone else's that follows a stale
    /// `/dev/pts/N` opens whatever pty gets that number next, and talks to our programmer.
    static func foreignHolders(of pty: PseudoTerminal, daemon: pid_t) -> [String] {
        DeviceHolders.find(path: pty.slavePath).filter { $0.pid != daemon && $0.pid != getpid() }.map { "\($0.pid) (\($0.command))" }
    }

    /// ``waitUntilIdentified(_:client:timeout:)``, saying who else holds the pty when it fails.
    static func identify(_ programmer: ProgrammerEndpoint, client: UnixHTTPClient, daemon: pid_t) async throws {
        do {
            try await waitUntilIdentified(programmer, client: client)
        } catch {
            let holders = foreignHolders(of: programmer.pty, daemon: daemon)
            guard holders.isEmpty else {
                throw HarnessError("\(error); \(programmer.pty.slavePath) is held by another process: \(holders.joined(separator: ", ")) (a stale follower of that pty number on this machine?)")
            }
            throw error
        }
    }

    /// Seconds since `start`.
    static func elapsed(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    /// Seconds since `start`, with one decimal, for figure lines.
    static func seconds(since start: ContinuousClock.Instant) -> String {
        String(format: "%.1f", elapsed(since: start))
    }
}
