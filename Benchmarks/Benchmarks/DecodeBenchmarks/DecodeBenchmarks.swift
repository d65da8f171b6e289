// Decode benchmarks for protocol v1 (issue: decoder throughput, allocations per frame, CRC floor).
//
// One iteration processes the whole stream (`streamMiB` MiB, `stream.frameCount` frames). Custom
// metrics report MB/s (10^6 bytes per second) and frames per second.
// `mallocCountTotal` is per iteration, i.e. per `stream.frameCount` frames: allocations per frame
// is that figure divided by the frame count (printed at start-up). It is deterministic.
import Benchmark
import ITBJSON
import ITBProtocol

/// Size of the stream each iteration decodes.
let streamMiB = 64
/// The stream, built once (not measured).
let stream = TelemetryStream(targetBytes: streamMiB << 20)
/// The size of one read from a serial port or a capture file.
let readSize = 64 << 10

let metrics: [BenchmarkMetric] = [
    .wallClock, .mallocCountTotal, .throughput,
    .custom("MB/s", polarity: .prefersLarger, useScalingFactor: false),
    .custom("frames/s", polarity: .prefersLarger, useScalingFactor: false),
]

/// Records the custom rate metrics for one iteration that took `nanoseconds`.
func recordRates(_ benchmark: Benchmark, bytes: Int, frames: Int, nanoseconds: UInt64) {
    let seconds = Double(nanoseconds) / 1e9
    benchmark.measurement(.custom("MB/s", polarity: .prefersLarger, useScalingFactor: false), Int(Double(bytes) / 1e6 / seconds))
    benchmark.measurement(.custom("frames/s", polarity: .prefersLarger, useScalingFactor: false), Int(Double(frames) / seconds))
}

/// Runs `body` once per iteration over the whole stream, timing it and recording rates.
func measure(_ benchmark: Benchmark, frames: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
    stream.bytes.withUnsafeBytes { all in
        for _ in benchmark.scaledIterations {
            let started = ContinuousClock.now
            benchmark.startMeasurement()
            body(all)
            benchmark.stopMeasurement()
            let elapsed = ContinuousClock.now - started
            let ns = UInt64(elapsed.components.seconds) * 1_000_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000)
            recordRates(benchmark, bytes: all.count, frames: frames, nanoseconds: ns)
        }
    }
}

let benchmarks: @Sendable () -> Void = {
    print("stream: \(stream.bytes.count) bytes, \(stream.frameCount) frames per iteration")
    Benchmark.defaultConfiguration = .init(
        metrics: metrics,
        warmupIterations: 1,
        scalingFactor: .one,
        maxDuration: .seconds(10),
        maxIterations: 20
    )

    // The floor: CRC-32C over the whole stream as one buffer, with the CPU instruction.
    Benchmark("CRC-32C hardware, whole stream") { benchmark in
        measure(benchmark, frames: stream.frameCount) { all in
            blackHole(CRC32C.checksum(all, using: .hardware))
        }
    }

    // The same bytes the decoder must check, frame by frame: 12 header bytes and the payload.
    Benchmark("CRC-32C hardware, per frame (header + payload)") { benchmark in
        var bounds: [(Int, Int)] = []
        bounds.reserveCapacity(stream.frameCount)
        var decoder = FrameDecoder()
        stream.bytes.withUnsafeBytes { all in
            decoder.feed(all) { frame in
                bounds.append((all.baseAddress!.distance(to: frame.bytes.baseAddress!), frame.payloadLength))
            }
        }
        measure(benchmark, frames: stream.frameCount) { all in
            var sum: UInt32 = 0
            for (start, length) in bounds {
                sum &+= CRC32C.checksum(UnsafeRawBufferPointer(rebasing: all[start..<(start + 12)]), using: .hardware)
                sum &+= CRC32C.checksum(UnsafeRawBufferPointer(rebasing: all[(start + 16)..<(start + 16 + length)]), using: .hardware)
            }
            blackHole(sum)
        }
    }

    Benchmark("CRC-32C portable table, whole stream") { benchmark in
        measure(benchmark, frames: stream.frameCount) { all in
            blackHole(CRC32C.checksum(all, using: .portable))
        }
    }

    // The decoder as the daemon runs it: 64 KiB reads, every frame read through its typed view.
    Benchmark("Decode with typed views, 64 KiB reads") { benchmark in
        var decoder = FrameDecoder()
        var delivered = 0
        let before = decoder.counters
        measure(benchmark, frames: stream.frameCount) { all in
            var checksum: UInt64 = 0
            var offset = 0
            while offset < all.count {
                let end = min(offset + readSize, all.count)
                decoder.feed(UnsafeRawBufferPointer(rebasing: all[offset..<end])) { frame in
                    delivered &+= 1
                    switch frame.type {
                    case .pumpStatus:
                        if let v = PumpStatusView(frame) { checksum &+= UInt64(v.dailyDoseUgX10) &+ UInt64(v.pumpState.rawValue) }
                    case .reservoir:
                        if let v = ReservoirView(frame) { checksum &+= UInt64(v.volumeULX10) &+ UInt64(v.lowReservoirThresholdUL) }
                    case .heartbeat:
                        if let v = HeartbeatView(frame) { checksum &+= UInt64(v.uptimeS) }
                    case .alarm:
                        if let v = AlarmView(frame) { checksum &+= UInt64(v.alarmID) &+ UInt64(v.code.rawValue) }
                    case .doseProgram:
                        if let v = DoseProgramView(frame) { checksum &+= UInt64(v.flexStepCount) }
                    default:
                        checksum &+= UInt64(frame.sequence)
                    }
                }
                offset = end
            }
            blackHole(checksum)
        }
        precondition(decoder.counters.framesDelivered - before.framesDelivered == UInt64(delivered))
        precondition(decoder.counters.bytesDiscarded == 0 && decoder.counters.payloadCRCErrors == 0, "benchmark stream must be clean")
    }

    // itbctl decode's inner loop: decode and render every frame as a JSON line into a reused buffer.
    Benchmark("Decode and render JSON lines, 64 KiB reads") { benchmark in
        var decoder = FrameDecoder()
        var json = JSONWriter(capacity: 1 << 20)
        measure(benchmark, frames: stream.frameCount) { all in
            var written = 0
            var offset = 0
            while offset < all.count {
                let end = min(offset + readSize, all.count)
                decoder.feed(UnsafeRawBufferPointer(rebasing: all[offset..<end])) { frame in
                    MessageJSON.writeFrame(frame, into: &json)
                    json.endLine()
                }
                written &+= json.bytes.count
                json.removeAll()
                offset = end
            }
            blackHole(written)
        }
    }
}
