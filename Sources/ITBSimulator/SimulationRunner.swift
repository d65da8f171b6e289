import Foundation
import Synchronization
public import ITBProtocol
public import ITBSerial

/// Plays a ``Scenario`` as a programmer on a pty, with time acceleration: pump time runs
/// `acceleration` times faster than real time (86 400: a day of pump time per second).
///
/// The device clock itself stays on real time (plus the drift a `clock_drift` event adds), as a
/// programmer's clock would; what acceleration changes is the pump's *ages*: the last refill and
/// the ERI are reported as "device now − the pump time since then", so days until the
/// low-reservoir alarm and the drug-stability limit shrink at pump speed while no clock runs fast.
///
/// The pump model keeps two volumes, as a real pump's situation has them: the one the pump
/// *calculates* from the programmed rate (and reports), and the one actually left, which drifts
/// with the pump's delivery bias and is revealed only at refill.
///
/// Sendable without exceptions: what other threads see is immutable (or itself `Sendable`), the
/// stop request is an atomic flag, and the pump model lives in a ``SimulationEngine`` that only
/// the thread in ``run()``, ``settle(timeout:)`` or ``writeTruth()`` touches, holding its lock.
public final class SimulationRunner: Sendable {
    /// Settings of a run.
    public struct Options: Sendable {
        /// Pump seconds per real second.
        public var acceleration: Double = 3600
        /// Real time between telemetry rounds (status, reservoir, heartbeat).
        public var telemetryInterval: Duration = .milliseconds(200)
        /// A symbolic link kept pointing at the current pty (re-pointed on re-plug).
        public var link: String?
        /// Seed of the noise generator.
        public var seed: UInt64 = 42
        /// Stop when the scenario's duration has passed (else keep the final state going).
        public var stopAtEnd = false
        /// Programmer identity. Minor revision 1: `PUMP_SESSION begin` follows every
        /// `PROGRAMMER_INFO` during a pump session (PROTOCOL.md §2.5).
        public var programmer = ProgrammerInfo(bootID: 0x5EED_0000_0001, firmwareVersion: 0x02_05_00, protocolMinor: 1,
                                               programmerSerial: "PGM-SIM-0001", hardwareModel: "ITB-CP 8840")
        /// Alarm retransmission backoff (first delay).
        public var retransmitDelay: Duration = .seconds(1)
        /// How often `PROGRAMMER_INFO` is re-sent (§2.5: every 5 minutes); nil: only on connect and
        /// when the host reappears.
        public var announceInterval: Duration? = .seconds(300)
        /// Clinic scenarios: how long a visit waits at its end for the host to acknowledge the
        /// session's alarms before `PUMP_SESSION end`.
        public var sessionAlarmWait: Duration = .seconds(10)
        /// Where to write the ground truth (``GroundTruth``) as JSON, if anywhere.
        public var truthPath: String?
        /// Creates default options.
        public init() {}
    }

    /// The scenario being played.
    public let scenario: Scenario
    /// The options.
    public let options: Options
    /// The programmer endpoint (its pty path is what the bridge opens).
    public let endpoint: ProgrammerEndpoint
    /// What was sent, under the scenario's one pump.
    public let truth: GroundTruth
    /// Device clock at the start (host time at the start), ms.
    public let startMs: Int64
    private let stopFlag: StopFlag
    /// The pump model and the run's state, confined to the thread that holds the lock.
    private let engine: Mutex<SimulationEngine>

    /// Prepares a run: creates the programmer's pty (and the link to it).
    public init(scenario: Scenario, options: Options = .init()) throws {
        let stopFlag = StopFlag()
        let engine = try SimulationEngine(scenario: scenario, options: options, stopFlag: stopFlag)
        self.scenario = scenario
        self.options = options
        endpoint = engine.endpoint
        truth = engine.truth
        startMs = engine.startMs
        self.stopFlag = stopFlag
        self.engine = Mutex(engine)
    }

    /// Asks a running ``run()`` to finish (from any thread).
    public func stop() { stopFlag.stop() }

    /// The pty path the bridge should open now.
    public var slavePath: String { endpoint.pty.slavePath }

    /// Runs until ``stop()`` (or the scenario's end, with `stopAtEnd`). Blocks the calling thread.
    /// Writes the ground truth to `options.truthPath` when it returns (a stop included).
    public func run() throws { try engine.withLock { engine throws in try engine.run() } }

    /// Writes the ground truth to `options.truthPath`, if set (`complete` once the scenario's
    /// duration has passed); a failure is reported on stderr and does not stop the run.
    public func writeTruth() { engine.withLock { $0.writeTruth() } }

    /// Keeps the programmer talking until every alarm it sent has been acknowledged as stored, or
    /// `timeout` passes. True when nothing is pending.
    @discardableResult
    public func settle(timeout: Duration) throws -> Bool { try engine.withLock { engine throws in try engine.settle(timeout: timeout) } }
}

/// The pump model and the run of a ``SimulationRunner``: not `Sendable`; its runner holds it under
/// a lock, so one thread at a time plays it.
final class SimulationEngine {

    /// The scenario being played.
    let scenario: Scenario
    /// The options.
    let options: SimulationRunner.Options
    /// The programmer endpoint (its pty path is what the bridge opens).
    let endpoint: ProgrammerEndpoint
    /// What was sent, under the scenario's one pump.
    let truth: GroundTruth
    private let stopFlag: StopFlag

    // The pump model.
    private var calculatedUL: Double
    private var actualUL: Double
    private var capacityUL: Int
    private var concentration: Int
    private var dailyDoseUg: Double
    private var thresholdUL: Int
    private var bias: Double
    /// Pump time of the last refill, seconds (negative: before the start).
    private var lastRefillPumpSeconds: Double
    private var battery: BatteryState
    private var eriPumpSeconds: Double?
    private var pumpState: PumpState = .infusing
    private var mode: DosingMode = .simpleContinuous
    private var flexSteps: [DoseProgram.FlexStep] = []
    private var activeAlarms: Set<UInt16> = []
    private var driftMsPerDay: Double = 0
    private var pending: [Scenario.Event]
    private var programChanged = true

    /// Pump time elapsed, seconds.
    private(set) var pumpSeconds: Double = 0
    /// Device clock at the start (host time at the start), ms.
    let startMs: Int64

    /// Prepares a run: creates the programmer's pty (and the link to it).
    init(scenario: Scenario, options: SimulationRunner.Options, stopFlag: StopFlag) throws {
        self.stopFlag = stopFlag
        self.scenario = scenario
        self.options = options
        let endpoint = try ProgrammerEndpoint(info: options.programmer, initialRetransmitDelay: options.retransmitDelay,
                                              maximumRetransmitDelay: max(options.retransmitDelay, .seconds(30)))
        endpoint.announceInterval = options.announceInterval
        self.endpoint = endpoint
        truth = GroundTruth(scenario: scenario.name, programmer: options.programmer)
        let p = scenario.pump
        calculatedUL = p.volumeUL
        actualUL = p.volumeUL
        capacityUL = p.capacityUL
        concentration = p.concentrationUgPerML
        dailyDoseUg = p.dailyDoseUg
        thresholdUL = p.lowReservoirThresholdUL
        bias = p.deliveryBias
        startMs = Int64((Date().timeIntervalSince1970 * 1000).rounded())
        lastRefillPumpSeconds = -p.lastRefillDaysAgo * 86_400
        battery = BatteryState(name: p.battery) ?? .ok
        pending = scenario.events.sorted { $0.atDay < $1.atDay }
        try updateLink()
    }

    /// Runs until ``stop()`` (or the scenario's end, with `stopAtEnd`). Blocks the calling thread.
    /// Writes the ground truth to `options.truthPath` when it returns (a stop included).
    func run() throws {
        defer { writeTruth() }
        try endpoint.announce()
        try sendSession(.begin)
        var lastReal = ContinuousClock.now
        var round = 0
        while !stopFlag.isStopped {
            let now = ContinuousClock.now
            let dt = now - lastReal
            lastReal = now
            let realSeconds = Double(dt.components.seconds) + Double(dt.components.attoseconds) / 1e18
            advance(pumpSeconds: realSeconds * options.acceleration)
            try applyDueEvents()
            if stopFlag.isStopped { break }
            try sendTelemetry(round: round)
            round += 1
            // Read ACKs and host heartbeats, retransmit alarms, until the next round.
            let next = now + options.telemetryInterval
            while ContinuousClock.now < next && !stopFlag.isStopped {
                try endpoint.service(timeout: min(next - ContinuousClock.now, .milliseconds(20)))
            }
            if options.stopAtEnd && pumpSeconds >= scenario.durationDays * 86_400 {
                try settle(timeout: .seconds(15))
                break
            }
        }
    }

    /// Writes the ground truth to `options.truthPath`, if set (`complete` once the scenario's
    /// duration has passed); a failure is reported on stderr and does not stop the run.
    func writeTruth() {
        guard let path = options.truthPath else { return }
        do {
            try truth.write(to: path, complete: pumpSeconds >= scenario.durationDays * 86_400)
        } catch {
            FileHandle.standardError.write(Data("simulate: cannot write the ground truth to \(path): \(error)\n".utf8))
        }
    }

    /// Keeps the programmer talking (heartbeats, ACK handling, retransmissions) until every alarm
    /// it sent has been acknowledged as stored, or `timeout` passes: a scenario that ends does not
    /// take undelivered alarms with it. True when nothing is pending.
    @discardableResult
    func settle(timeout: Duration) throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        var lastHeartbeat = ContinuousClock.now - .seconds(1)
        while !endpoint.pending.isEmpty && ContinuousClock.now < deadline && !stopFlag.isStopped {
            if ContinuousClock.now - lastHeartbeat >= options.telemetryInterval {
                try endpoint.heartbeat(uptimeS: UInt32(min(Double(UInt32.max), pumpSeconds / options.acceleration)))
                lastHeartbeat = ContinuousClock.now
            }
            try endpoint.service(timeout: .milliseconds(20))
        }
        return endpoint.pending.isEmpty
    }

    // MARK: the model

    /// Real time now plus accumulated drift: the programmer's clock.
    private var deviceTimeMs: Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded()) + Int64(driftMs)
    }

    /// The device time of an event `pumpSecondsAgo` of pump time ago.
    private func deviceTime(pumpSecondsAgo: Double) -> Int64 {
        deviceTimeMs - Int64(pumpSecondsAgo * 1000)
    }

    private var lastRefillMs: Int64 { deviceTime(pumpSecondsAgo: pumpSeconds - lastRefillPumpSeconds) }
    private var eriDateMs: Int64 { eriPumpSeconds.map { deviceTime(pumpSecondsAgo: pumpSeconds - $0) } ?? 0 }
    private var driftMs: Double = 0

    private var flowULPerDay: Double {
        guard concentration > 0, pumpState == .infusing else { return 0 }
        return dailyDoseUg * 1000 / Double(concentration)
    }

    private func advance(pumpSeconds delta: Double) {
        guard delta > 0 else { return }
        pumpSeconds += delta
        let days = delta / 86_400
        driftMs += driftMsPerDay * days
        let programmed = flowULPerDay * days
        calculatedUL = max(0, calculatedUL - programmed)
        actualUL = max(0, actualUL - programmed * (1 + bias))
        if pumpState == .minimumRate {
            calculatedUL = max(0, calculatedUL - 0.048 * days * 24)
            actualUL = max(0, actualUL - 0.048 * days * 24)
        }
    }

    private func applyDueEvents() throws {
        let day = pumpSeconds / 86_400
        // Conditions the pump itself alarms on.
        if calculatedUL <= Double(thresholdUL), !activeAlarms.contains(AlarmCode.lowReservoir.rawValue), calculatedUL > 0 {
            try raise(.lowReservoir, .medium, "reservoir \(Int(calculatedUL)) uL at or below \(thresholdUL) uL")
        }
        if actualUL <= 0, pumpState == .infusing {
            pumpState = .criticalAlarm
            try raise(.emptyReservoir, .high, "reservoir empty: drug no longer flowing")
        }
        while let event = pending.first, event.atDay <= day {
            pending.removeFirst()
            try apply(event)
        }
    }

    private func apply(_ event: Scenario.Event) throws {
        switch event.action {
        case "dose_change":
            dailyDoseUg = event.dailyDoseUg ?? dailyDoseUg
            mode = .simpleContinuous
            flexSteps = []
            programChanged = true
        case "flex_dosing":
            let total = event.dailyDoseUg ?? dailyDoseUg
            dailyDoseUg = total
            mode = .flex
            // Four steps averaging to the daily total: night 70 %, morning 130 %, afternoon 110 %, evening 90 %.
            flexSteps = [(0, 0.7), (360, 1.3), (720, 1.1), (1080, 0.9)].map {
                DoseProgram.FlexStep(startMinute: UInt16($0.0), rateUgPerDayX10: UInt32((total * $0.1 * 10).rounded()))
            }
            programChanged = true
        case "refill":
            let filled = event.volumeFilledUL ?? Double(capacityUL) * 0.95
            let refill = Refill(refillTimeMs: deviceTimeMs, concentrationUgPerML: UInt32(event.concentrationUgPerML ?? concentration),
                                volumeFilledUL: UInt32(filled), expectedResidualUL: UInt32(calculatedUL.rounded()),
                                measuredResidualUL: UInt32(actualUL.rounded()), drugLot: "LOT-\(Int(pumpSeconds) % 100_000)")
            concentration = Int(refill.concentrationUgPerML)
            calculatedUL = filled
            actualUL = filled
            lastRefillPumpSeconds = pumpSeconds
            try send(.refill(refill))
            if activeAlarms.contains(AlarmCode.lowReservoir.rawValue) { try clear(.lowReservoir, .medium) }
            if activeAlarms.contains(AlarmCode.emptyReservoir.rawValue) {
                try clear(.emptyReservoir, .high)
                pumpState = .infusing
            }
            try send(.reservoir(reservoir(source: .measured)))
        case "eri":
            battery = .eri
            eriPumpSeconds = pumpSeconds
            try raise(.eri, .low, "elective replacement indicator: about 90 days of battery left")
            try sendSession(.begin)
        case "eos":
            battery = .eos
            pumpState = .endOfService
            try raise(.eos, .high, "end of service: the pump has stopped")
            try sendSession(.begin)
        case "battery_reset":
            pumpState = .minimumRate
            try raise(.lowBatteryReset, .high, "low-battery reset: running at minimum rate")
        case "alarm":
            let code = event.code.flatMap { AlarmCode(name: $0) ?? UInt16($0).map(AlarmCode.init(rawValue:)) } ?? .flowFault
            let priority = event.priority.flatMap { AlarmPriority(name: $0) } ?? .high
            if code == .motorStall || code == .flowFault { pumpState = .criticalAlarm }
            try raise(code, priority, event.detail ?? "")
        case "clear_alarm":
            let code = event.code.flatMap { AlarmCode(name: $0) ?? UInt16($0).map(AlarmCode.init(rawValue:)) } ?? .flowFault
            try clear(code, event.priority.flatMap { AlarmPriority(name: $0) } ?? .high)
        case "unplug":
            let seconds = event.forSeconds ?? 2
            endpoint.pty.close()
            if let link = options.link { try? FileManager.default.removeItem(atPath: link) }
            Thread.sleep(forTimeInterval: seconds)
            try endpoint.replug()
            try updateLink()
        case "clock_drift":
            driftMsPerDay = (event.driftSecondsPerDay ?? 600) * 1000
        case "noise":
            // Bursts per telemetry round: a quarter of the frames sent in a round are telemetry.
            let noise = LineNoise(seed: options.seed, bitErrorRate: event.bitErrorRate ?? 1e-4,
                                  burstChance: (event.garbageBurstsPerDay ?? 10) * (options.telemetryInterval.seconds * options.acceleration / 86_400) / 4)
            endpoint.lineFilter = { bytes in noise.apply(&bytes) }
        case "stop":
            pumpState = .stopped
        default:
            throw SimulationError.unknownAction(event.action)
        }
    }

    private func raise(_ code: AlarmCode, _ priority: AlarmPriority, _ detail: String) throws {
        activeAlarms.insert(code.rawValue)
        let alarm = try endpoint.raise(code: code, priority: priority, transition: .raised, detail: detail, onsetTimeMs: deviceTimeMs)
        truth.record(.alarm(alarm), clinicTimeMs: scenarioTimeMs)
    }

    private func clear(_ code: AlarmCode, _ priority: AlarmPriority) throws {
        activeAlarms.remove(code.rawValue)
        let alarm = try endpoint.raise(code: code, priority: priority, transition: .cleared, onsetTimeMs: deviceTimeMs)
        truth.record(.alarm(alarm), clinicTimeMs: scenarioTimeMs)
    }

    /// Sends a pump message and records it in the ground truth.
    private func send(_ message: Message) throws {
        try endpoint.send(message)
        truth.record(message, clinicTimeMs: scenarioTimeMs, concentrationUgPerML: UInt32(concentration))
    }

    /// The scenario's own clock for the ground truth: the start plus pump time.
    private var scenarioTimeMs: Int64 { startMs + Int64((pumpSeconds * 1000).rounded()) }

    // MARK: telemetry

    private func reservoir(source: VolumeSource) -> Reservoir {
        Reservoir(deviceTimeMs: deviceTimeMs, lastRefillTimeMs: lastRefillMs, volumeULX10: UInt32((calculatedUL * 10).rounded()),
                  capacityUL: UInt32(capacityUL), lowReservoirThresholdUL: UInt32(thresholdUL),
                  deliveredSinceRefillULX10: UInt32(max(0, (Double(capacityUL) * 0.95 - calculatedUL) * 10).rounded()),
                  volumeSource: source)
    }

    /// Sends `PUMP_SESSION begin` (again, after an ERI or EOS: the same session, new battery
    /// state), which the endpoint also re-sends with every `PROGRAMMER_INFO` (revision 1).
    private func sendSession(_ event: SessionEvent) throws {
        if implantDateMs == nil { implantDateMs = deviceTime(pumpSecondsAgo: pumpSeconds + 400 * 86_400) }
        let session = PumpSession(
            implantDateMs: implantDateMs ?? 0, eriDateMs: eriDateMs, reservoirCapacityUL: UInt32(capacityUL),
            manufacturerCode: 1, event: event, batteryState: battery, pumpModel: scenario.pump.model, pumpSerial: scenario.pump.serial)
        if event == .begin {
            try endpoint.beginSession(session)
            truth.beginSession(session, deviceTimeMs: deviceTimeMs, clinicTimeMs: scenarioTimeMs)
        } else {
            try endpoint.endSession()
            truth.endSession(deviceTimeMs: deviceTimeMs, clinicTimeMs: scenarioTimeMs)
        }
    }

    private var implantDateMs: Int64?

    private func sendTelemetry(round: Int) throws {
        var mask: UInt32 = 0
        for code in activeAlarms where code >= 1 && code <= 32 { mask |= 1 << (code - 1) }
        try send(.pumpStatus(PumpStatus(
            deviceTimeMs: deviceTimeMs, dailyDoseUgX10: UInt32((dailyDoseUg * 10).rounded()), concentrationUgPerML: UInt32(concentration),
            activeAlarmMask: mask, pumpState: pumpState, dosingMode: mode, linkQualityPct: 90)))
        try send(.reservoir(reservoir(source: .calculated)))
        try endpoint.heartbeat(uptimeS: UInt32(min(Double(UInt32.max), pumpSeconds / options.acceleration)))
        if programChanged || round % 25 == 0 {
            programChanged = false
            try send(.doseProgram(DoseProgram(
                deviceTimeMs: deviceTimeMs, dailyDoseUgX10: UInt32((dailyDoseUg * 10).rounded()), patientBolusDoseUgX10: 0,
                patientBolusLockoutMin: 0, patientBolusMaxPerDay: 0, mode: mode, flexSteps: flexSteps, periodicBoluses: [])))
        }
    }

    private func updateLink() throws {
        guard let link = options.link else { return }
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: endpoint.pty.slavePath)
    }
}

/// Why a simulation cannot run.
public enum SimulationError: Error, CustomStringConvertible {
    /// A scenario file names an action this simulator does not know.
    case unknownAction(String)
    /// A clinic scenario is inconsistent (unknown pump keys, overlapping visits…): the problems.
    case invalidScenario([String])

    /// What went wrong, in a sentence.
    public var description: String {
        switch self {
        case .unknownAction(let action): "unknown scenario action `\(action)`"
        case .invalidScenario(let problems): "invalid clinic scenario: " + problems.joined(separator: "; ")
        }
    }
}

/// A stop request, visible across threads: set once by one thread, read by the thread that runs
/// (the simulator's runners, and the tests' helper threads).
public final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    /// A flag not yet set.
    public init() {}
    /// Sets the flag.
    public func stop() { value.store(true, ordering: .releasing) }
    /// Whether it was set.
    public var isStopped: Bool { value.load(ordering: .acquiring) }
}

/// A small seeded generator, so a noisy run can be repeated exactly.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Line noise on the way to the bridge: bit flips at a bit error rate and bursts of garbage.
/// `Sendable` (its generator is behind a lock): the endpoint calls it from whichever thread writes.
final class LineNoise: Sendable {
    private let rng: Mutex<SplitMix64>
    private let bitErrorRate: Double
    private let burstChance: Double

    /// `burstChance`: the probability of a garbage burst before one written chunk.
    init(seed: UInt64, bitErrorRate: Double, burstChance: Double) {
        rng = Mutex(SplitMix64(seed: seed))
        self.bitErrorRate = bitErrorRate
        self.burstChance = burstChance
    }

    /// Flips bits of `bytes` (Poisson-ish: the expected count, sampled) and may insert a burst.
    func apply(_ bytes: inout [UInt8]) {
        rng.withLock { rng in
            let expected = Double(bytes.count * 8) * bitErrorRate
            let flips = Int(expected) + (Double.random(in: 0..<1, using: &rng) < expected - Double(Int(expected)) ? 1 : 0)
            for _ in 0..<flips where !bytes.isEmpty {
                let bit = Int.random(in: 0..<(bytes.count * 8), using: &rng)
                bytes[bit / 8] ^= UInt8(1 << (bit % 8))
            }
            if Double.random(in: 0..<1, using: &rng) < burstChance {
                let garbage = (0..<Int.random(in: 8...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                bytes.insert(contentsOf: garbage, at: Int.random(in: 0...bytes.count, using: &rng))
            }
        }
    }
}
