public import NIOCore
import Synchronization
import DequeModule

/// A published event, rendered once as its SSE text and shared by every subscriber: fan-out
/// copies a reference, never the bytes.
public final class PublishedEvent: Sendable {
    /// The global event id from the journal.
    public let id: Int64
    /// The programmer serial it concerns.
    public let device: String
    /// `device`, `status`, `reservoir`, `alarm`, `program`, `refill`.
    public let type: String
    /// `id: …\nevent: …\ndata: …\n\n`, ready to write.
    public let sse: ByteBuffer

    /// Renders `event` once for all subscribers.
    public init(_ event: StoredEvent) {
        id = event.id
        device = event.device
        type = event.type
        var buffer = ByteBufferAllocator().buffer(capacity: event.data.utf8.count + 48)
        buffer.writeString("id: \(event.id)\nevent: \(event.type)\ndata: ")
        buffer.writeString(event.data)
        buffer.writeString("\n\n")
        sse = buffer
    }
}

/// Which events a subscriber wants.
public struct EventFilter: Hashable, Sendable {
    /// Only this device (programmer serial); nil for all.
    public var device: String?
    /// Only these types; nil for all.
    public var types: Set<String>?

    /// Creates a filter.
    public init(device: String? = nil, types: Set<String>? = nil) {
        self.device = device
        self.types = types
    }

    /// True when `event` passes.
    public func accepts(device eventDevice: String, type: String) -> Bool {
        if let device, device != eventDevice { return false }
        if let types, !types.contains(type) { return false }
        return true
    }
}

/// Fans published events out to live subscribers, each with a bounded queue.
///
/// Publishing never waits for a subscriber: an event is appended to each matching queue under
/// that queue's lock. A subscriber whose queue is full is *lagged*: it is removed, gets a final
/// `lagged` signal, and its client is closed, so one slow client never slows the others or the
/// bridge. The client can reconnect with `Last-Event-ID` and catch up from the journal.
public final class EventHub: Sendable {
    /// Live subscribers by id, and the same as an array that is rebuilt only when someone
    /// subscribes or leaves, so publishing reads it without allocating (copy-on-write).
    private struct Subscribers {
        var byID: [Int: Subscription] = [:]
        var snapshot: [Subscription] = []
        mutating func rebuild() { snapshot = Array(byID.values) }
    }
    private let subscribers = Mutex(Subscribers())
    private let closed = Atomic<Bool>(false)
    private let nextID = Atomic<Int>(0)
    /// Queue capacity of each subscriber.
    public let capacity: Int

    /// Creates a hub whose subscribers may queue `capacity` events.
    public init(capacity: Int) {
        self.capacity = capacity
    }

    /// The number of live subscribers.
    public var subscriberCount: Int { subscribers.withLock { $0.byID.count } }

    /// Registers a subscriber. Call ``Subscription/cancel()`` when its client goes away.
    /// `onLagged` runs once, on the publishing thread, when the subscriber overflows.
    public func subscribe(_ filter: EventFilter, onLagged: @escaping @Sendable () -> Void = {}) -> Subscription {
        let id = nextID.add(1, ordering: .relaxed).newValue
        let subscription = Subscription(id: id, filter: filter, capacity: capacity, hub: self, onLagged: onLagged)
        let open = subscribers.withLock { list -> Bool in
            if closed.load(ordering: .relaxed) { return false }
            list.byID[id] = subscription
            list.rebuild()
            return true
        }
        if !open { subscription.cancel() }
        return subscription
    }

    /// Shutting down: finishes every subscription (their streams end, so the HTTP server can
    /// stop) and refuses new ones.
    public func close() {
        let all = subscribers.withLock { list -> [Subscription] in
            closed.store(true, ordering: .relaxed)
            defer { list = Subscribers() }
            return list.snapshot
        }
        for subscription in all { subscription.cancel() }
    }

    /// Delivers `event` to every matching subscriber. Returns how many were cut off as lagged.
    @discardableResult
    public func publish(_ event: PublishedEvent) -> Int {
        let targets = subscribers.withLock { $0.snapshot }
        var lagged = 0
        for subscription in targets where subscription.filter.accepts(device: event.device, type: event.type) {
            if !subscription.enqueue(event) {
                lagged += 1
                remove(subscription.id)
                subscription.onLagged()
            }
        }
        return lagged
    }

    /// Wakes subscribers that have waited longer than `idle` with ``Subscription/Item/idle``, so
    /// their streams can send a keep-alive (and notice a client that has gone away).
    public func nudgeIdle(after idle: Duration) {
        let targets = subscribers.withLock { $0.snapshot }
        let now = ContinuousClock.now
        for subscription in targets { subscription.nudge(ifWaitingSince: now - idle) }
    }

    func remove(_ id: Int) {
        subscribers.withLock { list in
            if list.byID.removeValue(forKey: id) != nil { list.rebuild() }
        }
    }

    /// One subscriber's bounded queue.
    public final class Subscription: Sendable {
        /// What the next call to ``next()`` returns.
        public enum Item: Sendable {
            /// An event to send.
            case event(PublishedEvent)
            /// The queue overflowed: send `lagged` and close.
            case lagged
            /// Cancelled: stop.
            case finished
            /// Nothing happened for a while: a chance to send a keep-alive.
            case idle
        }

        let id: Int
        let filter: EventFilter
        let onLagged: @Sendable () -> Void
        private let capacity: Int
        private weak let hub: EventHub?
        private struct State: ~Copyable {
            var queue = Deque<PublishedEvent>()
            var waiter: CheckedContinuation<Item, Never>?
            var waitingSince: ContinuousClock.Instant?
            var lagged = false
            var finished = false
        }
        private let state = Mutex(State())

        init(id: Int, filter: EventFilter, capacity: Int, hub: EventHub, onLagged: @escaping @Sendable () -> Void) {
            self.id = id
            self.filter = filter
            self.capacity = capacity
            self.hub = hub
            self.onLagged = onLagged
        }

        func nudge(ifWaitingSince cutoff: ContinuousClock.Instant) {
            let waiter = state.withLock { s -> CheckedContinuation<Item, Never>? in
                guard let since = s.waitingSince, since <= cutoff, let waiter = s.waiter else { return nil }
                s.waiter = nil
                s.waitingSince = nil
                return waiter
            }
            waiter?.resume(returning: .idle)
        }

        /// Appends an event; false when the queue was full (the subscriber is now lagged).
        func enqueue(_ event: PublishedEvent) -> Bool {
            let (waiter, item, accepted): (CheckedContinuation<Item, Never>?, Item, Bool) = state.withLock { s in
                if s.finished || s.lagged { return (nil, .finished, true) }
                if let waiter = s.waiter {
                    s.waiter = nil
                    s.waitingSince = nil
                    return (waiter, .event(event), true)
                }
                if s.queue.count >= capacity {
                    s.lagged = true
                    s.queue.removeAll()
                    return (nil, .lagged, false)
                }
                s.queue.append(event)
                return (nil, .finished, true)
            }
            waiter?.resume(returning: item)
            return accepted
        }

        /// The next event, waiting for one; `.lagged` once after an overflow; `.finished` after
        /// ``cancel()``.
        public func next() async -> Item {
            await withCheckedContinuation { continuation in
                let ready: Item? = state.withLock { s in
                    if let event = s.queue.popFirst() { return .event(event) }
                    if s.lagged {
                        s.finished = true
                        s.lagged = false
                        return .lagged
                    }
                    if s.finished { return .finished }
                    s.waiter = continuation
                    s.waitingSince = ContinuousClock.now
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }

        /// An event already queued, without waiting; nil when none.
        public func poll() -> PublishedEvent? {
            state.withLock { $0.queue.popFirst() }
        }

        /// Stops the subscription and wakes a waiting ``next()``. Idempotent.
        public func cancel() {
            let waiter = state.withLock { s -> CheckedContinuation<Item, Never>? in
                s.finished = true
                s.queue.removeAll()
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume(returning: .finished)
            hub?.remove(id)
        }
    }
}
