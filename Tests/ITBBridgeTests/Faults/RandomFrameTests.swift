import Foundation
import ITBClient
import ITBProtocol
import ITBSimulator
import Synchronization
import Testing

// Issue 12, the property test: random valid frames of every type, each field drawn from its whole
// range with its extremes (RandomFrameGenerator in ITBTestSupport), through a real itb-bridged
// process on a pty, with host → programmer types sent the wrong way, unknown types and short
// payloads mixed in, alarms acknowledged and retransmitted as a programmer does (§2.4). What the
// daemon shows, in every API answer and every event, is compared with what was sent, value by
// value (ExpectedRendering, written from PROTOCOL.md §5 and §7 alone).
//
// Size: 1,000 frames of each programmer → host type in `swift test`; 100,000 of each with
// ITB_PROOF_SCALE=full (ITB_RANDOM_FRAMES_PER_TYPE sets another). The seed is printed;
// ITB_RANDOM_FRAMES_SEED=<seed> repeats a run.

@Suite("Property: random valid frames through the whole daemon", .serialized)
struct RandomFrameTests {
    @Test("random frames of every type, every field from its whole range with its extremes, through a real itb-bridged on a pty: the daemon never dies, every answer of the API and every event is valid JSON, every value is rendered as sent or null (times as RFC 3339 that reads back as the sent millisecond, or null with <field>_raw outside years 0001–9999; char[N] bytes outside 0x20–0x7E as \\u00XX of that byte), the decoder counters add up to what was sent, and every alarm ACKed stored is listed in /v1/alarms")
    func randomFramesThroughTheDaemon() async throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["ITB_RANDOM_FRAMES_SEED"].flatMap(Self.parseSeed) ?? UInt64.random(in: 0...UInt64.max)
        let perType = environment["ITB_RANDOM_FRAMES_PER_TYPE"].flatMap { Int($0) } ?? ProofScale.count(short: 1_000, full: 100_000)
        print("random frames: seed=0x\(String(seed, radix: 16)) (repeat with ITB_RANDOM_FRAMES_SEED=0x\(String(seed, radix: 16))), \(perType) frames of each programmer → host type")

        let directory = try ScratchDirectory("random-frames")
        defer { directory.remove() }
        let socketPath = directory.path + "/api.sock"
        let client = UnixHTTPClient(socketPath: socketPath, timeout: .seconds(30))
        let programmer = try ProgrammerEndpoint(info: testProgrammer)
        defer { programmer.pty.close() }
        let audit = RenderingAudit(mainSerial: Array(testProgrammer.programmerSerial.utf8))
        let line = RandomLine(programmer: programmer, audit: audit, firstSequence: UInt32(truncatingIfNeeded: seed >> 32))
        let daemon = try DaemonProcess(
            arguments: ["--no-discovery", "--device", programmer.pty.slavePath, "--socket", socketPath,
                        "--state-dir", directory.path + "/state", "--log-level", "warning"],
            socketPath: socketPath, log: directory.path + "/daemon.log")
        defer { daemon.terminate() }
        try await daemon.waitReady()
        line.daemon = daemon
        line.daemonLogPath = directory.path + "/daemon.log"

        // The programmer identifies itself first (PROGRAMMER_INFO when it hears the host).
        let devicePath = "/v1/devices/\(testProgrammer.programmerSerial)"
        try await blocking {
            let identified = try line.service(until: {
                (try? ExactJSON.parse(client.get(devicePath).body))?.object?["link_state"]?.string == "connected"
            }, timeout: .seconds(20))
            guard identified else { throw HarnessError("the bridge never identified the programmer") }
        }

        // A subscriber follows every event from the first one, checking each as it comes.
        let follower = EventFollower(client: client, audit: audit)
        let started = ContinuousClock.now
        let logPath = directory.path + "/daemon.log"
        let outcome = try? await blocking { () -> RunSummary in
            defer { line.daemonLog = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
            do {
                return try Self.play(seed: seed, perType: perType, line: line, audit: audit, client: client)
            } catch {
                audit.problem("harness", "the run stopped: \(error)")
                return RunSummary(counts: line.counts, framesPerType: [:], alarmsAcked: line.ackedAlarms.count, answersChecked: 0)
            }
        }
        let run = outcome ?? RunSummary(counts: line.counts, framesPerType: [:], alarmsAcked: 0, answersChecked: 0)
        let lastEventID: Int128? = try? await blocking { try ExactJSON.parse(client.get("/v1/health").body).object?["last_event_id"]?.integer }
        await follower.stop(after: lastEventID.map { Int64(clamping: $0) }, timeout: .seconds(60))

        let alive = daemon.process.isRunning
        #expect(alive, "itb-bridged died: \(line.daemonDeath ?? "") — last lines of its log:\n\(line.daemonLog.split(separator: "\n").suffix(15).joined(separator: "\n"))")
        let report = audit.report()
        for (category, entry) in report.sorted(by: { $0.key < $1.key }) {
            Issue.record(Comment(rawValue: "\(category): \(entry.count) time(s); for example:\n  " + entry.examples.joined(separator: "\n  ")))
        }
        #expect(report.isEmpty, "the daemon's answers and events differ from what was sent (seed 0x\(String(seed, radix: 16))); the daemon's log ends:\n\(line.daemonLog.split(separator: "\n").suffix(30).joined(separator: "\n"))")
        #expect(run.framesPerType.values.allSatisfy { $0 >= perType } || !alive,
                "frames of each type: \(run.framesPerType.sorted { $0.key < $1.key })")
        ProofScale.figure("property.random_frames", [
            "seed": "0x" + String(seed, radix: 16), "frames_sent": run.counts.frames, "programmer_to_host": run.counts.delivered - run.counts.wrongDirection,
            "wrong_direction": run.counts.wrongDirection, "unknown_types": run.counts.unknown, "short_payloads": run.counts.short,
            "alarms_acked_stored": run.alarmsAcked, "events_checked": follower.eventsRead, "lag_resumes": follower.lagResumes, "api_answers_checked": run.answersChecked,
            "problems": report.values.reduce(0) { $0 + $1.count }, "daemon_alive": alive,
            "seconds": String(format: "%.1f", DeviceFaults.elapsed(since: started)),
        ])
    }

    /// What a run sent.
    struct RunSummary: Sendable {
        var counts: SentCounts
        var framesPerType: [String: Int]
        var alarmsAcked: Int
        var answersChecked: Int
    }

    /// Sends random frames until each programmer → host type has `perType`, with a check of every
    /// API answer after each `checkpoint` frames, then settles (every alarm ACKed), checks the
    /// alarms, and ends with programmers of random serials. Stops early when the daemon dies.
    static func play(seed: UInt64, perType: Int, line: RandomLine, audit: RenderingAudit, client: UnixHTTPClient) throws -> RunSummary {
        var generator = RandomFrameGenerator(seed: seed, programmerSerial: audit.mainSerial)
        var perTypeSent: [String: Int] = [:]
        let checkpoint = perType >= 10_000 ? 10_000 : 2_000
        var answersChecked = 0
        var sinceCheckpoint = 0
        // One of each kind first, so that every GET has something to show from the first checkpoint.
        var queue = RandomFrameGenerator.programmerToHostTypes.map { RandomFrame(type: $0, payload: generator.payload(of: $0), kind: .programmerToHost) }
        while line.daemonDeath == nil {
            let frame = queue.isEmpty ? generator.next() : queue.removeFirst()
            if frame.kind == .programmerToHost { perTypeSent[frame.type.description, default: 0] += 1 }
            line.send(frame)
            sinceCheckpoint += 1
            if line.outgoingCount >= 8 << 10 { try line.flush() }
            let done = RandomFrameGenerator.programmerToHostTypes.allSatisfy { perTypeSent[$0.description, default: 0] >= perType }
            if sinceCheckpoint >= checkpoint || done {
                sinceCheckpoint = 0
                // A heartbeat last, so that the daemon's counters are taken after every byte.
                line.send(RandomFrame(type: .heartbeat, payload: generator.payload(of: .heartbeat), kind: .programmerToHost))
                perTypeSent[MessageType.heartbeat.description, default: 0] += 1
                guard try line.settle(client: client, alarms: done) else { break }
                answersChecked += try audit.checkAnswers(client, counts: line.counts)
            }
            if done { break }
        }
        if line.daemonDeath == nil {
            answersChecked += try audit.checkAlarmList(client, acked: line.ackedAlarms)
            // Programmers of random serials on the same line: each is listed with its serial escaped.
            var strangers = RandomFrameGenerator(seed: seed ^ 0x5E81_A15E_81A1, programmerSerial: nil)
            for _ in 0..<20 { line.send(RandomFrame(type: .programmerInfo, payload: strangers.payload(of: .programmerInfo), kind: .programmerToHost)) }
            // Then the main programmer again, whose counters are the line's.
            line.send(RandomFrame(type: .programmerInfo, payload: generator.payload(of: .programmerInfo), kind: .programmerToHost))
            line.send(RandomFrame(type: .heartbeat, payload: generator.payload(of: .heartbeat), kind: .programmerToHost))
            if try line.settle(client: client, alarms: true) {
                answersChecked += try audit.checkDeviceList(client)
            }
        }
        return RunSummary(counts: line.counts, framesPerType: perTypeSent, alarmsAcked: line.ackedAlarms.count, answersChecked: answersChecked)
    }

    static func parseSeed(_ text: String) -> UInt64? {
        text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
    }
}

// MARK: - The line

/// Frames sent, by what a receiver must do with them.
struct SentCounts: Sendable, CustomStringConvertible {
    /// Every frame.
    var frames = 0
    /// Frames the decoder delivers (programmer → host, and host → programmer types sent the wrong way).
    var delivered = 0
    /// Of those, host → programmer types.
    var wrongDirection = 0
    /// Frames of unknown types.
    var unknown = 0
    /// Frames shorter than their type's minimum.
    var short = 0
    /// Bytes written.
    var bytes = 0

    var description: String { "\(frames) frames (\(delivered) delivered, \(unknown) unknown types, \(short) short), \(bytes) bytes" }
}

/// The programmer's side of the line: frames numbered by one encoder (the simulated programmer's
/// own frames, its `PROGRAMMER_INFO` answers to the host, are renumbered into the same sequence
/// through its line filter), alarms kept until ACKed `stored` and retransmitted with backoff
/// (§2.4), everything written in wire order and recorded with the audit before it is written.
/// Used from one thread at a time.
final class RandomLine: @unchecked Sendable {
    // @unchecked: driven by the test's one blocking section; `daemon` is set before it starts.
    /// An alarm waiting for its `ACK stored`.
    struct PendingAlarm {
        var alarmID: UInt32
        var payload: [UInt8]
        var sequences: Set<UInt32>
        var due: ContinuousClock.Instant
        var delay: Duration
    }

    let programmer: ProgrammerEndpoint
    let audit: RenderingAudit
    var daemon: DaemonProcess?
    /// The daemon's log: a crash shows there first (the Swift runtime prints a backtrace, which
    /// takes seconds, before the process ends).
    var daemonLogPath: String?
    private var logOffset: UInt64 = 0
    /// Why the daemon is gone, once it is.
    private(set) var daemonDeath: String?
    /// The daemon's log, read at the end.
    var daemonLog = ""
    private var encoder: FrameEncoder
    private var outgoing: [UInt8] = []
    private(set) var counts = SentCounts()
    private var pending: [PendingAlarm] = []
    /// Alarm messages the daemon ACKed `stored`, in that order.
    private(set) var ackedAlarms: [(alarmID: UInt32, payload: [UInt8])] = []
    /// Every alarm frame sent (sequence number → alarm id): an ACK may come for any of them,
    /// also for a transmission sent just before the first ACK arrived.
    private var alarmFrames: [UInt32: UInt32] = [:]

    init(programmer: ProgrammerEndpoint, audit: RenderingAudit, firstSequence: UInt32) {
        self.programmer = programmer
        self.audit = audit
        encoder = FrameEncoder(firstSequence: firstSequence)
        programmer.lineFilter = { [unowned self] bytes in
            // The endpoint's own frame: take its type and payload and send it in our sequence.
            let type = MessageType(rawValue: UInt16(bytes[4]) | UInt16(bytes[5]) << 8)
            let length = Int(bytes[6]) | Int(bytes[7]) << 8
            let payload = Array(bytes[16..<(16 + length)])
            bytes = []
            send(RandomFrame(type: type, payload: payload, kind: .programmerToHost))
        }
    }

    /// Bytes queued and not yet written.
    var outgoingCount: Int { outgoing.count }

    /// Queues one frame (recorded with the audit first); an `ALARM` is kept until ACKed.
    func send(_ frame: RandomFrame, flags: FrameFlags = []) {
        let sequence = encoder.nextSequence
        outgoing += encoder.encode(type: frame.type, payload: frame.payload, flags: flags)
        counts.frames += 1
        switch frame.kind {
        case .programmerToHost: counts.delivered += 1
        case .wrongDirection: counts.delivered += 1; counts.wrongDirection += 1
        case .unknownType: counts.unknown += 1
        case .shortPayload: counts.short += 1
        }
        guard frame.kind == .programmerToHost else { return }
        if flags.isEmpty { audit.sent(type: frame.type, payload: frame.payload) }
        if frame.type == .alarm {
            let value = ExpectedRendering.u32(frame.payload, 8)
            alarmFrames[sequence] = value
            if let index = pending.firstIndex(where: { $0.payload == frame.payload }) {
                pending[index].sequences.insert(sequence)
            } else if flags.isEmpty {
                // A new alarm message (or the same id and content again: a retransmission by §2.4,
                // acknowledged like any).
                pending.append(PendingAlarm(alarmID: value, payload: frame.payload, sequences: [sequence],
                                            due: .now + .seconds(1), delay: .seconds(1)))
            }
        }
    }

    /// Writes what is queued in 4 KiB chunks, servicing the line between chunks (ACKs, host
    /// heartbeats, retransmissions); notes a daemon that has died.
    func flush() throws {
        while !outgoing.isEmpty, daemonDeath == nil {
            let batch = outgoing
            outgoing.removeAll(keepingCapacity: true)
            var offset = 0
            while offset < batch.count {
                guard checkDaemon() else { return }
                let end = min(offset + 4096, batch.count)
                do {
                    try programmer.pty.write(Array(batch[offset..<end]), timeout: .seconds(10))
                } catch {
                    guard checkDaemon() else { return }
                    throw error
                }
                counts.bytes += end - offset
                offset = end
                try service(timeout: .zero)
            }
        }
    }

    /// Reads what the host sent (ACKs) and queues the retransmissions that are due.
    func service(timeout: Duration) throws {
        let messages: [Message]
        do {
            messages = try programmer.service(timeout: timeout)
        } catch {
            // A pty whose other end the dead daemon closed: say that, not the read error.
            guard checkDaemon() else { return }
            throw error
        }
        for message in messages {
            guard case .ack(let ack) = message else { continue }
            guard let index = pending.firstIndex(where: { $0.sequences.contains(ack.ackedSequence) }) else {
                // Another transmission of an alarm already ACKed: expected. Anything else is not.
                if alarmFrames[ack.ackedSequence] != ack.alarmID {
                    audit.problem("ack", "an ACK for frame \(ack.ackedSequence) (alarm \(ack.alarmID)), which is no alarm frame sent")
                }
                continue
            }
            if ack.alarmID != pending[index].alarmID || ack.ackedType != .alarm {
                audit.problem("ack", "ACK of alarm frame \(ack.ackedSequence) names alarm \(ack.alarmID) type \(ack.ackedType), not alarm \(pending[index].alarmID)")
            }
            if ack.status == .stored {
                let alarm = pending.remove(at: index)
                ackedAlarms.append((alarm.alarmID, alarm.payload))
            } else {
                audit.problem("ack", "alarm \(ack.alarmID) ACKed \(ack.status) (the journal is healthy)")
            }
        }
        let now = ContinuousClock.now
        for index in pending.indices where pending[index].due <= now {
            pending[index].delay = min(pending[index].delay * 2, .seconds(4))
            pending[index].due = now + pending[index].delay
            send(RandomFrame(type: .alarm, payload: pending[index].payload, kind: .programmerToHost), flags: .retransmission)
        }
    }

    /// Services the line until `condition` holds; false after `timeout`.
    func service(until condition: () throws -> Bool, timeout: Duration) throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try condition() { return true }
            try service(timeout: .milliseconds(20))
            try flush()
        }
        return try condition()
    }

    /// Writes everything, then services the line until the daemon has decoded every byte written
    /// (and, with `alarms`, until every alarm is ACKed `stored`); false when the daemon died.
    /// Then checks the device's decoder counters against what was sent.
    func settle(client: UnixHTTPClient, alarms: Bool) throws -> Bool {
        try flush()
        var last: JSONFields?
        let settled = try service(until: {
            guard checkDaemon() else { return true }
            guard outgoing.isEmpty, !alarms || pending.isEmpty,
                  let response = try? client.get("/v1/devices/\(testProgrammer.programmerSerial)"), response.status == 200,
                  let device = try? ExactJSON.parse(response.body).object, let counters = device["counters"]?.object else { return false }
            last = counters
            return counters["bytes_received"]?.integer == Int128(self.counts.bytes)
        }, timeout: .seconds(120))
        guard checkDaemon() else { return false }
        guard settled, let last else {
            throw HarnessError("the line did not settle: \(pending.count) alarms not ACKed, \(counts), the daemon counted \(last.map { ExactJSON.object($0).description } ?? "nothing")")
        }
        audit.checkCounters(last, counts)
        return true
    }

    /// True while the daemon runs; otherwise notes how it ended (after letting the runtime finish
    /// a backtrace it has begun).
    @discardableResult
    func checkDaemon() -> Bool {
        if daemonDeath != nil { return false }
        guard let process = daemon?.process else { return true }
        if process.isRunning {
            guard crashBegan() else { return true }
            let deadline = ContinuousClock.now + .seconds(120)
            while process.isRunning, ContinuousClock.now < deadline { usleep(50_000) }
            guard !process.isRunning else {
                daemonDeath = "crashed (its log shows a fatal signal or error) and has not exited 120 s later"
                audit.problem("daemon", "itb-bridged \(daemonDeath!) after \(counts)")
                return false
            }
        }
        daemonDeath = process.terminationReason == .uncaughtSignal ? "killed by signal \(process.terminationStatus)" : "exited with status \(process.terminationStatus)"
        audit.problem("daemon", "itb-bridged \(daemonDeath!) after \(counts)")
        return false
    }
}

extension RandomLine {
    /// True when the daemon's log, read on from where the last call stopped, shows the runtime
    /// reporting a fatal error or signal.
    func crashBegan() -> Bool {
        guard let path = daemonLogPath, let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: logOffset)) != nil, let data = try? handle.readToEnd(), !data.isEmpty else { return false }
        // Keep a little overlap so that a marker split across two reads is still found.
        logOffset += UInt64(max(0, data.count - 32))
        let text = String(decoding: data, as: UTF8.self)
        return text.contains("*** Signal") || text.contains("Fatal error") || text.contains("Swift runtime failure")
    }
}

// MARK: - The follower

/// A subscriber that follows `/v1/events` from the journal's first event on its own thread and
/// hands every event to the audit.
final class EventFollower: Sendable {
    private let stopAt = Mutex<Int64?>(nil)
    private let stopping = StopFlag()
    private let done = DispatchSemaphore(value: 0)
    private let lastID = Atomic<Int64>(0)
    private let count = Atomic<Int>(0)
    private let resumes = Atomic<Int>(0)

    /// How often the daemon cut the follower off as lagged and it resumed with Last-Event-ID.
    var lagResumes: Int { resumes.load(ordering: .relaxed) }

    /// Events read so far.
    var eventsRead: Int { count.load(ordering: .relaxed) }

    init(client: UnixHTTPClient, audit: RenderingAudit) {
        Thread { [self] in
            defer { done.signal() }
            // A follower that falls `subscriber_buffer_events` behind is cut off with `lagged`
            // (README, "Events"); like every client it then resumes with Last-Event-ID, so every
            // event is still read and checked once, in order.
            var resumes = 0
            while !stopping.isStopped {
                let stream: EventStreamReader
                do {
                    stream = try client.events("/v1/events", lastEventID: lastID.load(ordering: .relaxed))
                } catch {
                    audit.problem("events", "cannot follow /v1/events: \(error)")
                    return
                }
                defer { stream.close() }
                reading: while !stopping.isStopped {
                    if let target = stopAt.withLock({ $0 }), lastID.load(ordering: .relaxed) >= target { return }
                    let event: ServerSentEvent?
                    do {
                        event = try stream.next(timeout: .milliseconds(200))
                    } catch ClientError.timedOut {
                        continue
                    } catch {
                        audit.problem("events", "the event stream failed: \(error)")
                        return
                    }
                    guard let event else { audit.problem("events", "the event stream ended without lagged"); return }
                    if event.event == "lagged" {
                        resumes += 1
                        self.resumes.store(resumes, ordering: .relaxed)
                        guard resumes <= 1_000 else { audit.problem("events", "cut off as lagged 1,000 times"); return }
                        break reading
                    }
                    if let id = event.id {
                        let previous = lastID.load(ordering: .relaxed)
                        if id <= previous { audit.problem("events", "event \(id) after event \(previous): not in id order or repeated") }
                        lastID.store(id, ordering: .relaxed)
                    }
                    count.add(1, ordering: .relaxed)
                    audit.check(event: event)
                }
            }
        }.start()
    }

    /// Lets the follower read up to event `id` (all there is when nil) and stops it, waiting at
    /// most `timeout`.
    func stop(after id: Int64?, timeout: Duration) async {
        stopAt.withLock { $0 = id ?? 0 }
        let done = self.done
        let seconds = Double(timeout.components.seconds)
        let finished = (try? await blocking { done.wait(timeout: .now() + seconds) == .success }) ?? false
        if !finished {
            stopping.stop()
            _ = try? await blocking { done.wait() }
        }
    }
}

// MARK: - The audit

/// Everything the test sent, in order, and the check of every answer and event against it.
/// Thread-safe: the line records, the follower checks, the test reads the report.
final class RenderingAudit: Sendable {
    /// The serial of the programmer that the random frames come from.
    let mainSerial: [UInt8]
    private let state: Mutex<State>

    init(mainSerial: [UInt8]) {
        self.mainSerial = mainSerial
        state = Mutex(State())
    }

    /// Problems by category: how many and the first few.
    func report() -> [String: (count: Int, examples: [String])] { state.withLock { $0.problems } }

    /// Records a problem.
    func problem(_ category: String, _ text: String) { state.withLock { $0.problem(category, text) } }

    /// Records a programmer → host message about to be written.
    func sent(type: MessageType, payload: [UInt8]) {
        state.withLock { $0.sent(type: type, payload: payload) }
    }

    /// Checks one event the follower read.
    func check(event: ServerSentEvent) {
        let body = Result { () throws(ExactJSON.ParseError) -> ExactJSON in try ExactJSON.parse(event.data) }
        state.withLock { $0.check(event: event, body: body) }
    }

    /// Checks the device's decoder counters against what was sent (§6).
    func checkCounters(_ counters: JSONFields, _ sent: SentCounts) {
        func value(_ name: String) -> Int128? { counters[name]?.integer }
        var problems: [String] = []
        let expected: [(String, Int)] = [
            ("bytes_received", sent.bytes), ("bytes_discarded", 0), ("header_rejects_version", 0), ("header_rejects_incompatible_flags", 0),
            ("header_rejects_length", 0), ("header_rejects_header_crc", 0), ("payload_crc_errors", 0), ("frames_accepted", sent.frames),
            ("frames_delivered", sent.delivered), ("sequence_gaps", 0), ("duplicates", 0), ("unknown_types", sent.unknown),
            ("short_payloads", sent.short),
        ]
        for (name, number) in expected where value(name) != Int128(number) {
            problems.append("\(name) = \(value(name).map { "\($0)" } ?? "missing"), sent \(number)")
        }
        if let accepted = value("frames_accepted"), let delivered = value("frames_delivered"), let unknown = value("unknown_types"),
           let short = value("short_payloads"), accepted != delivered + unknown + short {
            problems.append("frames_accepted \(accepted) ≠ frames_delivered \(delivered) + unknown_types \(unknown) + short_payloads \(short)")
        }
        for problem in problems { self.problem("counters", "after \(sent): \(problem)") }
    }

    /// GETs every view of the main programmer and checks each answer: 200, valid JSON, every value
    /// the last one sent of its kind. Returns the number of answers checked.
    func checkAnswers(_ client: UnixHTTPClient, counts: SentCounts) throws -> Int {
        let serial = String(decoding: mainSerial, as: UTF8.self)
        let paths = ["/v1/health", "/v1/devices", "/v1/devices/\(serial)", "/v1/devices/\(serial)/status",
                     "/v1/devices/\(serial)/reservoir", "/v1/devices/\(serial)/program", "/v1/alarms?device=\(serial)&limit=100"]
        for path in paths {
            let response = try client.get(path)
            state.withLock { $0.checkAnswer(path: path, response: response) }
        }
        return paths.count
    }

    /// Lists every alarm of the main programmer (pages of 10,000 by event id), checks each row,
    /// and that each alarm message ACKed `stored` is found with its code (§2.4: stored means
    /// findable). Returns the number of answers checked.
    func checkAlarmList(_ client: UnixHTTPClient, acked: [(alarmID: UInt32, payload: [UInt8])]) throws -> Int {
        let serial = String(decoding: mainSerial, as: UTF8.self)
        var rows: [JSONFields] = []
        var since: Int128 = 0
        var answers = 0
        while true {
            let path = "/v1/alarms?device=\(serial)&limit=10000&since=\(since)"
            let response = try client.get(path)
            answers += 1
            guard let page = state.withLock({ $0.checkAnswer(path: path, response: response) })?.object?["alarms"]?.array else { break }
            let objects = page.compactMap(\.object)
            rows += objects
            guard objects.count == 10_000, let last = objects.last?["event_id"]?.integer else { break }
            since = last
        }
        state.withLock { state in
            // (device alarm id, code) of every pump row: what a clinician can find.
            var listed = Set<String>()
            for row in rows where row["source"]?.string == "pump" {
                state.checkAlarmRow(row, where: "GET /v1/alarms row \(row["id"]?.description ?? "?")")
                guard let code = row["code_raw"]?.integer else { continue }
                for id in RenderingAudit.State.coveredIDs(row) { listed.insert("\(id)/\(code)") }
            }
            for (id, payload) in acked {
                let code = Int128(ExpectedRendering.u16(payload, 12))
                if !listed.contains("\(id)/\(code)") {
                    let fields = ExpectedRendering.fields(type: .alarm, payload: payload)
                    state.problem("alarms: ACKed stored but not listed", "alarm id \(id) code \(code) (\(fields.map { "\($0.key)=\($0.value)" }.joined(separator: " "))) is in no row of /v1/alarms")
                }
            }
        }
        return answers
    }

    /// Checks `/v1/devices` after programmers of random serials announced themselves: each is
    /// listed, its serial (and id) rendered byte for byte, with the last `PROGRAMMER_INFO` it sent.
    func checkDeviceList(_ client: UnixHTTPClient) throws -> Int {
        let response = try client.get("/v1/devices")
        state.withLock { state in
            guard let devices = state.checkAnswer(path: "/v1/devices", response: response)?.object?["devices"]?.array else { return }
            var shown: [[UInt8]: JSONFields] = [:]
            for device in devices.compactMap(\.object) {
                guard let programmer = device["programmer"]?.object, case .string(let serial)? = programmer["programmer_serial"],
                      serial.scalars.allSatisfy({ $0.value <= 0xFF }) else { continue }
                let bytes = serial.scalars.map { UInt8($0.value) }
                shown[bytes] = device
                if !bytes.isEmpty, device["id"] != programmer["programmer_serial"], device["id"]?.string != serial.value {
                    state.problem("devices: id", "device id \(device["id"]?.description ?? "nothing") is not its serial \(serial.source)")
                }
            }
            for (serial, payload) in state.lastInfoBySerial where !serial.isEmpty {
                guard let device = shown[serial], let programmer = device["programmer"]?.object else {
                    state.problem("devices: listed", "no device shows serial bytes \(ExpectedRendering.hex(serial)) rendered byte for byte")
                    continue
                }
                for difference in ExpectedRendering.differences(programmer, ExpectedRendering.fields(type: .programmerInfo, payload: payload)) {
                    state.problem("devices: programmer", difference)
                }
            }
        }
        return 1
    }

    /// The audit's state, under its lock.
    struct State {
        /// Problems by category.
        var problems: [String: (count: Int, examples: [String])] = [:]
        var status = SentLog(kind: "status", timeKeys: ["device_time"])
        var reservoir = SentLog(kind: "reservoir", timeKeys: ["device_time"])
        var program = SentLog(kind: "program", timeKeys: ["device_time"])
        var refill = SentLog(kind: "refill", timeKeys: [], everyNewKeyAppears: "refill_time")
        var sessions = SentLog(kind: "pump_session", timeKeys: [], repeats: true)
        var heartbeats = SentLog(kind: "heartbeat", timeKeys: [], repeats: true, optional: true)
        var infos: [[UInt8]: SentLog] = [:]
        var lastInfoBySerial: [[UInt8]: [UInt8]] = [:]
        /// Every alarm message sent, by alarm id.
        var alarms: [UInt32: [[UInt8]]] = [:]
        var lastSent: [MessageType: [UInt8]] = [:]

        mutating func record(_ found: [(category: String, text: String)]) {
            for (category, text) in found { problem(category, text) }
        }

        mutating func problem(_ category: String, _ text: String) {
            var entry = problems[category] ?? (0, [])
            entry.count += 1
            if entry.examples.count < 5 { entry.examples.append(text) }
            problems[category] = entry
        }

        /// The programmer views whose pump context may have closed since their kind was last sent
        /// (a PUMP_SESSION, or a PROGRAMMER_INFO or HEARTBEAT that may carry a new boot id): such a
        /// view may answer 404 `no_…` (issue 13: it shows nothing of a pump whose session ended).
        var contextMayHaveClosed: Set<MessageType> = []

        mutating func sent(type: MessageType, payload: [UInt8]) {
            lastSent[type] = payload
            switch type {
            case .pumpSession, .programmerInfo, .heartbeat:
                contextMayHaveClosed.formUnion([.pumpStatus, .reservoir, .doseProgram])
            default:
                contextMayHaveClosed.remove(type)
            }
            switch type {
            case .pumpStatus: status.append(payload, type: type)
            case .reservoir: reservoir.append(payload, type: type)
            case .doseProgram: program.append(payload, type: type)
            case .refill: refill.append(payload, type: type)
            case .pumpSession: sessions.append(payload, type: type)
            case .heartbeat: heartbeats.append(payload, type: type)
            case .programmerInfo:
                let serial = ExpectedRendering.text(payload, 16, 16)
                lastInfoBySerial[serial] = payload
                infos[serial, default: SentLog(kind: "programmer", timeKeys: [], repeats: true)].append(payload, type: type)
            case .alarm:
                alarms[ExpectedRendering.u32(payload, 8), default: []].append(payload)
            default:
                break
            }
        }

        /// Checks an answer of the API: 200 and valid JSON, every member valid; a view of the main
        /// programmer shows the last message of its kind. Returns the parsed body.
        @discardableResult
        mutating func checkAnswer(path: String, response: HTTPResponse) -> ExactJSON? {
            let views: [(String, MessageType, String)] = [("/status", .pumpStatus, "no_status"), ("/reservoir", .reservoir, "no_reservoir"),
                                                          ("/program", .doseProgram, "no_program")]
            if response.status == 404, let (_, type, code) = views.first(where: { path.hasSuffix($0.0) }),
               contextMayHaveClosed.contains(type) || lastSent[type] == nil,
               (try? ExactJSON.parse(response.body))?.object?["error"]?.string == code {
                return nil  // nothing current to show: the pump's context closed after the last one
            }
            guard response.status == 200 else {
                problem("api: status", "GET \(path): \(response.status) \(response.text.prefix(300))")
                return nil
            }
            let body: ExactJSON
            do {
                body = try ExactJSON.parse(response.body)
            } catch {
                problem("api: invalid JSON", "GET \(path): \(error): \(response.text.prefix(300))")
                return nil
            }
            checkMembers(body, where: "GET \(path)")
            guard let object = body.object else { return body }
            for (suffix, type, _) in views where path.hasSuffix(suffix) {
                guard let payload = lastSent[type] else { continue }
                for difference in ExpectedRendering.differences(object, ExpectedRendering.fields(type: type, payload: payload)) {
                    problem("api: \(type)", "GET \(path), the last \(type) sent: \(difference)")
                }
                if type != .doseProgram { checkClockOffset(object, where: "GET \(path)") }
            }
            if path == "/v1/devices" || path == "/v1/devices/" + String(decoding: mainSerialBytes, as: UTF8.self) {
                let devices = path == "/v1/devices" ? (object["devices"]?.array ?? []).compactMap(\.object) : [object]
                guard let device = devices.first(where: { $0["id"]?.string == String(decoding: mainSerialBytes, as: UTF8.self) }) else {
                    problem("api: devices", "GET \(path) does not show the programmer")
                    return body
                }
                let parts: [(String, MessageType)] = [("programmer", .programmerInfo), ("heartbeat", .heartbeat), ("pump_session", .pumpSession)]
                for (key, type) in parts {
                    guard let payload = type == .programmerInfo ? lastInfoBySerial[mainSerialBytes] : lastSent[type] else { continue }
                    guard let part = device[key]?.object else {
                        problem("api: devices", "GET \(path): \(key) is \(device[key]?.description ?? "missing") after one was sent")
                        continue
                    }
                    for difference in ExpectedRendering.differences(part, ExpectedRendering.fields(type: type, payload: payload)) {
                        problem("api: device \(key)", "GET \(path), the last \(type) sent: \(difference)")
                    }
                }
            }
            return body
        }

        var mainSerialBytes: [UInt8] { Array(testProgrammer.programmerSerial.utf8) }

        /// Checks one event: valid JSON, every member valid, and its values those of a message
        /// sent, in the order sent.
        mutating func check(event: ServerSentEvent, body parsed: Result<ExactJSON, ExactJSON.ParseError>) {
            let where_ = "event \(event.id.map(String.init) ?? "(no id)") \(event.event)"
            let body: ExactJSON
            do {
                body = try parsed.get()
            } catch {
                problem("events: invalid JSON", "\(where_): \(error): \(event.data.prefix(300))")
                return
            }
            checkMembers(body, where: where_)
            guard let object = body.object else {
                problem("events: not an object", "\(where_): \(event.data.prefix(300))")
                return
            }
            let device = object["device"]?.string ?? object["id"]?.string
            let main = device == String(decoding: mainSerialBytes, as: UTF8.self)
            switch event.event {
            case "status" where main:
                record(status.match(object, where: where_))
                checkClockOffset(object, where: where_)
            case "reservoir" where main:
                record(reservoir.match(object, where: where_))
                checkClockOffset(object, where: where_)
            case "program" where main:
                record(program.match(object, where: where_))
            case "refill" where main:
                record(refill.match(object, where: where_))
            case "device":
                if let programmer = object["programmer"]?.object, case .string(let serial)? = programmer["programmer_serial"] {
                    let bytes = serial.scalars.allSatisfy { $0.value <= 0xFF } ? serial.scalars.map { UInt8($0.value) } : nil
                    if let bytes, infos[bytes] != nil {
                        record(infos[bytes]!.match(programmer, where: where_ + " programmer"))
                    } else {
                        problem("events: device programmer", "\(where_): programmer_serial \(serial.source) is no serial sent")
                    }
                }
                if main, let session = object["pump_session"]?.object { record(sessions.match(session, where: where_ + " pump_session")) }
                if main, let heartbeat = object["heartbeat"]?.object { record(heartbeats.match(heartbeat, where: where_ + " heartbeat")) }
            case "alarm":
                if object["source"]?.string == "pump" { checkAlarmRow(object, where: where_) }
            case "lagged":
                problem("events: lagged", "\(where_): the follower was cut off")
            default:
                break
            }
        }

        /// The device alarm ids an alarm row covers (`device_alarm_id`, `cleared_device_alarm_id`,
        /// and any listed in `device_alarm_ids`).
        static func coveredIDs(_ row: JSONFields) -> Set<Int128> {
            var ids = Set<Int128>()
            for key in ["device_alarm_id", "cleared_device_alarm_id"] { if let id = row[key]?.integer { ids.insert(id) } }
            for element in row["device_alarm_ids"]?.array ?? [] { if let id = element.integer { ids.insert(id) } }
            return ids
        }

        /// A pump alarm row (an `alarm` event's data): its code, detail and onset are those of an
        /// alarm message it covers.
        mutating func checkAlarmRow(_ row: JSONFields, where place: String) {
            let messages = Self.coveredIDs(row).flatMap { id in UInt32(exactly: id).map { alarms[$0] ?? [] } ?? [] }
            guard !messages.isEmpty else {
                problem("alarms: unknown ids", "\(place): covers ids \(Self.coveredIDs(row).sorted()) of which none was sent: \(row["code_raw"]?.description ?? "")")
                return
            }
            let codes = Set(messages.map { Int128(ExpectedRendering.u16($0, 12)) })
            if let code = row["code_raw"]?.integer, !codes.contains(code) {
                problem("alarms: code", "\(place): code_raw \(code), but its alarm ids were sent with codes \(codes.sorted())")
            }
            let details = messages.map { ExpectedRendering.textProblem(row["detail"], ExpectedRendering.alarmDetail($0)) }
            if !details.contains(where: { $0 == nil }) {
                problem("alarms: detail", "\(place): detail is none of its messages' details; against the first: \(details[0] ?? "")")
            }
            let onsets = messages.map { ExpectedRendering.timeProblem(row["onset_time"], raw: row["onset_time_raw"], ExpectedRendering.i64($0, 0)) }
            if !onsets.contains(where: { $0 == nil }) {
                problem("alarms: onset_time", "\(place): onset_time is none of its messages' onsets; against the first: \(onsets[0] ?? "")")
            }
        }

        /// `clock_offset_ms` is `received_at` − the device time when the device time is a real
        /// time (§1: host − device), and null when the device time is absent or unwritable.
        mutating func checkClockOffset(_ object: JSONFields, where place: String) {
            guard let offset = object["clock_offset_ms"] else { return }
            if let device = object["device_time"]?.string.flatMap(RFC3339Check.milliseconds),
               let received = object["received_at"]?.string.flatMap(RFC3339Check.milliseconds) {
                if offset.integer != Int128(received) - Int128(device) {
                    problem("clock_offset_ms", "\(place): clock_offset_ms \(offset), received_at − device_time = \(Int128(received) - Int128(device))")
                }
            } else if object["device_time"] == .null, offset != .null {
                problem("clock_offset_ms", "\(place): device_time is null (absent or unwritable) but clock_offset_ms is \(offset)")
            }
        }

        /// Every member everywhere in `value`: a time-like member (`*_time`, `*_date`, `*_at`,
        /// `*_since`, `last_seen`) is null or a §7 timestamp in years 0001–9999, and a `_raw`
        /// beside a null time holds a time RFC 3339 cannot write; a text member that carries
        /// `char[N]` bytes (serials, models, lots, details, device ids) has every character
        /// outside 0x20–0x7E written as an escape of one byte.
        mutating func checkMembers(_ value: ExactJSON, where place: String) {
            switch value {
            case .array(let elements):
                for element in elements { checkMembers(element, where: place) }
            case .object(let fields):
                for (key, member) in fields.pairs {
                    if key.hasSuffix("_time") || key.hasSuffix("_date") || key.hasSuffix("_at") || key.hasSuffix("_since") || key == "last_seen" {
                        switch member {
                        case .null:
                            if let raw = fields[key + "_raw"], let ms = raw.integer,
                               ms >= Int128(ExtremeDraw.earliestRFC3339Ms), ms <= Int128(ExtremeDraw.latestRFC3339Ms), ms != 0 {
                                problem("times: writable time shown as null", "\(place): \(key) null with \(key)_raw \(ms), a time RFC 3339 can write")
                            }
                        case .string(let text) where RFC3339Check.milliseconds(text.value) != nil:
                            break
                        default:
                            problem("times: not RFC 3339 in years 0001–9999", "\(place): \(key) = \(member)")
                        }
                    }
                    if ["programmer_serial", "hardware_model", "pump_model", "pump_serial", "drug_lot", "detail", "device", "id"].contains(key),
                       case .string(let text) = member {
                        for (scalar, escaped) in zip(text.scalars, text.escaped) where !(0x20...0x7E).contains(scalar.value) && (!escaped || scalar.value > 0xFF) {
                            problem("texts: not escaped byte for byte", "\(place): \(key) = \(text.source): U+\(String(scalar.value, radix: 16)) is not the escape of one byte")
                            break
                        }
                    }
                    checkMembers(member, where: place)
                }
            default:
                break
            }
        }
    }
}

/// The messages of one kind in the order sent, and the order in which the daemon may show them.
/// Each rendering the daemon shows must be that of a message sent at or after the previous one
/// shown; a message that differs from the one before it (other than in its time stamps) must not
/// be skipped: the daemon records a snapshot when it changes (§2.4: snapshots are sent on change).
struct SentLog {
    let kind: String
    /// Members left out when deciding whether a message differs from the one before it.
    let timeKeys: Set<String>
    /// The same message may be shown again (a view of the latest one, not an event per message).
    var repeats = false
    /// No message must appear (the kind is shown only as part of other events).
    var optional = false
    /// When set, a message must appear exactly when this member's value is new (refills: one per
    /// refill time).
    var everyNewKeyAppears: String?
    private var entries: [(payload: [UInt8], mustAppear: Bool)] = []
    /// Entries before this index are consumed (the last shown one is `entries[position]`).
    private var position = -1
    private var previousContent: [ExpectedField]?
    private var seenKeys = Set<ExpectedValue.HashKey>()

    init(kind: String, timeKeys: Set<String>, repeats: Bool = false, optional: Bool = false, everyNewKeyAppears: String? = nil) {
        self.kind = kind
        self.timeKeys = timeKeys
        self.repeats = repeats
        self.optional = optional
        self.everyNewKeyAppears = everyNewKeyAppears
    }

    mutating func append(_ payload: [UInt8], type: MessageType) {
        let fields = ExpectedRendering.fields(type: type, payload: payload)
        var mustAppear: Bool
        if let key = everyNewKeyAppears {
            let value = fields.first { $0.key == key }.map { ExpectedValue.HashKey($0.value) }
            mustAppear = value.map { seenKeys.insert($0).inserted } ?? false
        } else {
            let content = fields.filter { !timeKeys.contains($0.key) }
            mustAppear = content != previousContent
            previousContent = content
        }
        if optional { mustAppear = false }
        entries.append((payload, mustAppear))
        // Forget what was shown long ago.
        if position > 50_000 {
            entries.removeFirst(position)
            position = 0
        }
    }

    /// Matches a rendering the daemon showed against the messages sent; returns the problems.
    mutating func match(_ object: JSONFields, where place: String) -> [(category: String, text: String)] {
        let type = messageType
        if repeats, position >= 0, ExpectedRendering.differences(object, ExpectedRendering.fields(type: type, payload: entries[position].payload)).isEmpty {
            return []
        }
        var found: [(category: String, text: String)] = []
        var index = position + 1
        var skipped: [Int] = []
        // Bounded: a rendering that matches nothing must not cost a scan of everything sent.
        while index < entries.count, index - position <= 5_000 {
            let differences = ExpectedRendering.differences(object, ExpectedRendering.fields(type: type, payload: entries[index].payload))
            if differences.isEmpty {
                if !skipped.isEmpty {
                    found.append(("events: \(kind) missing", "\(place): \(skipped.count) changed \(kind) message(s) sent before it never appeared"))
                }
                position = index
                return found
            }
            if entries[index].mustAppear {
                if skipped.isEmpty {
                    // The first message it had to be: the differences say what went wrong.
                    found.append(("events: \(kind)", "\(place), against the \(kind) sent next: " + differences.prefix(4).joined(separator: "; ")))
                }
                skipped.append(index)
                if skipped.count > 64 { break }
            }
            index += 1
        }
        // Matches nothing ahead: take it as the next one that had to appear, so that one wrong
        // value does not make every later message look missing.
        if let first = skipped.first {
            position = first
        } else {
            found.append(("events: \(kind) unexpected", "\(place): matches no \(kind) message sent after the last one shown"))
        }
        return found
    }

    private var messageType: MessageType {
        switch kind {
        case "status": .pumpStatus
        case "reservoir": .reservoir
        case "program": .doseProgram
        case "refill": .refill
        case "pump_session": .pumpSession
        case "heartbeat": .heartbeat
        default: .programmerInfo
        }
    }
}

extension ExpectedValue {
    /// A hashable stand-in for a value (its description), for sets of values seen.
    struct HashKey: Hashable {
        let text: String
        init(_ value: ExpectedValue) { text = value.description }
    }
}
