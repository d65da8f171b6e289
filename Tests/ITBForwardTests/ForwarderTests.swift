// The forwarder between real bridges (the daemon in this process, with simulated programmers) and
// a real PostgreSQL.

import Foundation
import ITBBridgeTestSupport
import ITBClient
import ITBForward
import ITBProtocol
import ITBTestSupport
import Logging
import PostgresNIO
import Testing

@Suite("itb-forward between bridges and PostgreSQL", .serialized, .timeLimit(.minutes(3)),
       .enabled(if: ScratchPostgres.isInstalled, "PostgreSQL is not installed (apt-get install postgresql)"))
struct ForwarderTests {
    /// Waits until `condition` holds; throws `what` after `timeout`.
    static func wait(_ what: String, timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw HarnessError("timed out: \(what)")
    }

    @Test func everyJournalEventIsInPostgresOnceAcrossAPostgresCrashAndAForwarderStoppedMidStream() async throws {
        try await withScratchPostgres("forward") { postgres in
            let daemon = try await TestDaemon(name: "forward")
            do {
                try await daemon.connectProgrammer()
                let driver = ProgrammerDriver(daemon.programmer)
                driver.streamStatus(.init(interval: .milliseconds(2)) { distinctStatus($0) })
                // Small batches, so that the faults fall between and inside many of them.
                let batch = BatchRule(maxEvents: 50, maxDelay: .milliseconds(20))
                var forwarder = try RunningForwarder(socketPath: daemon.socketPath, postgres: postgres, bridgeID: "ws-a", batch: batch)
                try await Self.wait("200 events forwarded") { forwarder.position > 200 }

                try await postgres.restart()
                let afterCrash = forwarder.position
                try await Self.wait("forwarding resumed after PostgreSQL's crash") { forwarder.position > afterCrash + 200 }

                // Stopped mid-stream (as SIGTERM stops it), the bridge going on, then catching up.
                try await forwarder.stop()
                try await Task.sleep(for: .seconds(1))
                forwarder = try RunningForwarder(socketPath: daemon.socketPath, postgres: postgres, bridgeID: "ws-a", batch: batch)
                try await Task.sleep(for: .milliseconds(500))
                driver.streamStatus(nil)
                await driver.stop()

                // The test's own connection is opened after the crash: PostgresNIO 1.33 leaves a
                // query on a connection the server dropped unanswered, forever.
                try await postgres.withConnection { check in
                    try await waitUntilForwarded(check, bridgeID: "ws-a", client: daemon.client)
                    try await forwarder.stop()
                    let journal = try await journalEvents(daemon.client)
                    let forwarded = try await forwardedEvents(check, bridgeID: "ws-a")
                    let problems = try differences(journal: journal, forwarded: forwarded)
                    #expect(problems.isEmpty, "\(problems.prefix(10))")
                    #expect(journal.count > 600, "the bridge journaled \(journal.count) events")
                }
            } catch {
                await daemon.shutdown()
                throw error
            }
            await daemon.shutdown()
        }
    }

    @Test func alarmsOfOnePumpAtTwoBridgesStayTwoAlarmsAndAnAcknowledgementAtOneShowsCentrally() async throws {
        try await withScratchPostgres("alarms") { postgres in
            let first = try await TestDaemon(name: "ws-a")
            let second = try await TestDaemon(name: "ws-b")
            do {
                let session = Message.pumpSession(PumpSession(
                    implantDateMs: nowMs() - 400 * 86_400_000, eriDateMs: 0, reservoirCapacityUL: 40_000, manufacturerCode: 1,
                    event: .begin, batteryState: .ok, pumpModel: "SynchroMed II", pumpSerial: "NGP-SHARED"))
                for daemon in [first, second] {
                    try await daemon.connectProgrammer()
                    try await daemon.withProgrammer { try $0.send(session) }
                    _ = try await daemon.waitFor("/v1/devices/\(testProgrammer.programmerSerial)") { $0["pump"] as? String == "1-NGP-SHARED" }
                    try await daemon.raiseAndStore(.lowReservoir, .medium, detail: "2.0 mL left")
                }
                let alarms = try await first.json("/v1/alarms?pump=1-NGP-SHARED")
                let alarm = try #require((alarms["alarms"] as? [[String: Any]])?.first { $0["code"] as? String == "low_reservoir" })
                let id = try #require(alarm["id"] as? Int)
                let ack = try await first.request("POST", "/v1/alarms/\(id)/acknowledge")
                #expect(ack.status == 200, "\(ack.text)")

                try await postgres.withConnection { check in
                for (daemon, bridgeID) in [(first, "ws-a"), (second, "ws-b")] {
                    let forwarder = try RunningForwarder(socketPath: daemon.socketPath, postgres: postgres, bridgeID: bridgeID)
                    try await waitUntilForwarded(check, bridgeID: bridgeID, client: daemon.client)
                    try await forwarder.stop()
                }
                let rows = try await check.query("""
                    SELECT bridge_id, state, acknowledged_at IS NOT NULL FROM alarms
                    WHERE pump = '1-NGP-SHARED' AND code = 'low_reservoir' ORDER BY bridge_id
                    """, logger: Logger(label: "test"))
                var seen: [String] = []
                for try await (bridge, state, acknowledged) in rows.decode((String, String, Bool).self) {
                    seen.append("\(bridge) \(state) \(acknowledged)")
                }
                #expect(seen == ["ws-a acknowledged true", "ws-b active false"])
                let transitions = try await check.scalar("""
                    SELECT string_agg(state, ',' ORDER BY event_id) FROM alarm_transitions
                    WHERE bridge_id = 'ws-a' AND pump = '1-NGP-SHARED' AND code = 'low_reservoir'
                    """, as: String.self)
                #expect(transitions == "active,acknowledged")
                #expect(try await check.scalar("SELECT count(*) FROM alarms WHERE pump = '1-NGP-SHARED' AND code = 'low_reservoir' AND state <> 'ended'",
                                               as: Int64.self) == 2, "both stay active alarms of the pump")
                }
            } catch {
                await first.shutdown()
                await second.shutdown()
                throw error
            }
            await first.shutdown()
            await second.shutdown()
        }
    }
}
