public import ITBJSON
public import ITBProtocol

/// Decodes a capture (or raw dump) to JSON lines: the work of `itbctl decode`, in a library so the
/// golden-file tests run exactly the same code.
public enum CaptureDecoding {
    /// What a decode saw.
    public struct Summary: Sendable {
        /// Capture or raw.
        public var kind: CaptureFileReader.Kind
        /// The record reader's report (records, damage, truncated tail).
        public var records: CaptureRecordReader
        /// Counters of the device → host decoder.
        public var deviceToHost: DecoderCounters
        /// Bytes of a partial frame left at the end, device → host.
        public var deviceToHostPending: Int
        /// Counters of the host → device decoder (when decoded).
        public var hostToDevice: DecoderCounters
    }

    /// Reads `reader` and calls `flush` with JSON lines (one per accepted frame) whenever at least
    /// `flushBytes` have accumulated, and once at the end. Frames the host sent are included, with
    /// `"direction":"host_to_device"`, when `includeHost`.
    public static func decode(_ reader: CaptureFileReader, includeHost: Bool, writeFrames: Bool = true,
                              flushBytes: Int = 1 << 20, flush: ([UInt8]) throws -> Void) throws -> Summary {
        var device = FrameDecoder()
        var host = FrameDecoder()
        var context = FrameDecoder()
        var json = JSONWriter(capacity: flushBytes + (64 << 10))
        let (kind, records) = try reader.read { record in
            switch record.direction {
            case .deviceToHost:
                device.feed(record.data) { frame in
                    guard writeFrames else { return }
                    MessageJSON.writeFrame(frame, into: &json)
                    json.endLine()
                }
            case .context:
                // Whole frames the recorder knew before the file began: shown as such, and
                // decoded apart so that they do not disturb the line's own stream.
                context.resetStream()
                context.feed(record.data) { frame in
                    guard writeFrames else { return }
                    MessageJSON.writeFrame(frame, direction: "context", into: &json)
                    json.endLine()
                }
            case .hostToDevice:
                guard includeHost else { return }
                host.feed(record.data) { frame in
                    guard writeFrames else { return }
                    MessageJSON.writeFrame(frame, direction: "host_to_device", into: &json)
                    json.endLine()
                }
            }
            if json.bytes.count >= flushBytes {
                try flush(json.bytes)
                json.removeAll()
            }
        }
        if !json.bytes.isEmpty { try flush(json.bytes) }
        return Summary(kind: kind, records: records, deviceToHost: device.counters, deviceToHostPending: device.pendingByteCount,
                       hostToDevice: host.counters)
    }
}
