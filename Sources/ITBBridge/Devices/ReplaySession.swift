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
                let file = try CaptureFileReader(path: path)
                defer { file.close() }
                var decoder = FrameDecoder()
                _ = try file.read { record in
                    guard record.direction == .deviceToHost else { return }
                    let receivedAt = record.timestampNs > 0 ? record.timestampNs / 1_000_000 : now()
                    var batch: [ReceivedMessage] = []
                    decoder.feed(record.data) { frame in
                        if let message = Message(frame) {
                            batch.append(ReceivedMessage(message: message, sequence: frame.sequence,
                                                         retransmission: frame.isRetransmission, receivedAtMs: receivedAt))
                        }
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
