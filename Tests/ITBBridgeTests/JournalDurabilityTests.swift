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
        #expect(Journal.eventIDGapAtStart > Int64(Journal.maximumQueuedEvents + Journal.maximumUnsyncedEvents),
                "more than can be published and not yet written, plus written and not yet synced")
    }

    @Test("snapshots queued ahead of their write get the next ids at once, are in every read that follows, and the next synchronous commit takes the id after them")
    func queuedSnapshotsKeepTheJournalAPrefix() async throws {
        let directory = try ScratchDirectory("queued")
        defer { directory.remove() }
        let journal = try Journal(directory: directory.path)
        _ = try await journal.commit([Self.snapshot(1)], nowMs: 1)
        let first = try #require(journal.queueSnapshots([Self.snapshot(2), .pumpLatest(PumpLatest(pump: "P", kind: .status, data: "{}", atMs: 2))], nowMs: 2))
        let second = try #require(journal.queueSnapshots([Self.snapshot(3), Self.snapshot(4)], nowMs: 3))
        #expect(first.flatMap(\.events).map(\.id) == [2])
        #expect(second.flatMap(\.events).map(\.id) == [3, 4])
        // No wait: the read itself waits for what was queued before it.
        #expect(try await journal.events(after: 0).map(\.id) == [1, 2, 3, 4])
        #expect(try await journal.events(after: 0).map(\.data) == (1...4).map { "{\"n\":\($0)}" })
        #expect(!journal.hasQueuedSnapshots)

        _ = try #require(journal.queueSnapshots([Self.snapshot(5)], nowMs: 4))
        let results = try await journal.commit([.event(device: "PGM-1", type: .device, data: "{}")], nowMs: 5)
        #expect(results.flatMap(\.events).map(\.id) == [6], "a synchronous commit writes the queue first, then takes the next id")
        #expect(try await journal.events(after: 0).map(\.id) == [1, 2, 3, 4, 5, 6])
        let after = try #require(journal.queueSnapshots([Self.snapshot(7)], nowMs: 6))
        #expect(after.flatMap(\.events).map(\.id) == [7])
    }

    @Test("a queued snapshot whose write fails stays queued, refuses more, fails every later write (none may take its id), and is stored with its id once writes succeed again")
    func failedQueuedWriteBlocksLaterWrites() async throws {
        let directory = try ScratchDirectory("queued-fail")
        defer { directory.remove() }
        let journal = try Journal(directory: directory.path)
        // A real SQLite failure on the writer connection: every insert into history aborts.
        try await journal.pool.writeWithoutTransaction { db in
            try db.execute(sql: "CREATE TEMP TRIGGER injected_fault BEFORE INSERT ON history BEGIN SELECT RAISE(ABORT, 'injected disk fault'); END")
        }
        let queued = try #require(journal.queueSnapshots([Self.snapshot(1)], nowMs: 1))
        #expect(queued.flatMap(\.events).map(\.id) == [1])
        await journal.commitQueuedSnapshots()
        #expect(journal.queuedSnapshotFailure != nil)
        #expect(journal.hasQueuedSnapshots)
        #expect(journal.queueSnapshots([Self.snapshot(2)], nowMs: 2) == nil, "after a failure the caller commits itself, and hears of the failure")
        await #expect(throws: JournalError.self) {
            _ = try await journal.commit([.event(device: "PGM-1", type: .device, data: "{}")], nowMs: 3)
        }
        #expect(try await journal.events(after: 0).isEmpty)

        try await journal.pool.writeWithoutTransaction { db in try db.execute(sql: "DROP TRIGGER injected_fault") }
        let results = try await journal.commit([.event(device: "PGM-1", type: .device, data: "{}")], nowMs: 4)
        #expect(results.flatMap(\.events).map(\.id) == [2])
        #expect(try await journal.events(after: 0).map(\.id) == [1, 2])
        #expect(try await journal.events(after: 0).first?.data == "{\"n\":1}")
        #expect(journal.queuedSnapshotFailure == nil)
        #expect(!journal.hasQueuedSnapshots)
    }

    @Test("at most maximumQueuedEvents snapshots wait for the writer; beyond that the queue refuses, and everything queued is stored once the writer is free")
    func queueIsBounded() async throws {
        let directory = try ScratchDirectory("queued-bound")
        defer { directory.remove() }
        let journal = try Journal(directory: directory.path)
        // Hold GRDB's writer queue with a long write on another thread.
        let held = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let holder = Thread {
            try? journal.pool.writeWithoutTransaction { _ in
                held.signal()
                release.wait()
            }
        }
        holder.start()
        held.wait()
        var accepted = 0
        while accepted <= Journal.maximumQueuedEvents, journal.queueSnapshots([Self.snapshot(accepted)], nowMs: 1) != nil { accepted += 1 }
        release.signal()
        #expect(accepted == Journal.maximumQueuedEvents)
        let stored = try await journal.events(after: 0, limit: 10_000)
        #expect(stored.map(\.id) == (1...Int64(Journal.maximumQueuedEvents)).map { $0 })
        #expect(journal.queueSnapshots([Self.snapshot(0)], nowMs: 2) != nil)
    }
}
