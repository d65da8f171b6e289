/// One journal event as the bridge streams it: its id, type and JSON text, as it is written into
/// `itb_event`.
public struct JournalEvent: Hashable, Sendable {
    /// The bridge's journal id (SSE `id:`).
    public var id: Int64
    /// The event type (SSE `event:`): `device`, `status`, `reservoir`, `alarm`, `program`, `refill`.
    public var type: String
    /// The event's JSON (SSE `data:`).
    public var data: String

    /// An event.
    public init(id: Int64, type: String, data: String) {
        self.id = id
        self.type = type
        self.data = data
    }
}

/// When a batch is complete: at `maxEvents`, or once `maxDelay` has passed since its first event,
/// or when the stream has nothing more for now (a catch-up fills batches to `maxEvents`; a live
/// stream writes each event a moment after it arrives).
public struct BatchRule: Hashable, Sendable {
    /// The most events in one transaction.
    public var maxEvents: Int
    /// The longest an event waits in the forwarder for more to join it.
    public var maxDelay: Duration

    /// A rule; `maxEvents` at least 1.
    public init(maxEvents: Int = 5000, maxDelay: Duration = .milliseconds(200)) {
        self.maxEvents = max(1, maxEvents)
        self.maxDelay = maxDelay
    }

    /// Whether a batch of `count` events whose first arrived `age` ago is to be written now.
    public func isComplete(count: Int, age: Duration) -> Bool {
        count >= maxEvents || (count > 0 && age >= maxDelay)
    }
}

/// Exponential back-off between attempts to reach the bridge or PostgreSQL: `initial`, doubled
/// after each failure up to `maximum`, back to `initial` after a success.
public struct Backoff: Hashable, Sendable {
    /// The first delay.
    public var initial: Duration
    /// The longest delay.
    public var maximum: Duration
    /// The failures since the last success.
    public private(set) var failures = 0

    /// A back-off from `initial` up to `maximum`.
    public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(30)) {
        self.initial = initial
        self.maximum = max(initial, maximum)
    }

    /// Records a failure and returns how long to wait before the next attempt.
    public mutating func failed() -> Duration {
        failures += 1
        var delay = initial
        for _ in 1..<failures {
            delay = delay * 2
            if delay >= maximum { return maximum }
        }
        return min(delay, maximum)
    }

    /// Records a success: the next failure waits `initial` again.
    public mutating func succeeded() { failures = 0 }
}

/// Where the forwarder is in a bridge's journal, and whether the next event may follow.
///
/// The bridge sends events in ascending id order, with no repeat after `Last-Event-ID`; an event
/// at or below the position would be written twice, and is refused rather than skipped, since it
/// means the stream is not what the forwarder asked for.
public struct StreamPosition: Hashable, Sendable {
    /// The last event id committed to PostgreSQL (0: none yet).
    public private(set) var committed: Int64
    /// The last event id taken into the batch being built.
    public private(set) var taken: Int64

    /// A position at `committed`, as read from `itb_forward_position`.
    public init(committed: Int64) {
        self.committed = committed
        taken = committed
    }

    /// A stream that broke the bridge's ordering promise.
    public struct OutOfOrder: Error, Hashable, Sendable, CustomStringConvertible {
        /// The id received.
        public var id: Int64
        /// The id it had to exceed.
        public var after: Int64
        /// `id` came where an id above `after` was due.
        public init(id: Int64, after: Int64) {
            self.id = id
            self.after = after
        }
        public var description: String {
            "the bridge sent event \(id) after \(after): ids must ascend after Last-Event-ID; reconnecting from the committed position"
        }
    }

    /// Takes `id` into the current batch; throws if it does not come after what was taken.
    public mutating func take(_ id: Int64) throws(OutOfOrder) {
        guard id > taken else { throw OutOfOrder(id: id, after: taken) }
        taken = id
    }

    /// The batch up to `id` was committed.
    public mutating func commit(through id: Int64) {
        committed = max(committed, id)
        taken = max(taken, committed)
    }

    /// The batch being built was abandoned (a failed write): go back to the committed position.
    public mutating func rollBack() { taken = committed }
}
