/// The life of one device link as a plain state machine, free of I/O so it is tested directly:
/// searching → opening → connected → disconnected → (back off) → opening …
///
/// The driver (``DeviceLink``) feeds it what happened and performs the actions it returns. Only
/// *changes* of the published state are returned as `.publish`, so a port that stays missing for
/// an hour produces one `searching`, not one per retry.
public struct LinkStateMachine: Sendable {
    /// The state others see (the daemon publishes it as a `device` event).
    public enum PublishedState: Hashable, Sendable, CustomStringConvertible {
        /// Waiting for the device to appear.
        case searching
        /// Open and configured; bytes flow.
        case connected
        /// The device went away (with its cause); a reopen is scheduled.
        case disconnected(DisconnectCause)
        /// Another process holds the port; retrying.
        case busy(holder: String?)
        /// The device exists but cannot be used (permission, not a tty, bad configuration).
        case unavailable(reason: String)

        public var description: String {
            switch self {
            case .searching: "searching"
            case .connected: "connected"
            case .disconnected(let cause): "disconnected: \(cause)"
            case .busy(let holder): "busy: held by \(holder ?? "another process")"
            case .unavailable(let reason): "unavailable: \(reason)"
            }
        }
    }

    /// What the driver must do next.
    public enum Action: Hashable, Sendable {
        /// Tell subscribers the state changed.
        case publish(PublishedState)
        /// Try to open the port now.
        case open
        /// Wait this long (or until the device appears), then call ``retryDue()``.
        case wait(Duration)
    }

    /// Capped exponential backoff between reopen attempts.
    public struct Backoff: Hashable, Sendable {
        /// First delay after a failure (100 ms).
        public var initial: Duration
        /// Longest delay (5 s).
        public var maximum: Duration
        /// Creates a backoff policy.
        public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5)) {
            self.initial = initial
            self.maximum = maximum
        }
        /// The delay before attempt `n` (0-based) after a failure.
        public func delay(attempt: Int) -> Duration {
            var delay = initial
            for _ in 0..<min(attempt, 32) {
                delay = delay * 2
                if delay >= maximum { return maximum }
            }
            return min(delay, maximum)
        }
    }

    private enum Phase: Hashable, Sendable { case idle, opening, connected, waiting }

    /// The backoff policy.
    public let backoff: Backoff
    private var phase = Phase.idle
    private var failures = 0
    /// The last state published.
    public private(set) var published: PublishedState?

    /// Creates a machine in its idle state.
    public init(backoff: Backoff = .init()) {
        self.backoff = backoff
    }

    /// Begins: publish `searching` and try to open.
    public mutating func start() -> [Action] {
        phase = .opening
        return publish(.searching) + [.open]
    }

    /// The open succeeded.
    public mutating func openSucceeded() -> [Action] {
        phase = .connected
        failures = 0
        return publish(.connected)
    }

    /// The open failed; classify and back off.
    public mutating func openFailed(_ error: SerialPortError) -> [Action] {
        let state: PublishedState
        switch error {
        case .notFound: state = published.map { if case .disconnected = $0 { return $0 } else { return .searching } } ?? .searching
        case .busy(_, let holder): state = .busy(holder: holder)
        case .disconnected(_, let cause): state = .disconnected(cause)
        default: state = .unavailable(reason: error.description)
        }
        phase = .waiting
        let delay = backoff.delay(attempt: failures)
        failures += 1
        return publish(state) + [.wait(delay)]
    }

    /// The connected device went away.
    public mutating func disconnected(_ cause: DisconnectCause) -> [Action] {
        phase = .waiting
        failures = 0
        let delay = backoff.delay(attempt: failures)
        failures += 1
        return publish(.disconnected(cause)) + [.wait(delay)]
    }

    /// The wait is over (timer, or the device appeared): try again.
    public mutating func retryDue() -> [Action] {
        guard phase == .waiting else { return [] }
        phase = .opening
        return [.open]
    }

    /// udev announced the device: if waiting, stop waiting and reset the backoff.
    public mutating func deviceAppeared() -> [Action] {
        guard phase == .waiting else { return [] }
        failures = 0
        phase = .opening
        return [.open]
    }

    private mutating func publish(_ state: PublishedState) -> [Action] {
        guard state != published else { return [] }
        published = state
        return [.publish(state)]
    }
}
