import ArgumentParser
import Dispatch
import ITBCapture
import ITBProtocol
import ITBSerial
#if canImport(Glibc)
import Glibc
#endif

/// `itbctl record`: records a serial port to a capture file, without the daemon.
struct Record: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record what a programmer's serial port sends to a capture file (without the daemon).",
        discussion: """
            Opens the port exclusively (stop itb-bridged first, or use its capture_dir setting \
            instead), applies the same line settings as the daemon, and writes every read as a \
            timestamped record. Stops on Ctrl-C, after --duration, or when the device goes away.

            A capture must start with who the programmer is, or its replay cannot store the \
            alarms in it. So, like the daemon, record sends a HOST_HEARTBEAT once a second: to \
            the programmer a host has started, and it announces itself (PROGRAMMER_INFO) at \
            once (protocol-spec/PROTOCOL.md 2.5). The heartbeats are recorded too. Nothing \
            else is ever written: no ACK, so the programmer keeps retransmitting unacknowledged \
            alarms, and no frame of this protocol can change a dose. --passive writes nothing at \
            all; the capture may then start mid-stream, and record warns when it has no \
            PROGRAMMER_INFO.
            """)

    @Option(help: ArgumentHelp("The serial device (tty, pty or by-id path).", valueName: "path"))
    var device: String

    @Option(help: ArgumentHelp("The capture file to write (.itbcap).", valueName: "file"))
    var out: String

    @Option(help: "Line speed.")
    var baudRate = 115_200

    @Option(help: ArgumentHelp("Stop after this many seconds.", valueName: "seconds"))
    var duration: Double?

    @Flag(help: "Write nothing to the device, not even HOST_HEARTBEAT (the capture may start mid-stream, without PROGRAMMER_INFO).")
    var passive = false

    func run() throws {
        let port: SerialPort
        do {
            port = try SerialPort.open(path: device, configuration: .init(baudRate: baudRate))
        } catch {
            printError("record: \(error)")
            throw ExitCode(1)
        }
        let writer: CaptureFileWriter
        do {
            writer = try CaptureFileWriter(file: out)
        } catch {
            port.close()
            printError("record: \(error)")
            throw ExitCode(1)
        }
        let signals = onTerminationSignals { port.interrupt() }
        defer { signals.forEach { $0.cancel() } }
        printError("record: recording \(device) to \(out); Ctrl-C to stop")
        let deadline = duration.map { ContinuousClock.now + .milliseconds(Int64($0 * 1000)) }
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        var total = 0
        var records = 0
        var encoder = FrameEncoder(firstSequence: 0)
        let started = ContinuousClock.now
        var nextBeat = started
        var identity = IdentityWatch()
        loop: while deadline.map({ ContinuousClock.now < $0 }) ?? true {
            if !passive, ContinuousClock.now >= nextBeat {
                // A host heartbeat: the programmer announces itself to a host that has started.
                let uptime = UInt32((ContinuousClock.now - started).components.seconds)
                let frame = encoder.encode(.hostHeartbeat(HostHeartbeat(hostTimeMs: currentTimeMs(), uptimeS: uptime)))
                do {
                    try port.write(frame)
                    frame.withUnsafeBytes { writer.record(.hostToDevice, $0) }
                } catch {
                    printError("record: cannot send HOST_HEARTBEAT (\(error)); recording on without (use --passive to write nothing)")
                }
                nextBeat = nextBeat + .seconds(1)
            }
            do {
                let n = try buffer.withUnsafeMutableBytes { raw throws(SerialPortError) in
                    try port.read(into: raw, timeout: .milliseconds(200))
                }
                if n > 0 {
                    buffer.withUnsafeBytes {
                        let bytes = UnsafeRawBufferPointer(rebasing: $0[0..<n])
                        writer.record(.deviceToHost, bytes)
                        identity.feed(bytes)
                    }
                    total += n
                    records += 1
                }
            } catch SerialPortError.closed {
                break loop
            } catch {
                printError("record: \(error)")
                break loop
            }
        }
        port.close()
        writer.close()
        if let failure = writer.failure {
            printError("record: \(failure)")
            throw ExitCode(1)
        }
        printError("record: \(records) records, \(total) bytes written to \(out)")
        switch identity.state {
        case .identified(let framesBefore) where framesBefore > 0:
            printError("record: note: \(framesBefore) frame(s) came before PROGRAMMER_INFO; a replay identifies the programmer from it first")
        case .identified:
            break
        case .notYet:
            printWarning("the capture has no PROGRAMMER_INFO (\(passive ? "--passive: the programmer was not asked" : "the programmer did not announce itself")); "
                         + "`itbctl replay` refuses it, `itb-bridged --replay` keeps its messages under an unidentified programmer")
        }
    }
}

/// Watches the recorded bytes for the programmer's `PROGRAMMER_INFO`.
struct IdentityWatch {
    /// Whether it has come, and after how many other frames.
    enum State { case notYet, identified(framesBefore: Int) }

    private(set) var state = State.notYet
    private var decoder = FrameDecoder()
    private var before = 0

    /// Feeds bytes read from the device.
    mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        guard case .notYet = state else { return }
        var found = false
        var count = before
        decoder.feed(bytes) { frame in
            guard !found else { return }
            if frame.type == .programmerInfo { found = true } else { count += 1 }
        }
        before = count
        if found { state = .identified(framesBefore: count) }
    }
}
