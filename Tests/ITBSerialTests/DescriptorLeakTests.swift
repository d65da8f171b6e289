import Foundation
import ITBSerial
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Descriptor-leak checks count `/proc/self/fd`, which every test running in parallel also
/// changes; they run only in the serial pass of `scripts/test.sh` (`ITB_LEAK_TESTS=1`).
@Suite(
    "Descriptor leaks (serial pass)",
    .serialized,
    .enabled(if: ProcessInfo.processInfo.environment["ITB_LEAK_TESTS"] == "1", "counts /proc/self/fd: run serially by scripts/test.sh")
)
struct DescriptorLeakTests {
    @Test("200 open/close and 200 unplug cycles leak no descriptor")
    func noDescriptorLeak() throws {
        let before = openDescriptorCount()
        for _ in 0..<200 {
            let pty = try PseudoTerminal()
            let port = try SerialPort.open(path: pty.slavePath)
            port.close()
            pty.close()
        }
        for _ in 0..<200 {
            let pty = try PseudoTerminal()
            let port = try SerialPort.open(path: pty.slavePath)
            pty.close()
            var buffer = [UInt8](repeating: 0, count: 16)
            #expect(throws: SerialPortError.self) {
                _ = try buffer.withUnsafeMutableBytes { try port.read(into: $0, timeout: .seconds(1)) }
            }
        }
        #expect(openDescriptorCount() == before)
    }

    @Test("starting and stopping a connected link 50 times leaks no descriptor and frees the port")
    func stopWhileConnected() async throws {
        /// One full cycle: plug in, connect, stop the link, check the port is free, unplug.
        func cycle() async throws {
            let pty = try PseudoTerminal()
            let recorder = LinkRecorder()
            let link = DeviceLink(path: pty.slavePath)
            link.start { recorder.handle($0) }
            #expect(await recorder.wait { $0.states.last == "connected" })
            link.stop()
            let reopened = try SerialPort.open(path: pty.slavePath)
            reopened.close()
            pty.close()
        }
        // Warm-up: the concurrency runtime opens its own descriptors (a timerfd) on first use.
        try await cycle()
        let before = openDescriptorCount()
        for _ in 0..<50 { try await cycle() }
        #expect(openDescriptorCount() == before)
    }
}
