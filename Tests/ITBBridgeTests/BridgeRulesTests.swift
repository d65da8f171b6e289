@testable import ITBBridge
import ITBProtocol
import ITBSerial
import Testing

/// The bridge's rules as a value: messages, link changes and ticks in, effects out. No journal, no
/// thread, no clock: every time is given.
@Suite("Bridge rules (no I/O)")
struct BridgeRulesTests {
    static let t0: Int64 = 1_780_000_000_000

    static func info(_ serial: String, boot: UInt64 = 1) -> ProgrammerInfo {
        ProgrammerInfo(bootID: boot, firmwareVersion: 0x01_00_00, protocolMinor: 0, programmerSerial: serial, hardwareModel: "CP")
    }

    static func received(_ message: Message, at ms: Int64 = t0, sequence: UInt32 = 1, retransmission: Bool = false) -> ReceivedMessage {
        ReceivedMessage(message: message, sequence: sequence, retransmission: retransmission, receivedAtMs: ms)
    }

    static func status(deviceTimeMs: Int64, mask: UInt32 = 0) -> Message {
        .pumpStatus(PumpStatus(deviceTimeMs: deviceTimeMs, dailyDoseUgX10: 4000, concentrationUgPerML: 2000, activeAlarmMask: mask,
                               pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: 90))
    }

    static func alarm(_ id: UInt32, raised: Bool = true, detail: String = "") -> Message {
        .alarm(Alarm(onsetTimeMs: t0, alarmID: id, code: .lowReservoir, priority: .medium, transition: raised ? .raised : .cleared, detail: detail))
    }

    /// Rules with one connected, identified programmer.
    static func identified(_ serial: String = "PGM-R1") -> (BridgeRules, SessionID) {
        var rules = BridgeRules(configuration: BridgeConfiguration())
        let session = rules.openSession(path: "/dev/ttyR0")
        _ = rules.linkChanged(session, to: .connected, nowMs: t0)
        _ = rules.receive(session, [received(.programmerInfo(info(serial)))], counters: DecoderCounters())
        return (rules, session)
    }

    static func kinds(_ effects: BridgeEffects) -> [String] {
        effects.journal.map { op in
            switch op {
            case .pumpAlarm: "pumpAlarm"
            case .event(_, let type, _): "event:\(type.rawValue)"
            case .snapshot(_, _, let kind, _, _): "snapshot:\(kind.rawValue)"
            case .refill: "refill"
            case .program: "program"
            case .raiseBridgeAlarm(_, _, let code, _, _): "raise:\(code.rawValue)"
            case .endBridgeAlarm(_, let code): "end:\(code.rawValue)"
            case .sessionStarted: "sessionStarted"
            case .sessionEnded: "sessionEnded"
            case .pumpSessionBegan(let seen): "pumpBegan:\(seen.id)"
            case .pumpSeen(let seen): "pumpSeen:\(seen.id)"
            case .pumpSessionEnded(let pump, _, let cause, _): "pumpEnded:\(pump):\(cause.rawValue)"
            case .pumpLatest(let latest): "latest:\(latest.kind.rawValue)"
            }
        }
    }

    @Test("PROGRAMMER_INFO identifies the programmer: a link session starts and a device event is stored")
    func identification() {
        var rules = BridgeRules(configuration: BridgeConfiguration())
        let session = rules.openSession(path: "/dev/ttyR0")
        _ = rules.linkChanged(session, to: .connected, nowMs: Self.t0)
        #expect(rules.unidentifiedSessions.map(\.path) == ["/dev/ttyR0"])
        let effects = rules.receive(session, [Self.received(.programmerInfo(Self.info("PGM-R1")))], counters: DecoderCounters())
        #expect(Self.kinds(effects) == ["sessionStarted", "event:device"])
        #expect(rules.device("PGM-R1")?.linkStateName == "connected")
        #expect(rules.unidentifiedSessions.isEmpty)
        #expect(effects.logs.contains { $0.message == "programmer identified" && $0.metadata["device"] == "PGM-R1" })
    }

    @Test("an alarm before identification is not stored (no ACK, the programmer retransmits); a snapshot is held and applied on identification")
    func beforeIdentification() {
        var rules = BridgeRules(configuration: BridgeConfiguration())
        let session = rules.openSession(path: "/dev/ttyR0")
        _ = rules.linkChanged(session, to: .connected, nowMs: Self.t0)
        let early = rules.receive(session, [Self.received(Self.alarm(5)), Self.received(Self.status(deviceTimeMs: Self.t0))], counters: DecoderCounters())
        #expect(early.journal.isEmpty)
        #expect(early.acks.isEmpty)
        #expect(early.logs.contains { $0.level == .warning })
        let later = rules.receive(session, [Self.received(.programmerInfo(Self.info("PGM-R1")))], counters: DecoderCounters())
        #expect(Self.kinds(later) == ["sessionStarted", "event:device", "snapshot:status"])
    }

    @Test("an alarm becomes one journal op and an ACK that waits for its result: stored when the commit stored it, rejected when the commit failed")
    func alarmAckFollowsCommit() {
        var (rules, session) = Self.identified()
        let effects = rules.receive(session, [Self.received(Self.alarm(7), sequence: 42)], counters: DecoderCounters())
        #expect(Self.kinds(effects) == ["pumpAlarm"])
        #expect(effects.acks.map(\.alarmID) == [7])
        #expect(effects.acknowledgements(after: nil) == [AckInstruction(sequence: 42, alarmID: 7, status: .rejected)])
        let stored = JournalOpResult(alarmOutcome: .duplicate)
        #expect(effects.acknowledgements(after: [stored]) == [AckInstruction(sequence: 42, alarmID: 7, status: .stored)])
        #expect(effects.acknowledgements(after: [.none]) == [AckInstruction(sequence: 42, alarmID: 7, status: .rejected)])
    }

    @Test("a snapshot is stored when its value changes or a minute has passed, compared by value without its device time")
    func snapshotDownsampling() {
        var (rules, session) = Self.identified()
        func stored(_ message: Message, at ms: Int64) -> Bool {
            Self.kinds(rules.receive(session, [Self.received(message, at: ms)], counters: DecoderCounters())).contains("snapshot:status")
        }
        #expect(stored(Self.status(deviceTimeMs: Self.t0), at: Self.t0))
        #expect(!stored(Self.status(deviceTimeMs: Self.t0 + 1000), at: Self.t0 + 1000), "same value, new device time: not stored")
        #expect(stored(Self.status(deviceTimeMs: Self.t0 + 2000, mask: 1), at: Self.t0 + 2000), "changed value")
        #expect(!stored(Self.status(deviceTimeMs: Self.t0 + 3000, mask: 1), at: Self.t0 + 59_000))
        #expect(stored(Self.status(deviceTimeMs: Self.t0 + 4000, mask: 1), at: Self.t0 + 2000 + BridgeRules.snapshotRepeatMs))
    }

    @Test("a device time of i64 min or max is not a time: no clock offset, no overflow, the raw value kept")
    func extremeDeviceTimes() {
        for extreme in [Int64.min, Int64.max, Int64.min + 1, -62_135_596_800_001, 253_402_300_800_000] {
            var (rules, session) = Self.identified()
            let effects = rules.receive(session, [
                Self.received(Self.status(deviceTimeMs: extreme)),
                Self.received(.reservoir(Reservoir(deviceTimeMs: extreme, lastRefillTimeMs: extreme, volumeULX10: .max, capacityUL: .max,
                                                   lowReservoirThresholdUL: .max, deliveredSinceRefillULX10: .max, volumeSource: .calculated))),
            ], counters: DecoderCounters())
            let device = rules.device("PGM-R1")
            #expect(device?.status?.deviceTimeMs == nil)
            #expect(device?.status?.value.deviceTimeMs == extreme)
            #expect(device?.clockOffsetMs == nil)
            #expect(Self.kinds(effects).contains("snapshot:reservoir"))
        }
    }

    @Test("a link loss raises link_lost once and ends the link session; identification ends it again")
    func linkLoss() {
        var (rules, session) = Self.identified()
        let lost = rules.linkChanged(session, to: .disconnected(.hangUp), nowMs: Self.t0 + 10)
        #expect(Self.kinds(lost) == ["raise:link_lost", "sessionEnded", "event:device"])
        #expect(rules.openBridgeAlarms["PGM-R1"] == [.linkLost])
        _ = rules.linkChanged(session, to: .connected, nowMs: Self.t0 + 20)
        let back = rules.receive(session, [Self.received(.programmerInfo(Self.info("PGM-R1")), at: Self.t0 + 30)], counters: DecoderCounters())
        #expect(Self.kinds(back) == ["sessionStarted", "end:link_lost", "event:device"])
        #expect(rules.openBridgeAlarms["PGM-R1"]?.isEmpty == true)
    }

    @Test("a tick marks a silent link stale at the given time and says when the next one is due")
    func staleness() {
        var (rules, session) = Self.identified()
        _ = rules.receive(session, [Self.received(Self.status(deviceTimeMs: Self.t0), at: Self.t0)], counters: DecoderCounters())
        let staleMs: Int64 = 5000
        let early = rules.tick(nowMs: Self.t0 + 1000)
        #expect(early.effects.journal.isEmpty)
        #expect(early.nextDeadlineMs == Self.t0 + staleMs + 1)
        let late = rules.tick(nowMs: Self.t0 + staleMs + 1)
        #expect(Self.kinds(late.effects) == ["raise:data_stale", "event:device"])
        #expect(rules.device("PGM-R1")?.linkStateName == "stale")
        let again = rules.receive(session, [Self.received(Self.status(deviceTimeMs: Self.t0), at: Self.t0 + 9000)], counters: DecoderCounters())
        #expect(Self.kinds(again).first == "end:data_stale")
    }

    @Test("bridge alarms restored from the journal are ended, not raised twice")
    func restoredBridgeAlarms() {
        var rules = BridgeRules(configuration: BridgeConfiguration(), openBridgeAlarms: ["PGM-R1": [.linkLost]])
        let session = rules.openSession(path: "/dev/ttyR0")
        _ = rules.linkChanged(session, to: .connected, nowMs: Self.t0)
        let effects = rules.receive(session, [Self.received(.programmerInfo(Self.info("PGM-R1")))], counters: DecoderCounters())
        #expect(Self.kinds(effects).contains("end:link_lost"))
    }

    @Test("the counters of each batch are handed on as before and after, for metrics")
    func counters() {
        var (rules, session) = Self.identified()
        var after = DecoderCounters()
        after.framesAccepted = 9
        let effects = rules.receive(session, [Self.received(Self.status(deviceTimeMs: Self.t0))], counters: after)
        #expect(effects.counters?.after.framesAccepted == 9)
    }

    @Test("an alarm's content key tells a retransmission (same content) from a reused id (other content)")
    func alarmContentKey() {
        guard case .alarm(let a) = Self.alarm(9, detail: "x"), case .alarm(let b) = Self.alarm(9, raised: false, detail: "x"),
              case .alarm(let c) = Self.alarm(9, detail: "x\u{B0}") else { return }
        #expect(JournalOp.PumpAlarm(a, device: "P").content == JournalOp.PumpAlarm(a, device: "P").content)
        #expect(JournalOp.PumpAlarm(a, device: "P").content != JournalOp.PumpAlarm(b, device: "P").content)
        #expect(JournalOp.PumpAlarm(a, device: "P").content != JournalOp.PumpAlarm(c, device: "P").content)
    }

    // MARK: pump attribution (issue 13)

    static func session(_ serial: String, _ event: SessionEvent = .begin, manufacturer: UInt16 = 1) -> Message {
        .pumpSession(PumpSession(implantDateMs: t0 - 86_400_000 * 400, eriDateMs: 0, reservoirCapacityUL: 40_000, manufacturerCode: manufacturer,
                                 event: event, batteryState: .ok, pumpModel: "SynchroMed II", pumpSerial: serial))
    }

    static func reservoir(volumeUL: UInt32) -> Message {
        .reservoir(Reservoir(deviceTimeMs: t0, lastRefillTimeMs: t0 - 86_400_000 * 20, volumeULX10: volumeUL * 10, capacityUL: 40_000,
                             lowReservoirThresholdUL: 2000, deliveredSinceRefillULX10: 0, volumeSource: .calculated))
    }

    /// The pump each pump-bearing op names, in order (`-` for none).
    static func pumps(_ effects: BridgeEffects) -> [String] {
        effects.journal.compactMap { op in
            switch op {
            case .snapshot(_, let pump, _, _, _), .refill(_, let pump, _, _, _, _, _, _, _, _, _), .program(_, let pump, _, _),
                 .raiseBridgeAlarm(_, let pump, _, _, _):
                pump ?? "-"
            case .pumpAlarm(let alarm): alarm.pump ?? "-"
            default: nil
            }
        }
    }

    @Test("every pump message between PUMP_SESSION begin and end belongs to that pump; after the end, to none, and the programmer's view no longer shows it")
    func attributionWithinSession() {
        var (rules, session) = Self.identified()
        var m: UInt32 = 0
        func send(_ message: Message) -> BridgeEffects {
            m += 1
            return rules.receive(session, [Self.received(message, at: Self.t0 + Int64(m) * 1000, sequence: m)], counters: DecoderCounters())
        }
        let began = send(Self.session("NGP-A"))
        #expect(Self.kinds(began).contains("pumpBegan:1-NGP-A"))
        #expect(Self.pumps(send(Self.status(deviceTimeMs: Self.t0))) == ["1-NGP-A"])
        #expect(Self.pumps(send(Self.reservoir(volumeUL: 20_000))) == ["1-NGP-A"])
        #expect(Self.pumps(send(Self.alarm(3))) == ["1-NGP-A"])
        #expect(rules.device("PGM-R1")?.pump?.id == "1-NGP-A")
        #expect(rules.device("PGM-R1")?.reservoir != nil)
        let ended = send(Self.session("NGP-A", .end))
        #expect(Self.kinds(ended).contains("pumpEnded:1-NGP-A:ended"))
        #expect(rules.device("PGM-R1")?.pump == nil)
        #expect(rules.device("PGM-R1")?.reservoir == nil, "a closed pump's values leave the programmer's view")
        #expect(rules.device("PGM-R1")?.status == nil)
        #expect(Self.pumps(send(Self.status(deviceTimeMs: Self.t0 + 5000))) == ["-"], "outside a session a message belongs to no pump")
    }

    @Test("a begin for another pump closes the previous context first: nothing of the new pump is attributed to the previous one")
    func anotherPumpClosesContext() {
        var (rules, session) = Self.identified()
        _ = rules.receive(session, [Self.received(Self.session("NGP-A")), Self.received(Self.reservoir(volumeUL: 30_000))], counters: DecoderCounters())
        let effects = rules.receive(session, [Self.received(Self.session("PR-B", manufacturer: 2)), Self.received(Self.reservoir(volumeUL: 5_000))],
                                    counters: DecoderCounters())
        let kinds = Self.kinds(effects)
        let ended = kinds.firstIndex(of: "pumpEnded:1-NGP-A:another_pump")
        let began = kinds.firstIndex(of: "pumpBegan:2-PR-B")
        #expect(ended != nil && began != nil && ended! < began!)
        #expect(Self.pumps(effects) == ["2-PR-B"])
        #expect(rules.device("PGM-R1")?.reservoir?.value.volumeULX10 == 50_000)
    }

    @Test("the same pump's begin repeated (with PROGRAMMER_INFO) continues its session; a lost link and a programmer restart close it")
    func contextLifecycle() {
        var (rules, session) = Self.identified()
        _ = rules.receive(session, [Self.received(Self.session("NGP-A"))], counters: DecoderCounters())
        let again = rules.receive(session, [Self.received(.programmerInfo(Self.info("PGM-R1"))), Self.received(Self.session("NGP-A"))],
                                  counters: DecoderCounters())
        #expect(Self.kinds(again).contains("pumpSeen:1-NGP-A"))
        #expect(!Self.kinds(again).contains { $0.hasPrefix("pumpEnded") || $0.hasPrefix("pumpBegan") })
        let lost = rules.linkChanged(session, to: .disconnected(.hangUp), nowMs: Self.t0 + 10)
        #expect(Self.kinds(lost).contains("pumpEnded:1-NGP-A:link_lost"))
        #expect(Self.pumps(lost) == ["-"], "link_lost is the programmer's, not the pump's")

        _ = rules.linkChanged(session, to: .connected, nowMs: Self.t0 + 20)
        _ = rules.receive(session, [Self.received(.programmerInfo(Self.info("PGM-R1"))), Self.received(Self.session("NGP-C"))], counters: DecoderCounters())
        let restarted = rules.receive(session, [Self.received(.programmerInfo(Self.info("PGM-R1", boot: 2)))], counters: DecoderCounters())
        #expect(Self.kinds(restarted).contains("pumpEnded:1-NGP-C:programmer_restarted"))
        #expect(rules.device("PGM-R1")?.pump == nil)
    }

    /// The bridge alarms of `code` raised in `effects`, with their pump and detail.
    static func raised(_ code: BridgeAlarmCode, _ effects: BridgeEffects) -> [(pump: String?, detail: String)] {
        effects.journal.compactMap { op in
            if case .raiseBridgeAlarm(_, let pump, let raisedCode, _, let detail) = op, raisedCode == code { (pump, detail) } else { nil }
        }
    }

    @Test("a pump whose active_alarm_mask disagrees with its open alarms beyond the grace gets alarm_mask_mismatch naming the codes; an alarm crossing its status within the grace raises nothing; a late retransmission of an older raise does not reopen a cleared code; the alarm ends when they agree and when the session closes")
    func alarmMaskReconciliation() {
        var configuration = BridgeConfiguration()
        configuration.alarmMaskGrace = .seconds(10)
        var rules = BridgeRules(configuration: configuration)
        let session = rules.openSession(path: "/dev/ttyR0")
        _ = rules.linkChanged(session, to: .connected, nowMs: Self.t0)
        _ = rules.receive(session, [Self.received(.programmerInfo(Self.info("PGM-R1")))], counters: DecoderCounters())
        func at(_ seconds: Int64, _ message: Message) -> BridgeEffects {
            rules.receive(session, [Self.received(message, at: Self.t0 + seconds * 1000, sequence: UInt32(seconds))], counters: DecoderCounters())
        }
        let lowReservoir: UInt32 = 1 << 0, motorStall: UInt32 = 1 << 4
        _ = at(1, Self.session("NGP-A"))
        #expect(Self.raised(.alarmMaskMismatch, at(2, Self.status(deviceTimeMs: Self.t0, mask: lowReservoir))).isEmpty, "within the grace")
        #expect(Self.raised(.alarmMaskMismatch, at(3, Self.alarm(1))).isEmpty)
        #expect(Self.raised(.alarmMaskMismatch, at(14, Self.status(deviceTimeMs: Self.t0, mask: lowReservoir))).isEmpty,
                "the alarm arrived after its status: they agree")
        #expect(Self.raised(.alarmMaskMismatch, at(15, Self.status(deviceTimeMs: Self.t0, mask: 0))).isEmpty, "disagreeing, within the grace")
        let mismatch = Self.raised(.alarmMaskMismatch, at(25, Self.status(deviceTimeMs: Self.t0 + 1, mask: 0)))
        #expect(mismatch.count == 1)
        #expect(mismatch.first?.pump == "1-NGP-A")
        #expect(mismatch.first?.detail.contains("open in the bridge but not active on the pump: low_reservoir") == true, "\(mismatch)")
        #expect(Self.raised(.alarmMaskMismatch, at(26, Self.status(deviceTimeMs: Self.t0 + 2, mask: 0))).isEmpty, "raised once")
        #expect(Self.kinds(at(27, Self.alarm(2, raised: false))).contains("end:alarm_mask_mismatch"), "the clear makes them agree")
        _ = at(28, Self.alarm(1))  // a late retransmission of the raise: id 1 < the clear's id 2
        #expect(Self.raised(.alarmMaskMismatch, at(45, Self.status(deviceTimeMs: Self.t0 + 3, mask: 0))).isEmpty)
        _ = at(46, Self.status(deviceTimeMs: Self.t0 + 4, mask: motorStall))
        let missing = Self.raised(.alarmMaskMismatch, at(57, Self.status(deviceTimeMs: Self.t0 + 5, mask: motorStall)))
        #expect(missing.first?.detail.contains("active on the pump but never received: motor_stall") == true, "\(missing)")
        #expect(Self.kinds(at(58, Self.session("NGP-A", .end))).contains("end:alarm_mask_mismatch"), "the session closes it")
    }

    @Test("a retransmitted alarm belongs to the pump in session at its onset: a previous pump's alarm retransmitted during the next pump's session goes to the previous pump, one from before any recent session to no pump, never to the pump now in session")
    func retransmittedAlarmAttribution() {
        var (rules, session) = Self.identified()
        var sequence: UInt32 = 10
        func at(_ seconds: Int64, _ message: Message, retransmission: Bool = false) -> BridgeEffects {
            sequence += 1
            return rules.receive(session, [Self.received(message, at: Self.t0 + seconds * 1000, sequence: sequence, retransmission: retransmission)],
                                 counters: DecoderCounters())
        }
        func alarm(_ id: UInt32, onsetSeconds: Int64) -> Message {
            .alarm(Alarm(onsetTimeMs: Self.t0 + onsetSeconds * 1000, alarmID: id, code: .motorStall, priority: .high, transition: .raised, detail: ""))
        }
        _ = at(1, Self.session("NGP-A"))
        _ = at(2, Self.status(deviceTimeMs: Self.t0 + 2000))  // the programmer's clock: the host's
        _ = at(10, Self.session("NGP-A", .end))
        _ = at(11, Self.session("NGP-B"))
        // Raised at second 5 in A's session; its first transmission never arrived.
        #expect(Self.pumps(at(12, alarm(5, onsetSeconds: 5), retransmission: true)) == ["1-NGP-A"])
        // Raised in B's session: B's, retransmitted or not.
        #expect(Self.pumps(at(13, alarm(6, onsetSeconds: 12), retransmission: true)) == ["1-NGP-B"])
        #expect(Self.pumps(at(14, alarm(7, onsetSeconds: -86_400))) == ["1-NGP-B"], "a first transmission belongs to the pump in session")
        // Retransmitted, raised a day ago, in no session this programmer had: no pump at all.
        #expect(Self.pumps(at(15, alarm(8, onsetSeconds: -86_400), retransmission: true)) == ["-"])
    }

    @Test("pump alarms the journal holds open count as open after a restart")
    func restoredPumpAlarms() {
        var configuration = BridgeConfiguration()
        configuration.alarmMaskGrace = .seconds(10)
        var rules = BridgeRules(configuration: configuration,
                                openPumpAlarms: ["1-NGP-A": [1: PumpAlarmMark(programmer: "PGM-R1", alarmID: 7, raised: true)]])
        let session = rules.openSession(path: "/dev/ttyR0")
        _ = rules.linkChanged(session, to: .connected, nowMs: Self.t0)
        _ = rules.receive(session, [Self.received(.programmerInfo(Self.info("PGM-R1")))], counters: DecoderCounters())
        func at(_ seconds: Int64, _ message: Message) -> BridgeEffects {
            rules.receive(session, [Self.received(message, at: Self.t0 + seconds * 1000, sequence: UInt32(seconds))], counters: DecoderCounters())
        }
        _ = at(1, Self.session("NGP-A"))
        _ = at(2, Self.status(deviceTimeMs: Self.t0, mask: 1))
        #expect(Self.raised(.alarmMaskMismatch, at(30, Self.status(deviceTimeMs: Self.t0 + 1, mask: 1))).isEmpty, "the restored alarm agrees with the mask")
        _ = at(31, Self.status(deviceTimeMs: Self.t0 + 2, mask: 0))
        #expect(Self.raised(.alarmMaskMismatch, at(45, Self.status(deviceTimeMs: Self.t0 + 3, mask: 0))).count == 1)
    }

    @Test("a refill due date in the past raises refill_overdue (medium), not refill_due_soon")
    func overdueRefill() {
        var (rules, session) = Self.identified()
        // 2000 µL left at the 2000 µL threshold: the alarm date is now; with the 4-day margin the due date passed 4 days ago.
        let effects = rules.receive(session, [Self.received(Self.session("NGP-A")), Self.received(Self.status(deviceTimeMs: Self.t0)),
                                              Self.received(Self.reservoir(volumeUL: 2000))], counters: DecoderCounters())
        #expect(Self.kinds(effects).contains("raise:refill_overdue"))
        #expect(!Self.kinds(effects).contains("raise:refill_due_soon"))
        #expect(Self.pumps(effects).last == "1-NGP-A")
    }

    @Test("a pump id is URL-safe, stable and unique across manufacturers")
    func pumpIDs() {
        #expect(PumpIdentity(manufacturerCode: 1, serial: "NGP104857H").id == "1-NGP104857H")
        #expect(PumpIdentity(manufacturerCode: 2, serial: "NGP104857H").id == "2-NGP104857H")
        #expect(PumpIdentity(manufacturerCode: 2, serial: "PR/0042 x").id == "2-PR~2F0042~20x")
        #expect(PumpIdentity(manufacturerCode: 2, serial: "A~B\u{E9}").id == "2-A~7EB~E9")
    }
}
