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

/// The bridge's state and its rules: what each programmer reported, what is derived from it,
/// which alarms are open, what goes into the journal and out to subscribers, and when an alarm
/// may be acknowledged to the programmer.
///
/// Sessions hand it batches of decoded messages (one batch per read); it updates the state,
/// commits the batch to the journal as one durable transaction, publishes the resulting events in
/// commit order, and returns the `ACK`s to send. An alarm is acknowledged as stored only after
/// that commit; when the commit fails, the alarm is answered `rejected` and the programmer keeps
/// retransmitting it, while live state is still served.
public actor BridgeCore {
    /// The configuration in force.
    public nonisolated let configuration: BridgeConfiguration
    /// The journal.
    public nonisolated let journal: Journal
    /// Live fan-out.
    public nonisolated let hub: EventHub
    /// Metrics.
    public nonisolated let metrics: BridgeMetrics
    /// Host clock, ms since the epoch.
    public nonisolated let now: @Sendable () -> Int64
    /// When the core started (host ms).
    public nonisolated let startedAtMs: Int64
    private var logger: Logger

    /// A followed path and what the core knows of it.
    struct Session {
        var path: String
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

    private var sessions: [SessionID: Session] = [:]
    private var nextSession = 0
    private var devices: [String: DeviceState] = [:]
    private var openBridgeAlarms: [String: Set<String>] = [:]
    private var historyMarks: [String: (atMs: Int64, value: String)] = [:]
    /// False after a failed journal write, true again after the next successful one.
    public private(set) var journalHealthy = true
    private var lastJournalError: String?

    /// Creates the core over an open journal.
    public init(configuration: BridgeConfiguration, journal: Journal, metrics: BridgeMetrics, logger: Logger,
                now: @escaping @Sendable () -> Int64) async {
        self.configuration = configuration
        self.journal = journal
        self.hub = EventHub(capacity: configuration.subscriberBufferEvents)
        self.metrics = metrics
        self.logger = logger
        self.now = now
        self.startedAtMs = now()
        do {
            openBridgeAlarms = try await journal.openBridgeAlarms()
        } catch {
            logger.error("cannot read open bridge alarms from the journal", metadata: ["error": "\(error)"])
        }
    }

    // MARK: sessions

    /// Registers a followed path; returns its session id.
    public func openSession(path: String) -> SessionID {
        nextSession += 1
        sessions[nextSession] = Session(path: path)
        return nextSession
    }

    /// The link of a session changed state.
    public func linkChanged(_ id: SessionID, to state: LinkStateMachine.PublishedState) async {
        guard var session = sessions[id] else { return }
        let nowMs = now()
        session.link = state
        var ops: [JournalOp] = []
        if case .connected = state {
            logger.notice("device connected", metadata: ["path": "\(session.path)"])
        } else {
            logger.notice("device link \(state)", metadata: ["path": "\(session.path)", "link": "\(state)"])
        }
        if let deviceID = session.deviceID, var device = devices[deviceID] {
            device.link = state
            device.linkSinceMs = nowMs
            device.stale = false
            if case .connected = state {
                // Identity is confirmed again by the next PROGRAMMER_INFO; until then the device
                // shows connected under its old id only if the same session reconnects.
            } else {
                ops.append(.raiseBridgeAlarm(device: deviceID, code: "link_lost", priority: "medium",
                                             detail: "programmer link lost: \(state)"))
                ops.append(.sessionEnded(device: deviceID, cause: "\(state)"))
                openBridgeAlarms[deviceID, default: []].insert("link_lost")
                // After a disconnect the path may come back with another programmer: forget who
                // it was until PROGRAMMER_INFO says again.
                session.deviceID = nil
            }
            devices[deviceID] = device
            ops.append(.event(device: deviceID, type: "device", data: Rendering.string { Rendering.device(device, &$0) }))
        }
        sessions[id] = session
        if !ops.isEmpty { _ = await commit(ops) }
    }

    /// The session's link has stopped for good (shutdown, or the path was removed).
    public func closeSession(_ id: SessionID) async {
        guard let session = sessions.removeValue(forKey: id) else { return }
        if let deviceID = session.deviceID {
            _ = await commit([.sessionEnded(device: deviceID, cause: "stopped")])
        }
    }

    // MARK: messages

    /// Processes one batch of messages from a session and returns the ACKs to send.
    public func receive(_ id: SessionID, _ batch: [ReceivedMessage], counters: DecoderCounters) async -> [AckInstruction] {
        guard var session = sessions[id] else { return [] }
        recordCounterDeltas(from: session.lastCounters, to: counters)
        session.lastCounters = counters
        var ops: [JournalOp] = []
        var alarmAcks: [(opIndex: Int, sequence: UInt32, alarmID: UInt32)] = []
        var touched: Set<String> = []

        for received in batch {
            if case .programmerInfo(let info) = received.message {
                identify(&session, info: info, at: received.receivedAtMs, ops: &ops)
                if let deviceID = session.deviceID {
                    let queued = session.pending
                    session.pending = []
                    for earlier in queued {
                        apply(earlier, device: deviceID, ops: &ops, alarmAcks: &alarmAcks)
                    }
                    touched.insert(deviceID)
                }
            }
            guard let deviceID = session.deviceID else {
                hold(received, in: &session)
                continue
            }
            touched.insert(deviceID)
            if devices[deviceID]?.stale == true {
                devices[deviceID]?.stale = false
                ops.append(.endBridgeAlarm(device: deviceID, code: "data_stale"))
                openBridgeAlarms[deviceID]?.remove("data_stale")
            }
            devices[deviceID]?.lastSeenMs = received.receivedAtMs
            devices[deviceID]?.counters = counters
            apply(received, device: deviceID, ops: &ops, alarmAcks: &alarmAcks)
        }
        for deviceID in touched.sorted() {
            evaluateConditions(deviceID, ops: &ops)
        }
        sessions[id] = session

        guard !ops.isEmpty else { return [] }
        let results = await commit(ops)
        var acks: [AckInstruction] = []
        for (index, sequence, alarmID) in alarmAcks {
            if let results, case .alarm = results[index] {
                acks.append(AckInstruction(sequence: sequence, alarmID: alarmID, status: .stored))
            } else {
                acks.append(AckInstruction(sequence: sequence, alarmID: alarmID, status: .rejected))
            }
        }
        return acks
    }

    /// Keeps a message that arrived before identification; alarms are counted, not kept (they are
    /// not acknowledged, so the programmer sends them again).
    private func hold(_ received: ReceivedMessage, in session: inout Session) {
        switch received.message {
        case .alarm:
            session.alarmsAwaitingIdentity += 1
            if session.alarmsAwaitingIdentity == 1 {
                logger.warning("alarm received before the programmer identified itself: not acknowledged yet, the programmer will retransmit it",
                               metadata: ["path": "\(session.path)"])
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

    private func identify(_ session: inout Session, info: ProgrammerInfo, at receivedMs: Int64, ops: inout [JournalOp]) {
        let serial = info.programmerSerial.isEmpty ? "unidentified:\(session.path)" : info.programmerSerial
        let bootText = String(info.bootID, radix: 16)
        var device = devices[serial] ?? DeviceState(id: serial, path: session.path, nowMs: receivedMs)
        let firstOnThisSession = session.deviceID != serial
        if let previous = device.programmerInfo, previous.value.bootID != info.bootID {
            device.bootChanges += 1
            logger.notice("programmer restarted (new boot id)", metadata: ["device": "\(serial)", "boot_id": "\(bootText)"])
        }
        device.programmerInfo = Stamped(value: info, receivedAtMs: receivedMs, deviceTimeMs: nil)
        device.path = session.path
        if firstOnThisSession {
            session.deviceID = serial
            device.link = session.link
            device.linkSinceMs = receivedMs
            device.stale = false
            ops.append(.sessionStarted(device: serial, path: session.path, bootID: bootText))
            if openBridgeAlarms[serial]?.remove("link_lost") != nil {
                ops.append(.endBridgeAlarm(device: serial, code: "link_lost"))
            }
            logger.notice("programmer identified", metadata: ["device": "\(serial)", "path": "\(session.path)",
                                                             "firmware": "\(info.firmwareVersion >> 16).\(info.firmwareVersion >> 8 & 0xFF).\(info.firmwareVersion & 0xFF)"])
        }
        devices[serial] = device
        ops.append(.event(device: serial, type: "device", data: Rendering.string { Rendering.device(device, &$0) }))
    }

    /// Applies one message of an identified device.
    private func apply(_ received: ReceivedMessage, device id: String, ops: inout [JournalOp],
                       alarmAcks: inout [(opIndex: Int, sequence: UInt32, alarmID: UInt32)]) {
        guard var device = devices[id] else { return }
        let at = received.receivedAtMs
        switch received.message {
        case .programmerInfo:
            break  // handled by identify
        case .heartbeat(let heartbeat):
            if let info = device.programmerInfo, info.value.bootID != heartbeat.bootID,
               device.heartbeat?.value.bootID != heartbeat.bootID {
                device.bootChanges += 1
                logger.notice("programmer restarted (new boot id in heartbeat)", metadata: ["device": "\(id)"])
            }
            device.heartbeat = Stamped(value: heartbeat, receivedAtMs: at, deviceTimeMs: nil)
        case .pumpSession(let pumpSession):
            device.pumpSession = Stamped(value: pumpSession, receivedAtMs: at, deviceTimeMs: nil)
            logger.notice("pump session \(pumpSession.event)", metadata: ["device": "\(id)", "pump_serial": "\(pumpSession.pumpSerial)"])
            devices[id] = device
            ops.append(.event(device: id, type: "device", data: Rendering.string { Rendering.device(device, &$0) }))
        case .pumpStatus(let status):
            let stamped = Stamped(value: status, receivedAtMs: at, deviceTimeMs: status.deviceTimeMs == 0 ? nil : status.deviceTimeMs)
            device.status = stamped
            var unstamped = status
            unstamped.deviceTimeMs = 0
            let data = Rendering.string { Rendering.status(id, stamped, &$0) }
            if shouldRecordHistory(device: id, kind: "status", fingerprint: "\(unstamped)", atMs: at) {
                ops.append(.history(device: id, kind: "status", deviceTimeMs: stamped.deviceTimeMs, data: data))
            }
        case .reservoir(let reservoir):
            device.reservoir = Stamped(value: reservoir, receivedAtMs: at, deviceTimeMs: reservoir.deviceTimeMs == 0 ? nil : reservoir.deviceTimeMs)
            var unstamped = reservoir
            unstamped.deviceTimeMs = 0
            devices[id] = device
            let config = configuration
            let data = Rendering.string { Rendering.reservoir(device, config, &$0) }
            if shouldRecordHistory(device: id, kind: "reservoir", fingerprint: "\(unstamped)", atMs: at) {
                ops.append(.history(device: id, kind: "reservoir", deviceTimeMs: device.reservoir?.deviceTimeMs, data: data))
            }
        case .doseProgram(let program):
            var unstamped = program
            unstamped.deviceTimeMs = 0
            var previous = device.program?.value
            previous?.deviceTimeMs = 0
            let stamped = Stamped(value: program, receivedAtMs: at, deviceTimeMs: program.deviceTimeMs == 0 ? nil : program.deviceTimeMs)
            device.program = stamped
            if previous != unstamped {
                logger.notice("dose program \(previous == nil ? "received" : "changed")", metadata: [
                    "device": "\(id)", "mode": "\(program.mode)", "daily_dose_ug": "\(Double(program.dailyDoseUgX10) / 10)",
                ])
                ops.append(.program(device: id, data: Rendering.string { Rendering.program(id, stamped, &$0) }))
            }
        case .refill(let refill):
            let stamped = Stamped(value: refill, receivedAtMs: at, deviceTimeMs: refill.refillTimeMs == 0 ? nil : refill.refillTimeMs)
            if device.lastRefill.map({ $0.value.refillTimeMs <= refill.refillTimeMs }) ?? true {
                device.lastRefill = stamped
            }
            let config = configuration
            ops.append(.refill(
                device: id, refillTimeMs: refill.refillTimeMs, concentration: Int64(refill.concentrationUgPerML),
                filled: Int64(refill.volumeFilledUL), expected: Int64(refill.expectedResidualUL), measured: Int64(refill.measuredResidualUL),
                lot: refill.drugLot, discrepancy: DerivedValues.refillDiscrepancy(refill),
                data: Rendering.string { Rendering.refill(id, stamped, config, &$0) }))
        case .alarm(let alarm):
            let code = alarm.code.name ?? "unknown"
            ops.append(.pumpAlarm(.init(
                device: id, alarmID: Int64(alarm.alarmID), codeName: code, codeRaw: Int(alarm.code.rawValue),
                priorityName: alarm.priority.name ?? "unknown", priorityRaw: alarm.priority.isKnown ? nil : Int(alarm.priority.rawValue),
                raised: alarm.transition == .raised, transitionRaw: Int(alarm.transition.rawValue), detail: alarm.detail,
                onsetTimeMs: alarm.onsetTimeMs == 0 ? nil : alarm.onsetTimeMs)))
            alarmAcks.append((ops.count - 1, received.sequence, alarm.alarmID))
        case .ack, .hostHeartbeat:
            // Host-to-programmer messages coming back: a loopback or a misbehaving device.
            logger.debug("ignoring a host-to-programmer message from the device", metadata: ["device": "\(id)"])
        }
        devices[id] = device
    }

    /// True when a `kind` snapshot should be stored: it changed, or a minute passed since the last.
    private func shouldRecordHistory(device: String, kind: String, fingerprint: String, atMs: Int64) -> Bool {
        let key = device + "/" + kind
        if let mark = historyMarks[key], mark.value == fingerprint, atMs - mark.atMs < 60_000 { return false }
        historyMarks[key] = (atMs, fingerprint)
        return true
    }

    /// Raises and ends the bridge's own alarms from the device's current values.
    private func evaluateConditions(_ id: String, ops: inout [JournalOp]) {
        guard let device = devices[id] else { return }
        var wanted: [String: (priority: String, detail: String)] = [:]
        let dayMs = 86_400_000.0
        if let derived = device.derived(configuration), let reservoir = device.reservoir {
            let nowDevice = Double(reservoir.deviceTimeMs.map { $0 + (reservoir.clockOffsetMs ?? 0) } ?? reservoir.receivedAtMs)
            if let due = derived.refillDueDateMs {
                let daysLeft = (Double(due) - nowDevice) / dayMs
                if daysLeft <= configuration.refillDueSoonDays {
                    wanted["refill_due_soon"] = ("low", "refill due in \(Self.format(daysLeft)) days (\(derived.refillDueReason?.rawValue ?? "unknown"))")
                }
            }
            if let stability = derived.stabilityLimitDateMs {
                let daysLeft = (Double(stability) - nowDevice) / dayMs
                if daysLeft <= configuration.stabilityWarningDays {
                    wanted["stability_limit_near"] = ("low", "drug stability limit in \(Self.format(daysLeft)) days")
                }
            }
        }
        if let refill = device.lastRefill, let discrepancy = DerivedValues.refillDiscrepancy(refill.value),
           abs(discrepancy) > configuration.refillDiscrepancyBound {
            let kind = discrepancy < 0 ? "over-infusion" : "under-delivery"
            wanted["refill_discrepancy"] = ("medium", "refill discrepancy \(Self.format(discrepancy * 100))% (\(kind)), bound \(Self.format(configuration.refillDiscrepancyBound * 100))%")
        }
        if let offset = device.clockOffsetMs {
            let boundMs = configuration.clockDriftBound.components.seconds * 1000
                + configuration.clockDriftBound.components.attoseconds / 1_000_000_000_000_000
            if abs(offset) > boundMs {
                wanted["clock_drift"] = ("low", "device clock off by \(Self.format(Double(offset) / 1000)) s")
            }
        }
        let managed: Set<String> = ["refill_due_soon", "stability_limit_near", "refill_discrepancy", "clock_drift"]
        let open = openBridgeAlarms[id] ?? []
        for (code, spec) in wanted.sorted(by: { $0.key < $1.key }) where !open.contains(code) {
            ops.append(.raiseBridgeAlarm(device: id, code: code, priority: spec.priority, detail: spec.detail))
            openBridgeAlarms[id, default: []].insert(code)
            logger.warning("bridge alarm raised: \(code)", metadata: ["device": "\(id)", "detail": "\(spec.detail)"])
        }
        for code in open.intersection(managed).sorted() where wanted[code] == nil {
            ops.append(.endBridgeAlarm(device: id, code: code))
            openBridgeAlarms[id]?.remove(code)
        }
    }

    /// Marks silent links stale and raises `data_stale`. Returns when the next device would go
    /// stale if it stays silent (host ms), so the main loop can sleep until then; nil when none can.
    @discardableResult
    public func tick() async -> Int64? {
        let nowMs = now()
        let staleMs = configuration.staleAfter.components.seconds * 1000 + configuration.staleAfter.components.attoseconds / 1_000_000_000_000_000
        var ops: [JournalOp] = []
        var nextDeadline: Int64?
        for (id, var device) in devices.sorted(by: { $0.key < $1.key }) {
            guard case .connected = device.link, !device.stale, let last = device.lastSeenMs else { continue }
            guard nowMs - last > staleMs else {
                nextDeadline = min(nextDeadline ?? .max, last + staleMs + 1)
                continue
            }
            device.stale = true
            devices[id] = device
            logger.warning("device data stale", metadata: ["device": "\(id)", "silent_ms": "\(nowMs - last)"])
            ops.append(.raiseBridgeAlarm(device: id, code: "data_stale", priority: "medium",
                                         detail: "no data from the programmer for \((nowMs - last) / 1000) s"))
            openBridgeAlarms[id, default: []].insert("data_stale")
            ops.append(.event(device: id, type: "device", data: Rendering.string { Rendering.device(device, &$0) }))
        }
        if !ops.isEmpty { _ = await commit(ops) }
        return nextDeadline
    }

    // MARK: journal

    /// Commits `ops`, publishes the resulting events, and returns the results (nil on failure).
    private func commit(_ ops: [JournalOp]) async -> [JournalOpResult]? {
        let started = ContinuousClock.now
        let results: [JournalOpResult]
        do {
            results = try await journal.commit(ops, nowMs: now())
        } catch {
            metrics.journalFailures.increment()
            if journalHealthy || lastJournalError != error.description {
                logger.critical("JOURNAL WRITE FAILED: alarms are not being stored and will not be acknowledged; live data is still served",
                                metadata: ["error": "\(error)", "journal": "\(journal.path)"])
            }
            journalHealthy = false
            lastJournalError = error.description
            // Live values are still live: followers get the snapshots without an event id.
            // (Alarms are not published: the programmer retransmits them until they are stored.)
            for op in ops {
                switch op {
                case .history(let device, let kind, _, let data):
                    hub.publish(PublishedEvent(unjournaled: device, type: kind, data: data))
                case .event(let device, let type, let data):
                    hub.publish(PublishedEvent(unjournaled: device, type: type, data: data))
                default:
                    break
                }
            }
            return nil
        }
        let elapsed = ContinuousClock.now - started
        metrics.journalWrite.recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        if !journalHealthy {
            logger.notice("journal writes succeed again", metadata: ["journal": "\(journal.path)"])
            journalHealthy = true
            lastJournalError = nil
        }
        for result in results {
            switch result {
            case .none, .alarm(.duplicate): break
            case .event(let event):
                hub.publish(PublishedEvent(event))
            case .alarm(.stored(let record, let event)), .bridgeAlarm(let record, let event):
                logAlarm(record, event: event)
                hub.publish(PublishedEvent(event))
            }
        }
        metrics.subscribers.record(Double(hub.subscriberCount))
        return results
    }

    /// One log line per alarm transition, with fields journald can filter on.
    private func logAlarm(_ record: AlarmRecord, event: StoredEvent) {
        logger.notice("alarm \(record.state.rawValue): \(record.code)", metadata: [
            "device": "\(record.device)", "event_id": "\(event.id)", "alarm": "\(record.id)",
            "alarm_code": "\(record.code)", "alarm_priority": "\(record.priority)", "alarm_source": "\(record.source)",
        ])
        metrics.alarmStored(code: record.code, source: record.source)
    }

    private func recordCounterDeltas(from old: DecoderCounters, to new: DecoderCounters) {
        func delta(_ a: UInt64, _ b: UInt64) -> Int64 { b >= a ? Int64(b - a) : Int64(b) }
        metrics.framesAccepted.increment(by: delta(old.framesAccepted, new.framesAccepted))
        metrics.payloadCRCErrors.increment(by: delta(old.payloadCRCErrors, new.payloadCRCErrors))
        metrics.headerRejects.increment(by: delta(old.headerRejects, new.headerRejects))
        metrics.bytesDiscarded.increment(by: delta(old.bytesDiscarded, new.bytesDiscarded))
        metrics.sequenceGaps.increment(by: delta(old.sequenceGaps, new.sequenceGaps))
    }

    // MARK: queries

    /// Every identified device.
    public func deviceStates() -> [DeviceState] {
        devices.values.sorted { $0.id < $1.id }
    }

    /// One device by programmer serial.
    public func device(_ id: String) -> DeviceState? { devices[id] }

    /// Paths followed whose programmer has not identified itself yet.
    public func unidentifiedSessions() -> [(path: String, link: LinkStateMachine.PublishedState)] {
        sessions.values.filter { $0.deviceID == nil }.map { ($0.path, $0.link) }.sorted { $0.path < $1.path }
    }

    /// Acknowledges an alarm for `uid`. Nothing is sent to any programmer or pump.
    public func acknowledge(alarm id: Int64, uid: Int64) async throws(JournalError) -> AcknowledgeOutcome {
        let outcome = try await journal.acknowledge(alarm: id, uid: uid, nowMs: now())
        if case .acknowledged(let record, let event) = outcome {
            logger.notice("alarm acknowledged", metadata: ["device": "\(record.device)", "alarm": "\(record.id)",
                                                          "alarm_code": "\(record.code)", "uid": "\(uid)"])
            hub.publish(PublishedEvent(event))
        }
        return outcome
    }

    static func format(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return String(rounded)
    }
}
