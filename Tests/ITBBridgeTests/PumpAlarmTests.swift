import ITBBridge
import ITBProtocol
import Testing

/// Pump alarms through the core into a real journal: when they are acknowledged to the programmer
/// (only once identified and stored), deduplication of retransmissions, and the alarm's life
/// (active → acknowledged → ended) — PROTOCOL.md §2.4–2.5, domain notes "Data conventions".
@Suite("Pump alarms")
struct PumpAlarmTests {
    @Test("an alarm before PROGRAMMER_INFO is neither acknowledged nor stored; other messages are kept until then")
    func alarmBeforeIdentification() async throws {
        try await withCoreBench { bench async throws in
            let acks = await bench.receive([
                bench.status(),
                bench.alarm(id: 7, code: .lowReservoir),
            ])
            #expect(acks.isEmpty)
            #expect(try await bench.alarms().isEmpty)
            #expect(try await bench.journal.alarmMessageCount(device: CoreBench.serial) == 0)
            #expect(try await bench.journal.latestEventID() == 0)
            #expect(await bench.core.deviceStates().isEmpty)

            // Identification alone stores no alarm: the one before it was never kept.
            #expect(await bench.receive([.programmerInfo(CoreBench.programmer())]).isEmpty)
            #expect(try await bench.alarms().isEmpty)
            // The status that came before identification was kept and applied.
            let device = try #require(await bench.core.device(CoreBench.serial))
            #expect(device.status?.value.concentrationUgPerML == 2000)

            // The programmer retransmits the alarm; now it is stored and acknowledged.
            let retransmitted = await bench.receive([bench.alarm(id: 7, code: .lowReservoir)], retransmission: true)
            #expect(retransmitted.count == 1)
            #expect(retransmitted.first?.status == .stored)
            #expect(try await bench.alarms().count == 1)
        }
    }

    @Test("once identified, an alarm is stored active and acknowledged as stored, naming its frame and alarm id")
    func alarmStoredAndAcknowledged() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            let onset = CoreBench.t0 - 5_000
            bench.clock.advance(by: 1_234)
            let acks = await bench.receive([bench.alarm(id: 41, code: .emptyReservoir, priority: .high, onset: onset,
                                                        detail: "reservoir empty")])
            #expect(acks.count == 1)
            let ack = try #require(acks.first)
            #expect(ack.status == .stored)
            #expect(ack.alarmID == 41)
            #expect(ack.sequence == bench.lastSequence)

            let alarms = try await bench.alarms()
            #expect(alarms.count == 1)
            let alarm = try #require(alarms.first)
            #expect(alarm.state == .active)
            #expect(alarm.source == "pump")
            #expect(alarm.device == CoreBench.serial)
            #expect(alarm.code == "empty_reservoir")
            #expect(alarm.codeRaw == 2)
            #expect(alarm.priority == "high")
            #expect(alarm.priorityRaw == nil)
            #expect(alarm.detail == "reservoir empty")
            #expect(alarm.deviceAlarmID == 41)
            #expect(alarm.onsetTimeMs == onset)
            #expect(alarm.raisedAtMs == CoreBench.t0 + 1_234)
            #expect(alarm.clearedAtMs == nil)
            #expect(alarm.acknowledgedAtMs == nil)
            #expect(try await bench.journal.alarmMessageCount(device: CoreBench.serial) == 1)

            let (_, transitions) = try #require(try await bench.journal.alarm(id: alarm.id))
            #expect(transitions.map(\.state) == ["active"])
            #expect(transitions.first?.eventID == alarm.eventID)
            let events = try await bench.journal.events(after: 0, types: ["alarm"])
            #expect(events.map(\.id) == [alarm.eventID])
            #expect(events.first?.data == alarm.jsonString)
        }
    }

    @Test("an alarm in the same batch as, and after, its PROGRAMMER_INFO is stored and acknowledged")
    func alarmInIdentifyingBatch() async throws {
        try await withCoreBench { bench async throws in
            let acks = await bench.receive([.programmerInfo(CoreBench.programmer()), bench.alarm(id: 3, code: .eri)])
            #expect(acks.map(\.status) == [.stored])
            #expect(acks.map(\.alarmID) == [3])
            #expect(try await bench.alarms().map(\.code) == ["eri"])
        }
    }

    @Test("a retransmitted alarm is acknowledged as stored again but stored once and published once")
    func retransmissionStoredOnce() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            let subscription = bench.core.queries.subscribe(EventFilter(types: ["alarm"]))
            let first = await bench.receive([bench.alarm(id: 9, code: .motorStall, priority: .high)])
            #expect(first.map(\.status) == [.stored])
            let firstSequence = bench.lastSequence
            #expect(subscription.poll()?.type == "alarm")
            let latest = try await bench.journal.latestEventID()

            bench.clock.advance(by: 2_000)
            let again = await bench.receive([bench.alarm(id: 9, code: .motorStall, priority: .high)], retransmission: true)
            #expect(again.count == 1)
            #expect(again.first?.status == .stored)
            #expect(again.first?.alarmID == 9)
            // The ACK names the retransmitted frame, not the first one.
            #expect(again.first?.sequence == bench.lastSequence)
            #expect(again.first?.sequence != firstSequence)

            #expect(try await bench.alarms().count == 1)
            #expect(try await bench.journal.alarmMessageCount(device: CoreBench.serial) == 1)
            #expect(try await bench.journal.latestEventID() == latest)
            #expect(subscription.poll() == nil)
            #expect(try await bench.alarms().first?.raisedAtMs == CoreBench.t0)
        }
    }

    @Test("the same alarm twice in one batch (a replayed frame) is acknowledged twice and stored once")
    func duplicateInOneBatch() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            let alarm = bench.alarm(id: 12, code: .flowFault, priority: .high)
            let acks = await bench.receive([alarm, alarm])
            #expect(acks.map(\.status) == [.stored, .stored])
            #expect(acks.map(\.alarmID) == [12, 12])
            #expect(try await bench.alarms().count == 1)
            #expect(try await bench.journal.events(after: 0, types: ["alarm"]).count == 1)
        }
    }

    @Test("a cleared transition of the same code ends the alarm, with when and by which pump alarm id")
    func clearEndsAlarm() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            _ = await bench.receive([bench.alarm(id: 20, code: .lowReservoir)])
            bench.clock.advance(by: 3_600_000)
            let acks = await bench.receive([bench.alarm(id: 21, code: .lowReservoir, transition: .cleared)])
            #expect(acks.map(\.status) == [.stored])
            #expect(acks.map(\.alarmID) == [21])

            let alarms = try await bench.alarms()
            #expect(alarms.count == 1)
            let alarm = try #require(alarms.first)
            #expect(alarm.state == .ended)
            #expect(alarm.clearedAtMs == CoreBench.t0 + 3_600_000)
            #expect(alarm.deviceAlarmID == 20)
            #expect(alarm.clearedDeviceAlarmID == 21)
            #expect(alarm.raisedAtMs == CoreBench.t0)
            #expect(try await bench.journal.alarmMessageCount(device: CoreBench.serial) == 2)
            let (_, transitions) = try #require(try await bench.journal.alarm(id: alarm.id))
            #expect(transitions.map(\.state) == ["active", "ended"])
            #expect(transitions.map(\.atMs) == [CoreBench.t0, CoreBench.t0 + 3_600_000])
            #expect(try await bench.journal.alarms(active: true, device: nil, sinceEventID: nil, limit: 10).isEmpty)
        }
    }

    @Test("a clear ends only the alarm of its own code")
    func clearMatchesCode() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            _ = await bench.receive([bench.alarm(id: 1, code: .lowReservoir), bench.alarm(id: 2, code: .eri)])
            _ = await bench.receive([bench.alarm(id: 3, code: .eri, transition: .cleared)])
            let byCode = Dictionary(uniqueKeysWithValues: try await bench.alarms().map { ($0.code, $0.state) })
            #expect(byCode == ["low_reservoir": .active, "eri": .ended])
        }
    }

    @Test("a clear whose raise the bridge never saw is kept as an alarm that has already ended")
    func clearWithoutRaise() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            let acks = await bench.receive([bench.alarm(id: 5, code: .motorStall, transition: .cleared)])
            #expect(acks.map(\.status) == [.stored])
            let alarm = try #require(try await bench.alarms().first)
            #expect(alarm.state == .ended)
            #expect(alarm.code == "motor_stall")
            #expect(alarm.clearedDeviceAlarmID == 5)
            #expect(alarm.deviceAlarmID == nil)
        }
    }

    @Test("acknowledging records the uid and time, moves the alarm to acknowledged, and publishes the change")
    func acknowledgeRecordsWho() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            _ = await bench.receive([bench.alarm(id: 30, code: .eri, priority: .low)])
            let alarm = try #require(try await bench.alarms().first)
            let subscription = bench.core.queries.subscribe(EventFilter(types: ["alarm"]))
            bench.clock.advance(by: 60_000)

            let outcome = try await bench.core.acknowledge(alarm: alarm.id, uid: 1001)
            guard case .acknowledged(let record, let event) = outcome else {
                Issue.record("expected acknowledged, got \(outcome)")
                return
            }
            #expect(record.state == .acknowledged)
            #expect(record.acknowledgedByUID == 1001)
            #expect(record.acknowledgedAtMs == CoreBench.t0 + 60_000)
            #expect(record.eventID == event.id)
            #expect(event.id > alarm.eventID)
            #expect(event.type == "alarm")
            #expect(event.data.contains("\"state\":\"acknowledged\""))
            #expect(event.data.contains("\"acknowledged_by_uid\":1001"))

            let published = try #require(subscription.poll())
            #expect(published.id == event.id)
            #expect(subscription.poll() == nil)

            let (stored, transitions) = try #require(try await bench.journal.alarm(id: alarm.id))
            #expect(stored == record)
            #expect(transitions.map(\.state) == ["active", "acknowledged"])
            #expect(transitions.last?.byUID == 1001)
            #expect(transitions.last?.atMs == CoreBench.t0 + 60_000)

            // A second acknowledgement changes nothing.
            let latest = try await bench.journal.latestEventID()
            guard case .alreadyAcknowledged(let same) = try await bench.core.acknowledge(alarm: alarm.id, uid: 2002) else {
                Issue.record("expected alreadyAcknowledged")
                return
            }
            #expect(same.acknowledgedByUID == 1001)
            #expect(try await bench.journal.latestEventID() == latest)

            // The pump clearing the condition ends an acknowledged alarm too.
            _ = await bench.receive([bench.alarm(id: 31, code: .eri, transition: .cleared)])
            let (ended, endedTransitions) = try #require(try await bench.journal.alarm(id: alarm.id))
            #expect(ended.state == .ended)
            #expect(ended.acknowledgedByUID == 1001)
            #expect(endedTransitions.map(\.state) == ["active", "acknowledged", "ended"])
        }
    }

    @Test("acknowledging an ended alarm reports alreadyEnded and records nothing")
    func acknowledgeEndedAlarm() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            _ = await bench.receive([bench.alarm(id: 50, code: .lowReservoir)])
            _ = await bench.receive([bench.alarm(id: 51, code: .lowReservoir, transition: .cleared)])
            let alarm = try #require(try await bench.alarms().first)
            let latest = try await bench.journal.latestEventID()
            let outcome = try await bench.core.acknowledge(alarm: alarm.id, uid: 1001)
            guard case .alreadyEnded(let record) = outcome else {
                Issue.record("expected alreadyEnded, got \(outcome)")
                return
            }
            #expect(record.state == .ended)
            #expect(record.acknowledgedByUID == nil)
            #expect(try await bench.journal.latestEventID() == latest)
            #expect(try await bench.journal.alarm(id: alarm.id)?.1.map(\.state) == ["active", "ended"])
        }
    }

    @Test("acknowledging an id that does not exist reports notFound")
    func acknowledgeUnknownID() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            #expect(try await bench.core.acknowledge(alarm: 999, uid: 0) == .notFound)
        }
    }

    @Test("unknown alarm codes and priorities are stored as unknown with their raw values, one alarm per raw code")
    func unknownCodesKeptRaw() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            let acks = await bench.receive([
                bench.alarm(id: 60, code: AlarmCode(rawValue: 42), priority: AlarmPriority(rawValue: 9), detail: "vendor 42"),
                bench.alarm(id: 61, code: AlarmCode(rawValue: 43), priority: .medium),
            ])
            #expect(acks.map(\.status) == [.stored, .stored])
            let alarms = try await bench.alarms().sorted { $0.id < $1.id }
            #expect(alarms.count == 2)
            #expect(alarms.map(\.code) == ["unknown", "unknown"])
            #expect(alarms.map(\.codeRaw) == [42, 43])
            #expect(alarms.map(\.priority) == ["unknown", "medium"])
            #expect(alarms.map(\.priorityRaw) == [9, nil])
            #expect(alarms.map(\.state) == [.active, .active])
            #expect(alarms[0].detail == "vendor 42")
            #expect(alarms[0].jsonString.contains("\"code_raw\":42"))

            // A clear of raw code 43 ends that one, not the other unknown.
            _ = await bench.receive([bench.alarm(id: 62, code: AlarmCode(rawValue: 43), transition: .cleared)])
            let after = try await bench.alarms().sorted { $0.id < $1.id }
            #expect(after.map(\.state) == [.active, .ended])
        }
    }
}
