import Foundation
import Synchronization
import ITBClient
import ITBProtocol
import ITBSimulator
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Issue 12: one ordered path from the serial port to every subscriber. With several programmers
// committing at once, a live subscriber must receive exactly the journal's ids, in order: a
// subscriber that has seen id N has seen everything below N, so `Last-Event-ID` resumes without
// a hole.

@Suite("Ordered delivery: several programmers at once, one live subscriber", .serialized)
struct OrderedDeliveryTests {
    @Test("4 programmers streaming status and alarms concurrently: the live subscriber receives every journalled id, in order, and every alarm ACKed stored is listed")
    func fourProgrammersInOrder() async throws {
        let programmers = 4
        let seconds = ProofScale.count(short: 3, full: 20)
        let directory = try ScratchDirectory("ordered")
        defer { directory.remove() }
        let socketPath = directory.path + "/api.sock"
        let client = UnixHTTPClient(socketPath: socketPath)
        let endpoints = try (0..<programmers).map { index in
            var info = testProgrammer
            info.programmerSerial = "PGM-ORDER-\(index)"
            info.bootID = 0xA000 + UInt64(index)
            return try ProgrammerEndpoint(info: info, initialRetransmitDelay: .milliseconds(100), maximumRetransmitDelay: .milliseconds(400))
        }
        defer { for endpoint in endpoints { endpoint.pty.close() } }
        var arguments = ["--no-discovery", "--socket", socketPath, "--state-dir", directory.path + "/state", "--log-level", "warning"]
        for endpoint in endpoints { arguments += ["--device", endpoint.pty.slavePath] }
        let daemon = try DaemonProcess(arguments: arguments, socketPath: socketPath, log: directory.path + "/daemon.log")
        defer { daemon.terminate() }
        try await daemon.waitReady()
        for endpoint in endpoints {
            try await DeviceFaults.identify(endpoint, client: client, daemon: daemon.process.processIdentifier)
        }

        // The subscriber starts from the newest id now and follows live from there.
        let start = try await blocking { () throws -> Int64 in
            let health = try JSONObject.parse(client.get("/v1/health").body)
            return (health["last_event_id"] as? NSNumber)?.int64Value ?? 0
        }
        let stream = try client.events("/v1/events", lastEventID: start)
        defer { stream.close() }
        let received = ReceivedIDs()
        let reader = Thread {
            while let event = try? stream.next(timeout: .seconds(30)) {
                if let id = event.id { received.append(id, type: event.event) }
            }
            received.finish()
        }
        reader.start()

        // Every programmer streams a changing status every 5 ms and raises or clears an alarm
        // every 40 ms, each on its own thread, for `seconds`.
        let drivers = endpoints.map { ProgrammerDriver($0) }
        for driver in drivers {
            driver.streamStatus(.init(interval: .milliseconds(5)) { distinctStatus($0) })
        }
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            for (index, driver) in drivers.enumerated() {
                _ = try await driver.perform { try DeviceFaults.raiseNextAlarm($0, detail: "order \(index)") }
            }
            try await Task.sleep(for: .milliseconds(40))
        }
        for driver in drivers { driver.streamStatus(nil) }
        // Let every alarm be ACKed as stored (the programmers retransmit until then).
        let settle = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < settle {
            let pending = try await withThrowingTaskGroup(of: Int.self) { group in
                for driver in drivers { group.addTask { try await driver.perform { $0.pending.count } } }
                return try await group.reduce(0, +)
            }
            if pending == 0 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        for driver in drivers {
            if let error = driver.error { Issue.record("programmer line: \(error)") }
            await driver.stop()
        }

        // The journal's ids after the start, in order, against what the live subscriber got.
        let journalled = try await blocking { () throws -> [Int64] in
            var ids: [Int64] = []
            try DeviceFaults.forEachJournaledEvent(client) { event in
                if let id = event.id, id > start { ids.append(id) }
            }
            return ids
        }
        let newest = try #require(journalled.last)
        #expect(await received.wait(until: newest, timeout: .seconds(30)), "the live subscriber reached the newest id \(newest)")
        // (Later events, such as data_stale once the programmers fell silent, are not compared.)
        let live = received.ids.prefix { $0 <= newest }
        let firstDifference = Array(zip(live, journalled)).firstIndex { $0 != $1 } ?? min(live.count, journalled.count)
        #expect(live.elementsEqual(journalled),
                "live ids equal the journal's, in order: \(live.count) live, \(journalled.count) journalled, first difference at index \(firstDifference)")
        let alarmEvents = received.types.prefix(live.count).filter { $0 == "alarm" }.count
        #expect(alarmEvents >= programmers * 2, "alarm events flowed: \(alarmEvents)")

        // Every alarm message ACKed stored is listed in /v1/alarms, with its device alarm id.
        for endpoint in endpoints {
            let acked = Set(endpoint.acks.filter { $0.status == .stored }.map { Int($0.alarmID) })
            #expect(acked.count == Int(endpoint.highestAlarmID), "every alarm of \(endpoint.info.programmerSerial) was ACKed stored")
            let listed = try await blocking { try DeviceFaults.listedAlarmMessageIDs(client, device: endpoint.info.programmerSerial) }
            #expect(Set(listed) == acked, "every ACKed alarm message of \(endpoint.info.programmerSerial) is listed")
        }
        ProofScale.figure("order.live", ["programmers": programmers, "seconds": seconds, "events": live.count, "alarm_events": alarmEvents,
                                          "missing": journalled.count - live.count])
    }
}

/// Ids read by the subscriber's thread, in arrival order.
private final class ReceivedIDs: Sendable {
    private let state = Mutex<(ids: [Int64], types: [String], done: Bool)>(([], [], false))

    func append(_ id: Int64, type: String) { state.withLock { $0.ids.append(id); $0.types.append(type) } }
    func finish() { state.withLock { $0.done = true } }
    var ids: [Int64] { state.withLock { $0.ids } }
    var types: [String] { state.withLock { $0.types } }

    /// Waits until an id ≥ `newest` was read; false on timeout or when the stream ended first.
    func wait(until newest: Int64, timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let (last, done) = state.withLock { ($0.ids.last ?? 0, $0.done) }
            if last >= newest { return true }
            if done { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}
