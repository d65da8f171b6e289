public import ITBProtocol

/// Who the programmer of a capture is, found before it is replayed.
///
/// A replay never retransmits: an alarm the bridge will not store because the programmer has not
/// identified itself yet is, in a replay, gone. So a replay starts with the capture's first
/// `PROGRAMMER_INFO` (a context record, or a frame found further on) when other frames come before
/// it, and a capture with none at all is told apart, so the replayer can say so instead of
/// dropping alarms.
public struct CaptureIdentity: Sendable {
    /// The first `PROGRAMMER_INFO` of the capture, as decoded.
    public var info: ProgrammerInfo
    /// That frame's bytes, whole, as they were on the line.
    public var frame: [UInt8]
    /// How many frames the capture has before it (programmer → host, and context): when more
    /// than zero, the identity must be given to the bridge first.
    public var framesBefore: Int

    /// Scans `path` (stopping at the first `PROGRAMMER_INFO`); nil when the capture has none.
    /// Throws what the reader throws (a file that cannot be opened or read).
    public static func find(in path: String) throws -> CaptureIdentity? {
        let reader = try CaptureFileReader(path: path)
        defer { reader.close() }
        var device = FrameDecoder()
        var context = FrameDecoder()
        var found: CaptureIdentity?
        var before = 0
        struct Found: Error {}
        do {
            _ = try reader.read { record in
                func look(_ frame: Frame) {
                    guard found == nil else { return }
                    if frame.type == .programmerInfo, let message = Message(frame), case .programmerInfo(let info) = message {
                        found = CaptureIdentity(info: info, frame: Array(frame.bytes), framesBefore: before)
                    } else {
                        before += 1
                    }
                }
                switch record.direction {
                case .deviceToHost: device.feed(record.data, look)
                case .context:
                    context.resetStream()
                    context.feed(record.data, look)
                case .hostToDevice: break
                }
                if found != nil { throw Found() }
            }
        } catch is Found {
            return found
        }
        return found
    }
}
