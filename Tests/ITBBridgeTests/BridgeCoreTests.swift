import Foundation
import ITBBridge
import ITBProtocol
import ITBSerial
import Logging
import Synchronization
import Testing

/// The core's view of devices and links: identification, clock offset, link loss, staleness and
/// clock drift, each as live state and as a bridge alarm in the journal.
@Suite("Bridge core")
struct BridgeCoreTests {
    @Test("a programmer is known by its serial once identified; until then its path is listed as unidentified")
    func identification() async throws {
        try await withBridgeCoreBench { bench async throws in
            #expect(await bench.core.deviceStates().isEmpty)
            #expect(await bench.core.unidentifiedSessions().map(\.path) == ["/dev/ttyCORE0"])

            _ = await bench.receive([.programmerInfo(BridgeCoreBench.programmer(serial: "PGM-CORE-01"))])
            let device = try #require(await bench.core.device("PGM-CORE-01"))
            #expect(device.id == "PGM-CORE-01")
            #expect(device.path == "/dev/ttyCORE0")
            #expect(device.linkStateName == "connected")
            #expect(device.programmerInfo?.value.hardwareModel == "CP-TEST")
            #expect(device.lastSeenMs == BridgeCoreBench.t0)
            #expect(await bench.core.unidentifiedSessions().isEmpty)
            #expect(await bench.core.device("PGM-OTHER") == nil)
            let deviceEvents = try await bench.journal.events(after: 0, types: ["device"])
            #expect(deviceEvents.count == 1)
            #expect(deviceEvents.first?.device == "PGM-CORE-01")
        }
    }

    @Test("two sessions with two programmers are two devices, listed by serial")
    func twoDevices() async throws {
        try await withBridgeCoreBench { bench async throws in
            let second = await bench.core.openSession(path: "/dev/ttyCORE1")
            await bench.core.linkChanged(second, to: .connected)
            _ = await bench.receive([.programmerInfo(BridgeCoreBench.programmer(serial: "PGM-B"))])
            _ = await bench.receive([.programmerInfo(BridgeCoreBench.programmer(serial: "PGM-A"))], session: second)
            #expect(await bench.core.deviceStates().map(\.id) == ["PGM-A", "PGM-B"])
            #expect(await bench.core.device("PGM-A")?.path == "/dev/ttyCORE1")
            #expect(await bench.core.device("PGM-B")?.path == "/dev/ttyCORE0")
        }
    }

    @Test("the clock offset is host time of arrival minus the device's timestamp")
    func clockOffset() async throws {
        try await withBridgeCoreBench { bench async throws in
            _ = await bench.receive([.programmerInfo(BridgeCoreBench.programmer(serial: "PGM-CORE-01"))])
            // The device clock is 90 s behind the host.
            _ = await bench.receive([bench.status(deviceTimeMs: BridgeCoreBench.t0 - 90_000)])
            let device = try #require(await bench.core.device("PGM-CORE-01"))
            #expect(device.status?.deviceTimeMs == BridgeCoreBench.t0 - 90_000)
            #expect(device.status?.receivedAtMs == BridgeCoreBench.t0)
            #expect(device.clockOffsetMs == 90_000)
        }
    }

    @Test("a device clock off by more than the bound raises clock_drift; a clock back within it ends it")
    func clockDrift() async throws {
        try await withBridgeCoreBench { bench async throws in
            _ = await bench.receive([.programmerInfo(BridgeCoreBench.programmer(serial: "PGM-CORE-01"))])
            // 301 s behind: beyond the default 300 s.
            _ = await bench.receive([bench.status(deviceTimeMs: BridgeCoreBench.t0 - 301_000)])
            #expect(try await bench.bridgeAlarms("clock_drift").map(\.state) == [.active])
            bench.clock.advance(by: 1_000)
            _ = await bench.receive([bench.status(deviceTimeMs: bench.clock.now - 2_000)])
            #expect(try await bench.bridgeAlarms("clock_drift").map(\.state) == [.ended])
        }
    }

    @Test("a device clock off by exactly the bound raises nothing")
    func clockDriftAtBound() async throws {
        try await withBridgeCoreBench { bench async throws in
            _ = await bench.receive([.programmerInfo(BridgeCoreBench.programmer(serial: "PGM-CORE-01"))])
            _ = await bench.receive([bench.status(deviceTimeMs: BridgeCoreBench.t0 - 300_000)])
            #expect(try await bench.bridgeAlarms("clock_drift").isEmpty)
        }
    }

    @Test("losing the link of an identified programmer raises link_lost; the programmer identifying again ends it")
    func linkLost() async throws {
        try await withBridgeCoreBench { bench async throws in
            _ = await bench.receive([.programmerInfo(BridgeCoreBench.programmer(serial: "PGM-CORE-01"))])
            bench.clock.advance(by: 10_000)
            await bench.core.linkChanged(bench.session, to: .disconnected(.hangUp))
            let lost = try await bench.bridgeAlarms("link_lost")
            #expect(lost.map(\.state) == [.active])
            #expect(lost.first?.priority == "medium")
            #expect(lost.first?.raisedAtMs == BridgeCoreBench.t0 + 10_000)
            let device = try #require(await bench.core.device("PGM-CORE-01"))
            #expect(device.linkStateName == "disconnected")
            #expect(device.linkSinceMs == BridgeCoreBench.t0 + 10_000)

            bench.clock.advance(by: 5_000)
            await bench.core.linkChanged(bench.session, to: .connected)
            #expect(try await bench.bridgeAlarms("link_lost").map(\.state) == [.active])
            _ = await bench.receive([.programmerInfo(BridgeCoreBench.programmer(serial: "PGM-CORE-01"))])
            let ended = try await bench.bridgeAlarms("link_lost")
            #expect(ended.map(\.state) == [.ended])
            #expect(ended.first?.clearedAtMs == BridgeCoreBench.t0 + 15_000)
            #expect(await bench.core.device("PGM-CORE-01")?.linkStateName == "connected")
        }
    }

    @Test("tick marks a silent connected programmer stale and raises data_stale once; its next message ends it")
    func dataStale() async throws {
        try await withBridgeCoreBench { bench async throws in
            _ = await bench.receive([.programmerInfo(BridgeCoreBench.programmer(serial: "PGM-CORE-01"))])
            bench.clock.advance(by: 5_000)
            await bench.core.tick()
            // 5 s is not more than the 5 s timeout.
            #expect(try await bench.bridgeAlarms("data_stale").isEmpty)
            #expect(await bench.core.device("PGM-CORE-01")?.stale == false)

            bench.clock.advance(by: 1_000)
            await bench.core.tick()
            #expect(try await bench.bridgeAlarms("data_stale").map(\.state) == [.active])
            #expect(await bench.core.device("PGM-CORE-01")?.linkStateName == "stale")
            bench.clock.advance(by: 1_000)
            await bench.core.tick()
            #expect(try await bench.bridgeAlarms("data_stale").count == 1)

            _ = await bench.receive([bench.status(deviceTimeMs: bench.clock.now)])
            #expect(try await bench.bridgeAlarms("data_stale").map(\.state) == [.ended])
            #expect(await bench.core.device("PGM-CORE-01")?.stale == false)
            #expect(await bench.core.device("PGM-CORE-01")?.linkStateName == "connected")
        }
    }

    @Test("a new boot id from the same programmer is counted as a restart")
    func programmerRestart() async throws {
        try await withBridgeCoreBench { bench async throws in
            _ = await bench.receive([.programmerInfo(BridgeCoreBench.programmer(serial: "PGM-CORE-01", bootID: 1))])
            _ = await bench.receive([.programmerInfo(BridgeCoreBench.programmer(serial: "PGM-CORE-01", bootID: 1))])
            #expect(await bench.core.device("PGM-CORE-01")?.bootChanges == 0)
            _ = await bench.receive([.programmerInfo(BridgeCoreBench.programmer(serial: "PGM-CORE-01", bootID: 2))])
            #expect(await bench.core.device("PGM-CORE-01")?.bootChanges == 1)
            #expect(await bench.core.device("PGM-CORE-01")?.programmerInfo?.value.bootID == 2)
        }
    }
}

// MARK: - bench

/// A host clock the test moves by hand.
private final class BridgeCoreClock: Sendable {
    private let ms: Mutex<Int64>
    init(_ start: Int64) { ms = Mutex(start) }
    var now: Int64 { ms.withLock { $0 } }
    func advance(by delta: Int64) { ms.withLock { $0 += delta } }
}

/// A core over a real journal, with one connected session on `/dev/ttyCORE0`.
private final class BridgeCoreBench {
    static let t0: Int64 = 1_750_000_000_000

    static func programmer(serial: String, bootID: UInt64 = 0xC0DE_0000_0000_0001) -> ProgrammerInfo {
        ProgrammerInfo(bootID: bootID, firmwareVersion: 0x01_04_00, protocolMinor: 0, programmerSerial: serial, hardwareModel: "CP-TEST")
    }

    let clock = BridgeCoreClock(t0)
    let journal: Journal
    let core: BridgeCore
    let session: SessionID
    private var sequence: UInt32 = 0

    init(directory: String) async throws {
        journal = try Journal(directory: directory)
        let clock = self.clock
        core = await BridgeCore(configuration: BridgeConfiguration(), journal: journal, metrics: BridgeMetrics(),
                                logger: Logger(label: "itb-test.core") { _ in SwiftLogNoOpLogHandler() },
                                now: { clock.now })
        session = await core.openSession(path: "/dev/ttyCORE0")
        await core.linkChanged(session, to: .connected)
    }

    func receive(_ messages: [Message], session: SessionID? = nil) async -> [AckInstruction] {
        let batch = messages.map { message -> ReceivedMessage in
            sequence &+= 1
            return ReceivedMessage(message: message, sequence: sequence, retransmission: false, receivedAtMs: clock.now)
        }
        return await core.receive(session ?? self.session, batch, counters: DecoderCounters())
    }

    func status(deviceTimeMs: Int64) -> Message {
        .pumpStatus(PumpStatus(deviceTimeMs: deviceTimeMs, dailyDoseUgX10: 4000, concentrationUgPerML: 2000, activeAlarmMask: 0,
                               pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: 90))
    }

    func bridgeAlarms(_ code: String) async throws -> [AlarmRecord] {
        try await journal.alarms(active: nil, device: nil, sinceEventID: nil, limit: 1000)
            .filter { $0.source == "bridge" && $0.code == code }
    }
}

/// Runs `body` with a bench in a fresh temporary directory, removed afterwards.
private func withBridgeCoreBench(_ body: (BridgeCoreBench) async throws -> Void) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("itb-core-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let bench = try await BridgeCoreBench(directory: directory)
    try await body(bench)
}
