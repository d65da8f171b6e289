public import ITBProtocol
public import ITBSerial
public import Logging
import Synchronization

/// The one owner of the bridge's rules (``BridgeRules``): it runs their effects. Each step — apply
/// the rules, commit the journal operations they return, publish the stored events, write the
/// log lines — happens under one lock, so event ids are assigned and published in the same order:
/// a subscriber that has seen id N has seen every event below N.
///
/// Link threads call the blocking forms (``receiveNow(_:_:counters:)``, ``linkChangedNow(_:to:)``)
/// directly: decode, rules and publish on the thread that read the bytes, with no task or thread
/// hop before the subscribers' event loops. A step that yields snapshots only (status, reservoir)
/// publishes them at once, with ids the journal assigns, and leaves their write to the journal's
/// writer queue (``Journal/queueSnapshots(_:nowMs:)``), which commits them before any later
/// write: the journal stays a prefix of what was published. Every other step commits first and
/// publishes what was stored. An alarm is acknowledged as stored only after its commit, which is
/// synchronous (fsynced); when the commit fails, the alarm is answered `rejected` and the
/// programmer keeps retransmitting it, while live snapshots are still published (without an id). Async callers (the API, the main loop, replay, tests) use the
/// async forms, which run the same step on a worker thread.
public final class BridgeCore: Sendable {
    /// The configuration in force.
    public let configuration: BridgeConfiguration
    /// The journal (the owner's; routes read through ``queries``).
    let journal: Journal
    /// Live fan-out (the owner publishes; event streams subscribe through ``queries``).
    let hub: EventHub
    /// Metrics.
    public let metrics: BridgeMetrics
    /// Host clock, ms since the epoch.
    public let now: @Sendable () -> Int64
    /// When the core started (host ms).
    public let startedAtMs: Int64
    private let logger: Logger

    /// What the lock guards: the rules and the journal's health as the owner saw it.
    private struct Owned: ~Copyable {
        var rules: BridgeRules
        var journalHealthy = true
        var lastJournalError: String?
    }
    private let owned: Mutex<Owned>
    /// A copy of the rules and the journal's health after the last step, for reads: an API
    /// request never waits behind a commit's fsync (copying the rules copies references).
    private let view: Mutex<(rules: BridgeRules, journalHealthy: Bool)>

    /// Creates the core over an open journal; the bridge alarms the journal holds open are
    /// restored into the rules.
    public init(configuration: BridgeConfiguration, journal: Journal, metrics: BridgeMetrics, logger: Logger,
                now: @escaping @Sendable () -> Int64) {
        self.configuration = configuration
        self.journal = journal
        self.hub = EventHub(capacity: configuration.subscriberBufferEvents)
        self.metrics = metrics
        self.logger = logger
        self.now = now
        self.startedAtMs = now()
        var open: [String: Set<BridgeAlarmCode>] = [:]
        var openPump: [String: [Int: PumpAlarmMark]] = [:]
        do {
            open = try journal.openBridgeAlarms()
            openPump = try journal.openPumpAlarms()
        } catch {
            logger.error("cannot read open alarms from the journal", metadata: ["error": "\(error)"])
        }
        let rules = BridgeRules(configuration: configuration, openBridgeAlarms: open, openPumpAlarms: openPump)
        owned = Mutex(Owned(rules: rules))
        view = Mutex((rules, true))
    }

    /// The read side for the API's routes.
    public var queries: BridgeQueries { BridgeQueries(core: self) }

    // MARK: the owner's steps (blocking)

    /// Registers a followed path (or, with `replay`, a capture being replayed); returns its
    /// session id.
    public func openSession(path: String, replay: Bool = false) -> SessionID {
        owned.withLock { owned in
            let id = owned.rules.openSession(path: path, replay: replay)
            publishView(owned)
            return id
        }
    }

    /// The link of a session changed state. Blocks for the journal commit.
    public func linkChangedNow(_ id: SessionID, to state: LinkStateMachine.PublishedState) {
        step { rules, nowMs in rules.linkChanged(id, to: state, nowMs: nowMs) }
    }

    /// Processes one batch of messages from a session and returns the `ACK`s to send. Blocks for
    /// the journal commit (an fsync when the batch holds an alarm).
    public func receiveNow(_ id: SessionID, _ batch: [ReceivedMessage], counters: DecoderCounters) -> [AckInstruction] {
        step { rules, _ in rules.receive(id, batch, counters: counters) }
    }

    /// The session's link has stopped for good (shutdown, or the path was removed).
    public func closeSessionNow(_ id: SessionID) {
        step { rules, nowMs in rules.closeSession(id, nowMs: nowMs) }
    }

    /// Marks silent links stale. Returns when the next device would go stale if it stays silent
    /// (host ms), so the main loop can sleep until then; nil when none can.
    public func tickNow() -> Int64? {
        var next: Int64?
        step { rules, nowMs in
            let (effects, deadline) = rules.tick(nowMs: nowMs)
            next = deadline
            return effects
        }
        return next
    }

    /// Acknowledges an alarm for `uid`, and publishes the change. Nothing is sent to any
    /// programmer or pump.
    public func acknowledgeNow(alarm id: Int64, uid: Int64, userName: String? = nil, note: String? = nil) throws(JournalError) -> AcknowledgeOutcome {
        try owned.withLock { (_: inout Owned) throws(JournalError) -> AcknowledgeOutcome in
            let outcome = try journal.acknowledgeNow(alarm: id, uid: uid, userName: userName, note: note, nowMs: now())
            if case .acknowledged(let record, let event) = outcome {
                hub.publish(PublishedEvent(event))
                logger.notice("alarm acknowledged", metadata: ["device": "\(record.device)", "alarm": "\(record.id)",
                                                              "alarm_code": "\(record.code)", "uid": "\(uid)",
                                                              "user": "\(userName ?? "")"])
            }
            return outcome
        }
    }

    /// One step: the rules decide, the journal stores, the hub publishes in id order, then the
    /// log lines and metrics; all under the lock. Returns the `ACK`s the commit allows.
    @discardableResult
    private func step(_ decide: (inout BridgeRules, Int64) -> BridgeEffects) -> [AckInstruction] {
        owned.withLock { owned in
            let nowMs = now()
            let effects = decide(&owned.rules, nowMs)
            if let counters = effects.counters { recordCounterDeltas(from: counters.before, to: counters.after) }
            for line in effects.logs {
                logger.log(level: line.level, "\(line.message)", metadata: line.metadata.mapValues { .string($0) })
            }
            let results: [JournalOpResult]?
            if effects.journal.isEmpty {
                results = []
            } else if owned.journalHealthy, let queued = journal.queueSnapshots(effects.journal, nowMs: nowMs) {
                // Snapshots only: published now with their ids, written by the journal's writer
                // queue right after (before any later write), off this thread.
                for result in queued { for event in result.events { hub.publish(PublishedEvent(event)) } }
                results = queued
            } else {
                results = commit(effects.journal, nowMs: nowMs, &owned)
            }
            if !effects.journal.isEmpty { metrics.subscribers.record(Double(hub.subscriberCount)) }
            publishView(owned)
            return effects.acknowledgements(after: results)
        }
    }

    /// Updates the copy that reads use; under the owner's lock.
    private func publishView(_ owned: borrowing Owned) {
        let copy = owned.rules
        let healthy = owned.journalHealthy
        view.withLock { $0 = (copy, healthy) }
    }

    /// Commits `ops`, publishes the resulting events in id order, and returns the results (nil on
    /// failure). Called under the lock.
    private func commit(_ ops: [JournalOp], nowMs: Int64, _ owned: inout Owned) -> [JournalOpResult]? {
        let started = ContinuousClock.now
        let results: [JournalOpResult]
        do {
            results = try journal.commitNow(ops, nowMs: nowMs)
        } catch {
            metrics.journalFailures.increment()
            if owned.journalHealthy || owned.lastJournalError != error.description {
                logger.critical("JOURNAL WRITE FAILED: alarms are not being stored and will not be acknowledged; live data is still served",
                                metadata: ["error": "\(error)", "journal": "\(journal.path)"])
            }
            owned.journalHealthy = false
            owned.lastJournalError = error.description
            // Live values are still live: followers get the snapshots without an event id.
            // (Alarms are not published: the programmer retransmits them until they are stored.)
            for op in ops {
                switch op {
                case .snapshot(let device, let pump, let kind, _, let data):
                    hub.publish(PublishedEvent(unjournaled: device, pump: pump, type: kind.rawValue, data: data))
                case .event(let device, let type, let data):
                    hub.publish(PublishedEvent(unjournaled: device, type: type.rawValue, data: data))
                default:
                    break
                }
            }
            return nil
        }
        let elapsed = ContinuousClock.now - started
        metrics.journalWrite.recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        if !owned.journalHealthy {
            logger.notice("journal writes succeed again", metadata: ["journal": "\(journal.path)"])
            owned.journalHealthy = true
            owned.lastJournalError = nil
        }
        for result in results {
            for event in result.events { hub.publish(PublishedEvent(event)) }
            for alarm in result.alarms { logAlarm(alarm) }
        }
        return results
    }

    /// One log line per alarm change, with fields journald can filter on.
    private func logAlarm(_ record: AlarmRecord) {
        logger.notice("alarm \(record.state.rawValue): \(record.code)", metadata: [
            "device": "\(record.device)", "event_id": "\(record.eventID)", "alarm": "\(record.id)",
            "alarm_code": "\(record.code)", "alarm_priority": "\(record.priority)", "alarm_source": "\(record.source)",
        ])
        metrics.alarmStored(code: record.code, source: record.source)
    }

    private func recordCounterDeltas(from old: DecoderCounters, to new: DecoderCounters) {
        func delta(_ a: UInt64, _ b: UInt64) -> Int64 { b >= a ? Int64(clamping: b - a) : Int64(clamping: b) }
        metrics.framesAccepted.increment(by: delta(old.framesAccepted, new.framesAccepted))
        metrics.payloadCRCErrors.increment(by: delta(old.payloadCRCErrors, new.payloadCRCErrors))
        metrics.headerRejects.increment(by: delta(old.headerRejects, new.headerRejects))
        metrics.bytesDiscarded.increment(by: delta(old.bytesDiscarded, new.bytesDiscarded))
        metrics.sequenceGaps.increment(by: delta(old.sequenceGaps, new.sequenceGaps))
    }

    // MARK: async forms (run the step on a worker thread)

    /// ``linkChangedNow(_:to:)`` for an async caller.
    public func linkChanged(_ id: SessionID, to state: LinkStateMachine.PublishedState) async {
        await offloaded { self.linkChangedNow(id, to: state) }
    }

    /// ``receiveNow(_:_:counters:)`` for an async caller.
    public func receive(_ id: SessionID, _ batch: [ReceivedMessage], counters: DecoderCounters) async -> [AckInstruction] {
        await offloaded { self.receiveNow(id, batch, counters: counters) }
    }

    /// ``closeSessionNow(_:)`` for an async caller.
    public func closeSession(_ id: SessionID) async {
        await offloaded { self.closeSessionNow(id) }
    }

    /// ``tickNow()`` for an async caller.
    @discardableResult
    public func tick() async -> Int64? {
        await offloaded { self.tickNow() }
    }

    /// ``acknowledgeNow(alarm:uid:userName:note:)`` for an async caller.
    public func acknowledge(alarm id: Int64, uid: Int64, userName: String? = nil, note: String? = nil) async throws(JournalError) -> AcknowledgeOutcome {
        try await offloaded { () throws(JournalError) in try self.acknowledgeNow(alarm: id, uid: uid, userName: userName, note: note) }
    }

    // MARK: reads of the rules' state

    /// Every identified device.
    public func deviceStates() -> [DeviceState] { view.withLock { $0.rules }.deviceStates }

    /// One device by programmer serial.
    public func device(_ id: String) -> DeviceState? { view.withLock { $0.rules.device(id) } }

    /// Paths followed whose programmer has not identified itself yet.
    public func unidentifiedSessions() -> [(path: String, link: LinkStateMachine.PublishedState)] {
        view.withLock { $0.rules }.unidentifiedSessions
    }

    /// False after a failed journal write, true again after the next successful one.
    public var journalHealthy: Bool { view.withLock { $0.journalHealthy } }
}
