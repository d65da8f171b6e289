import Foundation
import Synchronization
import ITBBridge
import ITBProtocol
import ITBSimulator
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("itbctl backup")
struct BackupTests {
    @Test("backup makes a consistent copy while the daemon stores alarms and snapshots; the copy holds every alarm acknowledged before it began")
    func backupUnderLoad() async throws {
        let daemon = try await TestDaemon(name: "backup")
        do {
            let socket = daemon.socketPath
            let scratch = daemon.directory.path
            try await daemon.connectProgrammer()
            // Alarms, each acknowledged (through the API, as a clinic would).
            let codes: [AlarmCode] = [.motorStall, .lowReservoir, .flowFault, .eri, .memoryError, .emptyReservoir]
            for code in codes { try await daemon.raiseAndStore(code, .high) }
            let listed = try #require(try await daemon.json("/v1/alarms?state=active")["alarms"] as? [[String: Any]])
            let acknowledged = listed.compactMap { $0["id"] as? Int }
            #expect(acknowledged.count == codes.count)
            for id in acknowledged {
                let result = try await Itbctl.run(["ack", String(id), "--note", "seen \(id)", "--socket", socket], directory: scratch)
                #expect(result.status == 0, "\(result)")
            }

            // Load while the backup runs: snapshots as fast as the line takes them, and more alarms.
            let stop = StopFlag()
            let load = Task {
                try await daemon.withProgrammer { p in
                    var i = 0
                    while !stop.isStopped {
                        try p.send(.pumpStatus(PumpStatus(deviceTimeMs: nowMs(), dailyDoseUgX10: 4000, concentrationUgPerML: 2000,
                                                          activeAlarmMask: UInt32(i), pumpState: .infusing, dosingMode: .simpleContinuous,
                                                          linkQualityPct: UInt8(i % 100))))
                        if i % 50 == 0 { _ = try p.raise(code: AlarmCode(rawValue: 0x7F00 + UInt16(i % 200)), priority: .low, onsetTimeMs: nowMs()) }
                        _ = try p.service(timeout: .zero)
                        i += 1
                    }
                    return i
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            let copy = scratch + "/copy/journal.sqlite"
            try FileManager.default.createDirectory(atPath: scratch + "/copy", withIntermediateDirectories: true)
            let backup = try await Itbctl.run(["--socket", socket, "backup", copy], directory: scratch)
            stop.stop()
            let sent = try await load.value
            #expect(backup.status == 0, "\(backup)")
            #expect(sent > 50, "the daemon was under load during the backup (\(sent) frames)")
            var info = stat()
            #expect(stat(copy, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o600)

            // The copy is a journal the bridge opens; every alarm acknowledged before is in it, acknowledged, with its note.
            let journal = try Journal(directory: scratch + "/copy")
            let alarms = try await journal.alarms(AlarmQuery())
            for id in acknowledged {
                let alarm = alarms.first { $0.id == Int64(id) }
                #expect(alarm?.state == .acknowledged, "alarm \(id): \(String(describing: alarm))")
                #expect(alarm?.acknowledgementNote == "seen \(id)")
            }

            // An existing file is never overwritten.
            let again = try await Itbctl.run(["backup", copy, "--socket", socket], directory: scratch)
            #expect(again.status == 1, "\(again)")
            #expect(again.stderr.contains("exists"), "\(again)")
        } catch {
            await daemon.shutdown()
            throw error
        }
        await daemon.shutdown()
    }
}
