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
            Opens the port exclusively (stop itb-bridged first, or use its capture_dir setting
            instead), applies the same line settings as the daemon, and writes every read as a
            timestamped record. Stops on Ctrl-C, after --duration, or when the device goes away.
            Nothing is ever written to the device.
            """)

    @Option(help: ArgumentHelp("The serial device (tty, pty or by-id path).", valueName: "path"))
    var device: String

    @Option(help: ArgumentHelp("The capture file to write (.itbcap).", valueName: "file"))
    var out: String

    @Option(help: "Line speed.")
    var baudRate = 115_200

    @Option(help: ArgumentHelp("Stop after this many seconds.", valueName: "seconds"))
    var duration: Double?

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
        loop: while deadline.map({ ContinuousClock.now < $0 }) ?? true {
            do {
                let n = try buffer.withUnsafeMutableBytes { raw throws(SerialPortError) in
                    try port.read(into: raw, timeout: .milliseconds(200))
                }
                if n > 0 {
                    buffer.withUnsafeBytes { writer.record(.deviceToHost, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
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
    }
}
