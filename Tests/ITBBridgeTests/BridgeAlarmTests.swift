import Foundation
import ITBBridge
import ITBProtocol
import Testing

/// The bridge's own alarms, raised and ended from the pump's figures: `refill_discrepancy` (the
/// over-infusion check at refill), `refill_due_soon` and `stability_limit_near`.
@Suite("Bridge alarms")
struct BridgeAlarmTests {
    private static let dayMs: Int64 = 86_400_000

    @Test("a refill whose discrepancy exceeds the bound raises refill_discrepancy from the bridge; a refill within it ends it")
    func refillDiscrepancyRaisedAndEnded() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            // (0 − 2 000) / (20 000 − 2 000) = −11.1 %: beyond the 10 % bound, over-infusion.
            _ = await bench.receive([bench.refill(at: CoreBench.t0 - 3_600_000, filled: 20_000, expected: 2_000, measured: 0)])
            let raised = try await bench.bridgeAlarms("refill_discrepancy", device: CoreBench.serial)
            #expect(raised.count == 1)
            let alarm = try #require(raised.first)
            #expect(alarm.source == "bridge")
            #expect(alarm.state == .active)
            #expect(alarm.priority == "medium")
            #expect(alarm.codeRaw == nil)
            #expect(alarm.deviceAlarmID == nil)
            #expect(alarm.device == CoreBench.serial)
            #expect(alarm.detail.contains("over-infusion"))
            #expect(alarm.raisedAtMs == CoreBench.t0)

            // The same refill reported again raises nothing new.
            _ = await bench.receive([bench.refill(at: CoreBench.t0 - 3_600_000, filled: 20_000, expected: 2_000, measured: 0)])
            #expect(try await bench.bridgeAlarms("refill_discrepancy", device: CoreBench.serial).count == 1)

            // A later refill: (1 900 − 2 000) / 18 000 = −0.56 %, within the bound.
            bench.clock.advance(by: 86_400_000)
            _ = await bench.receive([bench.refill(at: CoreBench.t0 + 86_000_000, filled: 20_000, expected: 2_000, measured: 1_900)])
            let ended = try await bench.bridgeAlarms("refill_discrepancy", device: CoreBench.serial)
            #expect(ended.count == 1)
            #expect(ended.first?.id == alarm.id)
            #expect(ended.first?.state == .ended)
            #expect(ended.first?.clearedAtMs == CoreBench.t0 + 86_400_000)
        }
    }

    @Test("more residual than expected beyond the bound is flagged as under-delivery")
    func refillDiscrepancyUnderDelivery() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            // (4 700 − 2 000) / 18 000 = +15 %
            _ = await bench.receive([bench.refill(at: CoreBench.t0, filled: 20_000, expected: 2_000, measured: 4_700)])
            let alarm = try #require(try await bench.bridgeAlarms("refill_discrepancy", device: CoreBench.serial).first)
            #expect(alarm.state == .active)
            #expect(alarm.detail.contains("under-delivery"))
        }
    }

    @Test("a discrepancy exactly at the bound, or with a zero denominator, raises nothing")
    func refillDiscrepancyAtBound() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            // (2 000 − 0) / (20 000 − 0) = 10 %, not beyond 10 %.
            _ = await bench.receive([bench.refill(at: CoreBench.t0, filled: 20_000, expected: 0, measured: 2_000)])
            #expect(try await bench.bridgeAlarms("refill_discrepancy", device: CoreBench.serial).isEmpty)
            _ = await bench.receive([bench.refill(at: CoreBench.t0 + 1, filled: 2_000, expected: 2_000, measured: 0)])
            #expect(try await bench.bridgeAlarms("refill_discrepancy", device: CoreBench.serial).isEmpty)
        }
    }

    @Test("a configured bound is honoured")
    func refillDiscrepancyConfiguredBound() async throws {
        try await withCoreBench(configure: { $0.refillDiscrepancyBound = 0.05 }) { bench async throws in
            await bench.identify()
            // −1/18 = −5.6 %: beyond a 5 % bound.
            _ = await bench.receive([bench.refill(at: CoreBench.t0, filled: 20_000, expected: 2_000, measured: 1_000)])
            #expect(try await bench.bridgeAlarms("refill_discrepancy", device: CoreBench.serial).first?.state == .active)
        }
    }

    @Test("a reservoir and status whose refill falls due within 7 days raise refill_due_soon; a refill ends it")
    func refillDueSoonRaisedAndEnded() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            // 500 µg/day at 500 µg/mL = 1 000 µL/day; 12 000 µL − 2 000 µL threshold = 10 days to the LRA,
            // refill due 10 − 4 = 6 days from now (fill 30 days ago: stability limit 150 days away).
            _ = await bench.receive([
                bench.status(doseUgPerDay: 500, concentration: 500),
                bench.reservoir(volumeUL: 12_000, capacity: 20_000, lastRefill: CoreBench.t0 - 30 * Self.dayMs),
            ])
            let raised = try await bench.bridgeAlarms("refill_due_soon", device: CoreBench.serial)
            #expect(raised.count == 1)
            let alarm = try #require(raised.first)
            #expect(alarm.source == "bridge")
            #expect(alarm.state == .active)
            #expect(alarm.priority == "low")
            #expect(alarm.detail.contains("6.0 days"))
            #expect(alarm.detail.contains("low_reservoir_alarm"))
            #expect(try await bench.bridgeAlarms("stability_limit_near", device: CoreBench.serial).isEmpty)

            // The same figures a second later raise nothing more.
            bench.clock.advance(by: 1_000)
            _ = await bench.receive([bench.reservoir(volumeUL: 12_000, capacity: 20_000, lastRefill: CoreBench.t0 - 30 * Self.dayMs)])
            #expect(try await bench.bridgeAlarms("refill_due_soon", device: CoreBench.serial).count == 1)

            // Refilled: 20 000 µL is 18 days to the LRA, due in 14 days.
            _ = await bench.receive([bench.reservoir(volumeUL: 20_000, capacity: 20_000, lastRefill: bench.clock.now)])
            let ended = try await bench.bridgeAlarms("refill_due_soon", device: CoreBench.serial)
            #expect(ended.map(\.state) == [.ended])
        }
    }

    @Test("a well-stocked pump raises no refill alarm")
    func wellStockedPump() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            // The domain notes' example: due 176 days away.
            _ = await bench.receive([
                bench.status(doseUgPerDay: 400, concentration: 2000),
                bench.reservoir(volumeUL: 40_000, capacity: 40_000, lastRefill: CoreBench.t0),
            ])
            #expect(try await bench.bridgeAlarms(device: CoreBench.serial).isEmpty)
        }
    }

    @Test("a fill near its 180-day stability limit raises stability_limit_near and refill_due_soon for drug stability")
    func stabilityLimitNear() async throws {
        try await withCoreBench { bench async throws in
            await bench.identify()
            // Filled 170 days ago: stability limit in 10 days (≤ 14), refill due in 6 (≤ 7). The LRA is far:
            // 40 000 µL at 100 µL/day.
            _ = await bench.receive([
                bench.status(doseUgPerDay: 200, concentration: 2000),
                bench.reservoir(volumeUL: 40_000, capacity: 40_000, lastRefill: CoreBench.t0 - 170 * Self.dayMs),
            ])
            let near = try #require(try await bench.bridgeAlarms("stability_limit_near", device: CoreBench.serial).first)
            #expect(near.state == .active)
            #expect(near.detail.contains("10.0 days"))
            let due = try #require(try await bench.bridgeAlarms("refill_due_soon", device: CoreBench.serial).first)
            #expect(due.detail.contains("drug_stability"))
        }
    }

    @Test("a core restarted on the same journal knows the open bridge alarm and ends it")
    func openBridgeAlarmSurvivesRestart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("itb-bridge-alarm-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let bench = try await CoreBench(directory: directory)
            await bench.identify()
            _ = await bench.receive([bench.refill(at: CoreBench.t0, filled: 20_000, expected: 2_000, measured: 0)])
            #expect(try await bench.bridgeAlarms("refill_discrepancy", device: CoreBench.serial).map(\.state) == [.active])
        }
        let restarted = try await CoreBench(directory: directory)
        await restarted.identify()
        _ = await restarted.receive([restarted.refill(at: CoreBench.t0 + 1_000, filled: 20_000, expected: 2_000, measured: 2_000)])
        #expect(try await restarted.bridgeAlarms("refill_discrepancy", device: CoreBench.serial).map(\.state) == [.ended])
    }
}
