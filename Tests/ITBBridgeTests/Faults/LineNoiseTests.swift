import Foundation
import ITBClient
import ITBJSON
import ITBProtocol
import ITBSimulator
import Testing

// Issue 8, proof under faults, device side: a noisy serial line. The test stands between the
// simulated programmer and the pty: every frame the programmer sends passes through a
// ``NoisyLine``, which damages it (seeded bit errors, garbage bursts), remembers exactly what it
// did, and writes the bytes to the pty in chunks as fast as the daemon takes them. From that record
// the test derives what the decoder must count (protocol-spec/PROTOCOL.md §2.2) and which values
// may reach the journal, and compares with what the daemon shows.

@Suite("Fault: line noise between the programmer and the bridge", .serialized)
struct LineNoiseTests {
    /// One noise case: a bit error rate, or garbage bursts.
    struct NoiseCase: Sendable {
        var name: String
        var bitErrorRate: Double
        var bursts: Bool
    }

    @Test("through bit errors at 1e-4 and 1e-3 and through garbage bursts, the bridge accepts exactly the undamaged frames, its decoder counters match the damage done, no damaged value reaches the journal or the API, and the clean alarm right after each burst is accepted at its first transmission, stored and acknowledged")
    func noisyLine() async throws {
        let total = ProofScale.count(short: 20_000, full: 1_000_000)
        let cases = [NoiseCase(name: "1e-4", bitErrorRate: 1e-4, bursts: false),
                     NoiseCase(name: "1e-3", bitErrorRate: 1e-3, bursts: false),
                     NoiseCase(name: "0", bitErrorRate: 0, bursts: true)]
        let directory = try ScratchDirectory("fault-noise")
        defer { directory.remove() }
        let socketPath = directory.path + "/api.sock"
        let client = UnixHTTPClient(socketPath: socketPath, timeout: .seconds(30))
        let programmer = try ProgrammerEndpoint(info: testProgrammer, initialRetransmitDelay: .milliseconds(200),
                                                maximumRetransmitDelay: .seconds(1))
        defer { programmer.pty.close() }
        let line = NoisyLine(seed: 0x5EED_0008_0003)
        programmer.lineFilter = { [line] bytes in line.divert(&bytes) }
        let daemon = try DaemonProcess(
            arguments: ["--no-discovery", "--device", programmer.pty.slavePath, "--socket", socketPath,
                        "--state-dir", directory.path + "/state", "--log-level", "warning"],
            socketPath: socketPath, log: directory.path + "/daemon.log")
        defer { daemon.terminate() }
        try await daemon.waitReady()

        let sent = SentValues()
        let daemonPID = daemon.process.processIdentifier
        var counters = try await blocking { () -> DecoderCounts in
            let path = "/v1/devices/\(programmer.info.programmerSerial)"
            let identified = try line.service(programmer, until: {
                (try? JSONObject.parse(client.get(path).body))?["link_state"] as? String == "connected"
            }, timeout: .seconds(20))
            guard identified else {
                let holders = DeviceFaults.foreignHolders(of: programmer.pty, daemon: daemonPID)
                throw HarnessError("the bridge never identified the programmer\(holders.isEmpty ? "" : "; the pty is held by \(holders)")")
            }
            return try line.settle(programmer, client: client)
        }

        var reports: [CaseReport] = []
        for (index, noise) in cases.enumerated() {
            let frames = index == cases.count - 1 ? total - total / cases.count * (cases.count - 1) : total / cases.count
            let started = ContinuousClock.now
            let (report, after) = try await blocking { [counters] () -> (CaseReport, DecoderCounts) in
                var report = try Self.play(noise, frames: frames, programmer: programmer, line: line, sent: sent)
                let after = try line.settle(programmer, client: client)
                report.expected = line.expectedCounts()
                report.burstsLeavingFrameIntact = line.burstsLeavingFrameIntact
                report.measured = after - counters
                return (report, after)
            }
            counters = after
            var finished = report
            finished.seconds = DeviceFaults.elapsed(since: started)
            #expect(finished.measured == finished.expected, "ber \(noise.name): decoder counters\n  measured \(finished.measured)\n  expected \(finished.expected)")
            #expect(finished.expected.payloadCRCErrors + finished.expected.damagedHeaders > 0 || frames < 1000,
                    "ber \(noise.name): the noise damaged nothing")
            reports.append(finished)
        }

        // Everything the journal holds and the API shows must be a value sent undamaged, and every
        // value sent undamaged must be there.
        let audit = try await blocking { try sent.audit(client) }
        for problem in audit.problems.prefix(10) { Issue.record(Comment(rawValue: problem)) }
        #expect(audit.corruptAccepted == 0)
        #expect(audit.statusesStored == sent.cleanStatuses, "status events \(audit.statusesStored.count) ≠ undamaged statuses \(sent.cleanStatuses.count)")
        #expect(audit.reservoirsStored == sent.cleanReservoirs, "reservoir events \(audit.reservoirsStored.count) ≠ undamaged reservoirs \(sent.cleanReservoirs.count)")

        // Alarms: damaged ones were retransmitted; each stored once, each acknowledged as stored.
        let alarms = Int(programmer.highestAlarmID)
        let acked = Set(programmer.acks.filter { $0.status == .stored }.map { Int($0.alarmID) })
        #expect(programmer.pending.isEmpty)
        #expect(acked == Set(1...alarms), "not acknowledged as stored: \(Set(1...alarms).subtracting(acked).sorted().prefix(20))")
        let listed = try await blocking { try DeviceFaults.listedAlarmMessageIDs(client, device: testProgrammer.programmerSerial) }
        #expect(listed == Array(1...alarms), "GET /v1/alarms does not show each alarm message once")
        #expect(Set(audit.alarmEventsPerMessage.keys) == Set(1...alarms) && audit.alarmEventsPerMessage.values.allSatisfy { $0 == 1 },
                "alarm events per message: \(audit.alarmEventsPerMessage.filter { $0.value != 1 || !(1...alarms).contains($0.key) })")
        // Recovery: the clean alarm right after each burst (and after each case) was accepted at
        // its first transmission: the bridge acknowledged that very frame (by its sequence number).
        let ackedFrames = Set(programmer.acks.filter { $0.status == .stored }.map { "\($0.alarmID)/\($0.ackedSequence)" })
        let notRecovered = sent.recoveryAlarms.filter { !ackedFrames.contains("\($0.alarmID)/\($0.sequence)") }
        #expect(notRecovered.isEmpty, "clean alarms after a burst not acknowledged at their first transmission: \(notRecovered.prefix(10))")

        // /metrics counts the same as the device's counters (one device, one session).
        let metrics = try await blocking { try Self.metrics(client) }
        #expect(metrics["itb_frames_accepted_total"] == Double(counters.framesAccepted))
        #expect(metrics["itb_payload_crc_errors_total"] == Double(counters.payloadCRCErrors))
        #expect(metrics["itb_header_rejects_total"] == Double(counters.headerRejects))
        #expect(metrics["itb_bytes_discarded_total"] == Double(counters.bytesDiscarded))

        for (noise, report) in zip(cases, reports) {
            let corrupt = audit.corruptAcceptedByCase[noise.name, default: 0]
            let afterBurst = sent.recoveryAlarms.filter { $0.noise == noise.name && $0.afterBurst }
            ProofScale.figure("fault.noise", [
                "ber": noise.name, "garbage_bursts": report.bursts, "bursts_leaving_frame_intact": report.burstsLeavingFrameIntact,
                "frames_sent": report.expected.frames,
                "damaged": report.expected.frames - report.expected.framesAccepted,
                "accepted": report.measured.framesAccepted, "rejected_crc": report.measured.payloadCRCErrors,
                "header_rejects": report.measured.headerRejects, "bytes_discarded": report.measured.bytesDiscarded,
                "corrupt_accepted": corrupt, "alarms": report.alarms,
                "clean_alarms_after_burst": afterBurst.count,
                "acked_at_first_transmission": afterBurst.filter { ackedFrames.contains("\($0.alarmID)/\($0.sequence)") }.count,
                "frames_per_s": Int(Double(report.expected.frames) / max(report.seconds, 0.001)),
                "seconds": String(format: "%.1f", report.seconds),
            ])
        }
    }

    /// What one case did and counted.
    struct CaseReport: Sendable {
        var alarms = 0
        var bursts = 0
        var burstsLeavingFrameIntact = 0
        var expected = DecoderCounts()
        var measured = DecoderCounts()
        var seconds = 0.0
    }

    /// Sends `frames` frames through `line` with `noise`: status, heartbeat, reservoir, heartbeat,
    /// … each with values no other frame has; an alarm every 1000 frames (noisy like the rest);
    /// with bursts, a garbage burst every 20–180 frames (inside the frame or after it) followed at
    /// once by a clean alarm. Ends with the noise off and a clean alarm.
    static func play(_ noise: NoiseCase, frames: Int, programmer: ProgrammerEndpoint, line: NoisyLine, sent: SentValues) throws -> CaseReport {
        var report = CaseReport()
        line.startSegment()
        line.bitErrorRate = noise.bitErrorRate
        var untilBurst = line.randomInt(20...180)
        for index in 0..<frames {
            var burstHere = false
            if noise.bursts {
                untilBurst -= 1
                if untilBurst == 0 {
                    line.burstOnNextFrame = line.randomInt(0...1) == 0 ? .inside : .after
                    untilBurst = line.randomInt(20...180)
                    burstHere = true
                    report.bursts += 1
                }
            }
            switch index % 4 {
            case 0:
                let s = sent.statusTimes.count
                let time = nowMs()
                try programmer.send(.pumpStatus(SentValues.status(s, timeMs: time)))
                sent.record(status: s, timeMs: time, clean: line.lastFrameClean, noise: noise.name)
            case 2:
                let r = sent.reservoirTimes.count
                let time = nowMs()
                try programmer.send(.reservoir(SentValues.reservoir(r, timeMs: time, lastRefillMs: sent.lastRefillMs)))
                sent.record(reservoir: r, timeMs: time, clean: line.lastFrameClean, noise: noise.name)
            default:
                let h = sent.heartbeatClean.count
                try programmer.heartbeat(uptimeS: UInt32(h))
                sent.heartbeatClean.append(line.lastFrameClean)
            }
            if burstHere {
                // Recovery: the first frame after the burst is a clean alarm.
                let alarm = try DeviceFaults.raiseNextAlarm(programmer, detail: "after burst \(report.bursts)")
                sent.recoveryAlarms.append(SentValues.AlarmFrame(alarmID: alarm.alarmID, sequence: line.lastFrameSequence, noise: noise.name, afterBurst: true))
                report.alarms += 1
            } else if index % 1000 == 999 {
                try DeviceFaults.raiseNextAlarm(programmer, detail: "noisy line")
                report.alarms += 1
            }
            if line.outgoingCount >= 16 << 10 { try line.flush(programmer) }
        }
        line.bitErrorRate = 0
        let last = try DeviceFaults.raiseNextAlarm(programmer, detail: "after noise \(noise.name)")
        sent.recoveryAlarms.append(SentValues.AlarmFrame(alarmID: last.alarmID, sequence: line.lastFrameSequence, noise: noise.name, afterBurst: false))
        report.alarms += 1
        try line.flush(programmer)
        return report
    }

    /// `GET /metrics` as name → value (unlabelled samples only).
    static func metrics(_ client: UnixHTTPClient) throws -> [String: Double] {
        var values: [String: Double] = [:]
        for row in try client.get("/metrics").text.split(separator: "\n") where !row.hasPrefix("#") {
            let parts = row.split(separator: " ")
            if parts.count == 2, !parts[0].contains("{"), let value = Double(parts[1]) { values[String(parts[0])] = value }
        }
        return values
    }
}

/// The decoder counters the fault tests compare (protocol-spec/PROTOCOL.md §6).
struct DecoderCounts: Equatable, Sendable, CustomStringConvertible {
    var bytesReceived = 0
    var bytesDiscarded = 0
    var headerRejects = 0
    var payloadCRCErrors = 0
    var framesAccepted = 0
    var framesDelivered = 0
    var unknownTypes = 0
    var shortPayloads = 0
    /// Not a decoder counter: frames sent (only in expectations; 0 when measured).
    var frames = 0
    /// Not a decoder counter: frames damaged in their header (only in expectations; 0 when measured).
    var damagedHeaders = 0

    /// From the `counters` object of `GET /v1/devices/{id}`.
    init(json: [String: Any]) throws {
        func value(_ name: String) throws -> Int {
            guard let number = json[name] as? Int else { throw HarnessError("no counter \(name) in \(json)") }
            return number
        }
        bytesReceived = try value("bytes_received")
        bytesDiscarded = try value("bytes_discarded")
        headerRejects = try value("header_rejects_version") + value("header_rejects_incompatible_flags")
            + value("header_rejects_length") + value("header_rejects_header_crc")
        payloadCRCErrors = try value("payload_crc_errors")
        framesAccepted = try value("frames_accepted")
        framesDelivered = try value("frames_delivered")
        unknownTypes = try value("unknown_types")
        shortPayloads = try value("short_payloads")
    }

    init() {}

    static func - (a: DecoderCounts, b: DecoderCounts) -> DecoderCounts {
        var d = DecoderCounts()
        d.bytesReceived = a.bytesReceived - b.bytesReceived
        d.bytesDiscarded = a.bytesDiscarded - b.bytesDiscarded
        d.headerRejects = a.headerRejects - b.headerRejects
        d.payloadCRCErrors = a.payloadCRCErrors - b.payloadCRCErrors
        d.framesAccepted = a.framesAccepted - b.framesAccepted
        d.framesDelivered = a.framesDelivered - b.framesDelivered
        d.unknownTypes = a.unknownTypes - b.unknownTypes
        d.shortPayloads = a.shortPayloads - b.shortPayloads
        return d
    }

    /// Compares the decoder counters only.
    static func == (a: DecoderCounts, b: DecoderCounts) -> Bool {
        a.bytesReceived == b.bytesReceived && a.bytesDiscarded == b.bytesDiscarded && a.headerRejects == b.headerRejects
            && a.payloadCRCErrors == b.payloadCRCErrors && a.framesAccepted == b.framesAccepted
            && a.framesDelivered == b.framesDelivered && a.unknownTypes == b.unknownTypes && a.shortPayloads == b.shortPayloads
    }

    var description: String {
        "bytes_received=\(bytesReceived) bytes_discarded=\(bytesDiscarded) header_rejects=\(headerRejects) "
            + "payload_crc_errors=\(payloadCRCErrors) frames_accepted=\(framesAccepted) frames_delivered=\(framesDelivered) "
            + "unknown_types=\(unknownTypes) short_payloads=\(shortPayloads)"
    }
}

/// The line between the simulated programmer (its `lineFilter`) and the pty, with the test in
/// the middle. Each frame the programmer sends is taken here (the programmer itself writes
/// nothing), damaged as the current settings say, recorded, and queued; ``flush(_:)`` writes the
/// queue to the pty in 4 KiB chunks, servicing the programmer between chunks (ACKs, host
/// heartbeats, retransmissions, which pass through here in turn, so the record is in wire order).
/// Used from one thread at a time, like the programmer.
final class NoisyLine: @unchecked Sendable {
    // @unchecked: driven by one thread at a time (the test's blocking section).
    /// Where a garbage burst goes.
    enum Burst { case inside, after }

    /// One frame as it went on the line.
    struct LineFrame {
        /// Offset of its first byte in the segment.
        var start: Int
        /// Its length as encoded (without inserted garbage).
        var length: Int
        /// Not damaged at all.
        var clean: Bool
        /// The 16 header bytes arrived as encoded.
        var headerIntact: Bool
    }

    /// Each bit of a frame is flipped with this probability (independently: the gaps between flips
    /// are geometric).
    var bitErrorRate = 0.0 {
        didSet { bitsBeforeNextFlip = nil }
    }
    /// A garbage burst to put inside the next frame or right after it.
    var burstOnNextFrame: Burst?
    /// Bytes written to the pty, in all.
    private(set) var written = 0
    /// Garbage bursts inside a frame that left an intact copy of it (in this segment).
    private(set) var burstsLeavingFrameIntact = 0

    private var segment: [UInt8] = []
    private var frames: [LineFrame] = []
    private var outgoing: [UInt8] = []
    private var random: SplitMix64
    private var bitsBeforeNextFlip: Int?

    init(seed: UInt64) { random = SplitMix64(seed: seed) }

    /// Whether the last frame taken went out undamaged.
    var lastFrameClean: Bool { frames.last?.clean ?? false }
    /// The sequence number of the last frame taken.
    private(set) var lastFrameSequence: UInt32 = 0
    /// Bytes queued and not yet written.
    var outgoingCount: Int { outgoing.count }

    /// A seeded random integer.
    func randomInt(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) }

    /// The programmer's `lineFilter`: takes the frame off the programmer's hands.
    func divert(_ bytes: inout [UInt8]) {
        let original = bytes
        var frame = bytes
        bytes = []
        // The sequence number: header bytes 8–11, little-endian (protocol-spec/PROTOCOL.md §2).
        lastFrameSequence = original[8..<12].reversed().reduce(0) { $0 << 8 | UInt32($1) }
        if bitErrorRate > 0 { flipBits(&frame) }
        var trailing: [UInt8] = []
        var intactAt = frame == original ? 0 : nil
        if let burst = burstOnNextFrame {
            burstOnNextFrame = nil
            switch burst {
            case .inside:
                frame.insert(contentsOf: garbage(), at: randomInt(1...(original.count - 1)))
                // Garbage put in after the first k bytes of a frame and ending with those same k
                // bytes (a B7, or a false magic B7 E1 at its end) leaves the whole frame after it,
                // intact: the decoder rightly accepts it there.
                intactAt = (0...(frame.count - original.count)).first { frame[$0..<($0 + original.count)].elementsEqual(original) }
                if intactAt != nil { burstsLeavingFrameIntact += 1 }
            case .after:
                trailing = garbage()
            }
        }
        if let intactAt {
            frames.append(LineFrame(start: segment.count + intactAt, length: original.count, clean: true, headerIntact: true))
        } else {
            frames.append(LineFrame(start: segment.count, length: original.count, clean: false,
                                    headerIntact: frame.prefix(FrameLayout.headerSize).elementsEqual(original.prefix(FrameLayout.headerSize))))
        }
        segment += frame
        segment += trailing
        outgoing += frame
        outgoing += trailing
    }

    /// Starts a new segment of the record (a new case); the decoder must be between frames.
    func startSegment() {
        segment.removeAll(keepingCapacity: true)
        frames.removeAll(keepingCapacity: true)
        burstsLeavingFrameIntact = 0
    }

    /// Writes what is queued to the pty in 4 KiB chunks (each waiting as long as the daemon needs
    /// to make room), servicing the programmer between chunks.
    func flush(_ programmer: ProgrammerEndpoint) throws {
        while !outgoing.isEmpty {
            let batch = outgoing
            outgoing.removeAll(keepingCapacity: true)
            var offset = 0
            while offset < batch.count {
                let end = min(offset + 4096, batch.count)
                try programmer.pty.write(Array(batch[offset..<end]), timeout: .seconds(60))
                written += end - offset
                offset = end
                try programmer.service(timeout: .zero)
            }
        }
    }

    /// Services the programmer (and writes what it sends) until `condition` holds; false after `timeout`.
    func service(_ programmer: ProgrammerEndpoint, until condition: () throws -> Bool, timeout: Duration) throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try condition() { return true }
            try programmer.service(timeout: .milliseconds(20))
            try flush(programmer)
        }
        return try condition()
    }

    /// Services the line until the programmer has every alarm acknowledged and nothing left to
    /// write, and the daemon has decoded every byte written; returns the device's counters then.
    func settle(_ programmer: ProgrammerEndpoint, client: UnixHTTPClient) throws -> DecoderCounts {
        let path = "/v1/devices/\(programmer.info.programmerSerial)"
        var counts: DecoderCounts?
        let settled = try service(programmer, until: {
            guard programmer.pending.isEmpty, outgoing.isEmpty, let response = try? client.get(path),
                  let counters = (try? JSONObject.parse(response.body))?["counters"] as? [String: Any] else { return false }
            counts = try DecoderCounts(json: counters)
            return counts?.bytesReceived == written
        }, timeout: .seconds(120))
        guard settled, let counts else {
            throw HarnessError("the line did not settle: \(programmer.pending.count) alarms unacknowledged, \(written) bytes written, daemon counted \(counts?.description ?? "nothing")")
        }
        return counts
    }

    /// What the decoder must count for this segment, from what was done to each frame
    /// (protocol-spec/PROTOCOL.md §2.2): an undamaged frame is accepted whole; a damaged frame whose
    /// header arrived intact fails its payload CRC and is skipped whole (its length is trusted);
    /// every other byte is scanned one at a time, and each `B7 E1` among them starts a header that
    /// is rejected (for its version, flags, length or header CRC) at the cost of one byte. Every
    /// byte not in an accepted frame is discarded. (A false header passes its CRC-32C with
    /// probability 2⁻³²: with some 10⁵ false headers in a full run, once in some 40 000 runs.)
    func expectedCounts() -> DecoderCounts {
        var expected = DecoderCounts()
        expected.bytesReceived = segment.count
        expected.frames = frames.count
        var scannedFrom = 0
        var acceptedBytes = 0
        for frame in frames where frame.clean || frame.headerIntact {
            expected.headerRejects += magicCount(scannedFrom..<frame.start)
            scannedFrom = frame.start + frame.length
            if frame.clean {
                expected.framesAccepted += 1
                acceptedBytes += frame.length
            } else {
                expected.payloadCRCErrors += 1
            }
        }
        expected.headerRejects += magicCount(scannedFrom..<segment.count)
        expected.framesDelivered = expected.framesAccepted
        expected.bytesDiscarded = segment.count - acceptedBytes
        expected.damagedHeaders = frames.filter { !$0.clean && !$0.headerIntact }.count
        return expected
    }

    /// How many positions in `range` hold the magic `B7 E1` (the second byte may lie past the range).
    private func magicCount(_ range: Range<Int>) -> Int {
        var count = 0
        var index = range.lowerBound
        while index < range.upperBound && index + 1 < segment.count {
            if segment[index] == FrameLayout.magic.0 && segment[index + 1] == FrameLayout.magic.1 { count += 1 }
            index += 1
        }
        return count
    }

    private func flipBits(_ frame: inout [UInt8]) {
        let bits = frame.count * 8
        var bit = bitsBeforeNextFlip ?? nextGap()
        while bit < bits {
            frame[bit / 8] ^= UInt8(1) << UInt8(bit % 8)
            bit += 1 + nextGap()
        }
        bitsBeforeNextFlip = bit - bits
    }

    /// Undamaged bits before the next flip: geometric with parameter `bitErrorRate`.
    private func nextGap() -> Int {
        let uniform = Double(random.next() >> 11 | 1) / Double(1 << 53)
        return Int((log(uniform) / log1p(-bitErrorRate)).rounded(.down))
    }

    /// 8–200 random bytes, with up to three false magics (some followed by a plausible version and
    /// flags, so that they fail on the header CRC rather than the version).
    private func garbage() -> [UInt8] {
        var bytes = random.bytes(randomInt(8...200))
        for _ in 0..<randomInt(0...3) {
            let at = randomInt(0...(bytes.count - 2))
            bytes[at] = FrameLayout.magic.0
            bytes[at + 1] = FrameLayout.magic.1
            if at + 3 < bytes.count, randomInt(0...1) == 0 {
                bytes[at + 2] = FrameLayout.majorVersion
                bytes[at + 3] = 0
            }
        }
        return bytes
    }
}

/// Every value the test sent in a status, reservoir or heartbeat, whether it went out undamaged,
/// and the check of the journal and the API against them. Each status and reservoir differs from
/// all others in a field the bridge compares (so each undamaged one becomes exactly one event),
/// and its index can be read back from those fields.
final class SentValues: @unchecked Sendable {
    // @unchecked: filled by one blocking section at a time, audited after.
    var statusTimes: [Int64] = []
    var statusClean: [Bool] = []
    var statusCase: [String] = []
    var reservoirTimes: [Int64] = []
    var reservoirClean: [Bool] = []
    var reservoirCase: [String] = []
    var heartbeatClean: [Bool] = []
    /// A clean alarm frame sent right after a burst (or at the end of a case).
    struct AlarmFrame {
        var alarmID: UInt32
        /// Its frame's sequence number: the bridge's ACK names it.
        var sequence: UInt32
        var noise: String
        /// Right after a garbage burst (else: after the noise stopped, at the end of a case).
        var afterBurst: Bool
    }
    var recoveryAlarms: [AlarmFrame] = []
    /// The last refill, as every reservoir reports it (ten days ago: no refill or stability alarm).
    let lastRefillMs = nowMs() - 10 * 86_400_000

    var cleanStatuses: Set<Int> { Set(statusClean.indices.filter { statusClean[$0] }) }
    var cleanReservoirs: Set<Int> { Set(reservoirClean.indices.filter { reservoirClean[$0] }) }

    func record(status s: Int, timeMs: Int64, clean: Bool, noise: String) {
        statusTimes.append(timeMs); statusClean.append(clean); statusCase.append(noise)
        precondition(statusTimes.count == s + 1)
    }

    func record(reservoir r: Int, timeMs: Int64, clean: Bool, noise: String) {
        reservoirTimes.append(timeMs); reservoirClean.append(clean); reservoirCase.append(noise)
        precondition(reservoirTimes.count == r + 1)
    }

    /// Status number `s`: link quality s mod 101, then the daily dose (120.0–1119.9 µg/day), then
    /// the concentration carry the index; a flow of at most 1120 µL/day keeps the refill far away.
    static func status(_ s: Int, timeMs: Int64) -> PumpStatus {
        PumpStatus(deviceTimeMs: timeMs, dailyDoseUgX10: UInt32(1200 + s / 101 % 10_000),
                   concentrationUgPerML: s / 1_010_000 % 2 == 0 ? 2000 : 1000, activeAlarmMask: 0,
                   pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: UInt8(s % 101))
    }

    static func statusIndex(_ status: PumpStatus) -> Int {
        (Int(status.dailyDoseUgX10) - 1200 + (status.concentrationUgPerML == 2000 ? 0 : 10_000)) * 101 + Int(status.linkQualityPct)
    }

    /// Reservoir number `r`: the volume (20 000.0–38 999.9 µL of 40 000) and the volume delivered
    /// since the refill carry the index.
    static func reservoir(_ r: Int, timeMs: Int64, lastRefillMs: Int64) -> Reservoir {
        Reservoir(deviceTimeMs: timeMs, lastRefillTimeMs: lastRefillMs, volumeULX10: UInt32(200_000 + r % 190_000), capacityUL: 40_000,
                  lowReservoirThresholdUL: 2_000, deliveredSinceRefillULX10: UInt32(r / 190_000), volumeSource: .calculated)
    }

    static func reservoirIndex(_ reservoir: Reservoir) -> Int {
        Int(reservoir.volumeULX10) - 200_000 + 190_000 * Int(reservoir.deliveredSinceRefillULX10)
    }

    /// What the audit found.
    struct Audit {
        var statusesStored: Set<Int> = []
        var reservoirsStored: Set<Int> = []
        var alarmEventsPerMessage: [Int: Int] = [:]
        /// How many of each alarm row's device_alarm_ids the audit has seen so far.
        var alarmIDsSeen: [Int: Int] = [:]
        var corruptAccepted = 0
        var corruptAcceptedByCase: [String: Int] = [:]
        var problems: [String] = []

        mutating func corrupt(_ problem: String, noise: String?) {
            corruptAccepted += 1
            corruptAcceptedByCase[noise ?? "?", default: 0] += 1
            problems.append(problem)
        }
    }

    /// Replays the journal and checks every status and reservoir event, and the device's last
    /// heartbeat, against what was sent undamaged; counts the alarm events per message.
    func audit(_ client: UnixHTTPClient) throws -> Audit {
        var audit = Audit()
        try DeviceFaults.forEachJournaledEvent(client) { event in
            switch event.event {
            case "status":
                let object = try parseObject(event.data)
                guard let status = Self.status(from: object) else { return audit.corrupt("unreadable status event \(event.data)", noise: nil) }
                let s = Self.statusIndex(status)
                guard statusTimes.indices.contains(s), statusClean[s], status == Self.status(s, timeMs: statusTimes[s]) else {
                    return audit.corrupt("status event not sent undamaged: \(event.data)", noise: statusTimes.indices.contains(s) ? statusCase[s] : nil)
                }
                if !audit.statusesStored.insert(s).inserted { audit.problems.append("status \(s) journaled twice") }
            case "reservoir":
                let object = try parseObject(event.data)
                guard let reservoir = Self.reservoir(from: object) else { return audit.corrupt("unreadable reservoir event \(event.data)", noise: nil) }
                let r = Self.reservoirIndex(reservoir)
                guard reservoirTimes.indices.contains(r), reservoirClean[r],
                      reservoir == Self.reservoir(r, timeMs: reservoirTimes[r], lastRefillMs: lastRefillMs) else {
                    return audit.corrupt("reservoir event not sent undamaged: \(event.data)", noise: reservoirTimes.indices.contains(r) ? reservoirCase[r] : nil)
                }
                if !audit.reservoirsStored.insert(r).inserted { audit.problems.append("reservoir \(r) journaled twice") }
            case "alarm":
                // Each stored message appends its id to its alarm's device_alarm_ids and publishes
                // one event (a raise after its clear joins the ended alarm): count the ids added.
                let alarm = try parseObject(event.data)
                guard alarm["source"] as? String == "pump", let alarmRow = alarm["id"] as? Int else { return }
                guard let ids = alarm["device_alarm_ids"] as? [Int] else { return audit.corrupt("alarm event without device_alarm_ids: \(event.data)", noise: nil) }
                let before = audit.alarmIDsSeen[alarmRow] ?? 0
                guard ids.count > before else { return }
                for id in ids[before...] { audit.alarmEventsPerMessage[id, default: 0] += 1 }
                audit.alarmIDsSeen[alarmRow] = ids.count
            default:
                break
            }
        }
        let device = try JSONObject.parse(client.get("/v1/devices/\(testProgrammer.programmerSerial)").body)
        if let heartbeat = device["heartbeat"] as? [String: Any], let uptime = heartbeat["uptime_s"] as? Int {
            if !(heartbeatClean.indices.contains(uptime) && heartbeatClean[uptime]) {
                audit.corrupt("the device shows a heartbeat not sent undamaged: \(heartbeat)", noise: nil)
            }
        } else {
            audit.problems.append("the device shows no heartbeat: \(device)")
        }
        return audit
    }

    static func status(from o: [String: Any]) -> PumpStatus? {
        guard let time = (o["device_time"] as? String).flatMap(RFC3339.parse), let dose = o["daily_dose_ug"] as? Double,
              let concentration = o["concentration_ug_per_ml"] as? Int, let mask = o["active_alarm_mask"] as? Int,
              let state = (o["pump_state"] as? String).flatMap(PumpState.init(name:)),
              let mode = (o["dosing_mode"] as? String).flatMap(DosingMode.init(name:)), let quality = o["link_quality_pct"] as? Int
        else { return nil }
        return PumpStatus(deviceTimeMs: time, dailyDoseUgX10: UInt32((dose * 10).rounded()), concentrationUgPerML: UInt32(concentration),
                          activeAlarmMask: UInt32(mask), pumpState: state, dosingMode: mode, linkQualityPct: UInt8(quality))
    }

    static func reservoir(from o: [String: Any]) -> Reservoir? {
        guard let time = (o["device_time"] as? String).flatMap(RFC3339.parse), let volume = o["volume_ul"] as? Double,
              let capacity = o["capacity_ul"] as? Int, let threshold = o["low_reservoir_threshold_ul"] as? Int,
              let source = (o["volume_source"] as? String).flatMap(VolumeSource.init(name:)),
              let refill = (o["last_refill_time"] as? String).flatMap(RFC3339.parse), let delivered = o["delivered_since_refill_ul"] as? Double
        else { return nil }
        return Reservoir(deviceTimeMs: time, lastRefillTimeMs: refill, volumeULX10: UInt32((volume * 10).rounded()), capacityUL: UInt32(capacity),
                         lowReservoirThresholdUL: UInt32(threshold), deliveredSinceRefillULX10: UInt32((delivered * 10).rounded()),
                         volumeSource: source)
    }
}
