import Foundation
import ITBBridge
import ITBProtocol
import Testing

/// The journal itself: durable across instances, in WAL mode, event ids that only grow, queries,
/// and retention that never prunes an alarm that is still open.
@Suite("Journal")
struct JournalTests {
    private static let dayMs: Int64 = 86_400_000

    @Test("what was committed before an ACK is seen by a new Journal instance on the same directory")
    func durableAcrossInstances() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            let acks = await bench.receive([
                bench.alarm(id: 77, code: .emptyReservoir, priority: .high, onset: bench.clock.now),
                bench.refill(at: CoreBench.t0 - 1_000, measured: 1_950),
            ])
            #expect(acks.map(\.status) == [.stored])
            let alarms = try await bench.journal.alarms(active: nil, device: nil, sinceEventID: nil, limit: 100)
            let events = try await bench.journal.events(after: 0)
            let latest = try await bench.journal.latestEventID()
            #expect(latest > 0)

            let reopened = try Journal(directory: bench.directory)
            #expect(reopened.path == bench.journal.path)
            #expect(try await reopened.alarms(active: nil, device: nil, sinceEventID: nil, limit: 100) == alarms)
            #expect(try await reopened.events(after: 0) == events)
            #expect(try await reopened.latestEventID() == latest)
            #expect(try await reopened.alarmMessageCount(device: CoreBench.serial) == 1)
            #expect(try await reopened.events(after: 0, types: ["refill"]).count == 1)
        }
    }

    @Test("after a restart a retransmitted alarm is recognised by (serial, alarm id): acknowledged, not stored again")
    func deduplicationSurvivesRestart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("itb-journal-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let bench = try await CoreBench(directory: directory)
            await bench.identify()
            #expect(await bench.receive([bench.alarm(id: 5, code: .motorStall, priority: .high, onset: bench.clock.now)]).map(\.status) == [.stored])
        }
        let restarted = try await CoreBench(directory: directory)
        await restarted.identify()
        let latest = try await restarted.journal.latestEventID()
        let acks = await restarted.receive([restarted.alarm(id: 5, code: .motorStall, priority: .high, onset: restarted.clock.now)], retransmission: true)
        #expect(acks.map(\.status) == [.stored])
        #expect(acks.map(\.alarmID) == [5])
        #expect(try await restarted.journal.alarms(active: nil, device: nil, sinceEventID: nil, limit: 100).count == 1)
        #expect(try await restarted.journal.alarmMessageCount(device: CoreBench.serial) == 1)
        #expect(try await restarted.journal.latestEventID() == latest)
    }

    @Test("the journal runs in WAL mode: journal.sqlite-wal exists after a write")
    func walMode() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            _ = await bench.receive([bench.alarm(id: 1, code: .eri, onset: bench.clock.now)])
            #expect(bench.journal.path == bench.directory + "/journal.sqlite")
            #expect(FileManager.default.fileExists(atPath: bench.directory + "/journal.sqlite"))
            #expect(FileManager.default.fileExists(atPath: bench.directory + "/journal.sqlite-wal"))
            #expect(await bench.journal.healthCheck())
        }
    }

    @Test("a journal directory that does not exist yet is created")
    func createsDirectory() async throws {
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("itb-journal-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let journal = try Journal(directory: parent + "/nested/state/")
        #expect(journal.path == parent + "/nested/state/journal.sqlite")
        #expect(try await journal.latestEventID() == 0)
        #expect(try await journal.events(after: 0).isEmpty)
    }

    @Test("event ids strictly increase in commit order, and subscribers see the same ids in the same order")
    func eventIDsIncrease() async throws {
        try await withCoreBench { bench async throws in
            let subscription = bench.core.queries.subscribe(EventFilter())
            await bench.identify()
            _ = await bench.receive([bench.status(), bench.alarm(id: 10, code: .lowReservoir, onset: bench.clock.now)])
            bench.clock.advance(by: 1_000)
            _ = await bench.receive([bench.refill(at: CoreBench.t0, measured: 0), bench.alarm(id: 11, code: .eri, onset: bench.clock.now)])
            let alarm = try #require(try await bench.journal.alarms(active: nil, device: nil, sinceEventID: nil, limit: 100).first)
            _ = try await bench.core.acknowledge(alarm: alarm.id, uid: 500)
            _ = await bench.receive([bench.alarm(id: 12, code: .lowReservoir, transition: .cleared, onset: bench.clock.now)])

            let stored = try await bench.journal.events(after: 0)
            #expect(stored.count >= 8)
            let ids = stored.map(\.id)
            #expect(zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 })
            #expect(try await bench.journal.latestEventID() == ids.last)

            var published: [Int64] = []
            while let event = subscription.poll() { published.append(event.id) }
            #expect(published == ids)

            // Each alarm's event id is that of its last change, and alarms list in that order.
            let alarms = try await bench.journal.alarms(active: nil, device: nil, sinceEventID: nil, limit: 100)
            let alarmEventIDs = alarms.map(\.eventID)
            #expect(zip(alarmEventIDs, alarmEventIDs.dropFirst()).allSatisfy { $0 < $1 })
            #expect(Set(alarmEventIDs).isSubset(of: Set(ids)))
        }
    }

    @Test("events(after:) resumes after an id and filters by device, type and limit")
    func eventQueries() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            _ = await bench.receive([bench.status(), bench.alarm(id: 1, code: .eri, onset: bench.clock.now), bench.alarm(id: 2, code: .lowReservoir, onset: bench.clock.now)])
            let all = try await bench.journal.events(after: 0)
            let alarmEvents = try await bench.journal.events(after: 0, types: ["alarm"])
            #expect(alarmEvents.count == 2)
            #expect(alarmEvents.allSatisfy { $0.type == "alarm" })
            let resumed = try await bench.journal.events(after: alarmEvents[0].id)
            #expect(resumed.map(\.id) == all.map(\.id).filter { $0 > alarmEvents[0].id })
            #expect(try await bench.journal.events(after: 0, device: "PGM-OTHER").isEmpty)
            #expect(try await bench.journal.events(after: 0, device: CoreBench.serial).count == all.count)
            #expect(try await bench.journal.events(after: 0, limit: 2).map(\.id) == Array(all.map(\.id).prefix(2)))
            #expect(try await bench.journal.alarms(active: nil, device: nil, sinceEventID: alarmEvents[0].id, limit: 10)
                .map(\.deviceAlarmID) == [2])
        }
    }

    @Test("a refill reported again is stored and published once")
    func refillStoredOnce() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            _ = await bench.receive([bench.refill(at: CoreBench.t0 - 5_000, measured: 2_000)])
            _ = await bench.receive([bench.refill(at: CoreBench.t0 - 5_000, measured: 2_000)])
            #expect(try await bench.journal.events(after: 0, types: ["refill"]).count == 1)
        }
    }

    @Test("pruning deletes old events and ended alarms but keeps open alarms however old")
    func pruneKeepsOpenAlarms() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            // At t0: one alarm stays active, one is acknowledged, one ends.
            _ = await bench.receive([
                bench.alarm(id: 1, code: .lowReservoir, onset: bench.clock.now), bench.alarm(id: 2, code: .eri, onset: bench.clock.now), bench.alarm(id: 3, code: .motorStall, onset: bench.clock.now),
            ])
            let byCode = Dictionary(uniqueKeysWithValues: try await bench.journal.alarms(active: nil, device: nil, sinceEventID: nil, limit: 10)
                .map { ($0.code, $0.id) })
            let active = try #require(byCode["low_reservoir"])
            let acknowledged = try #require(byCode["eri"])
            let endedOld = try #require(byCode["motor_stall"])
            _ = try await bench.core.acknowledge(alarm: acknowledged, uid: 42)
            _ = await bench.receive([bench.alarm(id: 4, code: .motorStall, transition: .cleared, onset: bench.clock.now)])

            // 450 days later an alarm ends (recent): it is within retention.
            bench.clock.advance(by: 450 * Self.dayMs)
            _ = await bench.receive([bench.alarm(id: 5, code: .flowFault, onset: bench.clock.now), bench.alarm(id: 6, code: .flowFault, transition: .cleared, onset: bench.clock.now)])
            let endedRecent = try #require(try await bench.journal.alarms(active: false, device: nil, sinceEventID: nil, limit: 10)
                .first { $0.code == "flow_fault" }?.id)
            let recentEventIDs = try await bench.journal.events(after: 0).filter { $0.timeMs >= bench.clock.now }.map(\.id)
            #expect(!recentEventIDs.isEmpty)
            let latestBefore = try await bench.journal.latestEventID()

            let removed = try await bench.journal.prune(olderThanDays: 400, nowMs: bench.clock.now)
            #expect(removed > 0)

            #expect(try await bench.journal.alarm(id: active)?.0.state == .active)
            #expect(try await bench.journal.alarm(id: acknowledged)?.0.state == .acknowledged)
            #expect(try await bench.journal.alarm(id: acknowledged)?.1.map(\.state) == ["active", "acknowledged"])
            #expect(try await bench.journal.alarm(id: endedOld) == nil)
            #expect(try await bench.journal.alarm(id: endedRecent)?.0.state == .ended)
            #expect(Set(try await bench.journal.alarms(active: true, device: nil, sinceEventID: nil, limit: 10).map(\.id))
                == [active, acknowledged])
            // Old events are gone, recent ones kept.
            #expect(try await bench.journal.events(after: 0).map(\.id) == recentEventIDs)

            // Ids are never reused after pruning.
            _ = await bench.receive([bench.alarm(id: 7, code: .eos, priority: .high, onset: bench.clock.now)])
            #expect(try await bench.journal.latestEventID() > latestBefore)

            // A pruned alarm's clear still ends the open condition it belongs to.
            _ = await bench.receive([bench.alarm(id: 8, code: .lowReservoir, transition: .cleared, onset: bench.clock.now)])
            #expect(try await bench.journal.alarm(id: active)?.0.state == .ended)
        }
    }
}
