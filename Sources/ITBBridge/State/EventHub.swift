public import NIOCore
import Synchronization
import DequeModule

/// A published event, rendered once as its SSE text and shared by every subscriber: fan-out
/// copies a reference, never the bytes.
public final class PublishedEvent: Sendable {
    /// The global event id from the journal; ``unjournaled`` for a live snapshot the journal
    /// could not store.
    public let id: Int64
    /// The id of an event that is not in the journal (sent without an SSE `id:`).
    public static let unjournaled: Int64 = 0
    /// The programmer serial it concerns.
    public let device: String
    /// The pump it belongs to; nil outside a pump session.
    public let pump: String?
    /// `device`, `status`, `reservoir`, `alarm`, `program`, `refill`.
    public let type: String
    /// `id: …\nevent: …\ndata: …\n\n`, ready to write.
    public let sse: ByteBuffer
    /// The same bytes framed as one HTTP/1.1 chunk (`<hex length>\r\n…\r\n`), framed once for
    /// every client of a chunked stream; ``sse`` is a view into it.
    public let chunk: ByteBuffer

    /// Renders `event` once for all subscribers.
    public convenience init(_ event: StoredEvent) {
        self.init(id: event.id, device: event.device, pump: event.pump, type: event.type, lines: "id: \(event.id)\nevent: \(event.type)\ndata: ", data: event.data)
    }

    private init(id: Int64, device: String, pump: String?, type: String, lines: String, data: String) {
        self.id = id
        self.device = device
        self.pump = pump
        self.type = type
        let length = lines.utf8.count + data.utf8.count + 2
        let header = String(length, radix: 16) + "\r\n"
        var buffer = ByteBufferAllocator().buffer(capacity: header.utf8.count + length + 2)
        buffer.writeString(header)
        buffer.writeString(lines)
        buffer.writeString(data)
        buffer.writeString("\n\n\r\n")
        chunk = buffer
        sse = buffer.getSlice(at: header.utf8.count, length: length)!
    }

    /// A live snapshot (status, reservoir, device) published while the journal cannot store it:
    /// sent without an SSE `id:`, so followers keep seeing live values and their `Last-Event-ID`
    /// stays on the last stored event. It is never replayed.
    public convenience init(unjournaled device: String, pump: String? = nil, type: String, data: String) {
        self.init(id: Self.unjournaled, device: device, pump: pump, type: type, lines: "event: \(type)\ndata: ", data: data)
    }
}

/// Which events a subscriber wants.
public struct EventFilter: Hashable, Sendable {
    /// Only this device (programmer serial); nil for all.
    public var device: String?
    /// Only this pump (``PumpIdentity/id``); nil for all.
    public var pump: String?
    /// Only these types; nil for all.
    public var types: Set<String>?

    /// Creates a filter.
    public init(device: String? = nil, pump: String? = nil, types: Set<String>? = nil) {
        self.device = device
        self.pump = pump
        self.types = types
    }

    /// True when an event of this device, pump and type passes.
    public func accepts(device eventDevice: String, pump eventPump: String? = nil, type: String) -> Bool {
        if let device, device != eventDevice { return false }
        if let pump, pump != eventPump { return false }
        if let types, !types.contains(type) { return false }
        return true
    }
}

/// Where a live subscriber's events go once it follows the hub on an event loop (see
/// ``EventHub/attach(_:to:)``). Every call is made on ``eventLoop``.
public protocol EventSink: AnyObject, Sendable {
    /// The loop that runs the sink's calls.
    var eventLoop: any EventLoop { get }
    /// Sends one event (the sink skips what it already sent, and cuts itself off when its client
    /// stops reading).
    func deliver(_ event: PublishedEvent)
    /// Sends a keep-alive if nothing was sent since `cutoff`.
    func keepAlive(ifIdleSince cutoff: NIODeadline)
    /// The hub is closing: end the stream.
    func finish()
}

/// Fans published events out to live subscribers.
///
/// A subscriber starts with a bounded queue that it reads with ``Subscription/next()`` (while it
/// catches up from the journal, say). Publishing never waits for a subscriber: an event is
/// appended to each matching queue under that queue's lock. A subscriber whose queue is full is
/// *lagged*: it is removed, gets a final `lagged` signal, and its client is closed, so one slow
/// client never slows the others or the bridge. The client can reconnect with `Last-Event-ID`
/// and catch up from the journal.
///
/// A subscriber that is live can then be *attached* to an ``EventSink`` on its connection's event
/// loop: from then on each event costs one task per event loop, which writes it to every attached
/// sink of that loop, instead of a task wake-up and an event-loop hop per subscriber. That is what
/// lets a thousand clients follow one device cheaply.
public final class EventHub: Sendable {
    /// Live subscribers by id, and what publishing reads: the queue-mode subscribers and the
    /// attached sinks grouped by event loop, rebuilt only when someone subscribes, attaches or
    /// leaves, so publishing reads them without allocating (copy-on-write).
    private struct Subscribers {
        var byID: [Int: Subscription] = [:]
        var attached: [Int: Attached] = [:]
        var snapshot: [Subscription] = []
        var loops: [LoopGroup] = []
        mutating func rebuild() {
            snapshot = byID.values.filter { attached[$0.id] == nil }
            var groups: [ObjectIdentifier: LoopGroup] = [:]
            for member in attached.values {
                groups[ObjectIdentifier(member.sink.eventLoop), default: LoopGroup(loop: member.sink.eventLoop)].members.append(member)
            }
            loops = Array(groups.values)
        }
    }
    /// An attached subscriber: its filter and its sink.
    struct Attached: Sendable {
        let filter: EventFilter
        let sink: any EventSink
    }
    /// The attached subscribers of one event loop.
    struct LoopGroup: Sendable {
        let loop: any EventLoop
        var members: [Attached] = []
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

    /// The number of live subscribers, attached or not.
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
        let (all, loops) = subscribers.withLock { list -> ([Subscription], [LoopGroup]) in
            closed.store(true, ordering: .relaxed)
            defer { list = Subscribers() }
            return (list.snapshot, list.loops)
        }
        for subscription in all { subscription.cancel() }
        for group in loops {
            group.loop.execute { for member in group.members { member.sink.finish() } }
        }
    }

    /// Attaches a live subscriber to `sink`; call it on `sink.eventLoop`. Returns the events still
    /// queued, which the caller sends first (right away, on this loop); every later event goes to
    /// the sink, in order. Returns nil when the subscription has already ended (lagged or
    /// cancelled): the caller ends the stream.
    public func attach(_ subscription: Subscription, to sink: any EventSink) -> [PublishedEvent]? {
        sink.eventLoop.preconditionInEventLoop()
        guard let queued = subscription.attach(sink) else { return nil }
        let attached = subscribers.withLock { list -> Bool in
            guard list.byID[subscription.id] != nil else { return false }
            list.attached[subscription.id] = Attached(filter: subscription.filter, sink: sink)
            list.rebuild()
            return true
        }
        return attached ? queued : nil
    }

    /// Delivers `event` to every matching subscriber. Returns how many were cut off as lagged.
    @discardableResult
    public func publish(_ event: PublishedEvent) -> Int {
        let (targets, loops) = subscribers.withLock { ($0.snapshot, $0.loops) }
        var lagged = 0
        for subscription in targets where subscription.filter.accepts(device: event.device, pump: event.pump, type: event.type) {
            switch subscription.enqueue(event) {
            case .queued:
                break
            case .lagged:
                lagged += 1
                remove(subscription.id)
                subscription.onLagged()
            case .attached(let sink):
                // Attached since this snapshot was taken: its loop task runs after the attach.
                sink.eventLoop.execute { sink.deliver(event) }
            }
        }
        for group in loops {
            group.loop.execute {
                for member in group.members where member.filter.accepts(device: event.device, pump: event.pump, type: event.type) {
                    member.sink.deliver(event)
                }
            }
        }
        return lagged
    }

    /// Sends a keep-alive on every attached stream that has sent nothing for `idle`, so that a
    /// client that has gone away is noticed. The main loop calls it on each pass.
    public func keepAliveIdle(after idle: Duration) {
        let loops = subscribers.withLock { $0.loops }
        let cutoff = NIODeadline.now() - .nanoseconds(idle.components.seconds * 1_000_000_000 + idle.components.attoseconds / 1_000_000_000)
        for group in loops {
            group.loop.execute { for member in group.members { member.sink.keepAlive(ifIdleSince: cutoff) } }
        }
    }

    func remove(_ id: Int) {
        subscribers.withLock { list in
            let removed = list.byID.removeValue(forKey: id) != nil
            list.attached[id] = nil
            if removed { list.rebuild() }
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
        }

        let id: Int
        let filter: EventFilter
        let onLagged: @Sendable () -> Void
        private let capacity: Int
        private weak let hub: EventHub?
        private struct State: ~Copyable {
            var queue = Deque<PublishedEvent>()
            var lagged = false
            var finished = false
            var sink: (any EventSink)?
        }
        private let state = Mutex(State())

        init(id: Int, filter: EventFilter, capacity: Int, hub: EventHub, onLagged: @escaping @Sendable () -> Void) {
            self.id = id
            self.filter = filter
            self.capacity = capacity
            self.hub = hub
            self.onLagged = onLagged
        }

        /// What ``enqueue(_:)`` did.
        enum Enqueued {
            /// Queued (or handed to the waiting reader, or dropped after the end).
            case queued
            /// The queue was full: the subscriber is now lagged.
            case lagged
            /// The subscriber is attached to this sink: deliver there.
            case attached(any EventSink)
        }

        /// Appends an event to the queue.
        func enqueue(_ event: PublishedEvent) -> Enqueued {
            state.withLock { s in
                if let sink = s.sink { return .attached(sink) }
                if s.finished || s.lagged { return .queued }
                if s.queue.count >= capacity {
                    s.lagged = true
                    s.queue.removeAll()
                    return .lagged
                }
                s.queue.append(event)
                return .queued
            }
        }

        /// Switches to `sink`; returns what was still queued, or nil when already ended.
        fileprivate func attach(_ sink: any EventSink) -> [PublishedEvent]? {
            state.withLock { s in
                guard !s.finished, !s.lagged else { return nil }
                s.sink = sink
                defer { s.queue.removeAll() }
                return Array(s.queue)
            }
        }

        /// The next queued event; `.lagged` once after an overflow; `.finished` after
        /// ``cancel()``; nil when nothing is queued. It never waits: a subscriber waits for events
        /// attached to a sink (``EventHub/attach(_:to:)``), and the queue only covers its
        /// catching up from the journal.
        public func next() -> Item? {
            state.withLock { s in
                if let event = s.queue.popFirst() { return .event(event) }
                if s.lagged {
                    s.finished = true
                    s.lagged = false
                    return .lagged
                }
                return s.finished ? .finished : nil
            }
        }

        /// An event already queued, without waiting; nil when none.
        public func poll() -> PublishedEvent? {
            state.withLock { $0.queue.popFirst() }
        }

        /// Stops the subscription. Idempotent.
        public func cancel() {
            state.withLock { s in
                s.finished = true
                s.queue.removeAll()
            }
            hub?.remove(id)
        }
    }
}
