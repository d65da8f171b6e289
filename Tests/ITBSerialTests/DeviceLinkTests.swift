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

    func handle(_ event: DeviceLinkEvent) {
        switch event {
        case .state(let state): events.withLock { $0.append(state.description) }
        case .data(let raw): bytes.withLock { $0 += raw }
        }
    }

    var states: [String] { events.withLock { $0 } }
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
    @Test("a link to a path that appears later connects, survives unplug, and reconnects on replug")
    func reconnectsWhenPathAppears() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("itb-link-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
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
}
