public import ITBSerial

/// What the API's routes and event streams read and ask of the bridge: the rules' current view,
/// the journal's records, acknowledgement and live subscription. Routes go through this, never
/// through the core's journal or hub, so the core stays the one owner of writes and publishing.
public struct BridgeQueries: Sendable {
    let core: BridgeCore

    /// The configuration in force.
    public var configuration: BridgeConfiguration { core.configuration }
    /// Host clock, ms since the epoch.
    public func nowMs() -> Int64 { core.now() }
    /// When the bridge started (host ms).
    public var startedAtMs: Int64 { core.startedAtMs }
    /// The journal's file.
    public var journalPath: String { core.journal.path }
    /// Live subscribers.
    public var subscriberCount: Int { core.hub.subscriberCount }
    /// How many events a subscriber may fall behind before it is cut off.
    public var subscriberCapacity: Int { core.hub.capacity }
    /// False while journal writes fail.
    public var journalHealthy: Bool { core.journalHealthy }
    /// The metrics in Prometheus' text format.
    public func metricsText() -> [UInt8] { core.metrics.render() }

    /// Every identified programmer.
    public func deviceStates() -> [DeviceState] { core.deviceStates() }
    /// One programmer by serial.
    public func device(_ id: String) -> DeviceState? { core.device(id) }
    /// Followed paths with no programmer identified yet.
    public func unidentifiedSessions() -> [(path: String, link: LinkStateMachine.PublishedState)] { core.unidentifiedSessions() }

    /// Writes a consistent copy of the journal to the new file `path` (SQLite online backup).
    public func backupJournal(to path: String) async throws(JournalError) { try await core.journal.backup(to: path) }
    /// True when the journal answers a query and accepts a write transaction.
    public func journalAnswers() async -> Bool { await core.journal.healthCheck() }
    /// The highest event id stored, 0 when none.
    public func latestEventID() async throws(JournalError) -> Int64 { try await core.journal.latestEventID() }
    /// Stored events after `after`, oldest first (an event stream's replay).
    public func events(after: Int64, device: String?, pump: String? = nil, types: Set<String>?, limit: Int) async throws(JournalError) -> [StoredEvent] {
        try await core.journal.events(after: after, device: device, pump: pump, types: types, limit: limit)
    }
    /// Alarms as `GET /v1/alarms` filters them.
    public func alarms(_ query: AlarmQuery) async throws(JournalError) -> [AlarmRecord] {
        try await core.journal.alarms(query)
    }
    /// True when the journal holds an event or an alarm of programmer `device`.
    public func hasRecords(device: String) async throws(JournalError) -> Bool {
        try await core.journal.hasRecords(device: device)
    }
    /// The refill worklist (`GET /v1/pumps`).
    public func pumps(_ filter: PumpFilter, after cursor: PumpCursor?, limit: Int) async throws(JournalError) -> [PumpRecord] {
        try await core.journal.pumps(filter, after: cursor, limit: limit)
    }
    /// One pump; nil when unknown.
    public func pump(id: String) async throws(JournalError) -> PumpRecord? { try await core.journal.pump(id: id) }
    /// A pump's reservoir readings.
    public func pumpReadings(id: String, sinceMs: Int64?, untilMs: Int64?, after: Int64?, limit: Int) async throws(JournalError) -> [PumpReading] {
        try await core.journal.pumpReadings(id: id, sinceMs: sinceMs, untilMs: untilMs, after: after, limit: limit)
    }
    /// A pump's refills.
    public func pumpRefills(id: String) async throws(JournalError) -> [PumpRefillRecord] { try await core.journal.pumpRefills(id: id) }
    /// A pump's dose programs.
    public func pumpPrograms(id: String) async throws(JournalError) -> [PumpProgramRecord] { try await core.journal.pumpPrograms(id: id) }
    /// A pump's interrogation sessions.
    public func pumpSessions(id: String) async throws(JournalError) -> [PumpSessionRecord] { try await core.journal.pumpSessions(id: id) }
    /// True when the journal knows the pump.
    public func pumpExists(id: String) async throws(JournalError) -> Bool { try await core.journal.pumpExists(id: id) }

    /// One alarm and its transitions.
    public func alarm(id: Int64) async throws(JournalError) -> (AlarmRecord, [AlarmTransitionRecord])? {
        try await core.journal.alarm(id: id)
    }
    /// Acknowledges an alarm for `uid`, whose user name now is `userName`, with an optional
    /// `note` (nothing is sent to any programmer or pump).
    public func acknowledge(alarm id: Int64, uid: Int64, userName: String? = nil, note: String? = nil) async throws(JournalError) -> AcknowledgeOutcome {
        try await core.acknowledge(alarm: id, uid: uid, userName: userName, note: note)
    }

    /// Subscribes to live events (see ``EventHub/subscribe(_:onLagged:)``).
    public func subscribe(_ filter: EventFilter, onLagged: @escaping @Sendable () -> Void = {}) -> EventHub.Subscription {
        core.hub.subscribe(filter, onLagged: onLagged)
    }
    /// Moves a caught-up subscription onto its connection's event loop (``EventHub/attach(_:to:)``).
    public func attach(_ subscription: EventHub.Subscription, to sink: any EventSink) -> [PublishedEvent]? {
        core.hub.attach(subscription, to: sink)
    }
}
