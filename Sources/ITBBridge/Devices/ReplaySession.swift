import ITBCapture
public import ITBProtocol
public import Logging

/// Feeds a capture file through the same pipeline as a live device, read-only: the device →
/// host bytes are decoded and handed to the core in batches, as a ``DeviceSession`` does, and
/// nothing is ever written anywhere (the ACKs the core returns are dropped: there is no
/// programmer to receive them). For investigating an incident with the clinic's exact code.
public struct ReplaySession: Sendable {
    /// The capture (or raw dump) to replay.
    public let path: String
    private let core: BridgeCore
    private let logger: Logger

    /// Creates a replay of `path` into `core`.
    public init(path: String, core: BridgeCore, logger: Logger) {
        self.path = path
        self.core = core
        self.logger = logger
    }

    /// The message that identifies the programmer before the replay begins, when the capture
    /// needs one: its first `PROGRAMMER_INFO` when frames come before it, or, in a capture with
    /// none, an identity without a serial, so that its messages are kept under
    /// `unidentified:replay:<file>` rather than its alarms dropped. Nil when the capture starts
    /// with its `PROGRAMMER_INFO`.
    static func identity(of path: String, logger: Logger, now: () -> Int64) throws -> ReceivedMessage? {
        if let found = try CaptureIdentity.find(in: path) {
            guard found.framesBefore > 0 else { return nil }
            logger.notice("replay: the capture starts mid-stream; identifying the programmer from its first PROGRAMMER_INFO first",
                          metadata: ["capture": "\(path)", "device": "\(found.info.programmerSerial)", "frames_before": "\(found.framesBefore)"])
            return ReceivedMessage(message: .programmerInfo(found.info), sequence: 0, retransmission: false, receivedAtMs: now())
        }
        logger.warning("replay: the capture has no PROGRAMMER_INFO; its messages are kept under an unidentified programmer",
                       metadata: ["capture": "\(path)"])
        let anonymous = ProgrammerInfo(bootID: 0, firmwareVersion: 0, protocolMinor: 0, programmerSerial: "", hardwareModel: "")
        return ReceivedMessage(message: .programmerInfo(anonymous), sequence: 0, retransmission: false, receivedAtMs: now())
    }

    /// Replays the whole file at full speed, then returns. The file is read and decoded on a
    /// worker thread that hands each batch straight to the core's step, so nothing queues up:
    /// reading waits for the core. A read error ends the replay with an error in the log.
    public func run() async {
        let core = self.core
        let path = self.path
        let logger = self.logger
        let sessionID = core.openSession(path: "replay:" + path, replay: true)
        await offloaded {
            core.linkChangedNow(sessionID, to: .connected)
            let now = core.now
            var messages = 0
            do {
                // A replay never retransmits, so nothing may wait for an identity that comes
                // later: the programmer is identified first (ReplaySession.identity).
                var identity: ReceivedMessage? = try Self.identity(of: path, logger: logger, now: now)
                let file = try CaptureFileReader(path: path)
                defer { file.close() }
                var decoder = FrameDecoder()
                var context = FrameDecoder()
                _ = try file.read { record in
                    guard record.direction != .hostToDevice else { return }
                    let receivedAt = record.timestampNs > 0 ? record.timestampNs / 1_000_000 : now()
                    var batch: [ReceivedMessage] = []
                    if var first = identity {
                        first.receivedAtMs = receivedAt
                        batch.append(first)
                        identity = nil
                    }
                    func take(_ frame: Frame) {
                        if let message = Message(frame) {
                            batch.append(ReceivedMessage(message: message, sequence: frame.sequence,
                                                         retransmission: frame.isRetransmission, receivedAtMs: receivedAt))
                        }
                    }
                    if record.direction == .context {
                        // Whole frames the recorder knew before the file began, decoded apart
                        // from the line's own stream (and its counters).
                        context.resetStream()
                        context.feed(record.data, take)
                    } else {
                        decoder.feed(record.data, take)
                    }
                    guard !batch.isEmpty else { return }
                    messages += batch.count
                    _ = core.receiveNow(sessionID, batch, counters: decoder.counters)
                }
                logger.notice("replay finished", metadata: ["capture": "\(path)", "messages": "\(messages)"])
            } catch {
                logger.error("replay stopped: cannot read the capture", metadata: ["capture": "\(path)", "messages": "\(messages)", "error": "\(error)"])
            }
            core.linkChangedNow(sessionID, to: .disconnected(.endOfFile))
            core.closeSessionNow(sessionID)
        }
    }
}
