import Foundation
import ITBCapture
import ITBProtocol
import Testing

/// A temporary file path, removed by the caller.
func captureTempPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("itbcap-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
}

/// Reads every record of a capture file as (direction, bytes).
func readAll(_ path: String) throws -> (CaptureFileReader.Kind, [(CaptureFormat.Direction, [UInt8])], CaptureRecordReader) {
    let reader = try CaptureFileReader(path: path)
    defer { reader.close() }
    var out: [(CaptureFormat.Direction, [UInt8])] = []
    let (kind, report) = try reader.read(chunkSize: 100) { out.append(($0.direction, Array($0.data))) }
    return (kind, out, report)
}

@Suite("Capture files")
struct CaptureFormatTests {
    @Test("records written are read back identical, in order, across any read chunking")
    func roundTrip() throws {
        let path = captureTempPath("roundtrip")
        defer { unlink(path) }
        let writer = try CaptureFileWriter(file: path)
        var expected: [(CaptureFormat.Direction, [UInt8])] = []
        for i in 0..<200 {
            let bytes = (0..<(i * 7 % 300 + 1)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
            let direction: CaptureFormat.Direction = i % 5 == 0 ? .hostToDevice : .deviceToHost
            bytes.withUnsafeBytes { writer.record(direction, $0, timestampNs: Int64(i) * 1_000_000) }
            expected.append((direction, bytes))
        }
        writer.close()
        let (kind, records, report) = try readAll(path)
        guard case .capture = kind else { Issue.record("not read as a capture"); return }
        #expect(records.count == expected.count)
        #expect(zip(records, expected).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 })
        #expect(report.damage.isEmpty && report.pendingByteCount == 0)
    }

    @Test("a damaged record is reported with its offset and every record after it is still read")
    func damageIsSkipped() throws {
        let path = captureTempPath("damage")
        defer { unlink(path) }
        let writer = try CaptureFileWriter(file: path)
        for i in 0..<50 {
            let bytes = [UInt8](repeating: UInt8(i), count: 40)
            bytes.withUnsafeBytes { writer.record(.deviceToHost, $0, timestampNs: Int64(i)) }
        }
        writer.close()
        var data = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        // Each record is 20 + 40 + 4 bytes after the 32-byte header: corrupt record 10's data.
        let damagedAt = CaptureFormat.headerSize + 10 * 64 + 25
        data[damagedAt] ^= 0xFF
        try Data(data).write(to: URL(fileURLWithPath: path))
        let (_, records, report) = try readAll(path)
        #expect(records.count == 49)
        #expect(records.map { $0.1[0] } == (0..<50).filter { $0 != 10 }.map(UInt8.init))
        #expect(report.damage == [CaptureFormat.headerSize + 10 * 64])
        #expect(report.bytesSkipped == 64)
    }

    @Test("a capture cut off inside a record reads everything before it and reports the truncated tail")
    func truncatedTail() throws {
        let path = captureTempPath("truncated")
        defer { unlink(path) }
        let writer = try CaptureFileWriter(file: path)
        for i in 0..<10 {
            [UInt8](repeating: UInt8(i), count: 30).withUnsafeBytes { writer.record(.deviceToHost, $0, timestampNs: 0) }
        }
        writer.close()
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count - 11).write(to: URL(fileURLWithPath: path))
        let (_, records, report) = try readAll(path)
        #expect(records.count == 9)
        #expect(report.damage.isEmpty)
        #expect(report.pendingByteCount == 54 - 11)
    }

    @Test("a file without the capture header is read as a raw serial dump")
    func rawDump() throws {
        let path = captureTempPath("raw")
        defer { unlink(path) }
        var encoder = FrameEncoder()
        let frame = encoder.encode(.heartbeat(Heartbeat(bootID: 1, uptimeS: 2, highestAlarmID: 3, unackedAlarmCount: 0)))
        try Data(frame + frame).write(to: URL(fileURLWithPath: path))
        let (kind, records, _) = try readAll(path)
        #expect(kind == .raw)
        #expect(records.flatMap(\.1) == frame + frame)
        #expect(records.allSatisfy { $0.0 == .deviceToHost })
    }

    @Test("a damaged header or a newer format version is refused with a clear error")
    func badHeader() throws {
        var header = CaptureFormat.header(startTimeNs: 1)
        header[20] ^= 1
        #expect(throws: CaptureError.self) { _ = try header.withUnsafeBytes { try CaptureFormat.parseHeader($0) } }
        var newer = CaptureFormat.header(startTimeNs: 1)
        newer[8] = 2
        let crc = CRC32C.checksum(newer[0..<24])
        newer.replaceSubrange(24..<28, with: withUnsafeBytes(of: crc.littleEndian, Array.init))
        #expect(throws: CaptureError.unsupportedVersion(2)) { _ = try newer.withUnsafeBytes { try CaptureFormat.parseHeader($0) } }
    }

    @Test("a rotating writer starts a new file, with its own header, once the size limit is passed")
    func rotation() throws {
        let directory = captureTempPath("rotate")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let writer = try CaptureFileWriter(directory: directory, prefix: "ttyUSB0", rotateBytes: 1000)
        for _ in 0..<40 {
            [UInt8](repeating: 7, count: 100).withUnsafeBytes { writer.record(.deviceToHost, $0) }
            usleep(2000)
        }
        writer.close()
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".itbcap") }
        #expect(files.count >= 4)
        var total = 0
        for file in files {
            let (kind, records, report) = try readAll(directory + "/" + file)
            guard case .capture = kind else { Issue.record("\(file) has no header"); continue }
            #expect(report.damage.isEmpty)
            total += records.count
        }
        #expect(total == 40)
    }
}

@Suite("Sample captures decode to their golden outputs")
struct SampleCaptureTests {
    static var samplesDirectory: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("protocol-spec/samples").path
    }

    static var samples: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: samplesDirectory)) ?? [])
            .filter { $0.hasSuffix(".itbcap") }.map { String($0.dropLast(".itbcap".count)) }.sorted()
    }

    @Test("there is a sample capture for every built-in scenario")
    func everyScenarioHasASample() {
        let expected = ["normal", "low-reservoir", "over-infusion", "eri-eos", "motor-stall", "battery-reset", "empty-reservoir",
                        "replug", "dose-change", "refill", "stability-limit", "clock-drift", "unknown-alarm", "noisy"]
        #expect(Set(Self.samples) == Set(expected))
    }

    @Test("each sample capture decodes to exactly its golden JSON lines (regenerate: scripts/make-sample-captures.sh)",
          arguments: samples)
    func golden(_ name: String) throws {
        let reader = try CaptureFileReader(path: "\(Self.samplesDirectory)/\(name).itbcap")
        defer { reader.close() }
        var output: [UInt8] = []
        let summary = try CaptureDecoding.decode(reader, includeHost: false) { output += $0 }
        let golden = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(Self.samplesDirectory)/\(name).jsonl")))
        #expect(output == golden, "decode of \(name).itbcap differs from \(name).jsonl")
        #expect(summary.deviceToHost.framesDelivered > 0)
        let size = try FileManager.default.attributesOfItem(atPath: "\(Self.samplesDirectory)/\(name).itbcap")[.size] as? Int ?? 0
        #expect(size < 200_000, "sample captures stay small")
    }
}
