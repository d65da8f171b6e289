public import ITBProtocol
public import ITBSerial
import Synchronization

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
///
/// `Sendable` for real: a simulator's loop drives it from one thread, but tests hand it from
/// thread to thread (and read ``pending`` or ``acks`` from one while another services the line),
/// so its state is behind two `Mutex`es rather than promised to one thread. The line's state
/// (identity, frame numbering, alarm queue, ACKs) is one lock, held while a frame is encoded and
/// written so that frames go out in sequence order; the reading side (decoder, what the host
/// last sent) is the other, held during ``service(timeout:)``'s wait for input, so that sending
/// never waits for a read. Neither lock is held while the other is taken, nor while a caller's
/// closure runs, except ``lineFilter``, which runs under the line's lock and so must not call
/// back into the endpoint.
public final class ProgrammerEndpoint: Sendable {
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

    /// What goes on the line and what came back about it.
    private struct Line {
        var pty: PseudoTerminal
        var info: ProgrammerInfo
        var lineFilter: (@Sendable (inout [UInt8]) -> Void)?
        var initialRetransmitDelay: Duration
        var maximumRetransmitDelay: Duration
        var encoder: FrameEncoder
        var pending: [UInt32: PendingAlarm] = [:]
        var acks: [Ack] = []
        var hostHeartbeats = 0
        var highestAlarmID: UInt32 = 0
        var announceInterval: Duration? = .seconds(300)
        var lastAnnouncement: ContinuousClock.Instant?
        var currentSession: PumpSession?
        var announcements = 0
        var onAlarmSent: (@Sendable (Alarm) -> Void)?
        var onAck: (@Sendable (Ack) -> Void)?

        /// Encodes `message` as the next frame and writes it.
        mutating func send(_ message: Message, flags: FrameFlags = []) throws(SerialPortError) {
            var bytes = encoder.encode(message, flags: flags)
            lineFilter?(&bytes)
            try pty.write(bytes)
        }

        /// `PROGRAMMER_INFO`, then (minor revision 1, during a pump session) the session's
        /// `PUMP_SESSION begin` again (§2.5).
        mutating func announce() throws(SerialPortError) {
            try send(.programmerInfo(info))
            announcements += 1
            lastAnnouncement = ContinuousClock.now
            if info.protocolMinor >= 1, var session = currentSession {
                session.event = .begin
                try send(.pumpSession(session))
            }
        }
    }

    /// The reading side: the decoder and what the host last said.
    private struct Reader {
        var decoder = FrameDecoder()
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        var lastHostHeartbeat: ContinuousClock.Instant?
        var lastHostSequence: UInt32?
        var lastHostUptime: UInt32?
    }

    private let line: Mutex<Line>
    private let reader = Mutex(Reader())

    /// The pty whose slave path the bridge opens (a new one after ``replug()``).
    public var pty: PseudoTerminal { line.withLock { $0.pty } }

    /// The programmer's identity, sent as `PROGRAMMER_INFO`.
    public var info: ProgrammerInfo {
        get { line.withLock { $0.info } }
        set { line.withLock { $0.info = newValue } }
    }

    /// Applied to every frame's bytes before they go on the line (a noisy line), when set. It runs
    /// while the endpoint is locked: it must not call the endpoint.
    public var lineFilter: (@Sendable (inout [UInt8]) -> Void)? {
        get { line.withLock { $0.lineFilter } }
        set { line.withLock { $0.lineFilter = newValue } }
    }

    /// First retransmission delay; doubles up to ``maximumRetransmitDelay``.
    public var initialRetransmitDelay: Duration {
        get { line.withLock { $0.initialRetransmitDelay } }
        set { line.withLock { $0.initialRetransmitDelay = newValue } }
    }

    /// Longest retransmission delay.
    public var maximumRetransmitDelay: Duration {
        get { line.withLock { $0.maximumRetransmitDelay } }
        set { line.withLock { $0.maximumRetransmitDelay = newValue } }
    }

    /// Alarms sent and not yet acknowledged as stored, by alarm id.
    public var pending: [UInt32: PendingAlarm] { line.withLock { $0.pending } }
    /// Every ACK received, in order.
    public var acks: [Ack] { line.withLock { $0.acks } }
    /// `HOST_HEARTBEAT`s received.
    public var hostHeartbeats: Int { line.withLock { $0.hostHeartbeats } }
    /// The highest alarm id issued.
    public var highestAlarmID: UInt32 { line.withLock { $0.highestAlarmID } }

    /// How often `PROGRAMMER_INFO` is re-sent while connected (§2.5: every 5 minutes); nil: only on
    /// connect and when the host reappears.
    public var announceInterval: Duration? {
        get { line.withLock { $0.announceInterval } }
        set { line.withLock { $0.announceInterval = newValue } }
    }
    /// The pump session in progress: set by ``beginSession(_:)``, cleared by ``endSession()``.
    /// With `info.protocolMinor` ≥ 1 it is re-sent (event `begin`, the same fields) right after
    /// every `PROGRAMMER_INFO`.
    public var currentSession: PumpSession? { line.withLock { $0.currentSession } }
    /// `PROGRAMMER_INFO` messages sent.
    public var announcements: Int { line.withLock { $0.announcements } }
    /// Called with each new alarm when it is issued, just before its first transmission (not on
    /// retransmissions), when set. It runs while the endpoint is locked: it must not call the endpoint.
    public var onAlarmSent: (@Sendable (Alarm) -> Void)? {
        get { line.withLock { $0.onAlarmSent } }
        set { line.withLock { $0.onAlarmSent = newValue } }
    }
    /// Called with each ACK as it arrives, when set. It runs while the endpoint is locked: it must
    /// not call the endpoint.
    public var onAck: (@Sendable (Ack) -> Void)? {
        get { line.withLock { $0.onAck } }
        set { line.withLock { $0.onAck = newValue } }
    }

    /// Creates a programmer on a new pseudo-terminal.
    public init(info: ProgrammerInfo, firstSequence: UInt32 = 0,
                initialRetransmitDelay: Duration = .seconds(1), maximumRetransmitDelay: Duration = .seconds(30)) throws(SerialPortError) {
        line = Mutex(Line(pty: try PseudoTerminal(), info: info, initialRetransmitDelay: initialRetransmitDelay,
                          maximumRetransmitDelay: maximumRetransmitDelay, encoder: FrameEncoder(firstSequence: firstSequence)))
    }

    /// Unplugs (closes the pty) and plugs in again as a new pty; returns the new slave path.
    /// Unacknowledged alarms stay queued, as on a real programmer.
    @discardableResult
    public func replug() throws(SerialPortError) -> String {
        let path = try line.withLock { (line) throws(SerialPortError) -> String in
            line.pty.close()
            line.pty = try PseudoTerminal()
            line.lastAnnouncement = nil
            return line.pty.slavePath
        }
        reader.withLock { $0 = Reader() }
        return path
    }

    /// Sends one message as the next frame.
    public func send(_ message: Message, flags: FrameFlags = []) throws(SerialPortError) {
        try line.withLock { (line) throws(SerialPortError) in try line.send(message, flags: flags) }
    }

    /// Sends raw bytes (noise, hand-made frames).
    public func sendRaw(_ bytes: [UInt8]) throws(SerialPortError) {
        try pty.write(bytes)
    }

    /// Sends `PROGRAMMER_INFO`.
    public func announce() throws(SerialPortError) {
        try line.withLock { (line) throws(SerialPortError) in try line.announce() }
    }

    /// Starts a pump session (the telemetry head is over `session`'s pump): sends
    /// `PUMP_SESSION begin` and remembers it for re-sending with every `PROGRAMMER_INFO`.
    /// A session already open for another pump simply ends with this begin (§5).
    public func beginSession(_ session: PumpSession) throws(SerialPortError) {
        try line.withLock { (line) throws(SerialPortError) in
            var begin = session
            begin.event = .begin
            line.currentSession = begin
            try line.send(.pumpSession(begin))
        }
    }

    /// Ends the open pump session, if any: sends `PUMP_SESSION end` with the session's fields.
    public func endSession() throws(SerialPortError) {
        try line.withLock { (line) throws(SerialPortError) in
            guard var end = line.currentSession else { return }
            end.event = .end
            line.currentSession = nil
            try line.send(.pumpSession(end))
        }
    }

    /// Issues a new alarm id, sends the alarm and queues it until acknowledged.
    @discardableResult
    public func raise(code: AlarmCode, priority: AlarmPriority, transition: AlarmTransition = .raised,
                      detail: String = "", onsetTimeMs: Int64) throws(SerialPortError) -> Alarm {
        try line.withLock { (line) throws(SerialPortError) -> Alarm in
            line.highestAlarmID += 1
            let alarm = Alarm(onsetTimeMs: onsetTimeMs, alarmID: line.highestAlarmID, code: code, priority: priority,
                              transition: transition, detail: detail)
            line.pending[alarm.alarmID] = PendingAlarm(alarm: alarm, due: ContinuousClock.now + line.initialRetransmitDelay,
                                                       delay: line.initialRetransmitDelay, transmissions: 1)
            line.onAlarmSent?(alarm)
            try line.send(.alarm(alarm))
            return alarm
        }
    }

    /// Sends a `HEARTBEAT` with the current alarm queue.
    public func heartbeat(uptimeS: UInt32) throws(SerialPortError) {
        try line.withLock { (line) throws(SerialPortError) in
            try line.send(.heartbeat(Heartbeat(bootID: line.info.bootID, uptimeS: uptimeS, highestAlarmID: line.highestAlarmID,
                                               unackedAlarmCount: UInt32(line.pending.count))))
        }
    }

    /// Services the line in 20 ms steps (``service(timeout:)``) until `condition` holds or
    /// `timeout` passes; true if it held. `condition` runs with no lock held.
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
        let pty = self.pty
        // Read and decode; note what the host's heartbeats say about it (§2.5).
        let (received, announcements) = try reader.withLock {
            (reader) throws(SerialPortError) -> ([Message], Int) in
            let result: Result<Int, SerialPortError> = reader.buffer.withUnsafeMutableBytes { raw in
                do throws(SerialPortError) { return .success(try pty.read(into: raw, timeout: timeout)) } catch { return .failure(error) }
            }
            let n = try result.get()
            var frames: [(message: Message, sequence: UInt32)] = []
            if n > 0 {
                // A copy of the buffer shares its storage (nothing is copied): the decoder can
                // then be changed while the bytes are read.
                let bytes = reader.buffer
                bytes.withUnsafeBytes { raw in
                    reader.decoder.feed(UnsafeRawBufferPointer(rebasing: raw[0..<n])) { frame in
                        if let message = Message(frame) { frames.append((message, frame.sequence)) }
                    }
                }
            }
            var announcements = 0
            for (message, sequence) in frames {
                // A host that restarted numbers its frames anew (§2.5).
                let sequenceBroken = reader.lastHostSequence.map { sequence != $0 &+ 1 } ?? true
                reader.lastHostSequence = sequence
                if case .hostHeartbeat(let heartbeat) = message {
                    let now = ContinuousClock.now
                    let silent = reader.lastHostHeartbeat.map { now - $0 > .seconds(3) } ?? true
                    let uptimeWentBack = reader.lastHostUptime.map { heartbeat.uptimeS < $0 } ?? false
                    if silent || sequenceBroken || uptimeWentBack { announcements += 1 }
                    reader.lastHostHeartbeat = now
                    reader.lastHostUptime = heartbeat.uptimeS
                }
            }
            return (frames.map(\.message), announcements)
        }
        // Apply ACKs and heartbeats, answer a host that reappeared, retransmit what is due.
        try line.withLock { (line) throws(SerialPortError) in
            for message in received {
                switch message {
                case .ack(let ack):
                    line.acks.append(ack)
                    line.onAck?(ack)
                    if ack.ackedType == .alarm, ack.status == .stored { line.pending.removeValue(forKey: ack.alarmID) }
                case .hostHeartbeat:
                    line.hostHeartbeats += 1
                default:
                    break
                }
            }
            for _ in 0..<announcements { try line.announce() }
            let now = ContinuousClock.now
            if let interval = line.announceInterval, let last = line.lastAnnouncement, now - last >= interval { try line.announce() }
            for (id, entry) in line.pending.sorted(by: { $0.key < $1.key }) where entry.due <= now {
                try line.send(.alarm(entry.alarm), flags: .retransmission)
                var next = entry
                next.transmissions += 1
                next.delay = min(entry.delay * 2, line.maximumRetransmitDelay)
                next.due = now + next.delay
                line.pending[id] = next
            }
        }
        return received
    }
}
