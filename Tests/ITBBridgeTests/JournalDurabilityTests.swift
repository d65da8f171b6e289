import Foundation
@testable import ITBBridge
import Testing

/// Which commits wait for the disk and which do not, and what keeps event ids from being reused
/// after a power cut loses commits that had not been fsynced.
@Suite("Journal durability classes")
struct JournalDurabilityTests {
    private static func snapshot(_ n: Int) -> JournalOp {
        .snapshot(device: "PGM-1", pump: nil, kind: .status, deviceTimeMs: nil, data: "{\"n\":\(n)}")
    }

    @Test("a batch of snapshots only is committed without an fsync; any other op, or the unsynced bound, makes the commit synchronous and syncs what came before")
    func snapshotBatchesAreDeferred() async throws {
        let directory = try ScratchDirectory("durability")
        defer { directory.remove() }
        let journal = try Journal(directory: directory.path)
        _ = try await journal.commit([Self.snapshot(1), Self.snapshot(2)], nowMs: 1)
        #expect(journal.unsyncedEvents == 2)
        _ = try await journal.commit([Self.snapshot(3), .event(device: "PGM-1", type: .device, data: "{}")], nowMs: 2)
        #expect(journal.unsyncedEvents == 0, "a batch with anything but snapshots is synchronous, and its fsync covers the earlier ones")

        var most = 0
        for n in 0..<(Journal.maximumUnsyncedEvents + 50) {
            _ = try await journal.commit([Self.snapshot(n)], nowMs: 3)
            most = max(most, journal.unsyncedEvents)
        }
        #expect(most == Journal.maximumUnsyncedEvents, "never more than the bound wait for an fsync")
        #expect(journal.unsyncedEvents < Journal.maximumUnsyncedEvents)

        #expect(journal.unsyncedEvents > 0)
        try await journal.syncDeferred()
        #expect(journal.unsyncedEvents == 0)
        #expect(try await journal.events(after: 0).count == 4 + Journal.maximumUnsyncedEvents + 50, "every event stored, deferred or not")
    }

    @Test("the writer connection runs synchronous = FULL (fsync at each commit) from the start and again after every deferred commit")
    func writerIsFull() async throws {
        let directory = try ScratchDirectory("full-sync")
        defer { directory.remove() }
        let journal = try Journal(directory: directory.path)
        let synchronous = { try journal.pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") } }
        #expect(try synchronous() == 2, "FULL at open, whatever GRDB's WAL set-up chose")
        _ = try await journal.commit([Self.snapshot(1)], nowMs: 1)
        #expect(journal.unsyncedEvents == 1)
        #expect(try synchronous() == 2, "back to FULL after a deferred commit")
    }

    @Test("each start moves the event id sequence on by more than can be unsynced, so an id seen before a power cut never names another event")
    func idsMoveOnAtStart() async throws {
        let directory = try ScratchDirectory("id-gap")
        defer { directory.remove() }
        var journal = try Journal(directory: directory.path)
        _ = try await journal.commit([Self.snapshot(1), Self.snapshot(2)], nowMs: 1)
        #expect(try await journal.latestEventID() == 2, "a new journal starts at 1")
        journal = try Journal(directory: directory.path)
        let results = try await journal.commit([Self.snapshot(3)], nowMs: 2)
        guard let event = results.first?.events.first else {
            Issue.record("a snapshot yields an event")
            return
        }
        #expect(event.id == 2 + Journal.eventIDGapAtStart + 1)
        #expect(Journal.eventIDGapAtStart > Int64(Journal.maximumUnsyncedEvents))
    }
}
