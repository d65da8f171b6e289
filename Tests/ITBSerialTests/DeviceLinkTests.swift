import Foundation
import ITBSerial
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Collects a link's events for assertions.
final class LinkRecorder: Sendable {
    private let events = Mutex<[String]>([])
    private let bytes = Mutex<[UInt8]>([])
    private let beatTimes = Mutex<[ContinuousClock.Instant]>([])
    private let dataArrivals = Mutex<[ContinuousClock.Instant]>([])

    func handle(_ event: DeviceLinkEvent) {
        switch event {
        case .state(let state): events.withLock { $0.append(state.description) }
        case .data(let raw):
            dataArrivals.withLock { $0.append(.now) }
            bytes.withLock { $0 += raw }
        case .beat: beatTimes.withLock { $0.append(.now) }
        }
    }

    var states: [String] { events.withLock { $0 } }
    var beats: [ContinuousClock.Instant] { beatTimes.withLock { $0 } }
    var dataTimes: [ContinuousClock.Instant] { dataArrivals.withLock { $0 } }
    var received: [UInt8] { bytes.withLock { $0 } }

    /// Waits until `predicate` holds or `timeout` passes.
    func wait(timeout: Duration = .seconds(5), _ predicate: (LinkRecorder) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if predicate(self) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return predicate(self)
    }
}

@Suite("Device link: reconnect with backoff over real ptys")
struct DeviceLinkTests {
    /// A fresh directory for a test's followed path (a symbolic link to the current pty).
    static func scratchDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("itb-link-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("a link to a path that appears later connects, survives unplug, and reconnects on replug")
    func reconnectsWhenPathAppears() async throws {
        let dir = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let linkPath = dir.appendingPathComponent("programmer").path

        let recorder = LinkRecorder()
        let link = DeviceLink(path: linkPath, backoff: .init(initial: .milliseconds(20), maximum: .milliseconds(200)))
        link.start { recorder.handle($0) }
        defer { link.stop() }

        #expect(await recorder.wait { $0.states == ["searching"] })
        try await Task.sleep(for: .milliseconds(150))
        #expect(recorder.states == ["searching"], "retries while missing must not republish")

        // Plug in.
        var pty = try PseudoTerminal()
        try FileManager.default.createSymbolicLink(atPath: linkPath, withDestinationPath: pty.slavePath)
        #expect(await recorder.wait { $0.states.last == "connected" })
        try pty.write([1, 2, 3])
        #expect(await recorder.wait { $0.received == [1, 2, 3] })

        // ACK path: the host writes, the programmer side reads.
        try link.write([0xB7, 0xE1])
        var buffer = [UInt8](repeating: 0, count: 8)
        let n = try buffer.withUnsafeMutableBytes { try pty.read(into: $0, timeout: .seconds(2)) }
        #expect(Array(buffer[0..<n]) == [0xB7, 0xE1])

        // Unplug.
        pty.close()
        try FileManager.default.removeItem(atPath: linkPath)
        #expect(await recorder.wait { $0.states.last?.hasPrefix("disconnected") == true })
        #expect(throws: SerialPortError.self) { try link.write([0]) }

        // Replug as a new pty behind the same path.
        pty = try PseudoTerminal()
        try FileManager.default.createSymbolicLink(atPath: linkPath, withDestinationPath: pty.slavePath)
        #expect(await recorder.wait { $0.states.last == "connected" })
        try pty.write([9])
        #expect(await recorder.wait { $0.received == [1, 2, 3, 9] })
        link.stop()
        pty.close()
    }

    @Test("a connected link beats on its own thread when the line is silent, beats once per interval while data arrives twice as often, and stops beating when the device goes")
    func beatsWhileConnected() async throws {
        let interval = Duration.seconds(1)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("itb-beat-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // Followed through a symlink that is removed on unplug: a closed pty's number is soon
        // reused by other tests' ptys, which the link must not find again at the same path.
        let path = directory.appendingPathComponent("programmer").path
        let pty = try PseudoTerminal()
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: pty.slavePath)
        let recorder = LinkRecorder()
        let link = DeviceLink(path: path, backoff: .init(initial: .milliseconds(20), maximum: .milliseconds(100)))
        link.start(beat: interval) { recorder.handle($0) }
        defer { link.stop() }
        #expect(await recorder.wait { $0.states.last == "connected" })
        // Silent line: one beat at connection, then one per interval, never sooner.
        #expect(await recorder.wait(timeout: .seconds(10)) { $0.beats.count >= 2 })
        let silent = recorder.beats
        for (earlier, later) in zip(silent, silent.dropFirst()) {
            #expect(later - earlier >= interval - .milliseconds(5), "never sooner than the interval without data")
        }
        // A programmer that sends every half interval does not make the host beat more often:
        // once per interval (PROTOCOL.md §2.5), at most 5 % early when a read comes just before
        // the beat is due. The times are the link thread's own (taken in the handler).
        let before = recorder.beats.count
        for n in 0..<10 {
            try await Task.sleep(for: interval / 2)
            try pty.write([UInt8(n)])
        }
        #expect(await recorder.wait { $0.dataTimes.count == 10 })
        let during = Array(recorder.beats.dropFirst(before - 1))
        #expect(during.count >= 4, "about one beat per interval while data flows: \(during.count) in 5 s")
        for (earlier, later) in zip(during, during.dropFirst()) {
            #expect(later - earlier >= interval * 0.95 - .milliseconds(5), "never more than 5 % early: \(later - earlier)")
        }
        // Unplugged: no more beats.
        pty.close()
        try FileManager.default.removeItem(atPath: path)
        #expect(await recorder.wait { $0.states.last?.hasPrefix("disconnected") == true })
        let afterUnplug = recorder.beats.count
        try await Task.sleep(for: interval + .milliseconds(500))
        #expect(recorder.beats.count == afterUnplug)
    }

    @Test("a port held by another opener is reported busy, then connected once released")
    func busyThenConnected() async throws {
        let pty = try PseudoTerminal()
        let holder = try SerialPort.open(path: pty.slavePath)
        let recorder = LinkRecorder()
        let link = DeviceLink(path: pty.slavePath, backoff: .init(initial: .milliseconds(20), maximum: .milliseconds(100)))
        link.start { recorder.handle($0) }
        defer { link.stop() }
        #expect(await recorder.wait { $0.states.last?.hasPrefix("busy") == true })
        holder.close()
        #expect(await recorder.wait { $0.states.last == "connected" })
    }

    @Test("the backoff after an unplug counts from the loss: a handler that takes its time over the lost state (the core fsyncs link_lost there) does not delay the reopen by that time")
    func backoffCountsFromTheLoss() async throws {
        let dir = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let linkPath = dir.appendingPathComponent("programmer").path
        var pty = try PseudoTerminal()
        try FileManager.default.createSymbolicLink(atPath: linkPath, withDestinationPath: pty.slavePath)

        // A backoff of 300 ms and a handler that spends 400 ms on the disconnected state: counted
        // from the end of the handler the reopen would come at least 700 ms after the loss.
        let backoff = Duration.milliseconds(300), handlerWork = Duration.milliseconds(400)
        let recorder = LinkRecorder()
        let connectedAt = Mutex<[ContinuousClock.Instant]>([])
        let link = DeviceLink(path: linkPath, backoff: .init(initial: backoff, maximum: backoff))
        link.start { event in
            recorder.handle(event)
            guard case .state(let state) = event else { return }
            if state.description == "connected" { connectedAt.withLock { $0.append(.now) } }
            if state.description.hasPrefix("disconnected") { Thread.sleep(forTimeInterval: handlerWork / .seconds(1)) }
        }
        defer { link.stop() }
        #expect(await recorder.wait { $0.states.last == "connected" })

        // Unplug, and at once a new pty behind the same path.
        let unplugged = ContinuousClock.now
        pty.close()
        pty = try PseudoTerminal()
        try FileManager.default.removeItem(atPath: linkPath)
        try FileManager.default.createSymbolicLink(atPath: linkPath, withDestinationPath: pty.slavePath)
        #expect(await recorder.wait { _ in connectedAt.withLock { $0.count } == 2 })
        let took = try #require(connectedAt.withLock { $0.last }) - unplugged
        #expect(took >= backoff, "reopened after \(took), before the backoff of \(backoff) was over")
        #expect(took < backoff + handlerWork - .milliseconds(50), "reopened after \(took): the handler's \(handlerWork) was added to the backoff of \(backoff)")
        #expect(recorder.states.contains { $0.hasPrefix("disconnected") })
        link.stop()
        pty.close()
    }
}
