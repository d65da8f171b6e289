import Foundation
import ITBBridge
import ITBProtocol
import Logging
import Synchronization
import Testing

/// The journal itself: durable across instances, in WAL mode, event ids that only grow, queries,
/// and retention that never prunes an alarm that is still open.
@Suite("Journal")
struct JournalTests {
    private static let dayMs: Int64 = 86_400_000

    @Test("what was committed before an ACK is seen by a new Journal instance on the same directory")
    func durableAcrossInstances() async throws {
        try await withJournalBench { bench async throws in
            await bench.identify()
            let acks = await bench.receive([
                bench.alarm(id: 77, code: .emptyReservoir, priority: .high),
                bench.refill(at: JournalBench.t0 - 1_000, measured: 1_950),
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
            #expect(try await reopened.alarmMessageCount(device: JournalBench.serial) == 1)
            #expect(try await reopened.events(after: 0, types: ["refill"]).count == 1)
        }
    }

    @Test("after a restart a retransmitted alarm is recognised by (serial, alarm id): acknowledged, not stored again")
    func deduplicationSurvivesRestart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("itb-journal-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let bench = try await JournalBench(directory: directory)
            await bench.identify()
            #expect(await bench.receive([bench.alarm(id: 5, code: .motorStall, priority: .high)]).map(\.status) == [.stored])
        }
        let restarted = try await JournalBench(directory: directory)
        await restarted.identify()
        let latest = try await restarted.journal.latestEventID()
        let acks = await restarted.receive([restarted.alarm(id: 5, code: .motorStall, priority: .high)], retransmission: true)
        #expect(acks.map(\.status) == [.stored])
        #expect(acks.map(\.alarmID) == [5])
        #expect(try await restarted.journal.alarms(active: nil, device: nil, sinceEventID: nil, limit: 100).count == 1)
        #expect(try await restarted.journal.alarmMessageCount(device: JournalBench.serial) == 1)
        #expect(try await restarted.journal.latestEventID() == latest)
    }

    @Test("the journal runs in WAL mode: journal.sqlite-wal exists after a write")
    func walMode() async throws {
        try await withJournalBench { bench async throws in
            await bench.identify()
            _ = await bench.receive([bench.alarm(id: 1, code: .eri)])
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
        try await withJournalBench { bench async throws in
            let subscription = bench.core.queries.subscribe(EventFilter())
            await bench.identify()
            _ = await bench.receive([bench.status(), bench.alarm(id: 10, code: .lowReservoir)])
            bench.clock.advance(by: 1_000)
            _ = await bench.receive([bench.refill(at: JournalBench.t0, measured: 0), bench.alarm(id: 11, code: .eri)])
            let alarm = try #require(try await bench.journal.alarms(active: nil, device: nil, sinceEventID: nil, limit: 100).first)
            _ = try await bench.core.acknowledge(alarm: alarm.id, uid: 500)
            _ = await bench.receive([bench.alarm(id: 12, code: .lowReservoir, transition: .cleared)])

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
        try await withJournalBench { bench async throws in
            await bench.identify()
            _ = await bench.receive([bench.status(), bench.alarm(id: 1, code: .eri), bench.alarm(id: 2, code: .lowReservoir)])
            let all = try await bench.journal.events(after: 0)
            let alarmEvents = try await bench.journal.events(after: 0, types: ["alarm"])
            #expect(alarmEvents.count == 2)
            #expect(alarmEvents.allSatisfy { $0.type == "alarm" })
            let resumed = try await bench.journal.events(after: alarmEvents[0].id)
            #expect(resumed.map(\.id) == all.map(\.id).filter { $0 > alarmEvents[0].id })
            #expect(try await bench.journal.events(after: 0, device: "PGM-OTHER").isEmpty)
            #expect(try await bench.journal.events(after: 0, device: JournalBench.serial).count == all.count)
            #expect(try await bench.journal.events(after: 0, limit: 2).map(\.id) == Array(all.map(\.id).prefix(2)))
            #expect(try await bench.journal.alarms(active: nil, device: nil, sinceEventID: alarmEvents[0].id, limit: 10)
                .map(\.deviceAlarmID) == [2])
        }
    }

    @Test("a refill reported again is stored and published once")
    func refillStoredOnce() async throws {
        try await withJournalBench { bench async throws in
            await bench.identify()
            _ = await bench.receive([bench.refill(at: JournalBench.t0 - 5_000, measured: 2_000)])
            _ = await bench.receive([bench.refill(at: JournalBench.t0 - 5_000, measured: 2_000)])
            #expect(try await bench.journal.events(after: 0, types: ["refill"]).count == 1)
        }
    }

    @Test("pruning deletes old events and ended alarms but keeps open alarms however old")
    func pruneKeepsOpenAlarms() async throws {
        try await withJournalBench { bench async throws in
            await bench.identify()
            // At t0: one alarm stays active, one is acknowledged, one ends.
            _ = await bench.receive([
                bench.alarm(id: 1, code: .lowReservoir), bench.alarm(id: 2, code: .eri), bench.alarm(id: 3, code: .motorStall),
            ])
            let byCode = Dictionary(uniqueKeysWithValues: try await bench.journal.alarms(active: nil, device: nil, sinceEventID: nil, limit: 10)
                .map { ($0.code, $0.id) })
            let active = try #require(byCode["low_reservoir"])
            let acknowledged = try #require(byCode["eri"])
            let endedOld = try #require(byCode["motor_stall"])
            _ = try await bench.core.acknowledge(alarm: acknowledged, uid: 42)
            _ = await bench.receive([bench.alarm(id: 4, code: .motorStall, transition: .cleared)])

            // 450 days later an alarm ends (recent): it is within retention.
            bench.clock.advance(by: 450 * Self.dayMs)
            _ = await bench.receive([bench.alarm(id: 5, code: .flowFault), bench.alarm(id: 6, code: .flowFault, transition: .cleared)])
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
            _ = await bench.receive([bench.alarm(id: 7, code: .eos, priority: .high)])
            #expect(try await bench.journal.latestEventID() > latestBefore)

            // A pruned alarm's clear still ends the open condition it belongs to.
            _ = await bench.receive([bench.alarm(id: 8, code: .lowReservoir, transition: .cleared)])
            #expect(try await bench.journal.alarm(id: active)?.0.state == .ended)
        }
    }
}

// MARK: - bench

/// A host clock the test moves by hand.
private final class JournalClock: Sendable {
    private let ms: Mutex<Int64>
    init(_ start: Int64) { ms = Mutex(start) }
    var now: Int64 { ms.withLock { $0 } }
    func advance(by delta: Int64) { ms.withLock { $0 += delta } }
}

/// A core over a real journal in `directory`, with one session.
private final class JournalBench {
    static let t0: Int64 = 1_750_000_000_000
    static let serial = "PGM-JOURNAL-01"
    static let programmer = ProgrammerInfo(bootID: 0x5EED_0000_0000_0042, firmwareVersion: 0x02_01_00, protocolMinor: 0,
                                           programmerSerial: serial, hardwareModel: "CP-TEST")

    let directory: String
    let clock = JournalClock(t0)
    let journal: Journal
    let core: BridgeCore
    let session: SessionID
    private var sequence: UInt32 = 0

    init(directory: String) async throws {
        self.directory = directory
        journal = try Journal(directory: directory)
        let clock = self.clock
        core = await BridgeCore(configuration: BridgeConfiguration(), journal: journal, metrics: BridgeMetrics(),
                                logger: Logger(label: "itb-test.journal") { _ in SwiftLogNoOpLogHandler() },
                                now: { clock.now })
        session = await core.openSession(path: "/dev/ttyTEST2")
        await core.linkChanged(session, to: .connected)
    }

    func receive(_ messages: [Message], retransmission: Bool = false) async -> [AckInstruction] {
        let batch = messages.map { message -> ReceivedMessage in
            sequence &+= 1
            return ReceivedMessage(message: message, sequence: sequence, retransmission: retransmission, receivedAtMs: clock.now)
        }
        return await core.receive(session, batch, counters: DecoderCounters())
    }

    func identify() async {
        _ = await receive([.programmerInfo(Self.programmer)])
    }

    func alarm(id: UInt32, code: AlarmCode, priority: AlarmPriority = .medium, transition: AlarmTransition = .raised) -> Message {
        .alarm(Alarm(onsetTimeMs: clock.now, alarmID: id, code: code, priority: priority, transition: transition))
    }

    func status() -> Message {
        .pumpStatus(PumpStatus(deviceTimeMs: clock.now, dailyDoseUgX10: 4000, concentrationUgPerML: 2000, activeAlarmMask: 0,
                               pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: 80))
    }

    func refill(at time: Int64, measured: UInt32) -> Message {
        .refill(Refill(refillTimeMs: time, concentrationUgPerML: 2000, volumeFilledUL: 20_000, expectedResidualUL: 2_000,
                       measuredResidualUL: measured, drugLot: "LOT-J7"))
    }
}

/// Runs `body` with a bench in a fresh temporary directory, removed afterwards.
private func withJournalBench(_ body: (JournalBench) async throws -> Void) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("itb-journal-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let bench = try await JournalBench(directory: directory)
    try await body(bench)
}
