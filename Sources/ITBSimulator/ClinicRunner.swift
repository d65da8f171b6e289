import Foundation
import Synchronization
import ITBProtocol

/// Plays a ``ClinicScenario``: one programmer on a pty interrogates pump after pump. Each visit is
/// `PUMP_SESSION begin`, the alarms the pump has active and the programmer has not yet reported,
/// status, reservoir and dose program, then one clinician action per telemetry round (refill,
/// titration, alarm), status and reservoir every round, and `PUMP_SESSION end` once the visit's
/// alarms are acknowledged as stored (or ``SimulationRunner/Options/sessionAlarmWait`` passes).
/// Everything sent is recorded in ``truth`` under the pump being interrogated.
///
/// **Clocks.** Clinic time runs `acceleration` times faster than real time during a visit and
/// jumps between visits. The programmer's clock stays on real time, as in every scenario (a real
/// programmer's clock does not run fast, and the bridge flags one that drifts); pump volumes follow
/// clinic time. Past moments get stable device times: one before the run (implant, the last fill
/// before the scenario, an old ERI) is "the device time of the first visit − the clinic time
/// since then"; one during the run (an ERI or a low-reservoir crossing between visits) is the
/// device time when clinic time first reached it; a refill during the run keeps its `REFILL`
/// time as the reservoir's `last_refill_time`. So a pump seen on two days shows the days' drain
/// between readings whose device times are seconds apart.
///
/// **The pump model** keeps the volume the pump *calculates* from the programmed flow
/// (daily dose × 1000 / concentration µL/day, reported) and the one actually left (delivery bias),
/// revealed as the measured residual at refill.
///
/// Sendable without exceptions: what other threads see is immutable (or itself `Sendable`), the
/// stop request is an atomic flag, and the clinic's state lives in a ``ClinicEngine`` that only the
/// thread in ``run(betweenVisits:)``, ``settle(timeout:)`` or ``writeTruth()`` touches, holding its lock.
public final class ClinicRunner: Sendable {
    /// The scenario.
    public let scenario: ClinicScenario
    /// The options (`acceleration` is clinic seconds per real second during visits).
    public let options: SimulationRunner.Options
    /// The programmer endpoint (its pty path is what the bridge opens).
    public let endpoint: ProgrammerEndpoint
    /// What was sent, pump by pump.
    public let truth: GroundTruth
    /// 00:00 UTC of the day the run started: clinic day 0 in the ground truth's `clinic_time`s.
    public let dayZeroMs: Int64
    private let stopFlag: StopFlag
    private let progress: ClinicProgress
    /// The pumps and the run's state, confined to the thread that holds the lock.
    private let engine: Mutex<ClinicEngine>

    /// Visits played to their end (readable while the run goes on).
    public var visitsPlayed: Int { progress.visitsPlayed.load(ordering: .acquiring) }
    /// True once every visit has been played (readable while the run goes on).
    public var finished: Bool { progress.finished.load(ordering: .acquiring) }

    /// Prepares a run: checks the scenario and creates the programmer's pty (and the link to it).
    /// Throws ``SimulationError/invalidScenario(_:)`` listing what is wrong with the scenario.
    public init(scenario: ClinicScenario, options: SimulationRunner.Options = .init()) throws {
        let stopFlag = StopFlag()
        let progress = ClinicProgress()
        let engine = try ClinicEngine(scenario: scenario, options: options, stopFlag: stopFlag, progress: progress)
        self.scenario = scenario
        self.options = options
        endpoint = engine.endpoint
        truth = engine.truth
        dayZeroMs = engine.dayZeroMs
        self.stopFlag = stopFlag
        self.progress = progress
        self.engine = Mutex(engine)
    }

    /// Asks a running ``run(betweenVisits:)`` to finish (from any thread).
    public func stop() { stopFlag.stop() }

    /// The pty path the bridge should open.
    public var slavePath: String { endpoint.pty.slavePath }

    /// Plays every visit in clinic-time order, then (unless `stopAtEnd`) keeps the programmer
    /// connected and idle until ``stop()``. Blocks the calling thread. Writes the ground truth to
    /// `options.truthPath` after each visit and when it returns (also after a stop), with
    /// `complete` true once every visit was played. `betweenVisits` is called on this thread
    /// after each visit (with the number of visits played) and before the next one: a test stops
    /// or kills the bridge there, between two interrogations, and starts it again.
    public func run(betweenVisits: @Sendable (Int) throws -> Void = { _ in }) throws {
        try engine.withLock { engine throws in try engine.run(betweenVisits: betweenVisits) }
    }

    /// Writes the ground truth to `options.truthPath`, if set; a failure is reported on stderr and
    /// does not stop the run.
    public func writeTruth() { engine.withLock { $0.writeTruth() } }

    /// Keeps the line alive (heartbeats, ACKs, retransmissions) until no alarm waits for its ACK,
    /// or `timeout` passes. True when nothing is pending.
    @discardableResult
    public func settle(timeout: Duration) throws -> Bool { try engine.withLock { engine throws in try engine.settle(timeout: timeout) } }
}

/// The pumps and the run of a ``ClinicRunner``: not `Sendable`; its runner holds it under a lock,
/// so one thread at a time plays it.
final class ClinicEngine {
    let scenario: ClinicScenario
    let options: SimulationRunner.Options
    let endpoint: ProgrammerEndpoint
    let truth: GroundTruth
    let dayZeroMs: Int64
    /// Visits played to their end, and whether all were.
    private let progress: ClinicProgress
    private var visitsPlayed = 0 {
        didSet { progress.visitsPlayed.store(visitsPlayed, ordering: .releasing) }
    }
    private var finished = false {
        didSet { progress.finished.store(finished, ordering: .releasing) }
    }

    private let stopFlag: StopFlag
    private var pumps: [String: PumpModel] = [:]
    private var clinicSeconds: Double = 0
    /// (clinic seconds, device ms) at every telemetry round, ascending.
    private var timeline: [(clinic: Double, device: Int64)] = []
    private let started = ContinuousClock.now

    /// Checks the scenario and creates the programmer's pty (and the link to it).
    init(scenario: ClinicScenario, options: SimulationRunner.Options, stopFlag: StopFlag, progress: ClinicProgress) throws {
        self.stopFlag = stopFlag
        self.progress = progress
        let problems = scenario.problems()
        guard problems.isEmpty else { throw SimulationError.invalidScenario(problems) }
        self.scenario = scenario
        self.options = options
        let endpoint = try ProgrammerEndpoint(info: options.programmer, initialRetransmitDelay: options.retransmitDelay,
                                              maximumRetransmitDelay: max(options.retransmitDelay, .seconds(30)))
        endpoint.announceInterval = options.announceInterval
        self.endpoint = endpoint
        truth = GroundTruth(scenario: scenario.name, programmer: options.programmer)
        let nowMs = Self.realNowMs
        dayZeroMs = nowMs - nowMs % 86_400_000
        for pump in scenario.pumps { pumps[pump.key] = PumpModel(pump) }
        try updateLink()
    }

    /// ``ClinicRunner/run(betweenVisits:)``.
    func run(betweenVisits: @Sendable (Int) throws -> Void) throws {
        defer { writeTruth() }
        try endpoint.announce()
        for visit in scenario.schedule {
            if stopFlag.isStopped { return }
            try play(visit)
            if stopFlag.isStopped { return }
            visitsPlayed += 1
            writeTruth()
            try idle(for: options.telemetryInterval * 2)
            try betweenVisits(visitsPlayed)
        }
        finished = true
        writeTruth()
        if options.stopAtEnd {
            try settle(timeout: .seconds(15))
            return
        }
        while !stopFlag.isStopped { try idle(for: options.telemetryInterval) }
    }

    /// ``ClinicRunner/writeTruth()``.
    func writeTruth() {
        guard let path = options.truthPath else { return }
        do {
            try truth.write(to: path, complete: finished)
        } catch {
            FileHandle.standardError.write(Data("simulate: cannot write the ground truth to \(path): \(error)\n".utf8))
        }
    }

    // MARK: a visit

    private func play(_ visit: ClinicScenario.Visit) throws {
        guard let start = visit.startSeconds, var pump = pumps[visit.pump] else { return }
        defer { pumps[visit.pump] = pump }
        clinicSeconds = start
        pump.advance(to: start)
        let length = visit.minutes * 60
        let realSeconds = length / options.acceleration
        let rounds = max(Int((realSeconds / options.telemetryInterval.seconds).rounded(.up)), visit.actions.count + 2)
        let step = length / Double(rounds)
        mark()

        let session = identity(of: &pump)
        try endpoint.beginSession(session)
        truth.beginSession(session, deviceTimeMs: deviceNowMs, clinicTimeMs: clinicMs)
        try reportAlarms(of: &pump)
        try sendStatus(pump)
        try sendReservoir(pump, source: .calculated)
        try sendProgram(pump, titration: false)
        for round in 0..<rounds {
            if round > 0 {
                clinicSeconds = start + step * Double(round)
                pump.advance(to: clinicSeconds)
                mark()
                try reportAlarms(of: &pump)
                if round - 1 < visit.actions.count { try apply(visit.actions[round - 1], to: &pump, visit: visit) }
                try sendStatus(pump)
                try sendReservoir(pump, source: .calculated)
            }
            try endpoint.heartbeat(uptimeS: uptime)
            try serviceLine(for: options.telemetryInterval)
            if stopFlag.isStopped { return }
        }
        clinicSeconds = start + length
        pump.advance(to: clinicSeconds)
        mark()
        // The alarms of this session are acknowledged before the head leaves the pump: an ALARM
        // carries no pump serial, so one retransmitted during the next pump's session would be
        // read as that pump's.
        try settle(timeout: options.sessionAlarmWait)
        if stopFlag.isStopped { return }
        try endpoint.endSession()
        truth.endSession(deviceTimeMs: deviceNowMs, clinicTimeMs: clinicMs)
    }

    private func apply(_ action: ClinicScenario.Action, to pump: inout PumpModel, visit: ClinicScenario.Visit) throws {
        switch action.action {
        case "refill":
            let expected = pump.calculatedUL.rounded()
            let measured = max(0, (action.residualDiscrepancyUL.map { expected + $0 } ?? pump.actualUL).rounded())
            let filled = action.volumeFilledUL ?? Double(pump.spec.capacityUL)
            let concentration = action.concentrationUgPerML ?? pump.concentration
            let refill = Refill(refillTimeMs: deviceNowMs, concentrationUgPerML: UInt32(concentration),
                                volumeFilledUL: UInt32(filled.rounded()), expectedResidualUL: UInt32(expected),
                                measuredResidualUL: UInt32(measured),
                                drugLot: action.drugLot ?? "BAC-D\(visit.day)-\(pump.spec.key)")
            try send(.refill(refill))
            let concentrationChanged = concentration != pump.concentration
            pump.refill(volumeUL: filled, concentration: concentration, at: clinicSeconds, deviceMs: refill.refillTimeMs)
            for code in [AlarmCode.lowReservoir, .emptyReservoir] where pump.active[code.rawValue] != nil {
                try clear(code, on: &pump)
            }
            try sendReservoir(pump, source: .measured)
            // The pump is reprogrammed for the new concentration: the same µg/day, another flow.
            if concentrationChanged { try sendProgram(pump, titration: false) }
        case "dose_change":
            pump.dailyDoseUg = action.dailyDoseUg ?? pump.dailyDoseUg
            pump.mode = .simpleContinuous
            try sendProgram(pump, titration: true)
        case "flex_dosing":
            pump.dailyDoseUg = action.dailyDoseUg ?? pump.dailyDoseUg
            pump.mode = .flex
            try sendProgram(pump, titration: true)
        case "alarm":
            let code = Self.alarmCode(action.code) ?? .flowFault
            let priority = action.priority.flatMap { AlarmPriority(name: $0) } ?? .high
            let onset = clinicSeconds - (action.hoursAgo ?? 0) * 3600
            pump.active[code.rawValue] = ActiveAlarm(priority: priority, onsetClinic: onset, detail: action.detail ?? "", reported: false)
            if code == .motorStall || code == .flowFault { pump.pumpState = .criticalAlarm }
            try reportAlarms(of: &pump)
        case "clear_alarm":
            if let code = Self.alarmCode(action.code), pump.active[code.rawValue] != nil { try clear(code, on: &pump) }
        default:
            throw SimulationError.unknownAction(action.action)
        }
    }

    static func alarmCode(_ text: String?) -> AlarmCode? {
        text.flatMap { AlarmCode(name: $0) ?? UInt16($0).map(AlarmCode.init(rawValue:)) }
    }

    /// Raises, with its own onset, every alarm active in the pump that this programmer has not yet
    /// reported (the programmer reads the pump's alarm log when the head comes over it).
    private func reportAlarms(of pump: inout PumpModel) throws {
        if pump.battery(at: clinicSeconds) == .eri, pump.active[AlarmCode.eri.rawValue] == nil, !pump.eriReported,
           let eri = pump.spec.eriAtDay {
            pump.active[AlarmCode.eri.rawValue] = ActiveAlarm(priority: .low, onsetClinic: eri * 86_400,
                                                              detail: "elective replacement indicator: about 90 days of battery left", reported: false)
        }
        for code in pump.active.keys.sorted() where pump.active[code]?.reported == false {
            guard let entry = pump.active[code] else { continue }
            let alarm = try endpoint.raise(code: AlarmCode(rawValue: code), priority: entry.priority, transition: .raised,
                                           detail: entry.detail, onsetTimeMs: deviceTime(clinic: entry.onsetClinic))
            truth.record(.alarm(alarm), clinicTimeMs: clinicMs)
            pump.active[code]?.reported = true
            if code == AlarmCode.eri.rawValue { pump.eriReported = true }
        }
    }

    private func clear(_ code: AlarmCode, on pump: inout PumpModel) throws {
        guard let entry = pump.active.removeValue(forKey: code.rawValue) else { return }
        if pump.active.keys.allSatisfy({ $0 != AlarmCode.emptyReservoir.rawValue && $0 != AlarmCode.motorStall.rawValue && $0 != AlarmCode.flowFault.rawValue }),
           pump.pumpState == .criticalAlarm {
            pump.pumpState = .infusing
        }
        guard entry.reported else { return }
        let alarm = try endpoint.raise(code: code, priority: entry.priority, transition: .cleared, onsetTimeMs: deviceNowMs)
        truth.record(.alarm(alarm), clinicTimeMs: clinicMs)
    }

    // MARK: messages

    private func identity(of pump: inout PumpModel) -> PumpSession {
        if pump.implantDeviceMs == nil { pump.implantDeviceMs = deviceTime(clinic: pump.spec.implantAtDay * 86_400) }
        let battery = pump.battery(at: clinicSeconds)
        if battery == .eri, pump.eriDeviceMs == nil, let eri = pump.spec.eriAtDay { pump.eriDeviceMs = deviceTime(clinic: eri * 86_400) }
        return PumpSession(implantDateMs: pump.implantDeviceMs ?? 0, eriDateMs: battery == .ok ? 0 : pump.eriDeviceMs ?? 0,
                           reservoirCapacityUL: UInt32(pump.spec.capacityUL), manufacturerCode: pump.spec.manufacturerCode,
                           event: .begin, batteryState: battery, pumpModel: pump.spec.model, pumpSerial: pump.spec.serial)
    }

    private func sendStatus(_ pump: PumpModel) throws {
        var mask: UInt32 = 0
        for code in pump.active.keys where code >= 1 && code <= 32 { mask |= 1 << (code - 1) }
        try send(.pumpStatus(PumpStatus(
            deviceTimeMs: deviceNowMs, dailyDoseUgX10: UInt32((pump.dailyDoseUg * 10).rounded()),
            concentrationUgPerML: UInt32(pump.concentration), activeAlarmMask: mask, pumpState: pump.pumpState,
            dosingMode: pump.mode, linkQualityPct: 92)))
    }

    private func sendReservoir(_ pump: PumpModel, source: VolumeSource) throws {
        let lastFill = pump.lastFillDeviceMs ?? deviceTime(clinic: pump.lastFillClinic)
        try send(.reservoir(Reservoir(
            deviceTimeMs: deviceNowMs, lastRefillTimeMs: lastFill, volumeULX10: UInt32((pump.calculatedUL * 10).rounded()),
            capacityUL: UInt32(pump.spec.capacityUL), lowReservoirThresholdUL: UInt32(pump.spec.lowReservoirThresholdUL),
            deliveredSinceRefillULX10: UInt32((max(0, pump.lastFillVolumeUL - pump.calculatedUL) * 10).rounded()),
            volumeSource: source)))
    }

    private func sendProgram(_ pump: PumpModel, titration: Bool) throws {
        let program = DoseProgram(deviceTimeMs: deviceNowMs, dailyDoseUgX10: UInt32((pump.dailyDoseUg * 10).rounded()),
                                  patientBolusDoseUgX10: 0, patientBolusLockoutMin: 0, patientBolusMaxPerDay: 0,
                                  mode: pump.mode, flexSteps: pump.flexSteps, periodicBoluses: [])
        try endpoint.send(.doseProgram(program))
        truth.record(.doseProgram(program), clinicTimeMs: clinicMs, concentrationUgPerML: UInt32(pump.concentration), titration: titration)
    }

    private func send(_ message: Message) throws {
        try endpoint.send(message)
        truth.record(message, clinicTimeMs: clinicMs)
    }

    // MARK: the line and the clocks

    /// Heartbeats and services the line for `duration`, with no pump under the head.
    private func idle(for duration: Duration) throws {
        try endpoint.heartbeat(uptimeS: uptime)
        try serviceLine(for: duration)
    }

    private func serviceLine(for duration: Duration) throws {
        let deadline = ContinuousClock.now + duration
        while ContinuousClock.now < deadline && !stopFlag.isStopped {
            try endpoint.service(timeout: min(deadline - ContinuousClock.now, .milliseconds(20)))
        }
    }

    /// Keeps the line alive (heartbeats, ACKs, retransmissions) until no alarm waits for its ACK,
    /// or `timeout` passes. True when nothing is pending.
    @discardableResult
    func settle(timeout: Duration) throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        var lastHeartbeat = ContinuousClock.now
        while !endpoint.pending.isEmpty && ContinuousClock.now < deadline && !stopFlag.isStopped {
            if ContinuousClock.now - lastHeartbeat >= options.telemetryInterval {
                try endpoint.heartbeat(uptimeS: uptime)
                lastHeartbeat = ContinuousClock.now
            }
            try endpoint.service(timeout: .milliseconds(20))
        }
        return endpoint.pending.isEmpty
    }

    private var uptime: UInt32 { UInt32((ContinuousClock.now - started).seconds) }

    static var realNowMs: Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    /// The programmer's clock (real time).
    private var deviceNowMs: Int64 { Self.realNowMs }

    /// The scenario's clock for the ground truth: day 0 00:00 is ``dayZeroMs``.
    private var clinicMs: Int64 { dayZeroMs + Int64((clinicSeconds * 1000).rounded()) }

    private func mark() { timeline.append((clinicSeconds, deviceNowMs)) }

    /// The device time of a clinic moment: before the first visit, counted back from it; during
    /// the run, the device clock when clinic time first reached it.
    private func deviceTime(clinic: Double) -> Int64 {
        guard let first = timeline.first else { return deviceNowMs - Int64(((clinicSeconds - clinic) * 1000).rounded()) }
        if clinic <= first.clinic { return first.device - Int64(((first.clinic - clinic) * 1000).rounded()) }
        return timeline.first { $0.clinic >= clinic }?.device ?? deviceNowMs
    }

    private func updateLink() throws {
        guard let link = options.link else { return }
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: endpoint.pty.slavePath)
    }
}

/// An alarm active in a simulated pump.
struct ActiveAlarm {
    var priority: AlarmPriority
    var onsetClinic: Double
    var detail: String
    var reported: Bool
}

/// One pump of a clinic scenario: its therapy and its two volumes, advanced in clinic time.
struct PumpModel {
    let spec: ClinicScenario.Pump
    /// The clinic time this state is at, seconds.
    var clock: Double
    var calculatedUL: Double
    var actualUL: Double
    var concentration: Int
    var dailyDoseUg: Double
    var mode: DosingMode
    var lastFillClinic: Double
    var lastFillVolumeUL: Double
    var lastFillDeviceMs: Int64?
    var implantDeviceMs: Int64?
    var eriDeviceMs: Int64?
    var eriReported = false
    var pumpState: PumpState = .infusing
    /// Active alarms by code.
    var active: [UInt16: ActiveAlarm] = [:]

    init(_ spec: ClinicScenario.Pump) {
        self.spec = spec
        clock = spec.lastFillAtDay * 86_400
        calculatedUL = spec.lastFillVolumeUL
        actualUL = spec.lastFillVolumeUL
        concentration = spec.concentrationUgPerML
        dailyDoseUg = spec.dailyDoseUg
        mode = spec.mode == "flex" ? .flex : .simpleContinuous
        lastFillClinic = clock
        lastFillVolumeUL = spec.lastFillVolumeUL
    }

    /// Programmed flow, µL/day: daily dose × 1000 / concentration; none while drug is not flowing.
    var flowULPerDay: Double {
        guard concentration > 0, pumpState == .infusing else { return 0 }
        return dailyDoseUg * 1000 / Double(concentration)
    }

    /// Flex steps averaging the daily dose: night 70 %, morning 130 %, afternoon 110 %, evening 90 %.
    var flexSteps: [DoseProgram.FlexStep] {
        guard mode == .flex else { return [] }
        return [(0, 0.7), (360, 1.3), (720, 1.1), (1080, 0.9)].map {
            DoseProgram.FlexStep(startMinute: UInt16($0.0), rateUgPerDayX10: UInt32((dailyDoseUg * $0.1 * 10).rounded()))
        }
    }

    func battery(at clinic: Double) -> BatteryState {
        guard let eri = spec.eriAtDay, clinic >= eri * 86_400 else { return .ok }
        return .eri
    }

    /// Drains both volumes up to clinic time `t`; raises the pump's own low-reservoir and
    /// empty-reservoir alarms at the moment the volume crossed their threshold.
    mutating func advance(to t: Double) {
        guard t > clock else { return }
        let flow = flowULPerDay
        let days = (t - clock) / 86_400
        let threshold = Double(spec.lowReservoirThresholdUL)
        let before = calculatedUL
        let actualBefore = actualUL
        calculatedUL = max(0, calculatedUL - flow * days)
        actualUL = max(0, actualUL - flow * (1 + spec.deliveryBias) * days)
        if flow > 0, before > threshold, calculatedUL <= threshold, active[AlarmCode.lowReservoir.rawValue] == nil {
            let onset = clock + (before - threshold) / flow * 86_400
            active[AlarmCode.lowReservoir.rawValue] = ActiveAlarm(
                priority: .medium, onsetClinic: onset, detail: "reservoir \(Int(threshold)) uL: at the LRA threshold", reported: false)
        }
        if flow > 0, actualBefore > 0, actualUL <= 0 {
            let onset = clock + actualBefore / (flow * (1 + spec.deliveryBias)) * 86_400
            active[AlarmCode.emptyReservoir.rawValue] = ActiveAlarm(
                priority: .high, onsetClinic: onset, detail: "reservoir empty: drug no longer flowing", reported: false)
            pumpState = .criticalAlarm
        }
        clock = t
    }

    mutating func refill(volumeUL: Double, concentration newConcentration: Int, at clinic: Double, deviceMs: Int64) {
        calculatedUL = volumeUL
        actualUL = volumeUL
        concentration = newConcentration
        lastFillClinic = clinic
        lastFillVolumeUL = volumeUL
        lastFillDeviceMs = deviceMs
    }
}

/// How far a clinic run has got, for other threads to read while it runs.
final class ClinicProgress: Sendable {
    let visitsPlayed = Atomic(0)
    let finished = Atomic(false)
}
