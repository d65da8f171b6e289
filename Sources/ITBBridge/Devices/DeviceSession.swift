import ITBCapture
public import ITBProtocol
public import ITBSerial
public import Logging
import Synchronization

/// One followed programmer path: its serial link, its decoder, and its conversation with the core.
///
/// The live path has one thread hop before the subscribers' event loops: the link's thread reads
/// the bytes, decodes them in place, and hands the batch of owned messages straight to the core's
/// step (``BridgeCore/receiveNow(_:_:counters:)``: rules, journal commit, publish in id order),
/// then writes the `ACK`s the core returns, which it produces only after the batch's commit.
/// While the core commits (an fsync for an alarm), this thread waits and the kernel buffers the
/// serial data, so nothing is dropped. The link thread also sends `HOST_HEARTBEAT` on the link's
/// beat while connected, so an idle session costs no timer of its own.
///
/// Read-only towards therapy: the only frames this session ever writes are `ACK` and
/// `HOST_HEARTBEAT`.
public final class DeviceSession: Sendable {
    /// The path followed.
    public let path: String
    private let core: BridgeCore
    private let link: DeviceLink
    private let logger: Logger
    /// Used only on the link's thread (the handler of ``DeviceLink/start(readBufferSize:beat:_:)``
    /// runs there, one call at a time); the lock is uncontended and documents that.
    private let encoder = Mutex(FrameEncoder(firstSequence: 0))
    private let decoder = Mutex(FrameDecoder())
    /// The last PROGRAMMER_INFO and PUMP_SESSION frames as received: a rotated capture's context.
    /// Used only on the link's thread, like the decoder.
    private let captureContext = Mutex<[[UInt8]?]>([nil, nil])
    private let capture: CaptureFileWriter?
    /// Set when the session is stopping: the link's last state change (closed by us) is not a
    /// lost link, and the session ends as `stopped` instead.
    private let stopping = Atomic<Bool>(false)

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
                capture = try CaptureFileWriter(directory: directory, prefix: name, rotateBytes: configuration.captureRotateBytes,
                                                maximumTotalBytes: configuration.captureMaxTotalBytes > 0 ? configuration.captureMaxTotalBytes : nil)
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
        let sessionID = core.openSession(path: path)
        let now = core.now
        let startedAtMs = core.startedAtMs
        let core = self.core
        link.start(beat: core.configuration.heartbeatInterval) { [self] event in
            switch event {
            case .state(let state):
                guard !stopping.load(ordering: .acquiring) else { return }
                if case .connected = state {
                    // A new connection: a partial frame and the sequence baseline are the old one's.
                    decoder.withLock { $0.resetStream() }
                }
                core.linkChangedNow(sessionID, to: state)
            case .beat:
                let uptime = UInt32(clamping: (now() - startedAtMs) / 1000)
                send(.hostHeartbeat(HostHeartbeat(hostTimeMs: now(), uptimeS: uptime)))
            case .data(let bytes):
                capture?.record(.deviceToHost, bytes)
                let receivedAt = now()
                var batch: [ReceivedMessage] = []
                let counters = decoder.withLock { decoder in
                    decoder.feed(bytes) { frame in
                        if let capture, frame.type == .programmerInfo || frame.type == .pumpSession {
                            // What a rotated capture file starts with, so it replays on its own.
                            let known = captureContext.withLock { known in
                                known[frame.type == .programmerInfo ? 0 : 1] = Array(frame.bytes)
                                return known.compactMap { $0 }
                            }
                            capture.setContext(known)
                        }
                        if let message = Message(frame) {
                            batch.append(ReceivedMessage(message: message, sequence: frame.sequence,
                                                         retransmission: frame.isRetransmission, receivedAtMs: receivedAt))
                        }
                    }
                    return decoder.counters
                }
                guard !batch.isEmpty else { return }
                for ack in core.receiveNow(sessionID, batch, counters: counters) {
                    send(.ack(Ack(ackedSequence: ack.sequence, alarmID: ack.alarmID, ackedType: .alarm, status: ack.status)))
                }
            }
        }
        // Wait for cancellation; the link thread does the work.
        let (stopped, stop) = AsyncStream.makeStream(of: Never.self)
        await withTaskCancellationHandler {
            for await _ in stopped {}
        } onCancel: {
            stop.finish()
        }
        stopping.store(true, ordering: .releasing)
        link.stop()
        capture?.close()
        await core.closeSession(sessionID)
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
