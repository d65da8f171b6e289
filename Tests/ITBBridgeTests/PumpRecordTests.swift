import Foundation
import ITBClient
import ITBProtocol
import ITBSimulator
import Testing

// Issue 13: the pump is the record. One programmer interrogates pump A, then pump B; the
// programmer's views name the pump their values belong to and never show A's values once B's
// session began; each pump's record (worklist row, refills, programs, sessions, alarms) is its
// own and survives a restart.

@Suite("Pump records through the daemon", .serialized)
struct PumpRecordTests {
    static let programmer = "PGM-PUMPS"
    static let day: Int64 = 86_400_000

    static func session(_ serial: String, _ event: SessionEvent, capacity: UInt32 = 40_000, battery: BatteryState = .ok, eri: Int64 = 0) -> Message {
        .pumpSession(PumpSession(implantDateMs: nowMs() - 800 * day, eriDateMs: eri, reservoirCapacityUL: capacity, manufacturerCode: 1,
                                 event: event, batteryState: battery, pumpModel: "SynchroMed II", pumpSerial: serial))
    }

    static func status(dose: UInt32, concentration: UInt32) -> Message {
        .pumpStatus(PumpStatus(deviceTimeMs: nowMs(), dailyDoseUgX10: dose * 10, concentrationUgPerML: concentration, activeAlarmMask: 0,
                               pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: 90))
    }

    static func reservoir(volumeUL: UInt32, capacity: UInt32 = 40_000, lastRefillDaysAgo: Int64 = 10) -> Message {
        .reservoir(Reservoir(deviceTimeMs: nowMs(), lastRefillTimeMs: nowMs() - lastRefillDaysAgo * day, volumeULX10: volumeUL * 10,
                             capacityUL: capacity, lowReservoirThresholdUL: 2000, deliveredSinceRefillULX10: 0, volumeSource: .calculated))
    }

    static func program(dose: UInt32) -> Message {
        .doseProgram(DoseProgram(deviceTimeMs: nowMs(), dailyDoseUgX10: dose * 10, patientBolusDoseUgX10: 0, patientBolusLockoutMin: 0,
                                 patientBolusMaxPerDay: 0, mode: .simpleContinuous, flexSteps: [], periodicBoluses: []))
    }

    static func refill(daysAgo: Int64, concentration: UInt32, filled: UInt32, expected: UInt32, measured: UInt32) -> Message {
        .refill(Refill(refillTimeMs: nowMs() - daysAgo * day, concentrationUgPerML: concentration, volumeFilledUL: filled,
                       expectedResidualUL: expected, measuredResidualUL: measured, drugLot: "LOT-\(daysAgo)"))
    }

    @Test("values are attributed to the pump in session, a programmer view never shows the previous pump's, and each pump's record, refill checks, titration and sessions are served from the journal, also after a restart")
    func pumpRecords() async throws {
        let directory = try ScratchDirectory("pumps")
        defer { directory.remove() }
        let socketPath = directory.path + "/api.sock"
        let client = UnixHTTPClient(socketPath: socketPath)
        var info = testProgrammer
        info.programmerSerial = Self.programmer
        let programmer = try ProgrammerEndpoint(info: info)
        defer { programmer.pty.close() }
        let arguments = ["--no-discovery", "--device", programmer.pty.slavePath, "--socket", socketPath,
                         "--state-dir", directory.path + "/state", "--log-level", "warning"]
        var daemon = try DaemonProcess(arguments: arguments, socketPath: socketPath, log: directory.path + "/daemon.log")
        defer { daemon.terminate() }
        try await daemon.waitReady()
        try await DeviceFaults.identify(programmer, client: client, daemon: daemon.process.processIdentifier)

        func send(_ messages: [Message]) async throws {
            try await blocking {
                for message in messages { try programmer.send(message) }
                _ = try programmer.service(timeout: .milliseconds(50))
            }
        }
        func get(_ path: String, status expected: Int = 200) async throws -> [String: Any] {
            let response = try await blocking { try client.get(path) }
            #expect(response.status == expected, "GET \(path): \(response.status) \(response.text)")
            return try JSONObject.parse(response.body)
        }
        func waitFor(_ path: String, _ condition: @escaping ([String: Any]) -> Bool) async throws -> [String: Any] {
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline {
                _ = try await blocking { try programmer.service(timeout: .milliseconds(20)) }
                if let response = try? await blocking({ try client.get(path) }), response.status == 200,
                   let object = try? JSONObject.parse(response.body), condition(object) { return object }
            }
            throw HarnessError("\(path) never met the condition")
        }

        // Pump A (40 mL): a titration, two refills (the second 2.5 mL off, with a concentration change), an alarm.
        try await send([Self.session("NGP-A", .begin), Self.status(dose: 400, concentration: 1000), Self.program(dose: 400),
                        Self.reservoir(volumeUL: 30_000),
                        Self.refill(daysAgo: 60, concentration: 1000, filled: 20_000, expected: 4_000, measured: 4_200),
                        Self.refill(daysAgo: 10, concentration: 2000, filled: 20_000, expected: 3_000, measured: 5_500),
                        Self.program(dose: 500)])
        _ = try await blocking { try programmer.raise(code: .lowReservoir, priority: .medium, detail: "A", onsetTimeMs: nowMs()) }
        let viewA = try await waitFor("/v1/devices/\(Self.programmer)/reservoir") { ($0["pump"] as? String) == "1-NGP-A" }
        #expect((viewA["volume_ul"] as? NSNumber)?.doubleValue == 30_000)
        _ = try await blocking { try programmer.service(until: { $0.pending.isEmpty }, timeout: .seconds(10)) }
        _ = try await waitFor("/v1/devices/\(Self.programmer)/program") { (($0["daily_dose_ug"] as? NSNumber)?.doubleValue ?? 0) == 500 }

        // Pump B (20 mL, at ERI) begins without an end for A: A's session is closed first.
        try await send([Self.session("NGP-B", .begin, capacity: 20_000, battery: .eri, eri: nowMs() - 30 * Self.day)])
        let device = try await waitFor("/v1/devices/\(Self.programmer)") { ($0["pump"] as? String) == "1-NGP-B" }
        #expect(device["pump"] as? String == "1-NGP-B")
        _ = try await get("/v1/devices/\(Self.programmer)/reservoir", status: 404)  // A's reading is not B's
        _ = try await get("/v1/devices/\(Self.programmer)/status", status: 404)
        try await send([Self.status(dose: 200, concentration: 500), Self.reservoir(volumeUL: 6_000, capacity: 20_000, lastRefillDaysAgo: 30)])
        let viewB = try await waitFor("/v1/devices/\(Self.programmer)/reservoir") { ($0["pump"] as? String) == "1-NGP-B" }
        #expect((viewB["volume_ul"] as? NSNumber)?.doubleValue == 6_000)
        // B raises the code A still has active: B's own alarm, never joined to A's.
        _ = try await blocking { try programmer.raise(code: .lowReservoir, priority: .medium, detail: "B", onsetTimeMs: nowMs()) }
        _ = try await blocking { try programmer.service(until: { $0.pending.isEmpty }, timeout: .seconds(10)) }
        try await send([Self.session("NGP-B", .end)])
        _ = try await waitFor("/v1/devices/\(Self.programmer)") { $0["pump"] is NSNull }

        for round in 0..<2 {
            // The worklist: B is due first (6 mL left at 200 µL/day), then A.
            let list = try await get("/v1/pumps")
            let pumps = try #require(list["pumps"] as? [[String: Any]])
            #expect(pumps.map { $0["id"] as? String } == ["1-NGP-B", "1-NGP-A"], "round \(round)")
            let b = try #require(pumps.first)
            #expect(b["battery_state"] as? String == "eri")
            #expect(b["active_alarms"] as? Int ?? 0 >= 1)
            #expect(b["projected_end_of_service"] is String)
            #expect(((b["reservoir"] as? [String: Any])?["volume_ul"] as? NSNumber)?.doubleValue == 6_000)
            #expect(((b["derived"] as? [String: Any])?["flow_ul_per_day"] as? NSNumber)?.doubleValue == 400)
            let projected = try #require((b["projected_volume_ul"] as? NSNumber)?.doubleValue)
            #expect(projected <= 6_000 && projected > 5_900, "projected from the reading at 400 µL/day: \(projected)")
            let a = try #require(pumps.last)
            #expect(a["active_alarms"] as? Int == 1)
            #expect((a["last_interrogation"] as? [String: Any])?["end_cause"] as? String == "another_pump")
            #expect(try await get("/v1/pumps?battery=eri")["pumps"].map { ($0 as? [[String: Any]])?.count } == 1)
            #expect(try await get("/v1/pumps?has_active_alarms=true")["pumps"].map { ($0 as? [[String: Any]])?.count } == 2, "both have an active alarm")
            #expect(try await get("/v1/pumps?has_active_alarms=false")["pumps"].map { ($0 as? [[String: Any]])?.count } == 0)
            #expect(try await get("/v1/pumps?limit=1")["next"] is String)

            let refills = try #require(try await get("/v1/pumps/1-NGP-A/refills")["refills"] as? [[String: Any]])
            #expect(refills.count == 2)
            #expect(refills[0]["flagged"] as? Bool == false && refills[0]["discrepancy_ul"] as? Int == 200)
            #expect(refills[1]["flagged"] as? Bool == true && refills[1]["discrepancy_ul"] as? Int == 2_500)
            #expect(refills[1]["concentration_changed"] as? Bool == true && refills[1]["previous_concentration_ug_per_ml"] as? Int == 1000)

            let programs = try #require(try await get("/v1/pumps/1-NGP-A/programs")["programs"] as? [[String: Any]])
            #expect(programs.map { ($0["daily_dose_ug"] as? NSNumber)?.doubleValue } == [400, 500])
            #expect((programs[1]["change_ug_per_day"] as? NSNumber)?.doubleValue == 100)
            #expect((programs[1]["change_pct"] as? NSNumber)?.doubleValue == 25)

            let sessions = try #require(try await get("/v1/pumps/1-NGP-B/sessions")["sessions"] as? [[String: Any]])
            #expect(sessions.map { $0["end_cause"] as? String } == ["ended"])
            let alarms = try #require(try await get("/v1/alarms?pump=1-NGP-A")["alarms"] as? [[String: Any]])
            #expect(alarms.contains { $0["code"] as? String == "low_reservoir" && $0["pump"] as? String == "1-NGP-A" })
            let alarmsB = try #require(try await get("/v1/alarms?pump=1-NGP-B")["alarms"] as? [[String: Any]])
            #expect(alarmsB.filter { $0["source"] as? String == "pump" }.map { $0["detail"] as? String } == ["B"], "B's alarm is B's alone")
            #expect(alarmsB.allSatisfy { $0["pump"] as? String == "1-NGP-B" })
            #expect(alarms.filter { $0["source"] as? String == "pump" }.map { $0["detail"] as? String } == ["A"])
            #expect(try await get("/v1/alarms?pump=1-NOPE", status: 404)["error"] as? String == "unknown_pump")
            #expect(try await get("/v1/pumps/1-NOPE", status: 404)["error"] as? String == "unknown_pump")
            let readings = try #require(try await get("/v1/pumps/1-NGP-A/reservoir")["readings"] as? [[String: Any]])
            #expect(readings.count == 1)

            // Restarted: every pump's record is served from the journal.
            if round == 0 {
                daemon.terminate()
                daemon = try DaemonProcess(arguments: arguments, socketPath: socketPath, log: directory.path + "/daemon.log")
                try await daemon.waitReady()
            }
        }
        let csv = try await blocking { try client.request("GET", "/v1/pumps/1-NGP-B/reservoir", headers: [("Accept", "text/csv")]) }
        #expect(csv.status == 200)
        #expect(csv.text.hasPrefix("received_at,device_time,volume_ul,programmer\n"))
        #expect(csv.text.contains(",6000,\(Self.programmer)") || csv.text.contains(",6000.0,\(Self.programmer)"), "\(csv.text)")
    }
}
