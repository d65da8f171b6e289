import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What a ``DeviceLink`` reports, on its own thread, in order.
public enum DeviceLinkEvent {
    /// The link's state changed.
    case state(LinkStateMachine.PublishedState)
    /// Bytes arrived. The buffer is valid only during the handler call: decode it there.
    case data(UnsafeRawBufferPointer)
    /// The periodic beat while connected (see ``DeviceLink/start(readBufferSize:beat:_:)``):
    /// a chance to write a keep-alive from the link's own thread, without a timer of its own.
    case beat
}

/// One serial device followed for its whole life: opened when it appears, read while it is
/// there, reopened with capped exponential backoff (100 ms … 5 s) when it goes away or is busy.
///
/// The link runs a dedicated thread that blocks in `poll()` and calls the handler with each state
/// change, each chunk of bytes and, while connected, a periodic ``DeviceLinkEvent/beat`` (the
/// poll's timeout, so a keep-alive costs no extra thread or timer wake-up). Writes (ACKs,
/// heartbeats) may come from any thread; they fail with ``SerialPortError/closed(path:)`` while
/// the device is not connected.
public final class DeviceLink: Sendable {
    /// The path followed (a by-id link, a tty, or a pty / symlink for the simulator and replay).
    public let path: String
    /// Line settings.
    public let configuration: SerialConfiguration
    /// Reconnect policy.
    public let backoff: LinkStateMachine.Backoff

    private struct Shared {
        var port: SerialPort?
        var stopping = false
        var thread: BlockingThread?
    }
    private let shared = Mutex(Shared())
    private let wake = WakeEvent()

    /// Creates a link; nothing is opened until ``start(_:)``.
    public init(path: String, configuration: SerialConfiguration = .init(), backoff: LinkStateMachine.Backoff = .init()) {
        self.path = path
        self.configuration = configuration
        self.backoff = backoff
    }

    deinit {
        stop()
        wake.close()
    }

    /// Starts following the device. `handler` runs on the link's thread, one event at a time.
    /// With `beat`, the handler also gets ``DeviceLinkEvent/beat`` right after each connection and
    /// then at most every `beat` while connected, whether or not data arrives (a little earlier,
    /// down to half of `beat`, when data has just woken the thread anyway).
    public func start(readBufferSize: Int = 64 << 10, beat: Duration? = nil, _ handler: @escaping @Sendable (DeviceLinkEvent) -> Void) {
        let thread = BlockingThread(name: "itb-link") { [self] in
            run(readBufferSize: readBufferSize, beat: beat, handler)
        }
        shared.withLock { $0.thread = thread }
    }

    /// Writes a frame to the device now. Bounded by the configured write timeout.
    public func write(_ bytes: [UInt8]) throws(SerialPortError) {
        guard let port = shared.withLock({ $0.port }) else { throw .closed(path: path) }
        try port.write(bytes)
    }

    /// udev saw the device appear: stop waiting out the backoff and open it now.
    public func deviceAppeared() {
        wake.signal()
    }

    /// Stops the link: closes the port, ends the thread and waits for it. Idempotent.
    public func stop() {
        let (port, thread) = shared.withLock { s -> (SerialPort?, BlockingThread?) in
            s.stopping = true
            defer { s.thread = nil }
            return (s.port, s.thread)
        }
        port?.close()
        wake.signal()
        thread?.join()
    }

    /// How early, as a fraction of the beat, a beat may be sent to ride on a read's wake-up.
    static let beatSlack = 0.05

    private var isStopping: Bool { shared.withLock { $0.stopping } }

    private func run(readBufferSize: Int, beat: Duration?, _ handler: @Sendable (DeviceLinkEvent) -> Void) {
        var machine = LinkStateMachine(backoff: backoff)
        var actions = machine.start()
        // When the machine decided the pending actions. A `.wait` counts from there, so the work
        // the handler does on the state change published just before it (the core commits and
        // fsyncs the `link_lost` alarm on this thread) does not lengthen the backoff.
        var decidedAt = ContinuousClock.now
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: readBufferSize, alignment: 16)
        defer { buffer.deallocate() }
        while !isStopping, !actions.isEmpty {
            let action = actions.removeFirst()
            switch action {
            case .publish(let state):
                handler(.state(state))
            case .wait(let delay):
                let remaining = max(.zero, delay - (ContinuousClock.now - decidedAt))
                if wake.wait(timeout: remaining), !isStopping {
                    // udev saw the device appear (``deviceAppeared()``): open now, backoff reset.
                    actions += machine.deviceAppeared()
                } else {
                    actions += machine.retryDue()
                }
            case .open:
                let port: SerialPort
                do {
                    port = try SerialPort.open(path: path, configuration: configuration)
                } catch {
                    decidedAt = ContinuousClock.now
                    actions += machine.openFailed(error)
                    continue
                }
                let keep = shared.withLock { s -> Bool in
                    if s.stopping { return false }
                    s.port = port
                    return true
                }
                guard keep else {
                    port.close()
                    return
                }
                actions += machine.openSucceeded()
                while let next = actions.first, case .publish(let state) = next {
                    actions.removeFirst()
                    handler(.state(state))
                }
                let cause = readUntilGone(port, buffer, beat: beat, handler)
                shared.withLock { $0.port = nil }
                port.close()
                if let cause {
                    decidedAt = ContinuousClock.now
                    actions += machine.disconnected(cause)
                }
            }
        }
    }

    /// Reads until the device goes (returns the cause) or the link stops (returns nil), beating
    /// once every `beat` (PROTOCOL.md §2.5: `HOST_HEARTBEAT` once a second, whatever the
    /// programmer's own rate). A beat due within ``beatSlack`` of a read rides on that read's
    /// wake-up instead of adding its own; it is never earlier than that.
    private func readUntilGone(_ port: SerialPort, _ buffer: UnsafeMutableRawBufferPointer, beat: Duration?,
                               _ handler: @Sendable (DeviceLinkEvent) -> Void) -> DisconnectCause? {
        var nextBeat = ContinuousClock.now
        func beatIfDue(within slack: Duration) {
            guard let beat else { return }
            let now = ContinuousClock.now
            if nextBeat - now <= slack {
                handler(.beat)
                nextBeat = now + beat
            }
        }
        while true {
            beatIfDue(within: .zero)
            do {
                let n = try port.read(into: buffer, timeout: beat.map { _ in nextBeat - ContinuousClock.now })
                if n > 0 {
                    handler(.data(UnsafeRawBufferPointer(rebasing: buffer[0..<n])))
                    if let beat { beatIfDue(within: beat * Self.beatSlack) }
                }
            } catch {
                switch error {
                case .disconnected(_, let cause): return cause
                case .closed: return isStopping ? nil : .hangUp
                case .systemCallFailed(_, _, let code): return .deviceError(errno: code)
                default: return .deviceError(errno: EIO)
                }
            }
        }
    }
}
