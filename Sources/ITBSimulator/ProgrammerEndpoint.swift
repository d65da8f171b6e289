public import ITBProtocol
public import ITBSerial

/// The programmer's end of the line, on the master side of a pseudo-terminal: it speaks the
/// device side of protocol v1 so the bridge can be run and tested without hardware.
///
/// It numbers its frames, keeps every alarm it sent in a queue until an `ACK stored` for that
/// alarm id arrives, retransmits with backoff (flag bit 4), and answers a host that reappears
/// (silence, a break in its sequence numbers, or its uptime going back) with `PROGRAMMER_INFO`, as
/// `protocol-spec/PROTOCOL.md` §2.4–2.5 require. It re-sends `PROGRAMMER_INFO` every
/// ``announceInterval`` too, and, speaking minor revision 1 (§2.5), follows every
/// `PROGRAMMER_INFO` with the open pump session's `PUMP_SESSION begin` (``beginSession(_:)``), so a
/// host that starts late, or restarts, learns which pump the next messages belong to.
/// Used from one thread at a time.
public final class ProgrammerEndpoint: @unchecked Sendable {
    // @unchecked: owned and driven by one thread (the simulator's loop or a test).
    /// The pty whose slave path the bridge opens.
    public private(set) var pty: PseudoTerminal
    /// The programmer's identity, sent as `PROGRAMMER_INFO`.
    public var info: ProgrammerInfo
    /// Applied to every frame's bytes before they go on the line (a noisy line), when set.
    public var lineFilter: ((inout [UInt8]) -> Void)?
    /// First retransmission delay; doubles up to ``maximumRetransmitDelay``.
    public var initialRetransmitDelay: Duration
    /// Longest retransmission delay.
    public var maximumRetransmitDelay: Duration

    private var encoder: FrameEncoder
    private var decoder = FrameDecoder()
    private var readBuffer = [UInt8](repeating: 0, count: 16 << 10)
    private var lastHostHeartbeat: ContinuousClock.Instant?
    private var lastHostSequence: UInt32?
    private var lastHostUptime: UInt32?
    private var lastAnnouncement: ContinuousClock.Instant?

    /// How often `PROGRAMMER_INFO` is re-sent while connected (§2.5: every 5 minutes); nil: only on
    /// connect and when the host reappears.
    public var announceInterval: Duration? = .seconds(300)
    /// The pump session in progress: set by ``beginSession(_:)``, cleared by ``endSession()``.
    /// With `info.protocolMinor` ≥ 1 it is re-sent (event `begin`, the same fields) right after
    /// every `PROGRAMMER_INFO`.
    public private(set) var currentSession: PumpSession?
    /// `PROGRAMMER_INFO` messages sent.
    public private(set) var announcements = 0

    /// An alarm waiting for its ACK.
    public struct PendingAlarm: Sendable {
        /// The alarm.
        public var alarm: Alarm
        /// When to send it again.
        public var due: ContinuousClock.Instant
        /// The current backoff.
        public var delay: Duration
        /// Times sent.
        public var transmissions: Int
    }

    /// Alarms sent and not yet acknowledged as stored, by alarm id.
    public private(set) var pending: [UInt32: PendingAlarm] = [:]
    /// Every ACK received, in order.
    public private(set) var acks: [Ack] = []
    /// `HOST_HEARTBEAT`s received.
    public private(set) var hostHeartbeats = 0
    /// The highest alarm id issued.
    public private(set) var highestAlarmID: UInt32 = 0

    /// Creates a programmer on a new pseudo-terminal.
    public init(info: ProgrammerInfo, firstSequence: UInt32 = 0,
                initialRetransmitDelay: Duration = .seconds(1), maximumRetransmitDelay: Duration = .seconds(30)) throws(SerialPortError) {
        self.pty = try PseudoTerminal()
        self.info = info
        self.encoder = FrameEncoder(firstSequence: firstSequence)
        self.initialRetransmitDelay = initialRetransmitDelay
        self.maximumRetransmitDelay = maximumRetransmitDelay
    }

    /// Unplugs (closes the pty) and plugs in again as a new pty; returns the new slave path.
    /// Unacknowledged alarms stay queued, as on a real programmer.
    @discardableResult
    public func replug() throws(SerialPortError) -> String {
        pty.close()
        pty = try PseudoTerminal()
        decoder = FrameDecoder()
        lastHostHeartbeat = nil
        lastHostSequence = nil
        lastHostUptime = nil
        lastAnnouncement = nil
        return pty.slavePath
    }

    /// Sends one message as the next frame.
    public func send(_ message: Message, flags: FrameFlags = []) throws(SerialPortError) {
        var bytes = encoder.encode(message, flags: flags)
        lineFilter?(&bytes)
        try pty.write(bytes)
    }

    /// Sends raw bytes (noise, hand-made frames).
    public func sendRaw(_ bytes: [UInt8]) throws(SerialPortError) {
        try pty.write(bytes)
    }

    /// Sends `PROGRAMMER_INFO` and, for minor revision 1 or later during a pump session, the
    /// session's `PUMP_SESSION begin` again right after it (§2.5).
    public func announce() throws(SerialPortError) {
        try send(.programmerInfo(info))
        announcements += 1
        lastAnnouncement = ContinuousClock.now
        if info.protocolMinor >= 1, var session = currentSession {
            session.event = .begin
            try send(.pumpSession(session))
        }
    }

    /// Starts a pump session (the telemetry head is over `session`'s pump): sends
    /// `PUMP_SESSION begin` and remembers it for re-sending with every `PROGRAMMER_INFO`.
    /// A session already open for another pump simply ends with this begin (§5).
    public func beginSession(_ session: PumpSession) throws(SerialPortError) {
        var begin = session
        begin.event = .begin
        currentSession = begin
        try send(.pumpSession(begin))
    }

    /// Ends the open pump session, if any: sends `PUMP_SESSION end` with the session's fields.
    public func endSession() throws(SerialPortError) {
        guard var end = currentSession else { return }
        end.event = .end
        currentSession = nil
        try send(.pumpSession(end))
    }

    /// Issues a new alarm id, sends the alarm and queues it until acknowledged.
    @discardableResult
    public func raise(code: AlarmCode, priority: AlarmPriority, transition: AlarmTransition = .raised,
                      detail: String = "", onsetTimeMs: Int64) throws(SerialPortError) -> Alarm {
        highestAlarmID += 1
        let alarm = Alarm(onsetTimeMs: onsetTimeMs, alarmID: highestAlarmID, code: code, priority: priority,
                          transition: transition, detail: detail)
        pending[alarm.alarmID] = PendingAlarm(alarm: alarm, due: ContinuousClock.now + initialRetransmitDelay,
                                              delay: initialRetransmitDelay, transmissions: 1)
        try send(.alarm(alarm))
        return alarm
    }

    /// Sends a `HEARTBEAT` with the current alarm queue.
    public func heartbeat(uptimeS: UInt32) throws(SerialPortError) {
        try send(.heartbeat(Heartbeat(bootID: info.bootID, uptimeS: uptimeS, highestAlarmID: highestAlarmID,
                                      unackedAlarmCount: UInt32(pending.count))))
    }

    /// Services the line in 20 ms steps (``service(timeout:)``) until `condition` holds or
    /// `timeout` passes; true if it held.
    @discardableResult
    public func service(until condition: (ProgrammerEndpoint) -> Bool, timeout: Duration) throws(SerialPortError) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition(self) { return true }
            try service(timeout: .milliseconds(20))
        }
        return condition(self)
    }

    /// Reads what the host sent (waiting up to `timeout`), handles ACKs and host heartbeats, and
    /// retransmits alarms that are due. Returns the host messages read.
    @discardableResult
    public func service(timeout: Duration = .zero) throws(SerialPortError) -> [Message] {
        var received: [(message: Message, sequence: UInt32)] = []
        let pty = self.pty
        let result: Result<Int, SerialPortError> = readBuffer.withUnsafeMutableBytes { raw in
            do throws(SerialPortError) { return .success(try pty.read(into: raw, timeout: timeout)) } catch { return .failure(error) }
        }
        let n = try result.get()
        if n > 0 {
            readBuffer.withUnsafeBytes { raw in
                decoder.feed(UnsafeRawBufferPointer(rebasing: raw[0..<n])) { frame in
                    if let message = Message(frame) { received.append((message, frame.sequence)) }
                }
            }
        }
        for (message, sequence) in received {
            // A host that restarted numbers its frames anew (§2.5).
            let sequenceBroken = lastHostSequence.map { sequence != $0 &+ 1 } ?? true
            lastHostSequence = sequence
            switch message {
            case .ack(let ack):
                acks.append(ack)
                if ack.ackedType == .alarm, ack.status == .stored { pending.removeValue(forKey: ack.alarmID) }
            case .hostHeartbeat(let heartbeat):
                hostHeartbeats += 1
                let now = ContinuousClock.now
                let silent = lastHostHeartbeat.map { now - $0 > .seconds(3) } ?? true
                let uptimeWentBack = lastHostUptime.map { heartbeat.uptimeS < $0 } ?? false
                if silent || sequenceBroken || uptimeWentBack { try announce() }
                lastHostHeartbeat = now
                lastHostUptime = heartbeat.uptimeS
            default:
                break
            }
        }
        let now = ContinuousClock.now
        if let interval = announceInterval, let last = lastAnnouncement, now - last >= interval { try announce() }
        for (id, entry) in pending.sorted(by: { $0.key < $1.key }) where entry.due <= now {
            try send(.alarm(entry.alarm), flags: .retransmission)
            var next = entry
            next.transmissions += 1
            next.delay = min(entry.delay * 2, maximumRetransmitDelay)
            next.due = now + next.delay
            pending[id] = next
        }
        return received.map(\.message)
    }
}
