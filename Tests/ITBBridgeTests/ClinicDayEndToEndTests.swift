import Foundation
import ITBClient
import ITBProtocol
import ITBSimulator
import Testing

// Issue 13's end-to-end check: one programmer interrogates every pump of the clinic day through a
// real itb-bridged; afterwards each pump's record in the API equals what the simulator says each
// pump did (its ground truth), field by field, and no value of one pump is found under another.

@Suite("Clinic day end to end: the API's pump records equal the simulator's ground truth", .serialized)
struct ClinicDayEndToEndTests {
    /// What happens to the bridge in the middle of the day, between two interrogations.
    enum Interruption: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// Nothing: one daemon all day.
        case none
        /// SIGTERM, then a new daemon on the same journal.
        case restart
        /// SIGKILL (no clean-up at all), then a new daemon on the same journal.
        case sigkill
        var testDescription: String { rawValue }
    }

    @Test("after the clinic day, every pump's identity, sessions, refills, dose programs, readings and alarms in the API are the ground truth's, under that pump only; also with the daemon restarted or killed with SIGKILL mid-day",
          arguments: Interruption.allCases)
    func clinicDayMatchesGroundTruth(_ interruption: Interruption) async throws {
        let scenario = try #require(ClinicScenario.named("clinic-day"))
        let directory = try ScratchDirectory("clinic-e2e")
        defer { directory.remove() }
        let socketPath = directory.path + "/api.sock"
        let client = UnixHTTPClient(socketPath: socketPath)
        var options = SimulationRunner.Options()
        options.acceleration = 20 * 60 / 0.4
        options.telemetryInterval = .milliseconds(40)
        options.retransmitDelay = .milliseconds(300)
        options.announceInterval = .milliseconds(700)
        options.stopAtEnd = true
        options.truthPath = directory.path + "/truth.json"
        options.link = directory.path + "/programmer"
        let runner = try ClinicRunner(scenario: scenario, options: options)
        let arguments = ["--no-discovery", "--device", directory.path + "/programmer", "--socket", socketPath,
                         "--state-dir", directory.path + "/state", "--log-level", "warning"]
        let daemon = Locked(try DaemonProcess(arguments: arguments, socketPath: socketPath, log: directory.path + "/daemon.log"))
        defer { daemon.withLock { $0.terminate() } }
        try await daemon.withLock { $0 }.waitReady()
        // The programmer is identified before the first visit begins.
        let identified = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < identified {
            _ = try await blocking { try runner.endpoint.service(timeout: .milliseconds(50)) }
            if let r = try? await blocking({ try client.get("/v1/devices/\(runner.endpoint.info.programmerSerial)") }), r.status == 200 { break }
        }
        let serial = runner.endpoint.info.programmerSerial
        let interruptAfter = scenario.schedule.count / 2
        let interrupted = Locked(false)
        try await blocking {
            try runner.run(betweenVisits: { played in
                guard interruption != .none, played == interruptAfter else { return }
                // The visit's end is stored before the bridge goes: no pump in session.
                let ended = ContinuousClock.now + .seconds(10)
                while ContinuousClock.now < ended {
                    if let r = try? client.get("/v1/devices/\(serial)"), (try? JSONObject.parse(r.body))?["pump"] is NSNull { break }
                    _ = try runner.endpoint.service(timeout: .milliseconds(20))
                }
                let old = daemon.withLock { $0 }
                switch interruption {
                case .none: return
                case .restart: old.terminate()
                case .sigkill: old.kill9()
                }
                old.process.waitUntilExit()
                let fresh = try DaemonProcess(arguments: arguments, socketPath: socketPath,
                                              log: directory.path + "/daemon-\(interruption.rawValue).log")
                daemon.withLock { $0 = fresh }
                try fresh.waitReadyNow()
                // The programmer answers the new bridge's heartbeat with PROGRAMMER_INFO.
                let deadline = ContinuousClock.now + .seconds(20)
                while ContinuousClock.now < deadline {
                    _ = try runner.endpoint.service(timeout: .milliseconds(50))
                    if let r = try? client.get("/v1/devices/\(serial)"), r.status == 200,
                       (try? JSONObject.parse(r.body))?["link_state"] as? String == "connected" {
                        interrupted.withLock { $0 = true }
                        return
                    }
                }
                throw HarnessError("the restarted bridge never identified the programmer")
            })
        }
        #expect(runner.finished)
        #expect(interrupted.withLock { $0 } == (interruption != .none), "the daemon was \(interruption.rawValue) mid-day")
        let truth = try JSONObject.parse(Array(try Data(contentsOf: URL(fileURLWithPath: directory.path + "/truth.json"))))
        let truthPumps = try #require(truth["pumps"] as? [[String: Any]])
        #expect(truthPumps.count >= 10)
        #expect(truth["unattributed_messages"] as? Int == 0)

        func get(_ path: String) async throws -> [String: Any] {
            let response = try await blocking { try client.get(path) }
            #expect(response.status == 200, "GET \(path): \(response.status) \(response.text)")
            return try JSONObject.parse(response.body)
        }
        let listed = try #require(try await get("/v1/pumps?limit=1000")["pumps"] as? [[String: Any]])
        #expect(listed.count == truthPumps.count, "one worklist row per pump of the day")

        for expected in truthPumps {
            let code = try #require(expected["manufacturer_code"] as? Int)
            let serial = try #require(expected["pump_serial"] as? String)
            let id = "\(code)-\(serial)"
            let pump = try await get("/v1/pumps/\(id)")
            #expect(pump["pump_model"] as? String == expected["pump_model"] as? String, "\(id) model")
            #expect(pump["reservoir_capacity_ul"] as? Int == expected["reservoir_capacity_ul"] as? Int, "\(id) capacity")
            let truthSessions = expected["sessions"] as? [[String: Any]] ?? []
            #expect(pump["battery_state"] as? String == truthSessions.last?["battery_state"] as? String, "\(id) battery")

            // Sessions: one per visit, each ended.
            let sessions = try #require(try await get("/v1/pumps/\(id)/sessions")["sessions"] as? [[String: Any]])
            #expect(sessions.count == truthSessions.count, "\(id): \(sessions.count) sessions, truth \(truthSessions.count)")
            #expect(sessions.allSatisfy { $0["end_cause"] as? String == "ended" }, "\(id) sessions: \(sessions)")

            // Refills: the same, in order, field by field.
            let refills = try #require(try await get("/v1/pumps/\(id)/refills")["refills"] as? [[String: Any]])
            let truthRefills = expected["refills"] as? [[String: Any]] ?? []
            #expect(refills.count == truthRefills.count, "\(id): \(refills.count) refills, truth \(truthRefills.count)")
            for (got, want) in zip(refills, truthRefills) {
                for key in ["refill_time", "concentration_ug_per_ml", "volume_filled_ul", "expected_residual_ul", "measured_residual_ul", "drug_lot"] {
                    #expect(String(describing: got[key] ?? "nil") == String(describing: want[key] ?? "nil"), "\(id) refill \(key)")
                }
                let discrepancy = (want["measured_residual_ul"] as? Int ?? 0) - (want["expected_residual_ul"] as? Int ?? 0)
                #expect(got["discrepancy_ul"] as? Int == discrepancy)
            }

            // Dose programs: the daily doses received, consecutive repeats collapsed (the bridge
            // records a program when it changes, and once per session).
            func collapsed(_ doses: [Double]) -> [Double] { doses.reduce(into: []) { if $0.last != $1 { $0.append($1) } } }
            let programs = try #require(try await get("/v1/pumps/\(id)/programs")["programs"] as? [[String: Any]])
            let truthPrograms = expected["programs"] as? [[String: Any]] ?? []
            #expect(collapsed(programs.compactMap { ($0["daily_dose_ug"] as? NSNumber)?.doubleValue })
                    == collapsed(truthPrograms.compactMap { ($0["daily_dose_ug"] as? NSNumber)?.doubleValue }), "\(id) titration")

            // Readings: every reading the bridge holds for the pump is one the pump sent.
            let readings = try #require(try await get("/v1/pumps/\(id)/reservoir")["readings"] as? [[String: Any]])
            let truthReadings = Set((expected["readings"] as? [[String: Any]] ?? []).map { "\($0["device_time"] ?? "")/\($0["volume_ul"] ?? "")" })
            #expect(!readings.isEmpty)
            for reading in readings {
                let r = reading["reading"] as? [String: Any] ?? [:]
                #expect(truthReadings.contains("\(r["device_time"] ?? "")/\(r["volume_ul"] ?? "")"), "\(id): a reading it never sent: \(r)")
            }
            let lastTruth = (expected["readings"] as? [[String: Any]])?.last
            #expect(String(describing: (pump["reservoir"] as? [String: Any])?["volume_ul"] ?? "nil") == String(describing: lastTruth?["volume_ul"] ?? "nil"),
                    "\(id): the latest reading is the last one sent")

            // Alarms: every alarm message of this pump is listed under it, and none of another's.
            let alarms = try #require(try await get("/v1/alarms?pump=\(id)&limit=10000")["alarms"] as? [[String: Any]])
            let listedIDs = Set(alarms.filter { $0["source"] as? String == "pump" }.flatMap { $0["device_alarm_ids"] as? [Int] ?? [] })
            let truthIDs = Set((expected["alarms"] as? [[String: Any]] ?? []).compactMap { $0["alarm_id"] as? Int })
            #expect(listedIDs == truthIDs, "\(id): alarms \(listedIDs.sorted()), truth \(truthIDs.sorted())")
        }
        // Nothing attributed to no pump that the truth attributes to one.
        let unattributed = try #require(try await get("/v1/alarms?limit=10000")["alarms"] as? [[String: Any]])
            .filter { $0["source"] as? String == "pump" && $0["pump"] is NSNull }
        #expect(unattributed.isEmpty, "pump alarms under no pump: \(unattributed)")
    }
}
