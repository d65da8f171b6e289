import Foundation
import ITBBridge
import ITBProtocol
import Logging
import Synchronization
import Testing

/// The bridge's own alarms, raised and ended from the pump's figures: `refill_discrepancy` (the
/// over-infusion check at refill), `refill_due_soon` and `stability_limit_near`.
@Suite("Bridge alarms")
struct BridgeAlarmTests {
    private static let dayMs: Int64 = 86_400_000

    @Test("a refill whose discrepancy exceeds the bound raises refill_discrepancy from the bridge; a refill within it ends it")
    func refillDiscrepancyRaisedAndEnded() async throws {
        try await withBridgeAlarmBench { bench async throws in
            await bench.identify()
            // (0 − 2 000) / (20 000 − 2 000) = −11.1 %: beyond the 10 % bound, over-infusion.
            _ = await bench.receive([bench.refill(at: BridgeAlarmBench.t0 - 3_600_000, filled: 20_000, expected: 2_000, measured: 0)])
            let raised = try await bench.bridgeAlarms(code: "refill_discrepancy")
            #expect(raised.count == 1)
            let alarm = try #require(raised.first)
            #expect(alarm.source == "bridge")
            #expect(alarm.state == .active)
            #expect(alarm.priority == "medium")
            #expect(alarm.codeRaw == nil)
            #expect(alarm.deviceAlarmID == nil)
            #expect(alarm.device == BridgeAlarmBench.serial)
            #expect(alarm.detail.contains("over-infusion"))
            #expect(alarm.raisedAtMs == BridgeAlarmBench.t0)

            // The same refill reported again raises nothing new.
            _ = await bench.receive([bench.refill(at: BridgeAlarmBench.t0 - 3_600_000, filled: 20_000, expected: 2_000, measured: 0)])
            #expect(try await bench.bridgeAlarms(code: "refill_discrepancy").count == 1)

            // A later refill: (1 900 − 2 000) / 18 000 = −0.56 %, within the bound.
            bench.clock.advance(by: 86_400_000)
            _ = await bench.receive([bench.refill(at: BridgeAlarmBench.t0 + 86_000_000, filled: 20_000, expected: 2_000, measured: 1_900)])
            let ended = try await bench.bridgeAlarms(code: "refill_discrepancy")
            #expect(ended.count == 1)
            #expect(ended.first?.id == alarm.id)
            #expect(ended.first?.state == .ended)
            #expect(ended.first?.clearedAtMs == BridgeAlarmBench.t0 + 86_400_000)
        }
    }

    @Test("more residual than expected beyond the bound is flagged as under-delivery")
    func refillDiscrepancyUnderDelivery() async throws {
        try await withBridgeAlarmBench { bench async throws in
            await bench.identify()
            // (4 700 − 2 000) / 18 000 = +15 %
            _ = await bench.receive([bench.refill(at: BridgeAlarmBench.t0, filled: 20_000, expected: 2_000, measured: 4_700)])
            let alarm = try #require(try await bench.bridgeAlarms(code: "refill_discrepancy").first)
            #expect(alarm.state == .active)
            #expect(alarm.detail.contains("under-delivery"))
        }
    }

    @Test("a discrepancy exactly at the bound, or with a zero denominator, raises nothing")
    func refillDiscrepancyAtBound() async throws {
        try await withBridgeAlarmBench { bench async throws in
            await bench.identify()
            // (2 000 − 0) / (20 000 − 0) = 10 %, not beyond 10 %.
            _ = await bench.receive([bench.refill(at: BridgeAlarmBench.t0, filled: 20_000, expected: 0, measured: 2_000)])
            #expect(try await bench.bridgeAlarms(code: "refill_discrepancy").isEmpty)
            _ = await bench.receive([bench.refill(at: BridgeAlarmBench.t0 + 1, filled: 2_000, expected: 2_000, measured: 0)])
            #expect(try await bench.bridgeAlarms(code: "refill_discrepancy").isEmpty)
        }
    }

    @Test("a configured bound is honoured")
    func refillDiscrepancyConfiguredBound() async throws {
        try await withBridgeAlarmBench(configure: { $0.refillDiscrepancyBound = 0.05 }) { bench async throws in
            await bench.identify()
            // −1/18 = −5.6 %: beyond a 5 % bound.
            _ = await bench.receive([bench.refill(at: BridgeAlarmBench.t0, filled: 20_000, expected: 2_000, measured: 1_000)])
            #expect(try await bench.bridgeAlarms(code: "refill_discrepancy").first?.state == .active)
        }
    }

    @Test("a reservoir and status whose refill falls due within 7 days raise refill_due_soon; a refill ends it")
    func refillDueSoonRaisedAndEnded() async throws {
        try await withBridgeAlarmBench { bench async throws in
            await bench.identify()
            // 500 µg/day at 500 µg/mL = 1 000 µL/day; 12 000 µL − 2 000 µL threshold = 10 days to the LRA,
            // refill due 10 − 4 = 6 days from now (fill 30 days ago: stability limit 150 days away).
            _ = await bench.receive([
                bench.status(doseUgPerDay: 500, concentration: 500),
                bench.reservoir(volumeUL: 12_000, capacity: 20_000, lastRefill: BridgeAlarmBench.t0 - 30 * Self.dayMs),
            ])
            let raised = try await bench.bridgeAlarms(code: "refill_due_soon")
            #expect(raised.count == 1)
            let alarm = try #require(raised.first)
            #expect(alarm.source == "bridge")
            #expect(alarm.state == .active)
            #expect(alarm.priority == "low")
            #expect(alarm.detail.contains("6.0 days"))
            #expect(alarm.detail.contains("low_reservoir_alarm"))
            #expect(try await bench.bridgeAlarms(code: "stability_limit_near").isEmpty)

            // The same figures a second later raise nothing more.
            bench.clock.advance(by: 1_000)
            _ = await bench.receive([bench.reservoir(volumeUL: 12_000, capacity: 20_000, lastRefill: BridgeAlarmBench.t0 - 30 * Self.dayMs)])
            #expect(try await bench.bridgeAlarms(code: "refill_due_soon").count == 1)

            // Refilled: 20 000 µL is 18 days to the LRA, due in 14 days.
            _ = await bench.receive([bench.reservoir(volumeUL: 20_000, capacity: 20_000, lastRefill: bench.clock.now)])
            let ended = try await bench.bridgeAlarms(code: "refill_due_soon")
            #expect(ended.map(\.state) == [.ended])
        }
    }

    @Test("a well-stocked pump raises no refill alarm")
    func wellStockedPump() async throws {
        try await withBridgeAlarmBench { bench async throws in
            await bench.identify()
            // The domain notes' example: due 176 days away.
            _ = await bench.receive([
                bench.status(doseUgPerDay: 400, concentration: 2000),
                bench.reservoir(volumeUL: 40_000, capacity: 40_000, lastRefill: BridgeAlarmBench.t0),
            ])
            #expect(try await bench.allBridgeAlarms().isEmpty)
        }
    }

    @Test("a fill near its 180-day stability limit raises stability_limit_near and refill_due_soon for drug stability")
    func stabilityLimitNear() async throws {
        try await withBridgeAlarmBench { bench async throws in
            await bench.identify()
            // Filled 170 days ago: stability limit in 10 days (≤ 14), refill due in 6 (≤ 7). The LRA is far:
            // 40 000 µL at 100 µL/day.
            _ = await bench.receive([
                bench.status(doseUgPerDay: 200, concentration: 2000),
                bench.reservoir(volumeUL: 40_000, capacity: 40_000, lastRefill: BridgeAlarmBench.t0 - 170 * Self.dayMs),
            ])
            let near = try #require(try await bench.bridgeAlarms(code: "stability_limit_near").first)
            #expect(near.state == .active)
            #expect(near.detail.contains("10.0 days"))
            let due = try #require(try await bench.bridgeAlarms(code: "refill_due_soon").first)
            #expect(due.detail.contains("drug_stability"))
        }
    }

    @Test("a core restarted on the same journal knows the open bridge alarm and ends it")
    func openBridgeAlarmSurvivesRestart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("itb-bridge-alarm-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let bench = try await BridgeAlarmBench(directory: directory)
            await bench.identify()
            _ = await bench.receive([bench.refill(at: BridgeAlarmBench.t0, filled: 20_000, expected: 2_000, measured: 0)])
            #expect(try await bench.bridgeAlarms(code: "refill_discrepancy").map(\.state) == [.active])
        }
        let restarted = try await BridgeAlarmBench(directory: directory)
        await restarted.identify()
        _ = await restarted.receive([restarted.refill(at: BridgeAlarmBench.t0 + 1_000, filled: 20_000, expected: 2_000, measured: 2_000)])
        #expect(try await restarted.bridgeAlarms(code: "refill_discrepancy").map(\.state) == [.ended])
    }
}

// MARK: - bench

/// A host clock the test moves by hand.
private final class BridgeAlarmClock: Sendable {
    private let ms: Mutex<Int64>
    init(_ start: Int64) { ms = Mutex(start) }
    var now: Int64 { ms.withLock { $0 } }
    func advance(by delta: Int64) { ms.withLock { $0 += delta } }
}

/// A core over a real journal, one identified programmer, device clock = host clock.
private final class BridgeAlarmBench {
    static let t0: Int64 = 1_750_000_000_000
    static let serial = "PGM-BRIDGE-01"
    static let programmer = ProgrammerInfo(bootID: 0x0BAD_CAFE_0000_0001, firmwareVersion: 0x01_00_00, protocolMinor: 0,
                                           programmerSerial: serial, hardwareModel: "CP-TEST")

    let clock = BridgeAlarmClock(t0)
    let journal: Journal
    let core: BridgeCore
    let session: SessionID
    private var sequence: UInt32 = 0

    init(directory: String, configuration: BridgeConfiguration = .init()) async throws {
        journal = try Journal(directory: directory)
        let clock = self.clock
        core = await BridgeCore(configuration: configuration, journal: journal, metrics: BridgeMetrics(),
                                logger: Logger(label: "itb-test.bridge-alarm") { _ in SwiftLogNoOpLogHandler() },
                                now: { clock.now })
        session = await core.openSession(path: "/dev/ttyTEST1")
        await core.linkChanged(session, to: .connected)
    }

    func receive(_ messages: [Message]) async -> [AckInstruction] {
        let batch = messages.map { message -> ReceivedMessage in
            sequence &+= 1
            return ReceivedMessage(message: message, sequence: sequence, retransmission: false, receivedAtMs: clock.now)
        }
        return await core.receive(session, batch, counters: DecoderCounters())
    }

    func identify() async {
        _ = await receive([.programmerInfo(Self.programmer)])
    }

    func refill(at time: Int64, filled: UInt32, expected: UInt32, measured: UInt32) -> Message {
        .refill(Refill(refillTimeMs: time, concentrationUgPerML: 2000, volumeFilledUL: filled, expectedResidualUL: expected,
                       measuredResidualUL: measured, drugLot: "LOT-A1"))
    }

    func status(doseUgPerDay: UInt32, concentration: UInt32) -> Message {
        .pumpStatus(PumpStatus(deviceTimeMs: clock.now, dailyDoseUgX10: doseUgPerDay * 10, concentrationUgPerML: concentration,
                               activeAlarmMask: 0, pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: 90))
    }

    func reservoir(volumeUL: UInt32, capacity: UInt32, lastRefill: Int64) -> Message {
        .reservoir(Reservoir(deviceTimeMs: clock.now, lastRefillTimeMs: lastRefill, volumeULX10: volumeUL * 10, capacityUL: capacity,
                             lowReservoirThresholdUL: 2000, deliveredSinceRefillULX10: 0, volumeSource: .calculated))
    }

    func allBridgeAlarms() async throws -> [AlarmRecord] {
        try await journal.alarms(active: nil, device: Self.serial, sinceEventID: nil, limit: 1000).filter { $0.source == "bridge" }
    }

    func bridgeAlarms(code: String) async throws -> [AlarmRecord] {
        try await allBridgeAlarms().filter { $0.code == code }
    }
}

/// Runs `body` with a bench in a fresh temporary directory, removed afterwards.
private func withBridgeAlarmBench(
    configure: (inout BridgeConfiguration) -> Void = { _ in }, _ body: (BridgeAlarmBench) async throws -> Void
) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("itb-bridge-alarm-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    var configuration = BridgeConfiguration()
    configure(&configuration)
    let bench = try await BridgeAlarmBench(directory: directory, configuration: configuration)
    try await body(bench)
}
