import ArgumentParser
import Foundation
import ITBCapture
import ITBProtocol
import ITBSerial

/// `itbctl replay FILE`: plays a capture into a pty for the daemon to read as a programmer.
struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Play a capture into a pseudo-terminal, for itb-bridged to read as it would a programmer.",
        discussion: """
            Prints the pty path (and keeps --link pointing at it); start itb-bridged with \
            --device on that path. Replay begins once the daemon has opened the port (its first \
            HOST_HEARTBEAT), at real speed (--speed 1), N times faster, or --full-speed. What the \
            daemon sends back (ACKs, heartbeats) is read and counted, so the whole pipeline runs, \
            ACK path included. Closing the pty at the end is, to the daemon, an unplugged cable. \
            A capture that starts mid-stream is preceded by its first PROGRAMMER_INFO, so the \
            daemon knows the programmer before any alarm; one with none at all is refused (exit 6).
            """)

    @Argument(help: "The .itbcap capture (or a raw dump) to play.")
    var file: String

    @Option(help: "Speed factor: 1 is real time, 10 ten times faster.")
    var speed: Double = 1

    @Flag(help: "As fast as the daemon reads.")
    var fullSpeed = false

    @Option(help: ArgumentHelp("Keep a symbolic link to the pty here.", valueName: "path"))
    var link: String?

    @Option(help: ArgumentHelp("Seconds to wait for the daemon to open the pty.", valueName: "seconds"))
    var waitForHost: Double = 60

    @Option(help: ArgumentHelp("Seconds to keep the pty open after the last record, so the daemon reads it all (closing it discards what is unread).", valueName: "seconds"))
    var linger: Double = 2

    func validate() throws {
        guard speed > 0 else { throw ValidationError("--speed must be positive") }
    }

    func run() throws {
        // A replay never retransmits: the daemon must know the programmer before any alarm, or it
        // would hold the alarm for a retransmission that never comes.
        let identity: CaptureIdentity?
        do {
            identity = try CaptureIdentity.find(in: file)
        } catch {
            printError("replay: \(error)")
            throw ExitCode(1)
        }
        guard let identity else {
            printError("replay: \(file) has no PROGRAMMER_INFO, so itb-bridged could not identify the programmer and would not store "
                       + "its alarms (a replay never retransmits them); replay it with `itb-bridged --no-discovery --replay \(file)` "
                       + "instead, which keeps them under an unidentified programmer")
            throw ExitCode(6)
        }
        let pty: PseudoTerminal
        do {
            pty = try PseudoTerminal()
        } catch {
            printError("replay: \(error)")
            throw ExitCode(1)
        }
        defer { pty.close() }
        if let link {
            try? FileManager.default.removeItem(atPath: link)
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: pty.slavePath)
        }
        try writeStdout(Array((pty.slavePath + "\n").utf8))
        printError("replay: waiting for itb-bridged to open \(link ?? pty.slavePath)")

        var hostDecoder = FrameDecoder()
        var acks = 0
        var hostBuffer = [UInt8](repeating: 0, count: 16 << 10)
        /// Reads what the host sent; true if anything came.
        func drainHost(timeout: Duration) throws -> Bool {
            let n = try hostBuffer.withUnsafeMutableBytes { try pty.read(into: $0, timeout: timeout) }
            guard n > 0 else { return false }
            hostBuffer.withUnsafeBytes { raw in
                hostDecoder.feed(UnsafeRawBufferPointer(rebasing: raw[0..<n])) { frame in
                    if frame.type == .ack { acks += 1 }
                }
            }
            return true
        }
        let waitDeadline = ContinuousClock.now + .milliseconds(Int64(waitForHost * 1000))
        while try !drainHost(timeout: .milliseconds(100)) {
            if ContinuousClock.now > waitDeadline {
                printError("replay: itb-bridged did not open the pty within \(waitForHost) s")
                throw ExitCode(1)
            }
        }

        if identity.framesBefore > 0 {
            // The capture starts mid-stream: identify the programmer first, with its own frame.
            printError("replay: the capture starts mid-stream; sending its first PROGRAMMER_INFO "
                       + "(\(identity.info.programmerSerial)) before the \(identity.framesBefore) frame(s) that precede it")
            try pty.write(identity.frame, timeout: .seconds(30))
        }
        let reader = try CaptureFileReader(path: file)
        defer { reader.close() }
        var firstTimestamp: Int64?
        let started = ContinuousClock.now
        var records = 0
        var bytes = 0
        let fullSpeed = self.fullSpeed
        let speed = self.speed
        let (_, damage) = try reader.read { record in
            // Context records (what the recorder knew before the file began) are whole frames:
            // played first, without waiting.
            guard record.direction != .hostToDevice else { return }
            if !fullSpeed, record.direction == .deviceToHost, record.timestampNs > 0 {
                let first = firstTimestamp ?? record.timestampNs
                firstTimestamp = first
                let due = started + .nanoseconds(Int64(Double(record.timestampNs - first) / speed))
                while ContinuousClock.now < due {
                    _ = try drainHost(timeout: min(due - ContinuousClock.now, .milliseconds(50)))
                }
            }
            try pty.write(Array(record.data), timeout: .seconds(30))
            _ = try drainHost(timeout: .zero)
            records += 1
            bytes += record.data.count
        }
        // Keep the line up while the daemon reads the tail and answers the last frames.
        let settle = ContinuousClock.now + .milliseconds(Int64(linger * 1000))
        while ContinuousClock.now < settle { _ = try drainHost(timeout: .milliseconds(50)) }
        if !damage.damage.isEmpty {
            printError("replay: warning: the capture is damaged at \(damage.damage.count) place(s); \(damage.bytesSkipped) bytes skipped")
        }
        printError("replay: \(records) records, \(bytes) bytes replayed; \(acks) ACKs received")
    }
}
