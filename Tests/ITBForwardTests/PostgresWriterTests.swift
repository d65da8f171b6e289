// The writer against a real PostgreSQL: migrations once, a batch with its position or nothing.

import Foundation
import ITBForward
import ITBTestSupport
import PostgresNIO
import Testing

@Suite("itb-forward's PostgreSQL writer", .serialized, .enabled(if: ScratchPostgres.isInstalled, "PostgreSQL is not installed (apt-get install postgresql)"))
struct PostgresWriterTests {
    static func event(_ id: Int64, pump: String = "1-NGP104857H") -> JournalEvent {
        JournalEvent(id: id, type: "status", data: #"{"device":"PGM-1","pump":"\#(pump)","received_at":"2026-12-01T10:00:00.\#(String(format: "%03d", Int(id % 1000)))Z","daily_dose_ug":\#(id).5}"#)
    }

    static func events(_ ids: ClosedRange<Int64>) -> [JournalEvent] { ids.map { event($0) } }

    @Test func fiveForwardersStartingAtOnceMigrateTheSchemaOnceAndAgainNotAtAll() async throws {
        try await withScratchPostgres("migrate") { postgres in
            let versions = try await withThrowingTaskGroup(of: Int.self) { group in
                for n in 0..<5 {
                    group.addTask { try await postgres.withWriter(bridgeID: "ws-\(n)") { try await $0.migrate() } }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(versions == Array(repeating: Schema.currentVersion, count: 5))
            let before = try await postgres.withConnection { try await $0.scalar("SELECT count(*) FROM itb_schema_version", as: Int64.self) }
            #expect(before == Int64(Schema.migrations.count))
            let again = try await postgres.withWriter(bridgeID: "ws-0") { try await $0.migrate() }
            #expect(again == Schema.currentVersion)
            let after = try await postgres.withConnection { try await $0.scalar("SELECT count(*) FROM itb_schema_version", as: Int64.self) }
            #expect(after == Int64(Schema.migrations.count))
        }
    }

    @Test func aBatchGoesInWithItsPositionOrNothingGoesIn() async throws {
        try await withScratchPostgres("batch") { postgres in
            try await postgres.withWriter(bridgeID: "ws-1") { writer in
                try await postgres.withConnection { check in
                    try await writer.migrate()
                    #expect(try await writer.position() == 0)
                    try await writer.write(Self.events(1...3), after: 0)
                    #expect(try await writer.position() == 3)

                    // A bad event in the middle: the statement fails, neither rows nor position move.
                    var bad = Self.events(4...6)
                    bad[1].data = "{not json"
                    await #expect(throws: ForwardError.self) { try await writer.write(bad, after: 3) }
                    #expect(try await check.scalar("SELECT count(*) FROM itb_event", as: Int64.self) == 3)
                    #expect(try await writer.position() == 3)

                    // A forwarder that believes the position is elsewhere (another one writes under
                    // the same bridge id) writes nothing.
                    await #expect {
                        try await writer.write(Self.events(4...6), after: 1)
                    } throws: { error in
                        if case .positionMoved(bridgeID: "ws-1", expected: 1)? = error as? ForwardError { true } else { false }
                    }
                    #expect(try await check.scalar("SELECT count(*) FROM itb_event", as: Int64.self) == 3)

                    // The columns taken from data.
                    try await writer.write([Self.event(4)], after: 3)
                    #expect(try await check.scalar("SELECT programmer || ' ' || pump || ' ' || to_char(time AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') FROM itb_event WHERE event_id = 4",
                                                   as: String.self) == "PGM-1 1-NGP104857H 10:00:00.004")
                    #expect(try await check.scalar("SELECT events_forwarded FROM itb_forward_position WHERE bridge_id = 'ws-1'", as: Int64.self) == 4)
                }
            }
        }
    }

    @Test func aCrashedPostgresKeepsEveryCommittedBatchAndTheWriterReportsTheLostConnection() async throws {
        try await withScratchPostgres("crash") { postgres in
            try await postgres.withWriter(bridgeID: "ws-2") { writer in
                try await writer.migrate()
                #expect(try await writer.position() == 0)
                try await writer.write(Self.events(1...500), after: 0)
                try await postgres.restart()
                await #expect {
                    try await writer.write([Self.event(501)], after: 500)
                } throws: { error in
                    if case .postgres? = error as? ForwardError { true } else { false }
                }
            }
            try await postgres.withWriter(bridgeID: "ws-2") { again in
                #expect(try await again.position() == 500)
                try await again.write([Self.event(501)], after: 500)
            }
            let rows = try await postgres.withConnection {
                try await $0.scalar("SELECT count(DISTINCT event_id) FROM itb_event WHERE bridge_id = 'ws-2'", as: Int64.self)
            }
            #expect(rows == 501)
        }
    }
}
