// The bridge core with no daemon around it: a BridgeCore over a real journal in a scratch
// directory, a clock the test moves by hand, and one connected session fed message batches, as
// the core, pump-alarm, bridge-alarm and journal suites use it.

public import ITBBridge
public import ITBProtocol
import ITBSerial
import ITBTestSupport
import Logging
import Synchronization

/// A host clock the test moves by hand (milliseconds since the epoch).
public final class TestClock: Sendable {
    private let ms: Mutex<Int64>

    /// A clock that reads `start` until it is moved.
    public init(_ start: Int64) { ms = Mutex(start) }

    /// The time now, ms.
    public var now: Int64 { ms.withLock { $0 } }

    /// Moves the clock on by `delta` ms.
    public func advance(by delta: Int64) { ms.withLock { $0 += delta } }
}

/// A ``BridgeCore`` over a real ``Journal`` in `directory`, with an injected ``TestClock`` that
/// starts at ``t0`` and one session on `/dev/ttyCORE0` whose link is up. Messages go in as
/// batches with ``receive(_:session:retransmission:)``, each in a frame of its own, received at
/// the clock's time; the journal is read back directly.
///
/// Not `Sendable`: one test drives it from its own task.
public final class CoreBench {
    /// The clock's start: 2025-06-15T15:06:40Z.
    public static let t0: Int64 = 1_750_000_000_000
    /// The programmer ``identify()`` announces.
    public static let serial = "PGM-CORE-01"
    /// The path of the bench's session.
    public static let path = "/dev/ttyCORE0"

    /// A programmer identity: `serial` (``serial`` unless given), a hardware model of `CP-TEST`.
    public static func programmer(serial: String = CoreBench.serial, bootID: UInt64 = 0xC0DE_0000_0000_0001) -> ProgrammerInfo {
        ProgrammerInfo(bootID: bootID, firmwareVersion: 0x01_04_00, protocolMinor: 0, programmerSerial: serial, hardwareModel: "CP-TEST")
    }

    /// The journal's directory.
    public let directory: String
    /// The host clock the core reads.
    public let clock = TestClock(t0)
    /// The journal under the core.
    public let journal: Journal
    /// The core.
    public let core: BridgeCore
    /// The bench's session (``path``), connected.
    public let session: SessionID
    /// The frame sequence number of the last message handed to the core.
    public private(set) var lastSequence: UInt32 = 0

    /// Opens (or reopens) the journal in `directory` and a core over it with `configuration`,
    /// and connects the bench's session.
    public init(directory: String, configuration: BridgeConfiguration = .init()) async throws {
        self.directory = directory
        journal = try Journal(directory: directory)
        let clock = self.clock
        core = BridgeCore(configuration: configuration, journal: journal, metrics: BridgeMetrics(),
                          logger: Logger(label: "itb-test.core") { _ in SwiftLogNoOpLogHandler() },
                          now: { clock.now })
        session = core.openSession(path: Self.path)
        await core.linkChanged(session, to: .connected)
    }

    /// Hands `messages` to the core as one batch on `session` (the bench's unless given), each in
    /// its own frame, flagged as retransmissions when `retransmission`; returns the ACKs to send.
    @discardableResult
    public func receive(_ messages: [Message], session: SessionID? = nil, retransmission: Bool = false) async -> [AckInstruction] {
        let batch = messages.map { message -> ReceivedMessage in
            lastSequence &+= 1
            return ReceivedMessage(message: message, sequence: lastSequence, retransmission: retransmission, receivedAtMs: clock.now)
        }
        return await core.receive(session ?? self.session, batch, counters: DecoderCounters())
    }

    /// The programmer ``serial`` announces itself (`PROGRAMMER_INFO`) on the bench's session.
    public func identify() async {
        await receive([.programmerInfo(Self.programmer())])
    }

    // MARK: messages

    /// An `ALARM` with device alarm id `id`, its onset at `onset` (``t0`` unless given).
    public func alarm(id: UInt32, code: AlarmCode, priority: AlarmPriority = .medium, transition: AlarmTransition = .raised,
                      onset: Int64 = t0, detail: String = "") -> Message {
        .alarm(Alarm(onsetTimeMs: onset, alarmID: id, code: code, priority: priority, transition: transition, detail: detail))
    }

    /// A `PUMP_STATUS`, infusing in simple continuous mode, at device time `deviceTimeMs` (the
    /// clock's time unless given).
    public func status(deviceTimeMs: Int64? = nil, doseUgPerDay: UInt32 = 400, concentration: UInt32 = 2000) -> Message {
        .pumpStatus(PumpStatus(deviceTimeMs: deviceTimeMs ?? clock.now, dailyDoseUgX10: doseUgPerDay * 10, concentrationUgPerML: concentration,
                               activeAlarmMask: 0, pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: 90))
    }

    /// A `REFILL` at `time` of `filled` µL at 2 000 µg/mL, with the residual expected and measured.
    public func refill(at time: Int64, filled: UInt32 = 20_000, expected: UInt32 = 2_000, measured: UInt32) -> Message {
        .refill(Refill(refillTimeMs: time, concentrationUgPerML: 2000, volumeFilledUL: filled, expectedResidualUL: expected,
                       measuredResidualUL: measured, drugLot: "LOT-A1"))
    }

    /// A `RESERVOIR` at the clock's time, calculated, with a 2 000 µL low-reservoir threshold.
    public func reservoir(volumeUL: UInt32, capacity: UInt32, lastRefill: Int64) -> Message {
        .reservoir(Reservoir(deviceTimeMs: clock.now, lastRefillTimeMs: lastRefill, volumeULX10: volumeUL * 10, capacityUL: capacity,
                             lowReservoirThresholdUL: 2000, deliveredSinceRefillULX10: 0, volumeSource: .calculated))
    }

    // MARK: the journal

    /// Every alarm in the journal (at most 1 000), pump's and bridge's.
    public func alarms() async throws -> [AlarmRecord] {
        try await journal.alarms(active: nil, device: nil, sinceEventID: nil, limit: 1000)
    }

    /// The bridge's own alarms in the journal with `code` (any code when nil), of `device` (any
    /// device when nil).
    public func bridgeAlarms(_ code: String? = nil, device: String? = nil) async throws -> [AlarmRecord] {
        try await journal.alarms(active: nil, device: device, sinceEventID: nil, limit: 1000)
            .filter { $0.source == "bridge" && (code == nil || $0.code == code) }
    }
}

/// Runs `body` with a ``CoreBench`` (its configuration changed by `configure`) in a fresh scratch
/// directory, removed afterwards.
public func withCoreBench(configure: (inout BridgeConfiguration) -> Void = { _ in },
                          _ body: (CoreBench) async throws -> Void) async throws {
    let directory = try ScratchDirectory("core")
    defer { directory.remove() }
    var configuration = BridgeConfiguration()
    configure(&configuration)
    let bench = try await CoreBench(directory: directory.path + "/state", configuration: configuration)
    try await body(bench)
}
