import Foundation
import ITBBridge
import ITBClient
import ITBProtocol
import ITBSimulator
import Testing

/// What the API must show once a scenario has played.
struct ScenarioExpectation: Sendable, CustomTestStringConvertible {
    let name: String
    /// Pump alarm codes that must have been stored.
    var pumpAlarms: [String] = []
    /// Bridge alarm codes that must have been raised.
    var bridgeAlarms: [String] = []
    /// Bridge alarm codes that must never be raised.
    var neverBridgeAlarms: [String] = ["clock_drift"]
    /// The pump state at the end, if it matters.
    var pumpState: String?
    /// Extra checks on the device's resources.
    var check: @Sendable (_ reservoir: [String: Any], _ status: [String: Any], _ program: [String: Any], _ device: [String: Any]) -> [String] = { _, _, _, _ in [] }

    var testDescription: String { name }
}

@Suite("Simulator scenarios against the real daemon")
struct SimulatorScenarioTests {
    static let expectations: [ScenarioExpectation] = [
        ScenarioExpectation(name: "normal", pumpState: "infusing", check: { reservoir, _, _, _ in
            var problems: [String] = []
            let derived = reservoir["derived"] as? [String: Any]
            // 500 µg/day at 2000 µg/mL: 250 µL/day.
            if derived?["flow_ul_per_day"] as? Double != 250 { problems.append("flow \(String(describing: derived?["flow_ul_per_day"]))") }
            if (reservoir["volume_ul"] as? Double ?? 0) >= 36_000 { problems.append("the reservoir did not drain") }
            return problems
        }),
        // The scenario runs the reservoir down to its alarm: the refill date passes, so the bridge's
        // refill alarm ends up escalated to refill_overdue.
        ScenarioExpectation(name: "low-reservoir", pumpAlarms: ["low_reservoir"], bridgeAlarms: ["refill_overdue"]),
        ScenarioExpectation(name: "over-infusion", bridgeAlarms: ["refill_discrepancy"], check: { reservoir, _, _, _ in
            let refill = reservoir["last_refill"] as? [String: Any]
            let discrepancy = refill?["discrepancy"] as? Double ?? 0
            return discrepancy < -0.10 && refill?["discrepancy_flagged"] as? Bool == true ? [] : ["refill discrepancy \(discrepancy) not flagged as over-infusion"]
        }),
        ScenarioExpectation(name: "eri-eos", pumpAlarms: ["eri", "eos"], pumpState: "end_of_service", check: { _, _, _, device in
            (device["pump_session"] as? [String: Any])?["battery_state"] as? String == "eos" ? [] : ["battery state not eos"]
        }),
        ScenarioExpectation(name: "motor-stall", pumpAlarms: ["motor_stall"], pumpState: "critical_alarm"),
        ScenarioExpectation(name: "battery-reset", pumpAlarms: ["low_battery_reset"], pumpState: "minimum_rate"),
        ScenarioExpectation(name: "empty-reservoir", pumpAlarms: ["low_reservoir", "empty_reservoir"], pumpState: "critical_alarm"),
        ScenarioExpectation(name: "replug", pumpAlarms: ["flow_fault", "memory_error"], bridgeAlarms: ["link_lost"], check: { _, _, _, device in
            device["link_state"] as? String == "connected" ? [] : ["not reconnected: \(String(describing: device["link_state"]))"]
        }),
        ScenarioExpectation(name: "dose-change", check: { _, _, program, _ in
            program["mode"] as? String == "flex" && program["daily_dose_ug"] as? Double == 650
                && (program["flex_steps"] as? [Any])?.count == 4 ? [] : ["program not flex at 650 µg/day: \(program)"]
        }),
        ScenarioExpectation(name: "refill", check: { reservoir, status, _, _ in
            let refill = reservoir["last_refill"] as? [String: Any]
            return status["concentration_ug_per_ml"] as? Int == 1000 && refill?["concentration_ug_per_ml"] as? Int == 1000
                ? [] : ["concentration did not change to 1000"]
        }),
        ScenarioExpectation(name: "stability-limit", bridgeAlarms: ["stability_limit_near"], check: { reservoir, _, _, _ in
            (reservoir["derived"] as? [String: Any])?["refill_due_reason"] as? String == "drug_stability" ? [] : ["due reason is not drug_stability"]
        }),
        ScenarioExpectation(name: "clock-drift", bridgeAlarms: ["clock_drift"], neverBridgeAlarms: []),
        ScenarioExpectation(name: "unknown-alarm", pumpAlarms: ["unknown"]),
        ScenarioExpectation(name: "noisy", pumpAlarms: ["flow_fault"], check: { _, _, _, device in
            let counters = device["counters"] as? [String: Any] ?? [:]
            let rejects = (counters["header_rejects_header_crc"] as? Int ?? 0) + (counters["payload_crc_errors"] as? Int ?? 0)
                + (counters["bytes_discarded"] as? Int ?? 0)
            return rejects > 0 ? [] : ["the noise left no trace in the decoder counters"]
        }),
    ]

    @Test("each built-in scenario, played at high acceleration through a pty, shows the expected states, alarms and derived values",
          arguments: expectations)
    func scenario(_ expected: ScenarioExpectation) async throws {
        let scenario = try #require(Scenario.named(expected.name))
        var options = SimulationRunner.Options()
        // Play the whole scenario in about three seconds of real time.
        options.acceleration = scenario.durationDays * 86_400 / 3
        options.telemetryInterval = .milliseconds(50)
        options.retransmitDelay = .milliseconds(200)
        options.stopAtEnd = true
        let directory = try ScratchDirectory("scenario-\(expected.name)")
        options.link = directory.path + "/programmer"
        let runner = try SimulationRunner(scenario: scenario, options: options)
        let bridge = try await TestDaemon(name: "scn-\(expected.name)") {
            $0.devices = [directory.path + "/programmer"]
            $0.heartbeatInterval = .milliseconds(200)
        }
        let finished = Task { try await blocking { try runner.run() } }
        do {
            try await finished.value
            // Let the last batch and any retransmitted alarms land.
            try await Task.sleep(for: .milliseconds(500))
            let id = options.programmer.programmerSerial
            let device = try await bridge.json("/v1/devices/\(id)")
            let status: [String: Any]
            let reservoir: [String: Any]
            let program: [String: Any]
            if expected.name == "replug" {
                // The unplug closed the pump's context and the scenario ends right after the
                // replug: the programmer's views show nothing of the pump (never an old value as
                // current), and its last values are the pump's record.
                let view = try await bridge.request("GET", "/v1/devices/\(id)/status")
                let viewPump = view.status == 200 ? try JSONObject.parse(view.body)["pump"] as? String : nil
                #expect(view.status == 404 || viewPump == "1-PUMP-7731")
                let pump = try await bridge.json("/v1/pumps/1-PUMP-7731")
                status = try #require(pump["status"] as? [String: Any])
                reservoir = try #require(pump["reservoir"] as? [String: Any])
                program = pump["program"] as? [String: Any] ?? [:]  // sent before the session was known to the bridge: no pump's
            } else {
                status = try await bridge.json("/v1/devices/\(id)/status")
                reservoir = try await bridge.json("/v1/devices/\(id)/reservoir")
                program = try await bridge.json("/v1/devices/\(id)/program")
            }
            let alarms = try #require(try await bridge.json("/v1/alarms?device=\(id)&limit=10000")["alarms"] as? [[String: Any]])
            let pumpCodes = Set(alarms.filter { $0["source"] as? String == "pump" }.compactMap { $0["code"] as? String })
            let bridgeCodes = Set(alarms.filter { $0["source"] as? String == "bridge" }.compactMap { $0["code"] as? String })
            for code in expected.pumpAlarms { #expect(pumpCodes.contains(code), "pump alarm \(code) missing; have \(pumpCodes)") }
            for code in expected.bridgeAlarms { #expect(bridgeCodes.contains(code), "bridge alarm \(code) missing; have \(bridgeCodes)") }
            for code in expected.neverBridgeAlarms { #expect(!bridgeCodes.contains(code), "bridge alarm \(code) raised") }
            if let state = expected.pumpState { #expect(status["pump_state"] as? String == state) }
            if expected.name == "unknown-alarm" {
                #expect(alarms.contains { $0["code"] as? String == "unknown" && $0["code_raw"] as? Int == 66 })
            }
            for problem in expected.check(reservoir, status, program, device) { Issue.record(Comment(rawValue: problem)) }
        } catch {
            runner.stop()
            await bridge.shutdown()
            directory.remove()
            throw error
        }
        await bridge.shutdown()
        directory.remove()
    }
}
