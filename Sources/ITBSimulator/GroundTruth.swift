import Foundation
import ITBJSON
public import ITBProtocol
import Synchronization

/// What a simulated programmer told the host, pump by pump: the simulator's ground truth, written
/// as JSON (`itbctl simulate --truth FILE`) so an end-to-end test can compare the bridge's per-pump
/// answers with it field by field.
///
/// The runner records each message here right after writing it to the line, under the pump *its
/// model* was interrogating, not by re-reading the stream: attribution is the thing under test.
/// Messages are rendered with ``ITBJSON/MessageJSON``, the renderer the API uses, so the names,
/// units and time format are the API's (PROTOCOL.md §7). An alarm is recorded once, when first
/// sent; its retransmissions are the same alarm. Repeated `PUMP_SESSION begin`s (revision 1) are
/// not recorded as sessions. The schema is in README.md ("Ground truth").
///
/// Thread-safe: the runner's thread records, and any thread may render or write.
public final class GroundTruth: Sendable {
    /// One message with the scenario's clock when it was sent.
    struct Entry<M: Sendable>: Sendable {
        var message: M
        var clinicTimeMs: Int64
    }

    /// A dose program and what it does not carry itself.
    struct ProgramEntry: Sendable {
        var entry: Entry<DoseProgram>
        var concentrationUgPerML: UInt32
        var titration: Bool
    }

    /// One interrogation session.
    struct SessionRecord: Sendable {
        var beginMs: Int64
        var endMs: Int64?
        var clinicBeginMs: Int64
        var clinicEndMs: Int64?
        var programmerSerial: String
        var batteryState: BatteryState
        var eriDateMs: Int64
    }

    /// Everything recorded for one pump.
    struct PumpRecord: Sendable {
        var identity: PumpSession
        var sessions: [SessionRecord] = []
        var statuses: [Entry<PumpStatus>] = []
        var readings: [Entry<Reservoir>] = []
        var programs: [ProgramEntry] = []
        var refills: [Entry<Refill>] = []
        var alarms: [Entry<Alarm>] = []
    }

    struct State: Sendable {
        var pumps: [PumpRecord] = []
        /// Index into `pumps` of the pump whose session is open.
        var current: Int?
        var unattributed = 0
    }

    /// The scenario's name, written at the top of the file.
    public let scenario: String
    /// The programmer whose messages these are.
    public let programmer: ProgrammerInfo
    private let state = Mutex(State())

    /// An empty record for `scenario` played by `programmer`.
    public init(scenario: String, programmer: ProgrammerInfo) {
        self.scenario = scenario
        self.programmer = programmer
    }

    /// Records a `PUMP_SESSION begin` sent at `deviceTimeMs`. A begin for the pump whose session is
    /// open continues that session (its identity fields are updated: battery state, ERI date); a
    /// begin for another pump ends the open session at the same moment, as PROTOCOL.md §5 says.
    public func beginSession(_ session: PumpSession, deviceTimeMs: Int64, clinicTimeMs: Int64) {
        state.withLock { s in
            let key = (session.manufacturerCode, session.pumpSerial)
            if let current = s.current {
                if s.pumps[current].identity.manufacturerCode == key.0 && s.pumps[current].identity.pumpSerial == key.1 {
                    s.pumps[current].identity = session
                    let last = s.pumps[current].sessions.count - 1
                    s.pumps[current].sessions[last].batteryState = session.batteryState
                    s.pumps[current].sessions[last].eriDateMs = session.eriDateMs
                    return
                }
                close(&s, deviceTimeMs: deviceTimeMs, clinicTimeMs: clinicTimeMs)
            }
            let index: Int
            if let found = s.pumps.firstIndex(where: { $0.identity.manufacturerCode == key.0 && $0.identity.pumpSerial == key.1 }) {
                index = found
                s.pumps[index].identity = session
            } else {
                index = s.pumps.count
                s.pumps.append(PumpRecord(identity: session))
            }
            s.pumps[index].sessions.append(SessionRecord(
                beginMs: deviceTimeMs, endMs: nil, clinicBeginMs: clinicTimeMs, clinicEndMs: nil,
                programmerSerial: programmer.programmerSerial, batteryState: session.batteryState, eriDateMs: session.eriDateMs))
            s.current = index
        }
    }

    /// Records the `PUMP_SESSION end` of the open session, sent at `deviceTimeMs`.
    public func endSession(deviceTimeMs: Int64, clinicTimeMs: Int64) {
        state.withLock { close(&$0, deviceTimeMs: deviceTimeMs, clinicTimeMs: clinicTimeMs) }
    }

    private func close(_ s: inout State, deviceTimeMs: Int64, clinicTimeMs: Int64) {
        guard let current = s.current, let last = s.pumps[current].sessions.indices.last else { return }
        s.pumps[current].sessions[last].endMs = deviceTimeMs
        s.pumps[current].sessions[last].clinicEndMs = clinicTimeMs
        s.current = nil
    }

    /// Records a pump message (status, reservoir, dose program, refill, alarm) under the pump whose
    /// session is open; `concentrationUgPerML` is the concentration in force (dose programs) and
    /// `titration` says the clinician changed the program (dose programs). A pump message outside
    /// a session is only counted (`unattributed_messages`); other message types are ignored.
    public func record(_ message: Message, clinicTimeMs: Int64, concentrationUgPerML: UInt32 = 0, titration: Bool = false) {
        state.withLock { s in
            let isPumpMessage: Bool
            switch message {
            case .pumpStatus, .reservoir, .doseProgram, .refill, .alarm: isPumpMessage = true
            default: isPumpMessage = false
            }
            guard isPumpMessage else { return }
            guard let i = s.current else {
                s.unattributed += 1
                return
            }
            switch message {
            case .pumpStatus(let m): s.pumps[i].statuses.append(Entry(message: m, clinicTimeMs: clinicTimeMs))
            case .reservoir(let m): s.pumps[i].readings.append(Entry(message: m, clinicTimeMs: clinicTimeMs))
            case .doseProgram(let m):
                s.pumps[i].programs.append(ProgramEntry(entry: Entry(message: m, clinicTimeMs: clinicTimeMs),
                                                        concentrationUgPerML: concentrationUgPerML, titration: titration))
            case .refill(let m): s.pumps[i].refills.append(Entry(message: m, clinicTimeMs: clinicTimeMs))
            case .alarm(let m): s.pumps[i].alarms.append(Entry(message: m, clinicTimeMs: clinicTimeMs))
            default: break
            }
        }
    }

    /// The number of distinct pumps recorded so far.
    public var pumpCount: Int { state.withLock { $0.pumps.count } }

    /// The ground truth as JSON (one object, compact; the schema is in README.md). `complete` says
    /// whether the scenario ran to its end (false: written on a stop, with what was sent so far).
    public func json(complete: Bool) -> [UInt8] {
        let s = state.withLock { $0 }
        var json = JSONWriter(capacity: 1 << 16)
        json.beginObject()
        json.key("format"); json.string("itb-simulator-truth")
        json.key("version"); json.int(1)
        json.key("scenario"); json.string(scenario)
        json.key("complete"); json.bool(complete)
        json.key("programmer")
        json.beginObject()
        MessageJSON.writeFields(of: .programmerInfo(programmer), into: &json)
        json.endObject()
        json.key("unattributed_messages"); json.int(s.unattributed)
        json.key("pumps")
        json.beginArray()
        for pump in s.pumps { write(pump, into: &json) }
        json.endArray()
        json.endObject()
        json.endLine()
        return json.bytes
    }

    private func write(_ pump: PumpRecord, into json: inout JSONWriter) {
        let id = pump.identity
        json.beginObject()
        json.key("manufacturer_code"); json.int(id.manufacturerCode)
        json.key("pump_serial"); json.protocolText(id.pumpSerial)
        json.key("pump_model"); json.protocolText(id.pumpModel)
        json.key("reservoir_capacity_ul"); json.int(id.reservoirCapacityUL)
        json.timeField("implant_date", ms: id.implantDateMs)
        json.key("battery_state"); json.string(id.batteryState.name ?? "unknown")
        json.timeField("eri_date", ms: id.eriDateMs)
        json.key("sessions")
        json.beginArray()
        for session in pump.sessions {
            json.beginObject()
            json.timeField("begin", ms: session.beginMs)
            json.key("end"); if let end = session.endMs { json.time(ms: end) } else { json.null() }
            json.key("programmer_serial"); json.protocolText(session.programmerSerial)
            json.key("battery_state"); json.string(session.batteryState.name ?? "unknown")
            json.timeField("eri_date", ms: session.eriDateMs)
            json.timeField("clinic_begin", ms: session.clinicBeginMs)
            json.key("clinic_end"); if let end = session.clinicEndMs { json.time(ms: end) } else { json.null() }
            json.endObject()
        }
        json.endArray()
        func list<M: Sendable>(_ key: StaticString, _ entries: [Entry<M>], _ wrap: (M) -> Message) {
            json.key(key)
            json.beginArray()
            for entry in entries {
                json.beginObject()
                MessageJSON.writeFields(of: wrap(entry.message), into: &json)
                json.timeField("clinic_time", ms: entry.clinicTimeMs)
                json.endObject()
            }
            json.endArray()
        }
        list("statuses", pump.statuses, Message.pumpStatus)
        list("readings", pump.readings, Message.reservoir)
        json.key("programs")
        json.beginArray()
        for program in pump.programs {
            json.beginObject()
            MessageJSON.writeFields(of: .doseProgram(program.entry.message), into: &json)
            json.key("concentration_ug_per_ml"); json.int(program.concentrationUgPerML)
            json.key("titration"); json.bool(program.titration)
            json.timeField("clinic_time", ms: program.entry.clinicTimeMs)
            json.endObject()
        }
        json.endArray()
        list("refills", pump.refills, Message.refill)
        list("alarms", pump.alarms, Message.alarm)
        json.endObject()
    }

    /// Writes ``json(complete:)`` to `path` atomically: to a temporary file beside it, flushed to
    /// disk, then renamed over `path`, so a reader sees the previous file or the new one, never a
    /// part. Throws the underlying file error.
    public func write(to path: String, complete: Bool) throws {
        let bytes = json(complete: complete)
        let temporary = path + ".tmp-\(ProcessInfo.processInfo.processIdentifier)"
        let url = URL(fileURLWithPath: temporary)
        try Data(bytes).write(to: url)
        if let handle = FileHandle(forWritingAtPath: temporary) {
            try? handle.synchronize()
            try? handle.close()
        }
        if rename(temporary, path) != 0 {
            let code = errno
            try? FileManager.default.removeItem(at: url)
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
        }
    }
}
