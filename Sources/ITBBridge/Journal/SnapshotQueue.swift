import Dispatch
import GRDB

/// The snapshots (status, reservoir, a pump's latest values) published before their write, in
/// id order, and the last event id the journal assigned. Guarded by ``Journal``'s `queue` lock;
/// taken and committed only on GRDB's writer queue, so the queued writes land in order and before
/// any later write.
struct SnapshotQueue: Sendable {
    /// One step's snapshot ops, published with consecutive event ids from `firstEventID`.
    struct Batch: Sendable {
        var ops: [JournalOp]
        var firstEventID: Int64
        var nowMs: Int64
        /// How many of `ops` store an event.
        var events: Int
    }

    /// Batches not yet taken by a writer, oldest first.
    var batches: [Batch] = []
    /// Events in `batches` plus those a writer has taken and not yet committed.
    var outstandingEvents = 0
    /// A commit of the queue is scheduled on the writer queue.
    var commitScheduled = false
    /// Why the last commit of queued snapshots failed; nil once one succeeds.
    var failure: JournalError?
    /// The highest event id assigned (queued or stored).
    var lastEventID: Int64
}

extension Journal {
    /// How long queued snapshots wait before the writer commits them (a read, a synchronous
    /// commit or the main loop's sync commits them at once).
    static let queuedWriteDelay: DispatchTimeInterval = .milliseconds(20)

    /// Assigns event ids to the snapshot events of `ops` (each `.snapshot` in order) and queues
    /// them for GRDB's writer queue, which commits them (deferred) before any later write. Returns
    /// each op's result, with the events to publish now; nil when the ops must instead be committed
    /// by the caller (``commitNow(_:nowMs:)``): one is not a snapshot, the queue is full
    /// (``maximumQueuedEvents``), or the last commit of queued snapshots failed.
    ///
    /// The caller publishes the events in the order of the calls: the owner of the rules
    /// (``BridgeCore``) calls it under its lock, as it does ``commitNow(_:nowMs:)``.
    func queueSnapshots(_ ops: [JournalOp], nowMs: Int64) -> [JournalOpResult]? {
        guard ops.allSatisfy(\.isDeferrable) else { return nil }
        let events = ops.reduce(0) { $0 + ($1.storesEvent ? 1 : 0) }
        let (results, schedule) = queue.withLock { queue -> ([JournalOpResult]?, Bool) in
            guard queue.failure == nil, queue.outstandingEvents + events <= Self.maximumQueuedEvents else { return (nil, false) }
            let first = queue.lastEventID + 1
            var next = first
            let results = ops.map { op -> JournalOpResult in
                guard case .snapshot(let device, let pump, let kind, _, let data) = op else { return .none }
                defer { next += 1 }
                return JournalOpResult(events: [StoredEvent(id: next, timeMs: nowMs, device: device, pump: pump, type: kind.rawValue, data: data)])
            }
            queue.lastEventID = next - 1
            queue.batches.append(SnapshotQueue.Batch(ops: ops, firstEventID: first, nowMs: nowMs, events: events))
            queue.outstandingEvents += events
            let schedule = !queue.commitScheduled
            queue.commitScheduled = true
            return (results, schedule)
        }
        if schedule {
            // A moment later, so that the write does not compete for the CPU with the delivery of
            // what was just published, and so that a burst shares one transaction.
            DispatchQueue.global().asyncAfter(deadline: .now() + Self.queuedWriteDelay) { [self] in
                pool.asyncWriteWithoutTransaction { [self] db in try? commitQueued(db) }
            }
        }
        return results
    }

    /// True while snapshots published ahead of their write are not all committed.
    var hasQueuedSnapshots: Bool { queue.withLock { $0.outstandingEvents > 0 } }

    /// Why the last commit of queued snapshots failed (nil when it did not, or a later one succeeded).
    var queuedSnapshotFailure: JournalError? { queue.withLock { $0.failure } }

    /// Commits the queued snapshots now, without blocking the calling thread; a failure leaves
    /// them queued (and recorded in ``queuedSnapshotFailure``).
    func commitQueuedSnapshots() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            pool.asyncWriteWithoutTransaction { [self] db in
                try? commitQueued(db)
                continuation.resume()
            }
        }
    }

    /// ``commitQueuedSnapshots()`` on the calling thread, which it blocks until the commit is done.
    func commitQueuedSnapshotsNow() {
        try? pool.writeWithoutTransaction { db in try commitQueued(db) }
    }

    /// Takes every queued batch and commits them in one transaction (deferred, within the
    /// unsynced bound), on the writer connection `db`. On failure the batches go back to the head
    /// of the queue, in order, and the error is recorded and rethrown: no later write may go
    /// before them (it would take their ids).
    func commitQueued(_ db: Database) throws {
        let taken = queue.withLock { queue -> [SnapshotQueue.Batch] in
            queue.commitScheduled = false
            defer { queue.batches.removeAll(keepingCapacity: true) }
            return queue.batches
        }
        guard !taken.isEmpty else { return }
        let events = taken.reduce(0) { $0 + $1.events }
        do {
            try storeQueued(db, taken, events: events)
        } catch {
            let failure = (error as? JournalError) ?? .writeFailed("\(error)")
            queue.withLock { queue in
                queue.batches.insert(contentsOf: taken, at: 0)
                queue.failure = failure
            }
            throw failure
        }
        queue.withLock { queue in
            queue.outstandingEvents -= events
            queue.failure = nil
        }
    }
}
