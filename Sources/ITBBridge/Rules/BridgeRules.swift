public import ITBProtocol
public import ITBSerial
public import Logging

/// A message as a session received it.
public struct ReceivedMessage: Sendable {
    /// The decoded message, owned.
    public var message: Message
    /// The frame's sequence number (an `ACK` names it).
    public var sequence: UInt32
    /// Whether the frame carried the retransmission flag.
    public var retransmission: Bool
    /// Host time of arrival, ms.
    public var receivedAtMs: Int64

    /// Creates a record.
    public init(message: Message, sequence: UInt32, retransmission: Bool, receivedAtMs: Int64) {
        self.message = message
        self.sequence = sequence
        self.retransmission = retransmission
        self.receivedAtMs = receivedAtMs
    }
}

/// An `ACK` the session must send after the core's commit.
public struct AckInstruction: Hashable, Sendable {
    /// The acknowledged frame's sequence number.
    public var sequence: UInt32
    /// The alarm id.
    public var alarmID: UInt32
    /// Stored, or rejected (the journal could not store it: the programmer keeps retransmitting).
    public var status: AckStatus
}

/// Identifies one device session (one followed path) inside the core.
public typealias SessionID = Int

/// One log line a rule decided on; the owner writes it with its logger.
public struct LogLine: Hashable, Sendable {
    /// Its level.
    public var level: Logger.Level
    /// The message (constant text; values go in `metadata`).
    public var message: String
    /// Values, for journald's fields and for filtering.
    public var metadata: [String: String]
}

/// What a rule decided: the journal operations to commit as one transaction, which of them are
/// alarms to acknowledge once the commit says how they went, the log lines to write, and the
/// decoder counters to turn into metrics. The owner (``BridgeCore``) runs them; nothing here does
/// I/O.
public struct BridgeEffects: Sendable {
    /// An alarm message whose `ACK` depends on the commit of ``journal``[`opIndex`].
    struct PendingAck: Hashable, Sendable {
        var opIndex: Int
        var sequence: UInt32
        var alarmID: UInt32
    }

    /// Committed together, in this order (the order of their event ids).
    var journal: [JournalOp] = []
    var acks: [PendingAck] = []
    /// Written by the owner, after the commit.
    public internal(set) var logs: [LogLine] = []
    /// The decoder counters before and after the batch (metrics are counted from the delta).
    public internal(set) var counters: (before: DecoderCounters, after: DecoderCounters)?

    /// True when nothing is to be done.
    var isEmpty: Bool { journal.isEmpty && logs.isEmpty && counters == nil }

    mutating func log(_ level: Logger.Level, _ message: String, _ metadata: [String: String] = [:]) {
        logs.append(LogLine(level: level, message: message, metadata: metadata))
    }

    /// The `ACK`s to send once the journal answered: `stored` for each alarm whose op was stored
    /// (or recognised as a retransmission), `rejected` for all when the commit failed (nil).
    func acknowledgements(after results: [JournalOpResult]?) -> [AckInstruction] {
        acks.map { pending in
            let stored = results.map { $0[pending.opIndex].alarmOutcome != nil } ?? false
            return AckInstruction(sequence: pending.sequence, alarmID: pending.alarmID, status: stored ? .stored : .rejected)
        }
    }
}

/// The bridge's rules as a value: what each programmer reported, what is derived from it, which
/// bridge alarms are open, what goes into the journal and out to subscribers, and when an alarm
/// may be acknowledged. It takes messages, link changes and clock ticks (with the time given, never
/// read from a clock) and returns ``BridgeEffects``; ``BridgeCore`` owns one and runs the effects.
/// Tested without a journal, a thread or a clock (`BridgeRulesTests`).
public struct BridgeRules: Sendable {
    /// A followed path and what the rules know of it.
    struct Session: Sendable {
        var path: String
        /// A capture replayed: nothing retransmits, so alarms that come before the programmer's
        /// identity are held like other messages instead of being left to a retransmission.
        var replay = false
        var link: LinkStateMachine.PublishedState = .searching
        /// The programmer serial, once `PROGRAMMER_INFO` said it.
        var deviceID: String?
        /// Messages that arrived before the programmer was identified (alarms excluded: they are
        /// not acknowledged until then, so the programmer retransmits them).
        var pending: [ReceivedMessage] = []
        /// Messages dropped from `pending` because a newer one of the same kind replaced them.
        var superseded = 0
        var alarmsAwaitingIdentity = 0
        var lastCounters = DecoderCounters()
    }

    /// The last stored snapshot of a kind, by value (its device time left out), for downsampling.
    enum SnapshotValue: Hashable, Sendable {
        case status(PumpStatus)
        case reservoir(Reservoir)
    }

    /// Which snapshot a downsampling mark is for.
    struct SnapshotKey: Hashable, Sendable {
        var device: String
        var kind: EventType
    }

    /// The configuration in force.
    public let configuration: BridgeConfiguration
    private(set) var sessions: [SessionID: Session] = [:]
    private var nextSession = 0
    private(set) var devices: [String: DeviceState] = [:]
    private(set) var openBridgeAlarms: [String: Set<BridgeAlarmCode>] = [:]
    /// Per pump and alarm code, the pump's `ALARM` message with the highest `alarm_id` seen, so
    /// that its open codes follow the device's `alarm_id` order as the journal does.
    private(set) var pumpAlarmMarks: [String: [Int: PumpAlarmMark]] = [:]
    /// Per pump in session, since when (host ms) its `active_alarm_mask` has disagreed with its
    /// open alarms.
    private var maskMismatchSince: [String: Int64] = [:]
    /// Per programmer: its clock's latest offset from the host's (ms), kept across pump sessions
    /// (the clock is the programmer's), and its most recent closed pump sessions (host ms), so a
    /// retransmitted alarm is attributed to the pump that was in session when it was raised.
    private var programmerClockOffsets: [String: Int64] = [:]
    private var recentPumpSessions: [String: [RecentPumpSession]] = [:]
    /// How many closed pump sessions are kept per programmer for that.
    static let recentPumpSessionsKept = 16
    /// The tolerance when an alarm's onset is placed in a session: the clock offset is measured
    /// from messages in transit.
    static let attributionSlackMs: Int64 = 2_000
    private var snapshotMarks: [SnapshotKey: (atMs: Int64, value: SnapshotValue)] = [:]

    /// A snapshot whose value did not change is stored (and published) again after this long.
    public static let snapshotRepeatMs: Int64 = 60_000

    /// Creates the rules; `openBridgeAlarms` are the bridge alarms the journal holds open
    /// (restored after a restart, so they are ended rather than raised twice), and
    /// `openPumpAlarms` the pump alarms it holds open, by pump and code.
    public init(configuration: BridgeConfiguration, openBridgeAlarms: [String: Set<BridgeAlarmCode>] = [:],
                openPumpAlarms: [String: [Int: PumpAlarmMark]] = [:]) {
        self.configuration = configuration
        self.openBridgeAlarms = openBridgeAlarms
        self.pumpAlarmMarks = openPumpAlarms
    }

    // MARK: sessions

    /// Registers a followed path (or a replayed capture); returns its session id.
    public mutating func openSession(path: String, replay: Bool = false) -> SessionID {
        nextSession += 1
        sessions[nextSession] = Session(path: path, replay: replay)
        return nextSession
    }

    /// The link of a session changed state at `nowMs`.
    public mutating func linkChanged(_ id: SessionID, to state: LinkStateMachine.PublishedState, nowMs: Int64) -> BridgeEffects {
        var effects = BridgeEffects()
        guard var session = sessions[id] else { return effects }
        session.link = state
        if case .connected = state {
            effects.log(.notice, "device connected", ["path": session.path])
        } else {
            effects.log(.notice, "device link \(state)", ["path": session.path, "link": "\(state)"])
        }
        if let deviceID = session.deviceID, var device = devices[deviceID] {
            device.link = state
            device.linkSinceMs = nowMs
            device.stale = false
            if case .connected = state {
                // Identity is confirmed again by the next PROGRAMMER_INFO.
            } else {
                closePump(&device, cause: .linkLost, atMs: nowMs, &effects)
                raise(.linkLost, on: deviceID, priority: "medium", detail: "programmer link lost: \(state)", &effects, log: false)
                effects.journal.append(.sessionEnded(device: deviceID, cause: "\(state)"))
                // After a disconnect the path may come back with another programmer: forget who
                // it was until PROGRAMMER_INFO says again.
                session.deviceID = nil
            }
            devices[deviceID] = device
            effects.journal.append(.event(device: deviceID, type: .device, data: Rendering.string { Rendering.device(device, &$0) }))
        }
        sessions[id] = session
        return effects
    }

    /// The session's link has stopped for good (shutdown, or the path was removed).
    public mutating func closeSession(_ id: SessionID, nowMs: Int64) -> BridgeEffects {
        var effects = BridgeEffects()
        guard let session = sessions.removeValue(forKey: id) else { return effects }
        if let deviceID = session.deviceID {
            closePump(of: deviceID, cause: .stopped, atMs: nowMs, &effects)
            effects.journal.append(.sessionEnded(device: deviceID, cause: "stopped"))
        } else if session.replay, !session.pending.isEmpty {
            let alarms = session.pending.filter { if case .alarm = $0.message { true } else { false } }.count
            effects.log(.error, "the replayed capture never identified its programmer (no PROGRAMMER_INFO): its messages could not be attributed and were not stored",
                        ["path": session.path, "messages": "\(session.pending.count)", "alarms": "\(alarms)"])
        }
        return effects
    }

    // MARK: messages

    /// Applies one batch of messages from a session (everything decoded from one read).
    public mutating func receive(_ id: SessionID, _ batch: [ReceivedMessage], counters: DecoderCounters) -> BridgeEffects {
        var effects = BridgeEffects()
        guard var session = sessions[id] else { return effects }
        effects.counters = (session.lastCounters, counters)
        session.lastCounters = counters
        var touched: Set<String> = []

        for received in batch {
            if case .programmerInfo(let info) = received.message {
                identify(&session, info: info, at: received.receivedAtMs, &effects)
                if let deviceID = session.deviceID {
                    let queued = session.pending
                    session.pending = []
                    for earlier in queued {
                        apply(earlier, device: deviceID, &effects)
                    }
                    touched.insert(deviceID)
                }
            }
            guard let deviceID = session.deviceID else {
                hold(received, in: &session, &effects)
                continue
            }
            touched.insert(deviceID)
            if devices[deviceID]?.stale == true {
                devices[deviceID]?.stale = false
                end(.dataStale, on: deviceID, &effects)
            }
            devices[deviceID]?.lastSeenMs = received.receivedAtMs
            devices[deviceID]?.counters = counters
            apply(received, device: deviceID, &effects)
        }
        for deviceID in touched.sorted() {
            evaluateConditions(deviceID, &effects)
        }
        sessions[id] = session
        return effects
    }

    /// Keeps a message that arrived before identification; alarms are counted, not kept (they are
    /// not acknowledged, so the programmer sends them again).
    private func hold(_ received: ReceivedMessage, in session: inout Session, _ effects: inout BridgeEffects) {
        switch received.message {
        case .alarm where session.replay:
            // A replay never retransmits: keep the alarm until the capture names its programmer.
            session.pending.append(received)
        case .alarm:
            session.alarmsAwaitingIdentity += 1
            if session.alarmsAwaitingIdentity == 1 {
                effects.log(.warning, "alarm received before the programmer identified itself: not acknowledged yet, the programmer will retransmit it",
                            ["path": session.path])
            }
        case .ack, .hostHeartbeat:
            break
        default:
            if let index = session.pending.firstIndex(where: { $0.message.type == received.message.type && $0.message.type != .refill }) {
                session.pending.remove(at: index)
                session.superseded += 1
            }
            session.pending.append(received)
        }
    }

    private mutating func identify(_ session: inout Session, info: ProgrammerInfo, at receivedMs: Int64, _ effects: inout BridgeEffects) {
        let serial = info.programmerSerial.isEmpty ? "unidentified:\(session.path)" : info.programmerSerial
        let bootText = String(info.bootID, radix: 16)
        var device = devices[serial] ?? DeviceState(id: serial, path: session.path, nowMs: receivedMs)
        let firstOnThisSession = session.deviceID != serial
        if let previous = device.programmerInfo, previous.value.bootID != info.bootID {
            device.bootChanges += 1
            effects.log(.notice, "programmer restarted (new boot id)", ["device": serial, "boot_id": bootText])
            closePump(&device, cause: .programmerRestarted, atMs: receivedMs, &effects)
        }
        device.programmerInfo = Stamped(value: info, receivedAtMs: receivedMs, deviceTimeMs: nil)
        device.path = session.path
        if firstOnThisSession {
            session.deviceID = serial
            device.link = session.link
            device.linkSinceMs = receivedMs
            device.stale = false
            effects.journal.append(.sessionStarted(device: serial, path: session.path, bootID: bootText))
            end(.linkLost, on: serial, &effects)
            effects.log(.notice, "programmer identified", [
                "device": serial, "path": session.path,
                "firmware": "\(info.firmwareVersion >> 16).\(info.firmwareVersion >> 8 & 0xFF).\(info.firmwareVersion & 0xFF)",
            ])
        }
        devices[serial] = device
        effects.journal.append(.event(device: serial, type: .device, data: Rendering.string { Rendering.device(device, &$0) }))
    }

    /// Applies one message of an identified device.
    private mutating func apply(_ received: ReceivedMessage, device id: String, _ effects: inout BridgeEffects) {
        guard var device = devices[id] else { return }
        let at = received.receivedAtMs
        switch received.message {
        case .programmerInfo:
            break  // handled by identify
        case .heartbeat(let heartbeat):
            if let info = device.programmerInfo, info.value.bootID != heartbeat.bootID,
               device.heartbeat?.value.bootID != heartbeat.bootID {
                device.bootChanges += 1
                effects.log(.notice, "programmer restarted (new boot id in heartbeat)", ["device": id])
                closePump(&device, cause: .programmerRestarted, atMs: at, &effects)
            }
            device.heartbeat = Stamped(value: heartbeat, receivedAtMs: at, deviceTimeMs: nil)
        case .pumpSession(let pumpSession):
            let stamped = Stamped(value: pumpSession, receivedAtMs: at, deviceTimeMs: nil)
            device.pumpSession = stamped
            let identity = PumpIdentity(pumpSession)
            if pumpSession.event == .begin {
                if device.pump?.identity == identity {
                    // Repeated with PROGRAMMER_INFO (protocol minor 1): the same interrogation.
                    device.pump?.session = stamped
                    effects.journal.append(.pumpSeen(PumpSeen(identity: identity, session: pumpSession, programmer: id, atMs: at)))
                } else {
                    closePump(&device, cause: .anotherPump, atMs: at, &effects)
                    device.pump = PumpContext(identity: identity, session: stamped, beganAtMs: at)
                    effects.journal.append(.pumpSessionBegan(PumpSeen(identity: identity, session: pumpSession, programmer: id, atMs: at)))
                    effects.log(.notice, "pump session begin", ["device": id, "pump": identity.id, "pump_serial": pumpSession.pumpSerial])
                }
            } else {
                if let current = device.pump, current.identity != identity {
                    effects.log(.warning, "pump session end for another pump than the one in session: the session is closed all the same",
                                ["device": id, "pump": current.id, "end_for": identity.id])
                }
                closePump(&device, cause: .ended, atMs: at, &effects)
            }
            devices[id] = device
            effects.journal.append(.event(device: id, type: .device, data: Rendering.string { Rendering.device(device, &$0) }))
        case .pumpStatus(let status):
            let stamped = Stamped(value: status, receivedAtMs: at, deviceTimeMs: status.deviceTimeMs)
            device.status = stamped
            if let offset = stamped.clockOffsetMs { programmerClockOffsets[id] = offset }
            var unstamped = status
            unstamped.deviceTimeMs = 0
            if shouldStoreSnapshot(SnapshotKey(device: id, kind: .status), .status(unstamped), atMs: at) {
                let data = Rendering.string { Rendering.status(id, pump: device.pump?.id, stamped, &$0) }
                effects.journal.append(.snapshot(device: id, pump: device.pump?.id, kind: .status, deviceTimeMs: stamped.deviceTimeMs, data: data))
                if let pump = device.pump { effects.journal.append(.pumpLatest(PumpLatest(pump: pump.id, kind: .status, data: data, atMs: at))) }
            }
        case .reservoir(let reservoir):
            device.reservoir = Stamped(value: reservoir, receivedAtMs: at, deviceTimeMs: reservoir.deviceTimeMs)
            if let offset = device.reservoir?.clockOffsetMs { programmerClockOffsets[id] = offset }
            var unstamped = reservoir
            unstamped.deviceTimeMs = 0
            devices[id] = device
            if shouldStoreSnapshot(SnapshotKey(device: id, kind: .reservoir), .reservoir(unstamped), atMs: at) {
                let config = configuration
                let data = Rendering.string { Rendering.reservoir(device, config, &$0) }
                effects.journal.append(.snapshot(device: id, pump: device.pump?.id, kind: .reservoir, deviceTimeMs: device.reservoir?.deviceTimeMs, data: data))
                if let pump = device.pump {
                    effects.journal.append(.pumpLatest(PumpLatest(pump: pump.id, kind: .reservoir, data: data, atMs: at,
                                                                  reservoir: PumpLatest.ReservoirFigures(device, configuration))))
                }
            }
        case .doseProgram(let program):
            var unstamped = program
            unstamped.deviceTimeMs = 0
            var previous = device.program?.value
            previous?.deviceTimeMs = 0
            let stamped = Stamped(value: program, receivedAtMs: at, deviceTimeMs: program.deviceTimeMs)
            device.program = stamped
            if previous != unstamped {
                effects.log(.notice, previous == nil ? "dose program received" : "dose program changed", [
                    "device": id, "mode": "\(program.mode)", "daily_dose_ug": "\(Double(program.dailyDoseUgX10) / 10)",
                ])
                let data = Rendering.string { Rendering.program(id, pump: device.pump?.id, stamped, &$0) }
                effects.journal.append(.program(device: id, pump: device.pump?.id, concentration: device.status.map { Int64($0.value.concentrationUgPerML) }, data: data))
                if let pump = device.pump { effects.journal.append(.pumpLatest(PumpLatest(pump: pump.id, kind: .program, data: data, atMs: at))) }
            }
        case .refill(let refill):
            let stamped = Stamped(value: refill, receivedAtMs: at, deviceTimeMs: refill.refillTimeMs)
            if device.lastRefill.map({ $0.value.refillTimeMs <= refill.refillTimeMs }) ?? true {
                device.lastRefill = stamped
            }
            let config = configuration
            effects.journal.append(.refill(
                device: id, pump: device.pump?.id, capacityUL: device.pump.map { Int64($0.session.value.reservoirCapacityUL) }, refillTimeMs: refill.refillTimeMs, concentration: Int64(refill.concentrationUgPerML),
                filled: Int64(refill.volumeFilledUL), expected: Int64(refill.expectedResidualUL), measured: Int64(refill.measuredResidualUL),
                lot: refill.drugLot, discrepancy: DerivedValues.refillDiscrepancy(refill),
                data: Rendering.string { Rendering.refill(id, pump: device.pump?.id, stamped, config, &$0) }))
        case .alarm(let alarm):
            let pump = pumpOf(alarm, retransmission: received.retransmission, device: device, &effects)
            if let pump { notePumpAlarm(alarm, pump: pump, programmer: id) }
            effects.journal.append(.pumpAlarm(JournalOp.PumpAlarm(alarm, device: id, pump: pump)))
            effects.acks.append(.init(opIndex: effects.journal.count - 1, sequence: received.sequence, alarmID: alarm.alarmID))
        case .ack, .hostHeartbeat:
            // Host-to-programmer messages coming back: a loopback or a misbehaving device.
            effects.log(.debug, "ignoring a host-to-programmer message from the device", ["device": id])
        }
        devices[id] = device
    }

    /// Closes the programmer's pump context, if one is open: the session ends in the journal, the
    /// values that belonged to that pump leave the programmer's view, and the bridge alarms that
    /// followed them end (the pump's own record keeps everything).
    private mutating func closePump(_ device: inout DeviceState, cause: PumpContextEnd, atMs: Int64, _ effects: inout BridgeEffects) {
        guard let pump = device.pump else { return }
        device.pump = nil
        device.status = nil
        device.reservoir = nil
        device.program = nil
        device.lastRefill = nil
        for kind in [EventType.status, .reservoir] { snapshotMarks[SnapshotKey(device: device.id, kind: kind)] = nil }
        maskMismatchSince[pump.id] = nil
        var recent = recentPumpSessions[device.id] ?? []
        recent.append(RecentPumpSession(pump: pump.id, fromMs: pump.beganAtMs, toMs: atMs))
        if recent.count > Self.recentPumpSessionsKept { recent.removeFirst(recent.count - Self.recentPumpSessionsKept) }
        recentPumpSessions[device.id] = recent
        effects.journal.append(.pumpSessionEnded(pump: pump.id, programmer: device.id, cause: cause, atMs: atMs))
        effects.log(.notice, "pump session closed", ["device": device.id, "pump": pump.id, "cause": cause.rawValue])
        // At shutdown the bridge alarms stay as they are: the next start continues from them.
        guard cause != .stopped else { return }
        for code in (openBridgeAlarms[device.id] ?? []).intersection(BridgeAlarmCode.derivedFromValues).sorted(by: { $0.rawValue < $1.rawValue }) {
            end(code, on: device.id, &effects)
        }
    }

    /// Closes the pump context of the programmer `id` (its link went down, it restarted).
    private mutating func closePump(of id: String, cause: PumpContextEnd, atMs: Int64, _ effects: inout BridgeEffects) {
        guard var device = devices[id], device.pump != nil else { return }
        closePump(&device, cause: cause, atMs: atMs, &effects)
        devices[id] = device
    }

    /// True when a snapshot should be stored and published: its value changed, or
    /// ``snapshotRepeatMs`` passed since the last one stored. Compared by value, device time left out.
    private mutating func shouldStoreSnapshot(_ key: SnapshotKey, _ value: SnapshotValue, atMs: Int64) -> Bool {
        if let mark = snapshotMarks[key], mark.value == value, atMs &- mark.atMs < Self.snapshotRepeatMs { return false }
        snapshotMarks[key] = (atMs, value)
        return true
    }

    /// Raises and ends the bridge's alarms that follow the device's current values.
    private mutating func evaluateConditions(_ id: String, _ effects: inout BridgeEffects) {
        guard let device = devices[id] else { return }
        var wanted: [BridgeAlarmCode: (priority: String, detail: String)] = [:]
        let dayMs = 86_400_000.0
        if let derived = device.derived(configuration), let reservoir = device.reservoir {
            let nowDevice = Double(TimeArithmetic.sum(reservoir.deviceTimeMs, reservoir.clockOffsetMs) ?? reservoir.receivedAtMs)
            if let due = derived.refillDueDateMs {
                let daysLeft = (Double(due) - nowDevice) / dayMs
                let reason = derived.refillDueReason?.rawValue ?? "unknown"
                if daysLeft < 0 {
                    wanted[.refillOverdue] = ("medium", "refill overdue by \(Self.format(-daysLeft)) days (\(reason))")
                } else if daysLeft <= configuration.refillDueSoonDays {
                    wanted[.refillDueSoon] = ("low", "refill due in \(Self.format(daysLeft)) days (\(reason))")
                }
            }
            if let stability = derived.stabilityLimitDateMs {
                let daysLeft = (Double(stability) - nowDevice) / dayMs
                if daysLeft <= configuration.stabilityWarningDays {
                    wanted[.stabilityLimitNear] = ("low", "drug stability limit in \(Self.format(daysLeft)) days")
                }
            }
        }
        if let refill = device.lastRefill, let discrepancy = DerivedValues.refillDiscrepancy(refill.value),
           abs(discrepancy) > configuration.refillDiscrepancyBound {
            let kind = discrepancy < 0 ? "over-infusion" : "under-delivery"
            wanted[.refillDiscrepancy] = ("medium", "refill discrepancy \(Self.format(discrepancy * 100))% (\(kind)), bound \(Self.format(configuration.refillDiscrepancyBound * 100))%")
        }
        if let offset = device.clockOffsetMs {
            let boundMs = configuration.clockDriftBound.components.seconds * 1000
                + configuration.clockDriftBound.components.attoseconds / 1_000_000_000_000_000
            if offset.magnitude > boundMs.magnitude {
                wanted[.clockDrift] = ("low", "device clock off by \(Self.format(Double(offset) / 1000)) s")
            }
        }
        if let pump = device.pump, let status = device.status,
           let mismatch = maskMismatch(pump: pump.id, mask: status.value.activeAlarmMask, atMs: status.receivedAtMs) {
            wanted[.alarmMaskMismatch] = ("medium", mismatch)
        }
        let open = openBridgeAlarms[id] ?? []
        for (code, spec) in wanted.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where !open.contains(code) {
            raise(code, on: id, pump: device.pump?.id, priority: spec.priority, detail: spec.detail, &effects)
        }
        for code in open.intersection(BridgeAlarmCode.derivedFromValues).sorted(by: { $0.rawValue < $1.rawValue }) where wanted[code] == nil {
            end(code, on: id, &effects)
        }
    }

    /// The pump an `ALARM` belongs to. A first transmission belongs to the pump in session (or to
    /// none). A retransmission may have been raised before: one pump's alarm, not acknowledged
    /// (the bridge was down, the line noisy), is retransmitted while the next pump is in session.
    /// So a retransmitted alarm belongs to the pump that was in session at its onset (device
    /// clock, placed on the host's with the programmer's clock offset): the current one, a recent
    /// one of this programmer, or, when its onset falls in none of them, to no pump (it is still
    /// stored, listed and acknowledged; it is never put under the wrong patient's pump).
    private func pumpOf(_ alarm: Alarm, retransmission: Bool, device: DeviceState, _ effects: inout BridgeEffects) -> String? {
        guard retransmission, alarm.onsetTimeMs != 0, let onset = TimeArithmetic.deviceTime(alarm.onsetTimeMs) else { return device.pump?.id }
        guard let offset = programmerClockOffsets[device.id], let onsetHost = TimeArithmetic.sum(onset, offset) else { return device.pump?.id }
        let slack = Self.attributionSlackMs
        if let current = device.pump, onsetHost >= current.beganAtMs &- slack { return current.id }
        if let earlier = recentPumpSessions[device.id]?.last(where: { onsetHost >= $0.fromMs &- slack && onsetHost <= $0.toMs &+ slack }) {
            if earlier.pump != device.pump?.id {
                effects.log(.notice, "retransmitted alarm attributed to the pump in session when it was raised",
                            ["device": device.id, "alarm_id": "\(alarm.alarmID)", "pump": earlier.pump, "pump_in_session": device.pump?.id ?? "none"])
            }
            return earlier.pump
        }
        if let current = device.pump {
            effects.log(.warning, "retransmitted alarm raised before this pump session and in no recent one: attributed to no pump",
                        ["device": device.id, "alarm_id": "\(alarm.alarmID)", "pump_in_session": current.id])
        }
        return nil
    }

    /// Notes a pump's `ALARM` message: the one with the highest `alarm_id` of the programmer that
    /// sent it says whether the code is open (a late retransmission of an older raise does not
    /// reopen a code whose clear came first).
    private mutating func notePumpAlarm(_ alarm: Alarm, pump: String, programmer: String) {
        guard alarm.transition == .raised || alarm.transition == .cleared else { return }
        let code = Int(alarm.code.rawValue)
        if let old = pumpAlarmMarks[pump]?[code], old.programmer == programmer, old.alarmID > Int64(alarm.alarmID) { return }
        pumpAlarmMarks[pump, default: [:]][code] = PumpAlarmMark(programmer: programmer, alarmID: Int64(alarm.alarmID), raised: alarm.transition == .raised)
    }

    /// Compares the pump's own word (`active_alarm_mask`, bit k = code k + 1) with its open
    /// alarms; returns the detail of `alarm_mask_mismatch` once they have disagreed for
    /// `alarm_mask_grace_s`, nil while they agree or within the grace.
    private mutating func maskMismatch(pump: String, mask: UInt32, atMs: Int64) -> String? {
        let reported = Set((0..<32).filter { mask & (1 << UInt32($0)) != 0 }.map { $0 + 1 })
        let open = Set((pumpAlarmMarks[pump] ?? [:]).filter { $0.value.raised && (1...32).contains($0.key) }.keys)
        guard reported != open else {
            maskMismatchSince[pump] = nil
            return nil
        }
        let since = maskMismatchSince[pump] ?? atMs
        maskMismatchSince[pump] = since
        let grace = configuration.alarmMaskGrace
        let graceMs = grace.components.seconds * 1000 + grace.components.attoseconds / 1_000_000_000_000_000
        guard atMs &- since >= graceMs else { return nil }
        func names(_ codes: Set<Int>) -> String {
            codes.isEmpty ? "none" : codes.sorted().map { AlarmCode(rawValue: UInt16($0)).name ?? "unknown_\($0)" }.joined(separator: ", ")
        }
        var parts: [String] = []
        let missing = reported.subtracting(open)
        let extra = open.subtracting(reported)
        if !missing.isEmpty { parts.append("active on the pump but never received: \(names(missing))") }
        if !extra.isEmpty { parts.append("open in the bridge but not active on the pump: \(names(extra))") }
        return "the pump's active_alarm_mask disagrees with its open alarms for \(Self.format(Double(atMs &- since) / 1000)) s: " + parts.joined(separator: "; ")
    }

    /// Marks silent links stale and raises `data_stale` at `nowMs`. Also returns when the next
    /// device would go stale if it stays silent (host ms), so the owner can sleep until then.
    public mutating func tick(nowMs: Int64) -> (effects: BridgeEffects, nextDeadlineMs: Int64?) {
        let staleMs = configuration.staleAfter.components.seconds * 1000 + configuration.staleAfter.components.attoseconds / 1_000_000_000_000_000
        var effects = BridgeEffects()
        var nextDeadline: Int64?
        for (id, var device) in devices.sorted(by: { $0.key < $1.key }) {
            guard case .connected = device.link, !device.stale, let last = device.lastSeenMs else { continue }
            guard nowMs - last > staleMs else {
                nextDeadline = min(nextDeadline ?? .max, last + staleMs + 1)
                continue
            }
            device.stale = true
            devices[id] = device
            effects.log(.warning, "device data stale", ["device": id, "silent_ms": "\(nowMs - last)"])
            raise(.dataStale, on: id, priority: "medium", detail: "no data from the programmer for \((nowMs - last) / 1000) s", &effects, log: false)
            effects.journal.append(.event(device: id, type: .device, data: Rendering.string { Rendering.device(device, &$0) }))
        }
        return (effects, nextDeadline)
    }

    /// Raises a bridge alarm about `device`, and about `pump` when it concerns the pump in session.
    private mutating func raise(_ code: BridgeAlarmCode, on device: String, pump: String? = nil, priority: String, detail: String,
                                _ effects: inout BridgeEffects, log: Bool = true) {
        guard openBridgeAlarms[device]?.contains(code) != true else { return }
        openBridgeAlarms[device, default: []].insert(code)
        effects.journal.append(.raiseBridgeAlarm(device: device, pump: pump, code: code, priority: priority, detail: detail))
        if log { effects.log(.warning, "bridge alarm raised: \(code.rawValue)", ["device": device, "detail": detail]) }
    }

    private mutating func end(_ code: BridgeAlarmCode, on device: String, _ effects: inout BridgeEffects) {
        guard openBridgeAlarms[device]?.remove(code) != nil else { return }
        effects.journal.append(.endBridgeAlarm(device: device, code: code))
    }

    // MARK: queries

    /// Every identified device, by serial.
    public var deviceStates: [DeviceState] {
        devices.values.sorted { $0.id < $1.id }
    }

    /// One device by programmer serial.
    public func device(_ id: String) -> DeviceState? { devices[id] }

    /// Paths followed whose programmer has not identified itself yet.
    public var unidentifiedSessions: [(path: String, link: LinkStateMachine.PublishedState)] {
        sessions.values.filter { $0.deviceID == nil }.map { ($0.path, $0.link) }.sorted { $0.path < $1.path }
    }

    static func format(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return String(rounded)
    }
}

/// A closed pump session of a programmer, in host ms (for attributing late retransmissions).
struct RecentPumpSession: Hashable, Sendable {
    var pump: String
    var fromMs: Int64
    var toMs: Int64
}

/// A pump's latest alarm message for one code, as ``BridgeRules`` keeps it: which programmer sent
/// it (its `alarm_id`s are that programmer's), its `alarm_id`, and whether it raised or cleared.
public struct PumpAlarmMark: Hashable, Sendable {
    /// The programmer serial whose `alarm_id` this is.
    public var programmer: String
    /// The device's `alarm_id`.
    public var alarmID: Int64
    /// True for a raise, false for a clear.
    public var raised: Bool

    /// A mark for a message of `programmer` with `alarmID`.
    public init(programmer: String, alarmID: Int64, raised: Bool) {
        self.programmer = programmer
        self.alarmID = alarmID
        self.raised = raised
    }
}

extension JournalOp.PumpAlarm {
    /// The fields of `alarm` to store for `device`, with its content key: what makes a second
    /// message with the same `alarm_id` a retransmission (same content) or a reused id.
    init(_ alarm: Alarm, device: String, pump: String? = nil) {
        self.init(
            device: device, pump: pump, alarmID: Int64(alarm.alarmID), codeName: alarm.code.name ?? "unknown", codeRaw: Int(alarm.code.rawValue),
            priorityName: alarm.priority.name ?? "unknown", priorityRaw: alarm.priority.isKnown ? nil : Int(alarm.priority.rawValue),
            raised: alarm.transition == .raised, transitionRaw: Int(alarm.transition.rawValue), detail: alarm.detail,
            onsetTimeMs: alarm.onsetTimeMs == 0 ? nil : alarm.onsetTimeMs,
            content: "\(alarm.code.rawValue)/\(alarm.priority.rawValue)/\(alarm.transition.rawValue)/\(alarm.onsetTimeMs)/\(alarm.detail.unicodeScalars.map { String($0.value, radix: 16) }.joined(separator: "."))")
    }
}
