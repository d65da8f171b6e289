import Foundation
@testable import ITBBridge
import GRDB
import Testing

/// A journal written by the release that landed before pumps were recorded (schema v1; the
/// fixture is made by `scripts/make-v1-journal.sh`) opens under this code with nothing lost, and
/// its records are attributed to the pumps its stored events show.
@Suite("Journal migration from v1")
struct JournalMigrationTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/journal-v1.sqlite").path

    /// Counts in the fixture as it is, read with SQLite directly.
    static func counts(_ path: String) throws -> [String: Int] {
        let queue = try DatabaseQueue(path: path)
        return try queue.read { db in
            var counts: [String: Int] = [:]
            for table in ["event", "alarm", "alarm_transition", "alarm_message", "refill", "dose_program", "history", "device_session"] {
                counts[table] = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table)") ?? 0
            }
            return counts
        }
    }

    @Test("the landed release's journal opens, keeps every event, alarm, refill, program and history row, and gets its pumps and sessions from its device events")
    func v1JournalMigrates() async throws {
        let directory = try ScratchDirectory("migration")
        defer { directory.remove() }
        try FileManager.default.copyItem(atPath: Self.fixture, toPath: directory.path + "/journal.sqlite")
        let before = try Self.counts(directory.path + "/journal.sqlite")
        #expect(before["event"] ?? 0 > 100 && before["refill"] ?? 0 >= 2 && before["alarm"] ?? 0 >= 2, "the fixture holds a journal's worth: \(before)")

        let journal = try Journal(directory: directory.path)
        let after = try Self.counts(journal.path)
        #expect(after == before, "no row lost or added by the migration")

        // Every event and alarm as before, now also with the fields of the new schema.
        let events = try await journal.events(after: 0, limit: 100_000)
        #expect(events.count == before["event"])
        let alarms = try await journal.alarms(active: nil, device: nil, sinceEventID: nil, limit: 10_000)
        #expect(alarms.count == before["alarm"])
        for alarm in alarms where alarm.source == "pump" {
            #expect(alarm.deviceAlarmIDs.contains(alarm.deviceAlarmID ?? alarm.clearedDeviceAlarmID ?? -1),
                    "each pump alarm lists the messages it covers: \(alarm.deviceAlarmIDs)")
        }

        // The two pumps the scripted programmer interrogated, with their sessions and records.
        let pumps = try await journal.pumps(PumpFilter(), after: nil, limit: 100)
        #expect(Set(pumps.map(\.id)) == ["1-NGP-V1-A", "2-PR-V1-B"])
        for pump in pumps {
            let sessions = try await journal.pumpSessions(id: pump.id)
            #expect(sessions.count == 1 && sessions.first?.endedMs != nil && sessions.first?.programmer == "PGM-V1", "\(pump.id): \(sessions)")
            #expect(try await journal.pumpRefills(id: pump.id).count == 1, "\(pump.id)'s refill")
            #expect(try await journal.pumpPrograms(id: pump.id).count == 1)
            #expect(try await journal.alarms(active: nil, device: nil, pump: pump.id, sinceEventID: nil, limit: 100).count == 1)
            #expect(try await journal.pumpReadings(id: pump.id, sinceMs: nil, untilMs: nil, after: nil, limit: 100).count == 1)
            #expect(pump.reservoir != nil && pump.status != nil && pump.program != nil, "\(pump.id)'s latest values")
            #expect(try await journal.events(after: 0, pump: pump.id).allSatisfy { $0.device == "PGM-V1" })
        }
        // What no pump session covered stays the programmer's only.
        let simulated = try await journal.events(after: 0, device: "PGM-SIM-0001")
        #expect(!simulated.isEmpty && simulated.allSatisfy { $0.pump == nil })

        // A second open changes nothing more.
        let again = try Journal(directory: directory.path)
        #expect(try Self.counts(again.path) == before)
    }
}
