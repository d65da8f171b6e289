import Dispatch
import ITBCapture
public import ITBProtocol
public import ITBSerial
public import Logging
import Synchronization

/// One followed programmer path: its serial link, its decoder, and its conversation with the core.
///
/// The link's thread decodes each read in place and hands the batch of owned messages to this
/// session's consumer task, in order, through a bounded hand-off: when the core falls behind, the
/// link thread waits and the kernel buffers the serial data, so nothing is dropped. The consumer
/// passes each batch to ``BridgeCore`` and writes the `ACK`s it returns, which the core produces
/// only after the batch's journal commit. The link thread itself sends `HOST_HEARTBEAT` on the
/// link's beat while connected, so an idle session costs no timer of its own.
///
/// Read-only towards therapy: the only frames this session ever writes are `ACK` and
/// `HOST_HEARTBEAT`.
public final class DeviceSession: Sendable {
    /// The path followed.
    public let path: String
    private let core: BridgeCore
    private let link: DeviceLink
    private let logger: Logger
    private let encoder = Mutex(FrameEncoder(firstSequence: 0))
    private let decoder = Mutex(FrameDecoder())
    /// Batches handed over but not yet processed; the link thread waits above this.
    private let inFlight = DispatchSemaphore(value: 64)
    private let stopping = Atomic<Bool>(false)
    private let capture: CaptureFileWriter?

    private enum Item: Sendable {
        case state(LinkStateMachine.PublishedState)
        case batch([ReceivedMessage], DecoderCounters)
    }

    /// Creates a session for `path`; nothing runs until ``run()``. With `capture_dir` configured,
    /// every byte read and written is also recorded to rotating capture files there.
    public init(path: String, core: BridgeCore, configuration: BridgeConfiguration, logger: Logger) {
        self.path = path
        self.core = core
        self.link = DeviceLink(path: path, configuration: configuration.serial)
        self.logger = logger
        var capture: CaptureFileWriter?
        if let directory = configuration.captureDirectory {
            let name = path.split(separator: "/").last.map(String.init) ?? "device"
            do {
                capture = try CaptureFileWriter(directory: directory, prefix: name, rotateBytes: configuration.captureRotateBytes)
                logger.notice("recording device traffic", metadata: ["path": "\(path)", "capture": "\(capture?.currentPath ?? "")"])
            } catch {
                logger.error("cannot record device traffic", metadata: ["path": "\(path)", "error": "\(error)"])
            }
        }
        self.capture = capture
    }

    /// udev saw the device appear again: reopen now rather than after the backoff.
    public func deviceAppeared() { link.deviceAppeared() }

    /// Follows the device until the calling task is cancelled.
    public func run() async {
        let sessionID = await core.openSession(path: path)
        let (stream, continuation) = AsyncStream.makeStream(of: Item.self)
        let now = core.now
        let startedAtMs = core.startedAtMs
        link.start(beat: core.configuration.heartbeatInterval) { [self] event in
            switch event {
            case .state(let state):
                if case .connected = state {
                    // A new connection: a partial frame and the sequence baseline are the old one's.
                    decoder.withLock { $0.resetStream() }
                }
                handOff(.state(state), continuation)
            case .beat:
                let uptime = UInt32(clamping: (now() - startedAtMs) / 1000)
                send(.hostHeartbeat(HostHeartbeat(hostTimeMs: now(), uptimeS: uptime)))
            case .data(let bytes):
                capture?.record(.deviceToHost, bytes)
                let receivedAt = now()
                var batch: [ReceivedMessage] = []
                let counters = decoder.withLock { decoder in
                    decoder.feed(bytes) { frame in
                        if let message = Message(frame) {
                            batch.append(ReceivedMessage(message: message, sequence: frame.sequence,
                                                         retransmission: frame.isRetransmission, receivedAtMs: receivedAt))
                        }
                    }
                    return decoder.counters
                }
                if !batch.isEmpty { handOff(.batch(batch, counters), continuation) }
            }
        }
        await withTaskCancellationHandler {
            for await item in stream {
                inFlight.signal()
                switch item {
                case .state(let state):
                    await core.linkChanged(sessionID, to: state)
                case .batch(let messages, let counters):
                    let acks = await core.receive(sessionID, messages, counters: counters)
                    for ack in acks { send(.ack(Ack(ackedSequence: ack.sequence, alarmID: ack.alarmID, ackedType: .alarm, status: ack.status))) }
                }
            }
        } onCancel: { [self] in
            stopping.store(true, ordering: .relaxed)
            continuation.finish()
        }
        // The stream is finished and the tasks are done: stop the link thread (it may be waiting
        // for room in the hand-off; `stopping` releases it).
        link.stop()
        capture?.close()
        await core.closeSession(sessionID)
    }

    /// Hands an item to the consumer, waiting while 64 are already queued (back-pressure).
    private func handOff(_ item: Item, _ continuation: AsyncStream<Item>.Continuation) {
        while inFlight.wait(timeout: .now() + .milliseconds(100)) == .timedOut {
            if stopping.load(ordering: .relaxed) { return }
        }
        continuation.yield(item)
    }

    /// Encodes and writes one host frame; a failure is logged, not fatal (the programmer
    /// retransmits unacknowledged alarms, and heartbeats resume on reconnect).
    private func send(_ message: Message) {
        let frame = encoder.withLock { $0.encode(message) }
        do {
            try link.write(frame)
            if let capture { frame.withUnsafeBytes { capture.record(.hostToDevice, $0) } }
        } catch {
            if case .closed = error { return }
            logger.warning("cannot write to the programmer", metadata: ["path": "\(path)", "error": "\(error)", "frame": "\(message.type)"])
        }
    }
}
