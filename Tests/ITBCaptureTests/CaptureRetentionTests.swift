import Foundation
import ITBCapture
import ITBProtocol
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("capture_dir: a bound on the total size, and context at the start of each rotated file")
struct CaptureRetentionTests {
    @Test("the oldest files go first until the rest fit; the file being written is never deleted")
    func oldestFirst() {
        let files = [
            CaptureRetention.File(path: "c", size: 40, modifiedNs: 3),
            CaptureRetention.File(path: "a", size: 40, modifiedNs: 1),
            CaptureRetention.File(path: "b", size: 40, modifiedNs: 2),
            CaptureRetention.File(path: "d", size: 40, modifiedNs: 4),
        ]
        #expect(CaptureRetention.filesToDelete(files, maximumTotalBytes: 100, keeping: "d") == ["a", "b"])
        #expect(CaptureRetention.filesToDelete(files, maximumTotalBytes: 160, keeping: "d").isEmpty)
        // The current file is kept even when it is the oldest, or alone too large.
        #expect(CaptureRetention.filesToDelete(files, maximumTotalBytes: 10, keeping: "a") == ["b", "c", "d"])
    }

    @Test("a rotating writer keeps its directory under the bound, and each new file starts with the context frames")
    func rotatingWriterKeepsTheBound() throws {
        let directory = NSTemporaryDirectory() + "itb-retention-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let writer = try CaptureFileWriter(directory: directory, prefix: "PGM-1", rotateBytes: 1000, maximumTotalBytes: 4000)
        var encoder = FrameEncoder()
        let info = encoder.encode(.programmerInfo(ProgrammerInfo(bootID: 1, firmwareVersion: 0x010000, protocolMinor: 0,
                                                                 programmerSerial: "PGM-1", hardwareModel: "M")))
        writer.setContext([info])
        let chunk = [UInt8](repeating: 0xAB, count: 300)
        for _ in 0..<100 {
            chunk.withUnsafeBytes { writer.record(.deviceToHost, $0) }
            usleep(1000)  // distinct names and modification times
        }
        writer.close()
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".itbcap") }
        let total = names.reduce(0) { sum, name in
            var info = stat()
            return sum + (stat(directory + "/" + name, &info) == 0 ? Int(info.st_size) : 0)
        }
        #expect(total <= 4000 + 1400, "total \(total) over the bound by more than the file being written")
        #expect(names.count >= 3 && names.count <= 5, "\(names)")
        for name in names {
            let reader = try CaptureFileReader(path: directory + "/" + name)
            defer { reader.close() }
            var first: CaptureFormat.Direction?
            _ = try reader.read { record in if first == nil { first = record.direction } }
            #expect(first == .context, "\(name) starts with the context")
        }
    }
}
