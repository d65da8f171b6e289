import Foundation
import ITBBridge
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Live fan-out: order, filters, bounded queues that cut off a slow subscriber, wake-ups.
@Suite("Event hub")
struct EventHubTests {
    private func event(_ id: Int64, device: String = "PGM-1", type: String = "status") -> PublishedEvent {
        PublishedEvent(StoredEvent(id: id, timeMs: 1_750_000_000_000 + id, device: device, type: type, data: "{\"n\":\(id)}"))
    }

    /// The event id of an item, nil when it is not an event.
    private func eventID(_ item: EventHub.Subscription.Item?) -> Int64? {
        if case .event(let event)? = item { return event.id }
        return nil
    }

    private func isLagged(_ item: EventHub.Subscription.Item?) -> Bool {
        if case .lagged? = item { return true }
        return false
    }

    private func isFinished(_ item: EventHub.Subscription.Item?) -> Bool {
        if case .finished? = item { return true }
        return false
    }

    // MARK: fan-out and filters

    @Test("every subscriber receives every event, in publication order")
    func fanOutInOrder() {
        let hub = EventHub(capacity: 64)
        let subscriptions = (0..<5).map { _ in hub.subscribe(EventFilter()) }
        for id in 1...20 { #expect(hub.publish(event(Int64(id))) == 0) }
        for subscription in subscriptions {
            var ids: [Int64] = []
            while let event = subscription.poll() { ids.append(event.id) }
            #expect(ids == Array(1...20))
        }
    }

    @Test("subscribers reading concurrently with the publisher each see every event in order")
    func fanOutConcurrentReaders() async {
        let hub = EventHub(capacity: 4096)
        let count = 500
        let subscriptions = (0..<8).map { _ in hub.subscribe(EventFilter()) }
        await withTaskGroup(of: [Int64].self) { group in
            for subscription in subscriptions {
                group.addTask {
                    var ids: [Int64] = []
                    let deadline = ContinuousClock.now + .seconds(30)
                    while ids.count < count, ContinuousClock.now < deadline {
                        switch subscription.next() {
                        case .event(let event)?: ids.append(event.id)
                        case nil: await Task.yield()
                        default: return ids
                        }
                    }
                    return ids
                }
            }
            for id in 1...count { hub.publish(event(Int64(id))) }
            for await ids in group {
                #expect(ids == (1...count).map(Int64.init))
            }
        }
    }

    @Test("a device filter passes only that device's events")
    func filterByDevice() {
        let hub = EventHub(capacity: 64)
        let one = hub.subscribe(EventFilter(device: "PGM-1"))
        let all = hub.subscribe(EventFilter())
        hub.publish(event(1, device: "PGM-1"))
        hub.publish(event(2, device: "PGM-2"))
        hub.publish(event(3, device: "PGM-1", type: "alarm"))
        hub.publish(event(4, device: "PGM-10"))
        #expect(one.poll()?.id == 1)
        #expect(one.poll()?.id == 3)
        #expect(one.poll() == nil)
        #expect([all.poll(), all.poll(), all.poll(), all.poll()].map { $0?.id } == [1, 2, 3, 4])
    }

    @Test("a type filter passes only those types, and combines with a device filter")
    func filterByType() {
        let hub = EventHub(capacity: 64)
        let alarms = hub.subscribe(EventFilter(types: ["alarm"]))
        let alarmsAndRefills = hub.subscribe(EventFilter(types: ["alarm", "refill"]))
        let deviceAlarms = hub.subscribe(EventFilter(device: "PGM-2", types: ["alarm"]))
        hub.publish(event(1, device: "PGM-1", type: "status"))
        hub.publish(event(2, device: "PGM-1", type: "alarm"))
        hub.publish(event(3, device: "PGM-2", type: "refill"))
        hub.publish(event(4, device: "PGM-2", type: "alarm"))
        hub.publish(event(5, device: "PGM-2", type: "reservoir"))
        func drain(_ s: EventHub.Subscription) -> [Int64] {
            var ids: [Int64] = []
            while let e = s.poll() { ids.append(e.id) }
            return ids
        }
        #expect(drain(alarms) == [2, 4])
        #expect(drain(alarmsAndRefills) == [2, 3, 4])
        #expect(drain(deviceAlarms) == [4])
        #expect(EventFilter(device: "PGM-2", types: ["alarm"]).accepts(device: "PGM-2", type: "alarm"))
        #expect(!EventFilter(device: "PGM-2", types: ["alarm"]).accepts(device: "PGM-1", type: "alarm"))
        #expect(!EventFilter(types: []).accepts(device: "PGM-1", type: "alarm"))
    }

    @Test("an event is rendered once as SSE text: id, event and data lines, then a blank line")
    func sseRendering() {
        let published = PublishedEvent(StoredEvent(id: 42, timeMs: 0, device: "PGM-1", type: "alarm", data: "{\"code\":\"eri\"}"))
        #expect(published.id == 42)
        #expect(published.device == "PGM-1")
        #expect(published.type == "alarm")
        #expect(String(decoding: published.sse.readableBytesView, as: UTF8.self) == "id: 42\nevent: alarm\ndata: {\"code\":\"eri\"}\n\n")
    }

    // MARK: a slow subscriber

    @Test("a subscriber that never reads is cut off after capacity events: one lagged, then finished; the others get everything")
    func slowSubscriberIsLaggedOnce() async {
        let capacity = 16
        let hub = EventHub(capacity: capacity)
        let laggedCalls = EventHubTestBox(0)
        let slow = hub.subscribe(EventFilter()) { laggedCalls.value.withLock { $0 += 1 } }
        let fast = hub.subscribe(EventFilter())
        var fastIDs: [Int64] = []

        // Exactly `capacity` queued events fit.
        for id in 1...capacity {
            #expect(hub.publish(event(Int64(id))) == 0)
            if let e = fast.poll() { fastIDs.append(e.id) }
        }
        #expect(hub.subscriberCount == 2)
        #expect(laggedCalls.value.withLock { $0 } == 0)

        // One more overflows the slow subscriber's queue.
        #expect(hub.publish(event(Int64(capacity + 1))) == 1)
        if let e = fast.poll() { fastIDs.append(e.id) }
        #expect(hub.subscriberCount == 1)
        #expect(laggedCalls.value.withLock { $0 } == 1)

        // Publishing goes on; the slow one is gone and its callback does not run again.
        for id in (capacity + 2)...(capacity * 4) {
            #expect(hub.publish(event(Int64(id))) == 0)
            if let e = fast.poll() { fastIDs.append(e.id) }
        }
        #expect(laggedCalls.value.withLock { $0 } == 1)
        #expect(fastIDs == (1...(capacity * 4)).map(Int64.init))

        #expect(isLagged(slow.next()))
        #expect(isFinished(slow.next()))
        #expect(isFinished(slow.next()))
        #expect(slow.poll() == nil)
    }

    // MARK: wake-ups

    @Test("cancel ends the subscription: next() says finished, later events reach nobody, and cancel is idempotent")
    func cancelFinishes() {
        let hub = EventHub(capacity: 16)
        let subscription = hub.subscribe(EventFilter())
        #expect(hub.subscriberCount == 1)
        #expect(subscription.next() == nil)
        hub.publish(event(1))
        subscription.cancel()
        #expect(isFinished(subscription.next()))
        #expect(hub.subscriberCount == 0)
        subscription.cancel()
        #expect(isFinished(subscription.next()))
        #expect(hub.publish(event(2)) == 0)
        #expect(subscription.poll() == nil)
    }

    // MARK: scale

    @Test("publishing to 1000 subscribers delivers each event to each")
    func thousandSubscribers() {
        let hub = EventHub(capacity: 64)
        let subscriptions = (0..<1000).map { _ in hub.subscribe(EventFilter()) }
        #expect(hub.subscriberCount == 1000)
        for id in 1...10 { #expect(hub.publish(event(Int64(id))) == 0) }
        var delivered = 0
        for subscription in subscriptions {
            var ids: [Int64] = []
            while let e = subscription.poll() { ids.append(e.id) }
            #expect(ids == Array(1...10))
            delivered += ids.count
        }
        #expect(delivered == 10_000)
        for subscription in subscriptions { subscription.cancel() }
        #expect(hub.subscriberCount == 0)
    }
}

/// A value shared with callbacks and tasks.
private final class EventHubTestBox<Value: Sendable>: Sendable {
    let value: Mutex<Value>
    init(_ initial: Value) { value = Mutex(initial) }
}

/// A sink that records what the hub delivers to it, on its event loop.
final class RecordingSink: EventSink, @unchecked Sendable {
    // @unchecked: `ids` and `finished` are only touched on `eventLoop` (and read under the lock).
    let eventLoop: any EventLoop
    private let state = Mutex<(ids: [Int64], finished: Bool)>(([], false))
    init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }
    func deliver(_ event: PublishedEvent) {
        eventLoop.preconditionInEventLoop()
        state.withLock { $0.ids.append(event.id) }
    }
    func keepAlive(ifIdleSince cutoff: NIODeadline) {}
    func finish() { state.withLock { $0.finished = true } }
    var ids: [Int64] { state.withLock { $0.ids } }
    var finished: Bool { state.withLock { $0.finished } }
}

@Suite("Event hub: subscribers attached to an event loop")
struct EventHubAttachTests {
    private func event(_ id: Int64, device: String = "PGM-1") -> PublishedEvent {
        PublishedEvent(StoredEvent(id: id, timeMs: 1_750_000_000_000 + id, device: device, type: "status", data: "{\"n\":\(id)}"))
    }

    @Test("attaching while events are being published loses none and repeats none: the queued ones come first, then every later one on the sink's loop, in order")
    func attachDuringPublishing() async throws {
        let hub = EventHub(capacity: 100_000)
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let subscription = hub.subscribe(EventFilter(device: "PGM-1"))
        let sink = RecordingSink(eventLoop: loop)
        let total: Int64 = 20_000
        for id in 1...10 { hub.publish(event(Int64(id))) }
        let publisher = Thread {
            for id in 11...total {
                hub.publish(self.event(id))
                if id % 3 == 0 { hub.publish(self.event(id, device: "PGM-OTHER")) }  // filtered out, with ids reused on purpose
            }
        }
        publisher.start()
        try await Task.sleep(for: .milliseconds(1))
        let attached = try await loop.submit { () -> Bool in
            guard let queued = hub.attach(subscription, to: sink) else { return false }
            for event in queued { sink.deliver(event) }
            return true
        }.get()
        #expect(attached)
        let deadline = ContinuousClock.now + .seconds(20)
        while sink.ids.count < Int(total), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(sink.ids == Array(1...total), "every event once, in order (\(sink.ids.count) received)")
        #expect(hub.subscriberCount == 1)
        hub.close()
        try await loop.submit {}.get()
        #expect(sink.finished, "closing the hub ends attached streams")
    }

    @Test("a subscription that lagged or was cancelled cannot be attached")
    func endedSubscriptionsDoNotAttach() async throws {
        let hub = EventHub(capacity: 16)
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let lagged = hub.subscribe(EventFilter())
        for id in 1...17 { hub.publish(event(Int64(id))) }
        let cancelled = hub.subscribe(EventFilter())
        cancelled.cancel()
        let results = try await loop.submit {
            (hub.attach(lagged, to: RecordingSink(eventLoop: loop)), hub.attach(cancelled, to: RecordingSink(eventLoop: loop)))
        }.get()
        #expect(results.0 == nil)
        #expect(results.1 == nil)
        #expect(hub.subscriberCount == 0)
    }
}
