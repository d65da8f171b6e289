import Foundation
import ITBSerial
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Counts this process's open descriptors.
func openDescriptorCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

/// Runs a blocking call on its own thread, never on the cooperative pool (2 threads here: a
/// test blocked in poll() there could starve the test that should wake it).
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.start()
    }
}

/// Reads from a port until `count` bytes arrived or a second passed.
func readExactly(_ port: SerialPort, count: Int) throws -> [UInt8] {
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    let deadline = ContinuousClock.now + .seconds(2)
    while out.count < count, ContinuousClock.now < deadline {
        let n = try buffer.withUnsafeMutableBytes { try port.read(into: $0, timeout: .milliseconds(200)) }
        out += buffer[0..<n]
    }
    return out
}

@Suite("Serial port over a real pseudo-terminal")
struct SerialPortTests {
    @Test("opening applies raw 8N1, receiver on, modem lines ignored, hang-up on close, the baud rate")
    func termiosSettingsApplied() throws {
        let pty = try PseudoTerminal()
        let port = try SerialPort.open(path: pty.slavePath, configuration: .init(baudRate: 921_600))
        defer { port.close() }
        let t = try port.currentSettings()
        #expect(t.controlFlags & UInt32(CSIZE) == UInt32(CS8))
        #expect(t.controlFlags & UInt32(PARENB) == 0)
        #expect(t.controlFlags & UInt32(CSTOPB) == 0)
        #expect(t.controlFlags & UInt32(CRTSCTS) == 0)
        #expect(t.controlFlags & UInt32(CREAD | CLOCAL | HUPCL) == UInt32(CREAD | CLOCAL | HUPCL))
        #expect(t.localFlags & UInt32(ICANON | ECHO | ISIG) == 0)
        #expect(t.inputFlags & UInt32(IXON | ICRNL | INLCR) == 0)
        #expect(t.outputFlags & UInt32(OPOST) == 0)
        #expect(t.inputBaudRate == 921_600)
        #expect(t.outputBaudRate == 921_600)
    }

    @Test("the default line speed is 115200 and RTS/CTS is set only when configured")
    func defaultSpeedAndFlowControl() throws {
        let pty = try PseudoTerminal()
        do {
            let port = try SerialPort.open(path: pty.slavePath)
            let t = try port.currentSettings()
            #expect(t.inputBaudRate == 115_200)
            port.close()
        }
        let port = try SerialPort.open(path: pty.slavePath, configuration: .init(flowControl: .rtsCts))
        defer { port.close() }
        let t = try port.currentSettings()
        #expect(t.controlFlags & UInt32(CRTSCTS) != 0)
    }

    @Test("an unsupported baud rate is refused before the device is touched")
    func unsupportedBaudRate() throws {
        let pty = try PseudoTerminal()
        #expect(throws: SerialPortError.unsupportedBaudRate(123_456)) {
            try SerialPort.open(path: pty.slavePath, configuration: .init(baudRate: 123_456))
        }
    }

    @Test("bytes flow both ways, binary-clean (no echo, no CR/LF translation)")
    func bytesBothWays() throws {
        let pty = try PseudoTerminal()
        let port = try SerialPort.open(path: pty.slavePath)
        defer { port.close() }
        let toHost: [UInt8] = Array(0...255) + [0x0D, 0x0A, 0x03, 0x11, 0x13, 0xB7, 0xE1]
        try pty.write(toHost)
        #expect(try readExactly(port, count: toHost.count) == toHost)

        let toDevice: [UInt8] = [0x0A, 0x0D, 0x00, 0xFF, 0x11, 0x13] + Array(repeating: 0x42, count: 300)
        try port.write(toDevice)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while received.count < toDevice.count {
            let n = try buffer.withUnsafeMutableBytes { try pty.read(into: $0, timeout: .seconds(2)) }
            if n == 0 { break }
            received += buffer[0..<n]
        }
        #expect(received == toDevice)
    }

    @Test("a read with a timeout returns 0 when nothing arrives, without spinning")
    func readTimeout() throws {
        let pty = try PseudoTerminal()
        let port = try SerialPort.open(path: pty.slavePath)
        defer { port.close() }
        var buffer = [UInt8](repeating: 0, count: 16)
        // CPU time of this thread only: other tests run in parallel in this process.
        func threadCPUSeconds() -> Double {
            var ts = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        }
        let cpuBefore = threadCPUSeconds()
        let n = try buffer.withUnsafeMutableBytes { try port.read(into: $0, timeout: .milliseconds(300)) }
        let cpuUsed = threadCPUSeconds() - cpuBefore
        #expect(n == 0)
        // A busy-wait would burn ~0.3 s of CPU; poll() burns next to none.
        #expect(cpuUsed < 0.1)
    }

    @Test("a second open of a held port fails with the busy error naming the holder")
    func secondOpenIsBusy() throws {
        let pty = try PseudoTerminal()
        let first = try SerialPort.open(path: pty.slavePath)
        defer { first.close() }
        do {
            _ = try SerialPort.open(path: pty.slavePath)
            Issue.record("second open succeeded while the first held the port")
        } catch {
            guard case .busy(let path, let holder) = error else {
                Issue.record("expected busy, got \(error)")
                return
            }
            #expect(path == pty.slavePath)
            #expect(holder?.contains("pid \(getpid())") == true)
            #expect(error.description.contains("in use by"))
        }
        first.close()
        // Released: the port can be opened again.
        let again = try SerialPort.open(path: pty.slavePath)
        again.close()
    }

    @Test("a missing device and a non-terminal give errors an operator can act on")
    func clearOpenErrors() throws {
        #expect(throws: SerialPortError.notFound(path: "/dev/does-not-exist-itb")) {
            try SerialPort.open(path: "/dev/does-not-exist-itb")
        }
        #expect(throws: SerialPortError.notATerminal(path: "/dev/null")) {
            try SerialPort.open(path: "/dev/null")
        }
    }

    @Test("closing the pty master while a read waits reports a disconnect with its cause within 100 ms")
    func masterCloseIsDisconnect() async throws {
        let pty = try PseudoTerminal()
        let port = try SerialPort.open(path: pty.slavePath)
        let reader = Task { await onOwnThread { () -> (SerialPortError?, ContinuousClock.Instant) in
            var buffer = [UInt8](repeating: 0, count: 64)
            do {
                while true {
                    _ = try buffer.withUnsafeMutableBytes { try port.read(into: $0, timeout: nil) }
                }
            } catch {
                return (error as? SerialPortError, ContinuousClock.now)
            }
        } }
        try await Task.sleep(for: .milliseconds(100))
        let closedAt = ContinuousClock.now
        pty.close()
        let (error, reportedAt) = await reader.value
        guard case .disconnected(_, let cause) = error else {
            Issue.record("expected a disconnect, got \(String(describing: error))")
            return
        }
        #expect(cause == .hangUp || cause == .deviceError(errno: EIO) || cause == .endOfFile)
        #expect(reportedAt - closedAt < .milliseconds(100))
        #expect(port.isClosed)
        #expect(port.disconnectCause == cause)
    }

    @Test("interrupt() wakes a blocked read, which reports the port closed")
    func interruptWakesRead() async throws {
        let pty = try PseudoTerminal()
        let port = try SerialPort.open(path: pty.slavePath)
        defer { port.close() }
        let reader = Task { await onOwnThread { () -> SerialPortError? in
            var buffer = [UInt8](repeating: 0, count: 64)
            do {
                _ = try buffer.withUnsafeMutableBytes { try port.read(into: $0, timeout: .seconds(10)) }
                return nil
            } catch {
                return error as? SerialPortError
            }
        } }
        try await Task.sleep(for: .milliseconds(50))
        port.interrupt()
        let result = await reader.value
        #expect(result == .closed(path: pty.slavePath), "read ended with \(String(describing: result))")
    }

    @Test("a write to a device that stops draining fails after its timeout instead of hanging")
    func writeTimesOut() throws {
        let pty = try PseudoTerminal()
        let port = try SerialPort.open(path: pty.slavePath, configuration: .init(writeTimeout: .milliseconds(200)))
        defer { port.close() }
        let chunk = [UInt8](repeating: 0x55, count: 64 << 10)
        var sawTimeout = false
        for _ in 0..<64 {
            do {
                try port.write(chunk)
            } catch {
                guard case .writeTimedOut = error else {
                    Issue.record("expected a write timeout, got \(error)")
                    return
                }
                sawTimeout = true
                break
            }
        }
        #expect(sawTimeout)
        withExtendedLifetime(pty) {}
    }
}
