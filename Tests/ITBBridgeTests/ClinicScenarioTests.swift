import Dispatch
import Foundation
import ITBJSON
import ITBProtocol
import ITBSerial
import ITBSimulator
import ITBTestSupport
import Synchronization
import Testing

/// A host stand-in on the slave side of a simulator's pty, with no daemon: it decodes every frame
/// the programmer writes (rendered with the API's renderer), answers each `ALARM` with
/// `ACK stored` and sends `HOST_HEARTBEAT` every 100 ms, as the bridge does.
final class LineHost: Sendable {
    /// One frame as received.
    struct Received: Sendable {
        let message: Message
        let retransmission: Bool
        /// The message's fields as the API renders them.
        let fields: JSONValue
    }

    private struct State {
        var received: [Received] = []
        var stopping = false
    }

    private let port: SerialPort
    private let state = Mutex(State())
    private let finished = DispatchSemaphore(value: 0)

    /// Opens `path` (flushing what the programmer wrote before: a host that starts now) and
    /// starts reading and answering on a thread of its own.
    init(path: String) throws {
        port = try SerialPort.open(path: path)
        Thread { [self] in loop() }.start()
    }

    /// Everything received so far, in order.
    var received: [Received] { state.withLock { $0.received } }

    /// Stops the thread and closes the port.
    func stop() {
        state.withLock { $0.stopping = true }
        finished.wait()
        port.close()
    }

    private func loop() {
        defer { finished.signal() }
        var decoder = FrameDecoder()
        var encoder = FrameEncoder(firstSequence: 70_000)
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        let started = ContinuousClock.now
        var lastHeartbeat = started - .seconds(1)
        while !state.withLock({ $0.stopping }) {
            var got: [Received] = []
            var replies: [Message] = []
            let port = self.port
            let n = (try? buffer.withUnsafeMutableBytes { raw in try port.read(into: raw, timeout: .milliseconds(20)) }) ?? 0
            if n > 0 {
                buffer.withUnsafeBytes { raw in
                    decoder.feed(UnsafeRawBufferPointer(rebasing: raw[0..<n])) { frame in
                        guard let message = Message(frame) else { return }
                        var json = JSONWriter(capacity: 512)
                        json.beginObject()
                        MessageJSON.writeFields(of: frame, into: &json)
                        json.endObject()
                        got.append(Received(message: message, retransmission: frame.isRetransmission,
                                            fields: (try? JSONValue.parse(json.bytes)) ?? .null))
                        if case .alarm(let alarm) = message {
                            replies.append(.ack(Ack(ackedSequence: frame.sequence, alarmID: alarm.alarmID, ackedType: .alarm, status: .stored)))
                        }
                    }
                }
            }
            if !got.isEmpty { state.withLock { $0.received.append(contentsOf: got) } }
            if ContinuousClock.now - lastHeartbeat >= .milliseconds(100) {
                lastHeartbeat = ContinuousClock.now
                replies.append(.hostHeartbeat(HostHeartbeat(hostTimeMs: nowMs(), uptimeS: UInt32((ContinuousClock.now - started).components.seconds))))
            }
            for reply in replies { try? port.write(encoder.encode(reply)) }
        }
    }
}

/// The line read back as a host attributing by PROTOCOL.md §5: each pump's messages, in order.
struct DecodedLine {
    /// One pump as the line showed it.
    struct Pump {
        var identity: JSONValue
        var sessions = 0
        var statuses: [JSONValue] = []
        var readings: [JSONValue] = []
        var programs: [JSONValue] = []
        var refills: [JSONValue] = []
        var alarms: [JSONValue] = []
    }

    /// Pumps in the order of their first session.
    var pumps: [Pump] = []
    /// Pump messages received with no session open.
    var orphans = 0
    /// `PROGRAMMER_INFO`s received while a session was open.
    var announcementsInSession = 0
    /// Of those, the ones not followed at once by that session's `PUMP_SESSION begin`.
    var announcementsWithoutSession = 0
    /// Repeated begins for the pump of the open session (the same session going on).
    var repeatedBegins = 0

    /// Attributes `received`, skipping everything before the first `PUMP_SESSION` when
    /// `fromFirstSession` (a host that opened the line late).
    init(_ received: [LineHost.Received]) {
        var open: Int?
        var seenAlarms = Set<UInt32>()
        func key(_ fields: JSONValue) -> String {
            guard case .object(let o) = fields else { return "" }
            return "\(o["manufacturer_code"]!)/\(o["pump_serial"]!)"
        }
        var keys: [String] = []
        for (index, r) in received.enumerated() {
            switch r.message {
            case .programmerInfo(let info):
                if let open, info.protocolMinor >= 1 {
                    announcementsInSession += 1
                    let next = received.indices.contains(index + 1) ? received[index + 1] : nil
                    if case .pumpSession(let s)? = next?.message, s.event == .begin, key(next!.fields) == keys[open] {} else {
                        announcementsWithoutSession += 1
                    }
                }
            case .pumpSession(let session):
                let k = key(r.fields)
                if session.event == .begin {
                    var identity = r.fields
                    if case .object(var o) = identity { o["event"] = nil; identity = .object(o) }
                    if let current = open, keys[current] == k {
                        repeatedBegins += 1
                        pumps[current].identity = identity
                        continue
                    }
                    if let found = keys.firstIndex(of: k) {
                        open = found
                        pumps[found].identity = identity
                    } else {
                        keys.append(k)
                        pumps.append(Pump(identity: identity))
                        open = pumps.count - 1
                    }
                    pumps[open!].sessions += 1
                } else {
                    open = nil
                }
            case .pumpStatus, .reservoir, .doseProgram, .refill, .alarm:
                guard let i = open else {
                    orphans += 1
                    continue
                }
                switch r.message {
                case .pumpStatus: pumps[i].statuses.append(r.fields)
                case .reservoir: pumps[i].readings.append(r.fields)
                case .doseProgram: pumps[i].programs.append(r.fields)
                case .refill: pumps[i].refills.append(r.fields)
                case .alarm(let alarm):
                    if !r.retransmission && seenAlarms.insert(alarm.alarmID).inserted { pumps[i].alarms.append(r.fields) }
                default: break
                }
            default:
                break
            }
        }
    }
}

extension JSONValue {
    subscript(_ key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    var list: [JSONValue] {
        if case .array(let a) = self { return a }
        return []
    }

    var number: Double? {
        if case .number(let n) = self { return n }
        return nil
    }

    var text: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The object without `keys`.
    func removing(_ keys: Set<String>) -> JSONValue {
        guard case .object(let o) = self else { return self }
        return .object(o.filter { !keys.contains($0.key) })
    }
}

@Suite("Clinic scenarios: one programmer, pump after pump, with ground truth (no daemon)")
struct ClinicScenarioTests {
    /// Plays `scenario` against a ``LineHost`` and returns what the line showed and the truth file.
    static func play(_ scenario: ClinicScenario, visitRealSeconds: Double = 0.3,
                     announceInterval: Duration? = .milliseconds(700)) async throws -> (DecodedLine, JSONValue, [LineHost.Received]) {
        let directory = try ScratchDirectory("clinic-\(scenario.name)")
        defer { directory.remove() }
        var options = SimulationRunner.Options()
        options.acceleration = 20 * 60 / visitRealSeconds
        options.telemetryInterval = .milliseconds(40)
        options.retransmitDelay = .milliseconds(300)
        options.announceInterval = announceInterval
        options.stopAtEnd = true
        options.truthPath = directory.path + "/truth.json"
        let runner = try ClinicRunner(scenario: scenario, options: options)
        let host = try LineHost(path: runner.slavePath)
        do {
            try await blocking { try runner.run() }
        } catch {
            host.stop()
            throw error
        }
        try await Task.sleep(for: .milliseconds(200))
        host.stop()
        let truth = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: directory.path + "/truth.json"))))
        return (DecodedLine(host.received), truth, host.received)
    }

    /// Checks that the truth file holds exactly what the line carried, pump by pump.
    static func expectTruthMatchesLine(_ line: DecodedLine, _ truth: JSONValue) {
        #expect(truth["complete"] == .bool(true))
        #expect(truth["unattributed_messages"] == .number(0))
        let pumps = truth["pumps"]?.list ?? []
        #expect(pumps.count == line.pumps.count, "truth has \(pumps.count) pumps, the line \(line.pumps.count)")
        for (t, d) in zip(pumps, line.pumps) {
            let serial = t["pump_serial"]?.text ?? "?"
            for field in ["manufacturer_code", "pump_serial", "pump_model", "reservoir_capacity_ul", "implant_date", "battery_state", "eri_date"] {
                #expect(t[field] == d.identity[field], "\(serial): \(field) \(String(describing: t[field])) on the line \(String(describing: d.identity[field]))")
            }
            let sessions = t["sessions"]?.list ?? []
            #expect(sessions.count == d.sessions, "\(serial): sessions")
            for s in sessions {
                #expect(s["programmer_serial"] == .string("PGM-SIM-0001"))
                #expect(s["end"] != JSONValue.null, "\(serial): a session without an end")
            }
            let clinic: Set<String> = ["clinic_time"]
            #expect((t["statuses"]?.list ?? []).map { $0.removing(clinic) } == d.statuses, "\(serial): statuses")
            #expect((t["readings"]?.list ?? []).map { $0.removing(clinic) } == d.readings, "\(serial): readings")
            #expect((t["programs"]?.list ?? []).map { $0.removing(clinic.union(["concentration_ug_per_ml", "titration"])) } == d.programs,
                    "\(serial): programs")
            #expect((t["refills"]?.list ?? []).map { $0.removing(clinic) } == d.refills, "\(serial): refills")
            #expect((t["alarms"]?.list ?? []).map { $0.removing(clinic) } == d.alarms, "\(serial): alarms")
            // The concentration in force is the one the pump reports in its next status.
            let statuses = t["statuses"]?.list ?? []
            for program in t["programs"]?.list ?? [] {
                let time = program["device_time"]?.text ?? ""
                // A program sent in the same millisecond as a refill's status may be on either side
                // of the change: it matches the status just before it or the one just after.
                let previous = statuses.last { ($0["device_time"]?.text ?? "") <= time }
                let next = statuses.first { ($0["device_time"]?.text ?? "") >= time }
                #expect([previous?["concentration_ug_per_ml"], next?["concentration_ug_per_ml"]].contains(program["concentration_ug_per_ml"]),
                        "\(serial): concentration in force at \(time)")
            }
        }
    }

    /// Checks the volumes follow the programmed flow from one visit of a pump to its next, and each
    /// refill's expected residual follows from the reading before it.
    static func expectVolumesFollowTheFlow(_ truth: JSONValue) {
        for pump in truth["pumps"]?.list ?? [] {
            let serial = pump["pump_serial"]?.text ?? "?"
            let readings = pump["readings"]?.list ?? []
            let statuses = pump["statuses"]?.list ?? []
            let refillTimes = (pump["refills"]?.list ?? []).compactMap { $0["clinic_time"]?.text }
            for (a, b) in zip(readings, readings.dropFirst()) where b["volume_source"]?.text == "calculated" && a["volume_source"]?.text == "calculated" {
                // A refill in between starts the volume anew.
                let (sa, sb) = (a["clinic_time"]?.text ?? "", b["clinic_time"]?.text ?? "")
                if refillTimes.contains(where: { sa < $0 && $0 <= sb }) { continue }
                guard let va = a["volume_ul"]?.number, let vb = b["volume_ul"]?.number,
                      let ta = a["clinic_time"]?.text.flatMap(RFC3339.parse), let tb = b["clinic_time"]?.text.flatMap(RFC3339.parse) else { continue }
                // The flow in force: the last status at or before the earlier reading.
                guard let status = statuses.last(where: { ($0["clinic_time"]?.text ?? "") <= (a["clinic_time"]?.text ?? "") }),
                      let dose = status["daily_dose_ug"]?.number, let concentration = status["concentration_ug_per_ml"]?.number,
                      status["pump_state"]?.text == "infusing" else { continue }
                let expected = va - dose * 1000 / concentration * Double(tb - ta) / 86_400_000
                #expect(abs(vb - max(0, expected)) <= 0.2, "\(serial): \(vb) µL at \(b["clinic_time"]!), expected \(expected)")
            }
            for refill in pump["refills"]?.list ?? [] {
                let time = refill["clinic_time"]?.text ?? ""
                // The last reading before the refill's round (that round's readings come after it).
                guard let before = readings.last(where: { ($0["clinic_time"]?.text ?? "") < time && $0["volume_source"]?.text == "calculated" }),
                      let volume = before["volume_ul"]?.number, let expected = refill["expected_residual_ul"]?.number else {
                    Issue.record("\(serial): no reading before the refill at \(time)")
                    continue
                }
                // The refill comes in the round after that reading: a few minutes of flow, and rounding.
                #expect(abs(volume - expected) <= 5, "\(serial): expected residual \(expected) µL, last reading \(volume) µL")
            }
        }
    }

    @Test("clinic-day: ≥ 10 pumps of two makers, every pump message inside its session, the required cases, revision 1 on the line, and the ground truth equals the line")
    func clinicDay() async throws {
        let scenario = try #require(ClinicScenario.named("clinic-day"))
        let (line, truth, received) = try await Self.play(scenario)
        #expect(line.pumps.count >= 10)
        #expect(line.orphans == 0, "pump messages outside a session")
        #expect(Set(line.pumps.compactMap { $0.identity["manufacturer_code"]?.number }).count >= 2)
        #expect(Set(line.pumps.compactMap { $0.identity["pump_serial"]?.text }).count == line.pumps.count)
        #expect(line.pumps.contains { $0.sessions >= 2 }, "a pump seen twice")
        // Revision 1: PROGRAMMER_INFO announces minor 1 and, in a session, the session follows it.
        #expect(received.contains { r in
            guard case .programmerInfo(let info) = r.message else { return false }
            return info.protocolMinor == 1
        })
        #expect(line.announcementsInSession >= 1, "no PROGRAMMER_INFO was re-sent during a session")
        #expect(line.announcementsWithoutSession == 0)
        #expect(line.repeatedBegins == line.announcementsInSession)
        // The required cases.
        let refills = line.pumps.flatMap(\.refills)
        #expect(refills.contains { ($0["measured_residual_ul"]?.number ?? 0) - ($0["expected_residual_ul"]?.number ?? 0) == -2500 }, "a 2.5 mL discrepancy")
        #expect(line.pumps.contains { pump in
            pump.refills.contains { refill in
                let before = pump.statuses.first?["concentration_ug_per_ml"]
                return before == .number(1000) && refill["concentration_ug_per_ml"] == .number(2000)
            }
        }, "a refill 1000 → 2000 µg/mL")
        #expect(line.pumps.contains { pump in
            Set(pump.programs.compactMap { $0["daily_dose_ug"]?.number }).count >= 2
        }, "a titration")
        #expect(line.pumps.contains { $0.identity["battery_state"] == .string("eri") && $0.identity["eri_date"] != .null }, "a pump at ERI")
        let alarms = line.pumps.flatMap(\.alarms)
        #expect(alarms.contains { $0["transition"] == .string("raised") && $0["code"] == .string("eri") })
        #expect(alarms.contains { $0["transition"] == .string("cleared") && $0["code"] == .string("low_reservoir") })
        #expect(alarms.contains { $0["transition"] == .string("cleared") && $0["code"] == .string("flow_fault") })
        // Plausible figures (shared/domain.md).
        for pump in line.pumps {
            #expect([20_000, 40_000].contains(pump.identity["reservoir_capacity_ul"]?.number ?? 0))
            for status in pump.statuses {
                #expect((90...800).contains(status["daily_dose_ug"]?.number ?? 0))
                #expect([500, 1000, 2000].contains(status["concentration_ug_per_ml"]?.number ?? 0))
            }
        }
        Self.expectTruthMatchesLine(line, truth)
        Self.expectVolumesFollowTheFlow(truth)
    }

    @Test("clinic-week: ≥ 5 days, ≥ 25 visits, pumps seen on several days, volumes and residuals following the fills and doses, ground truth equal to the line")
    func clinicWeek() async throws {
        let scenario = try #require(ClinicScenario.named("clinic-week"))
        let (line, truth, _) = try await Self.play(scenario, visitRealSeconds: 0.2, announceInterval: nil)
        #expect(line.orphans == 0)
        let sessions = (truth["pumps"]?.list ?? []).flatMap { pump in (pump["sessions"]?.list ?? []).map { (pump["pump_serial"]?.text ?? "", $0) } }
        #expect(sessions.count >= 25)
        let days = { (s: JSONValue) in String(s["clinic_begin"]?.text?.prefix(10) ?? "") }
        #expect(Set(sessions.map { days($0.1) }).count >= 5)
        let daysPerPump = Dictionary(grouping: sessions, by: { $0.0 }).mapValues { Set($0.map { days($0.1) }).count }
        #expect(daysPerPump.values.filter { $0 >= 2 }.count >= 5, "pumps seen on several days: \(daysPerPump)")
        // A pump interrogated on one day and refilled on a later one.
        #expect((truth["pumps"]?.list ?? []).contains { pump in
            let s = pump["sessions"]?.list ?? []
            let refillDays = Set((pump["refills"]?.list ?? []).compactMap { $0["clinic_time"]?.text?.prefix(10) })
            return s.count >= 2 && refillDays.contains { $0 > (s.first.map(days) ?? "").prefix(10) }
        })
        Self.expectTruthMatchesLine(line, truth)
        Self.expectVolumesFollowTheFlow(truth)
    }

    /// A small clinic as a scenario file would give it.
    static let twoPumpsJSON = """
        {"name": "two-pumps", "description": "two visits", "pumps": [
          {"key": "A", "serial": "NGP200001H", "capacity_ul": 20000, "concentration_ug_per_ml": 1000, "daily_dose_ug": 200, "last_fill_at_day": -50},
          {"key": "B", "manufacturer_code": 2, "model": "Prometra II", "serial": "PR-60001", "capacity_ul": 20000,
           "concentration_ug_per_ml": 500, "daily_dose_ug": 100, "last_fill_at_day": -20}],
         "visits": [{"day": 0, "time": "09:00", "pump": "A", "minutes": 60},
                    {"day": 0, "time": "10:00", "pump": "B", "minutes": 60,
                     "actions": [{"action": "dose_change", "daily_dose_ug": 120}]}]}
        """

    @Test("a host that opens the line mid-session learns the pump from the PUMP_SESSION begin that follows PROGRAMMER_INFO; a stop writes the truth so far")
    func lateHost() async throws {
        let scenario = try JSONDecoder().decode(ClinicScenario.self, from: Data(Self.twoPumpsJSON.utf8))
        #expect(scenario.problems().isEmpty)
        let directory = try ScratchDirectory("clinic-late-host")
        defer { directory.remove() }
        var options = SimulationRunner.Options()
        options.acceleration = 3600          // a 60-minute visit in a second
        options.telemetryInterval = .milliseconds(50)
        options.truthPath = directory.path + "/truth.json"
        let runner = try ClinicRunner(scenario: scenario, options: options)
        let running = Task { try await blocking { try runner.run() } }
        // The host opens the line mid-way through the first visit; the programmer's first frames are flushed.
        try await Task.sleep(for: .milliseconds(400))
        let host = try LineHost(path: runner.slavePath)
        try await Task.sleep(for: .milliseconds(400))
        let early = host.received
        // Stop during the second visit.
        while runner.visitsPlayed < 1 { try await Task.sleep(for: .milliseconds(20)) }
        try await Task.sleep(for: .milliseconds(300))
        runner.stop()
        try await running.value
        host.stop()

        let firstSession = try #require(early.firstIndex { r in
            guard case .pumpSession = r.message else { return false }
            return true
        })
        #expect(firstSession > 0)
        if case .programmerInfo(let info) = early[firstSession - 1].message {
            #expect(info.protocolMinor == 1)
        } else {
            Issue.record("the first PUMP_SESSION the host saw did not follow PROGRAMMER_INFO")
        }
        #expect(early[firstSession].fields["pump_serial"] == .string("NGP200001H"))
        #expect(early[firstSession].fields["event"] == .string("begin"))
        // After it, every pump message of the first visit belongs to pump A.
        let line = DecodedLine(Array(host.received[(firstSession - 1)...]))
        #expect(line.orphans == 0)
        #expect(line.pumps.first?.identity["pump_serial"] == .string("NGP200001H"))

        let truth = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: directory.path + "/truth.json"))))
        #expect(truth["complete"] == .bool(false))
        let pumps = truth["pumps"]?.list ?? []
        #expect(pumps.count == 2)
        #expect(pumps.first?["sessions"]?.list.first?["end"] != JSONValue.null)
        #expect(pumps.last?["sessions"]?.list.first?["end"] == JSONValue.null, "the session open at the stop has no end")
        #expect(pumps.last?["manufacturer_code"] == .number(2))
    }

    @Test("the built-in clinic scenarios are valid and plausible")
    func builtInsAreValid() {
        for scenario in ClinicScenario.builtIn {
            #expect(scenario.problems().isEmpty, "\(scenario.name): \(scenario.problems())")
            for pump in scenario.pumps {
                #expect([20_000, 40_000].contains(pump.capacityUL))
                #expect([500, 1000, 2000].contains(pump.concentrationUgPerML))
                #expect((90...800).contains(pump.dailyDoseUg))
                #expect((-180 ... -1).contains(pump.lastFillAtDay), "\(pump.key): a fill lasts 1–6 months")
                #expect([1, 2].contains(pump.manufacturerCode))
            }
        }
        #expect(ClinicScenario.named("clinic-day")?.pumps.count ?? 0 >= 10)
        #expect(Set(ClinicScenario.named("clinic-week")?.visits.map(\.day) ?? []).count >= 5)
        var broken = ClinicScenario.named("clinic-day")!
        broken.visits.append(.init(day: 0, time: "08:40", pump: "nobody"))
        #expect(broken.problems().count == 2)   // unknown pump, overlapping visit
    }
}
