import ITBBridge
import ITBProtocol
import ITBSerial
import Testing

/// The core's view of devices and links: identification, clock offset, link loss, staleness and
/// clock drift, each as live state and as a bridge alarm in the journal.
@Suite("Bridge core")
struct BridgeCoreTests {
    @Test("a programmer is known by its serial once identified; until then its path is listed as unidentified")
    func identification() async throws {
        try await withCoreBench { bench async throws in
            #expect(await bench.core.deviceStates().isEmpty)
            #expect(await bench.core.unidentifiedSessions().map(\.path) == ["/dev/ttyCORE0"])

            _ = await bench.receive([.programmerInfo(CoreBench.programmer(serial: "PGM-CORE-01"))])
            let device = try #require(await bench.core.device("PGM-CORE-01"))
            #expect(device.id == "PGM-CORE-01")
            #expect(device.path == "/dev/ttyCORE0")
            #expect(device.linkStateName == "connected")
            #expect(device.programmerInfo?.value.hardwareModel == "CP-TEST")
            #expect(device.lastSeenMs == CoreBench.t0)
            #expect(await bench.core.unidentifiedSessions().isEmpty)
            #expect(await bench.core.device("PGM-OTHER") == nil)
            let deviceEvents = try await bench.journal.events(after: 0, types: ["device"])
            #expect(deviceEvents.count == 1)
            #expect(deviceEvents.first?.device == "PGM-CORE-01")
        }
    }

    @Test("two sessions with two programmers are two devices, listed by serial")
    func twoDevices() async throws {
        try await withCoreBench { bench async throws in
            let second = await bench.core.openSession(path: "/dev/ttyCORE1")
            await bench.core.linkChanged(second, to: .connected)
            _ = await bench.receive([.programmerInfo(CoreBench.programmer(serial: "PGM-B"))])
            _ = await bench.receive([.programmerInfo(CoreBench.programmer(serial: "PGM-A"))], session: second)
            #expect(await bench.core.deviceStates().map(\.id) == ["PGM-A", "PGM-B"])
            #expect(await bench.core.device("PGM-A")?.path == "/dev/ttyCORE1")
            #expect(await bench.core.device("PGM-B")?.path == "/dev/ttyCORE0")
        }
    }

    @Test("the clock offset is host time of arrival minus the device's timestamp")
    func clockOffset() async throws {
        try await withCoreBench { bench async throws in
            _ = await bench.receive([.programmerInfo(CoreBench.programmer(serial: "PGM-CORE-01"))])
            // The device clock is 90 s behind the host.
            _ = await bench.receive([bench.status(deviceTimeMs: CoreBench.t0 - 90_000)])
            let device = try #require(await bench.core.device("PGM-CORE-01"))
            #expect(device.status?.deviceTimeMs == CoreBench.t0 - 90_000)
            #expect(device.status?.receivedAtMs == CoreBench.t0)
            #expect(device.clockOffsetMs == 90_000)
        }
    }

    @Test("a device clock off by more than the bound raises clock_drift; a clock back within it ends it")
    func clockDrift() async throws {
        try await withCoreBench { bench async throws in
            _ = await bench.receive([.programmerInfo(CoreBench.programmer(serial: "PGM-CORE-01"))])
            // 301 s behind: beyond the default 300 s.
            _ = await bench.receive([bench.status(deviceTimeMs: CoreBench.t0 - 301_000)])
            #expect(try await bench.bridgeAlarms("clock_drift").map(\.state) == [.active])
            bench.clock.advance(by: 1_000)
            _ = await bench.receive([bench.status(deviceTimeMs: bench.clock.now - 2_000)])
            #expect(try await bench.bridgeAlarms("clock_drift").map(\.state) == [.ended])
        }
    }

    @Test("a device clock off by exactly the bound raises nothing")
    func clockDriftAtBound() async throws {
        try await withCoreBench { bench async throws in
            _ = await bench.receive([.programmerInfo(CoreBench.programmer(serial: "PGM-CORE-01"))])
            _ = await bench.receive([bench.status(deviceTimeMs: CoreBench.t0 - 300_000)])
            #expect(try await bench.bridgeAlarms("clock_drift").isEmpty)
        }
    }

    @Test("losing the link of an identified programmer raises link_lost; the programmer identifying again ends it")
    func linkLost() async throws {
        try await withCoreBench { bench async throws in
            _ = await bench.receive([.programmerInfo(CoreBench.programmer(serial: "PGM-CORE-01"))])
            bench.clock.advance(by: 10_000)
            await bench.core.linkChanged(bench.session, to: .disconnected(.hangUp))
            let lost = try await bench.bridgeAlarms("link_lost")
            #expect(lost.map(\.state) == [.active])
            #expect(lost.first?.priority == "medium")
            #expect(lost.first?.raisedAtMs == CoreBench.t0 + 10_000)
            let device = try #require(await bench.core.device("PGM-CORE-01"))
            #expect(device.linkStateName == "disconnected")
            #expect(device.linkSinceMs == CoreBench.t0 + 10_000)

            bench.clock.advance(by: 5_000)
            await bench.core.linkChanged(bench.session, to: .connected)
            #expect(try await bench.bridgeAlarms("link_lost").map(\.state) == [.active])
            _ = await bench.receive([.programmerInfo(CoreBench.programmer(serial: "PGM-CORE-01"))])
            let ended = try await bench.bridgeAlarms("link_lost")
            #expect(ended.map(\.state) == [.ended])
            #expect(ended.first?.clearedAtMs == CoreBench.t0 + 15_000)
            #expect(await bench.core.device("PGM-CORE-01")?.linkStateName == "connected")
        }
    }

    @Test("tick marks a silent connected programmer stale and raises data_stale once; its next message ends it")
    func dataStale() async throws {
        try await withCoreBench { bench async throws in
            _ = await bench.receive([.programmerInfo(CoreBench.programmer(serial: "PGM-CORE-01"))])
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
        try await withCoreBench { bench async throws in
            _ = await bench.receive([.programmerInfo(CoreBench.programmer(serial: "PGM-CORE-01", bootID: 1))])
            _ = await bench.receive([.programmerInfo(CoreBench.programmer(serial: "PGM-CORE-01", bootID: 1))])
            #expect(await bench.core.device("PGM-CORE-01")?.bootChanges == 0)
            _ = await bench.receive([.programmerInfo(CoreBench.programmer(serial: "PGM-CORE-01", bootID: 2))])
            #expect(await bench.core.device("PGM-CORE-01")?.bootChanges == 1)
            #expect(await bench.core.device("PGM-CORE-01")?.programmerInfo?.value.bootID == 2)
        }
    }
}
