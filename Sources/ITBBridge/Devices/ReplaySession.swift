import Foundation
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

    /// Replays the whole file at full speed, then returns.
    public func run() async {
        let sessionID = await core.openSession(path: "replay:" + path)
        await core.linkChanged(sessionID, to: .connected)
        let path = self.path
        let now = core.now
        let (batches, continuation) = AsyncStream.makeStream(of: ([ReceivedMessage], DecoderCounters).self, bufferingPolicy: .unbounded)
        // Read and decode on a thread of its own; hand batches over in order.
        let reader = Thread {
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
                    if !batch.isEmpty { continuation.yield((batch, decoder.counters)) }
                }
            } catch {
                continuation.yield(([], DecoderCounters()))
            }
            continuation.finish()
        }
        reader.start()
        var frames = 0
        for await (batch, counters) in batches {
            frames += batch.count
            _ = await core.receive(sessionID, batch, counters: counters)
        }
        logger.notice("replay finished", metadata: ["capture": "\(path)", "messages": "\(frames)"])
        await core.linkChanged(sessionID, to: .disconnected(.endOfFile))
        await core.closeSession(sessionID)
    }
}
