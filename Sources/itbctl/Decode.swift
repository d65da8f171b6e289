import ArgumentParser
import ITBCapture
import ITBJSON
import ITBProtocol
#if canImport(Glibc)
import Glibc
#endif

/// `itbctl decode FILE`: one JSON object per accepted frame on stdout, counters on stderr.
struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode a capture (or a raw serial dump) to JSON lines, offline.",
        discussion: """
            Writes one JSON object per accepted frame to stdout: `type` (lower snake case), `seq`, \
            `flags` and the decoded fields under the API's names. The decoder's counters go to \
            stderr at the end. Reads in constant memory; `-` reads standard input. A damaged \
            capture is read past the damage with a warning (exit 6 with --strict). A file in which \
            no frame is found (not a capture, not a dump of a programmer's line) is an error: exit 6.
            """)

    @Argument(help: "A .itbcap capture or a raw dump; - for standard input.")
    var file: String

    @Flag(help: "Print only the summary (counters), no frames.")
    var stats = false

    @Flag(name: .customLong("host-frames"), help: "Also decode what the host sent (ACKs, heartbeats), marked \"direction\":\"host_to_device\".")
    var hostFrames = false

    @Flag(help: "Exit with status 6 when the capture is damaged.")
    var strict = false

    func run() throws {
        let reader: CaptureFileReader
        do {
            reader = try CaptureFileReader(path: file)
        } catch {
            printError("decode: \(error)")
            throw ExitCode(1)
        }
        defer { reader.close() }
        let summaryResult: CaptureDecoding.Summary
        do {
            summaryResult = try CaptureDecoding.decode(reader, includeHost: hostFrames, writeFrames: !stats) { try writeStdout($0) }
        } catch let error as CaptureError {
            printError("decode: \(file): \(error)")
            throw ExitCode(6)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            printError("decode: \(error)")
            throw ExitCode(1)
        }
        let kind = summaryResult.kind
        let records = summaryResult.records
        var summary = JSONWriter(capacity: 1024)
        summary.beginObject()
        summary.key("input"); summary.string(file)
        summary.key("kind")
        switch kind {
        case .capture: summary.string("capture")
        case .raw: summary.string("raw")
        }
        summary.key("records"); summary.int(records.records)
        summary.key("damaged_at_offsets")
        summary.beginArray()
        for offset in records.damage { summary.int(offset) }
        summary.endArray()
        summary.key("bytes_skipped"); summary.int(records.bytesSkipped)
        summary.key("truncated_tail_bytes"); summary.int(records.pendingByteCount)
        summary.key("device_to_host")
        writeCounters(summaryResult.deviceToHost, pending: summaryResult.deviceToHostPending, &summary)
        if hostFrames {
            summary.key("host_to_device")
            writeCounters(summaryResult.hostToDevice, pending: 0, &summary)
        }
        summary.endObject()
        summary.endLine()
        FileOutput.standardError(summary.bytes)
        let framesFound = summaryResult.deviceToHost.framesAccepted + (hostFrames ? summaryResult.hostToDevice.framesAccepted : 0)
        if framesFound == 0 {
            let what: String
            if case .raw = kind {
                what = "\(summaryResult.deviceToHost.bytesReceived) bytes"
            } else {
                what = "this capture (\(records.records) records)"
            }
            printError("decode: \(file): no frames found in \(what): it is not a capture of a programmer's line, nor a raw dump of one")
            throw ExitCode(6)
        }
        if !records.damage.isEmpty {
            printError("decode: warning: the capture is damaged at \(records.damage.count) place(s) (first at byte \(records.damage[0])); \(records.bytesSkipped) bytes skipped, everything after the damage was read")
            if strict { throw ExitCode(6) }
        }
        if records.pendingByteCount > 0 {
            printError("decode: warning: the capture ends inside a record (\(records.pendingByteCount) bytes): it was cut off while being written")
        }
    }

    private func writeCounters(_ counters: DecoderCounters, pending: Int, _ json: inout JSONWriter) {
        json.beginObject()
        for (name, value) in counters.namedValues {
            json.key(name)
            json.int(value)
        }
        json.key("bytes_pending"); json.int(pending)
        json.endObject()
    }
}

/// Writes all of `bytes` to standard output.
func writeStdout(_ bytes: [UInt8]) throws {
    var written = 0
    while written < bytes.count {
        let n = bytes.withUnsafeBytes { write(1, $0.baseAddress! + written, bytes.count - written) }
        if n < 0 {
            if errno == EINTR { continue }
            if errno == EPIPE { throw ExitCode(0) }
            throw ExitCode(1)
        }
        written += n
    }
}

enum FileOutput {
    static func standardError(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
