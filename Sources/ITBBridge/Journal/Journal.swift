import Foundation
public import GRDB
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The bridge's durable record: SQLite through GRDB in WAL mode. Everything the API publishes is
/// written here first and gets its event id from here.
///
/// Two durabilities (``Durability``). Alarms, refills, programs, acknowledgements and link
/// sessions commit with `synchronous = FULL`: the WAL is fsynced before the commit returns, so
/// they survive a crash or a power cut, and an `ACK stored` never precedes durability (see
/// ``BridgeCore``). Batches of status and reservoir snapshots only commit with `synchronous =
/// NORMAL`: written to the WAL (so they survive a crash of the daemon at once) but fsynced by the
/// next synchronous commit, after ``maximumUnsyncedEvents`` events, or by ``syncDeferred()`` on the
/// main loop's next pass (at most 5 s later). That keeps the disk's fsync latency out of the live status path.
///
/// Snapshots may also be published before they are written at all (``queueSnapshots(_:nowMs:)``):
/// the journal assigns their event ids at once and GRDB's writer queue commits them soon after,
/// always before any later write, so the journal's events stay a prefix of the published ids.
/// Every read waits for the queued snapshots first, so a reader sees everything published before
/// it asked. Event ids published but lost to a crash or a power cut are never reused: at most
/// ``maximumQueuedEvents`` + ``maximumUnsyncedEvents`` can be unwritten or unsynced, and each start
/// moves the event id sequence on by ``eventIDGapAtStart``, more than that.
public final class Journal: Sendable {
    /// The database file.
    public let path: String
    let pool: DatabasePool

    /// How a commit reaches the disk.
    public enum Durability: Sendable {
        /// fsynced before the commit returns (`synchronous = FULL`).
        case synchronous
        /// written to the WAL now, fsynced soon after (`synchronous = NORMAL`); for snapshots only.
        case deferred
    }

    /// At most this many events are committed without an fsync; the next commit is synchronous.
    public static let maximumUnsyncedEvents = 256
    /// At most this many snapshot events wait in the queue (published, not yet written); beyond
    /// it ``queueSnapshots(_:nowMs:)`` refuses and the caller commits on its own thread.
    public static let maximumQueuedEvents = 512
    /// How far the event id sequence moves on at each start (greater than ``maximumQueuedEvents``
    /// + ``maximumUnsyncedEvents``: every id a client may have seen and a crash lost).
    public static let eventIDGapAtStart: Int64 = 1024

    /// Events committed without an fsync since the last one. Only changed on GRDB's writer queue,
    /// right after the commit that changes it, so it stays in step with the commits themselves.
    private let unsynced = Mutex(0)
    /// The snapshots published ahead of their write, and the last event id assigned.
    let queue: Mutex<SnapshotQueue>

    /// Opens (creating and migrating as needed) `journal.sqlite` in `directory`.
    public init(directory: String) throws(JournalError) {
        path = directory.hasSuffix("/") ? directory + "journal.sqlite" : directory + "/journal.sqlite"
        do throws(StateDirectoryLockError) {
            try StateDirectoryLock.createDirectory(directory)
        } catch {
            throw .cannotOpen(path: directory, reason: "\(error)")
        }
        try Self.restrictFileModes(path)
        var config = Configuration()
        config.label = "itb-journal"
        config.busyMode = .timeout(5)
        do {
            pool = try DatabasePool(path: path, configuration: config)
            // Every synchronous commit reaches the disk before it returns: an ACK never precedes
            // durability. Set on the writer connection after the pool is open: DatabasePool's own
            // WAL set-up runs `PRAGMA synchronous = NORMAL` after `prepareDatabase`, so setting
            // it there is silently undone (the fault suite's disk test found this).
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            try JournalSchema.migrator.migrate(pool)
            let lastID = try pool.write { db in
                // Ids a client may have seen before a crash or a power cut lost them must not come
                // back: an existing sequence moves on. A new journal gets its sequence row now, so
                // that its next start moves on too.
                let existed = try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'event')") ?? false
                if existed {
                    try db.execute(sql: "UPDATE sqlite_sequence SET seq = seq + ? WHERE name = 'event'", arguments: [Self.eventIDGapAtStart])
                } else {
                    try db.execute(sql: "INSERT INTO sqlite_sequence (name, seq) SELECT 'event', COALESCE(MAX(id), 0) FROM event")
                }
                return try db.eventSequence()
            }
            queue = Mutex(SnapshotQueue(lastEventID: lastID))
        } catch {
            throw .cannotOpen(path: path, reason: "\(error)")
        }
    }

    /// The journal's files are readable by the daemon's user only (0600): they hold patients'
    /// alarm history, and an operator may copy them out of the 0700 state directory. The database
    /// file is created 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm` files the
    /// database file's mode); files an older version left wider are narrowed.
    static func restrictFileModes(_ path: String) throws(JournalError) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        if fstat(fd, &info) == 0, info.st_mode & 0o077 != 0 {
            guard fchmod(fd, 0o600) == 0 else {
                throw .cannotOpen(path: path, reason: "cannot make it private (chmod 0600): \(String(cString: strerror(errno)))")
            }
        }
        for suffix in ["-wal", "-shm", "-journal"] where stat(path + suffix, &info) == 0 && info.st_mode & 0o077 != 0 {
            _ = chmod(path + suffix, 0o600)
        }
    }

    /// Runs `body` in one write transaction. Throws ``JournalError/writeFailed(_:)`` (disk full,
    /// read-only file system, I/O error) with SQLite's reason; nothing of the transaction is kept.
    ///
    /// The write is not cancelled with the calling task: what the bridge decided to record (a
    /// session ending at shutdown, say) is recorded, and a cancellation is never mistaken for a
    /// failing disk. Its commit is synchronous, so its fsync also makes every earlier deferred
    /// commit durable.
    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(JournalError) -> T {
        try await writeUncancellable { db in
            var value: T?
            try db.inTransaction {
                value = try body(db)
                return .commit
            }
            return value!
        }
    }

    /// Runs `body` on the writer connection, outside any transaction, not cancelled with the
    /// calling task, after the queued snapshots are committed; on success the deferred commits
    /// count as synced (every caller ends with an fsync of the WAL: a synchronous commit or a
    /// checkpoint).
    private func writeUncancellable<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(JournalError) -> T {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, any Error>, Never>) in
            pool.asyncWriteWithoutTransaction { [self] db in
                let result = Result { () throws -> T in
                    try commitQueued(db)
                    let value = try body(db)
                    try noteSequence(db)
                    return value
                }
                if case .success = result { unsynced.withLock { $0 = 0 } }
                continuation.resume(returning: result)
            }
        }
        switch result {
        case .success(let value): return value
        case .failure(let error as JournalError): throw error
        case .failure(let error): throw .writeFailed("\(error)")
        }
    }

    /// Runs `body` in one write transaction with the given durability, on the calling thread,
    /// which it blocks until the commit (and, when synchronous, its fsync) is done; the queued
    /// snapshots are committed first, in a transaction of their own. A `.deferred` commit becomes
    /// synchronous once ``maximumUnsyncedEvents`` events are waiting for an fsync. `events` is how
    /// many events the transaction stores. Throws ``JournalError/writeFailed(_:)`` with SQLite's
    /// reason; nothing of the transaction is kept (nor of the queued snapshots, which stay queued).
    func writeNow<T>(_ durability: Durability, events: Int, _ body: (Database) throws -> T) throws(JournalError) -> T {
        do {
            return try pool.writeWithoutTransaction { db in
                try commitQueued(db)
                let value = try transaction(db, durability, events: events, body)
                try noteSequence(db)
                return value
            }
        } catch let error as JournalError {
            throw error
        } catch {
            throw .writeFailed("\(error)")
        }
    }

    /// One transaction on the writer connection (`db`), deferred when `durability` and the bound
    /// allow, with the count of unsynced events kept in step.
    func transaction<T>(_ db: Database, _ durability: Durability, events: Int, _ body: (Database) throws -> T) throws -> T {
        let deferred = durability == .deferred && unsynced.withLock { $0 + events <= Self.maximumUnsyncedEvents }
        if deferred { try db.executeCached("PRAGMA synchronous = NORMAL") }
        defer { if deferred { try? db.executeCached("PRAGMA synchronous = FULL") } }
        var value: T?
        try db.inTransaction {
            value = try body(db)
            return .commit
        }
        // Counted on the writer connection, right after the commit that changes it, so the
        // count stays in step with the commits themselves. A synchronous commit's fsync
        // also made every earlier deferred commit durable.
        unsynced.withLock { $0 = deferred ? $0 + events : 0 }
        return value!
    }

    /// Keeps the last assigned event id at least the sequence's, after a write that may have
    /// stored events with ids of SQLite's choosing (`AUTOINCREMENT`).
    private func noteSequence(_ db: Database) throws {
        let seq = try db.eventSequence()
        queue.withLock { $0.lastEventID = max($0.lastEventID, seq) }
    }

    /// Runs `body` on a read-only snapshot, on the calling thread.
    func readNow<T>(_ body: (Database) throws -> T) throws(JournalError) -> T {
        if hasQueuedSnapshots { commitQueuedSnapshotsNow() }
        do {
            return try pool.read(body)
        } catch {
            throw .readFailed("\(error)")
        }
    }

    /// How many committed events wait for an fsync now.
    var unsyncedEvents: Int { unsynced.withLock { $0 } }

    /// Makes the deferred commits durable, if there are any (a WAL checkpoint fsyncs the WAL
    /// first). The daemon's main loop calls it on each pass, at most 5 s apart.
    public func syncDeferred() async throws(JournalError) {
        guard unsynced.withLock({ $0 > 0 }) || hasQueuedSnapshots else { return }
        try await writeUncancellable { db in _ = try Row.fetchAll(db, sql: "PRAGMA wal_checkpoint(PASSIVE)") }
    }

    /// Runs `body` on a read-only snapshot.
    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(JournalError) -> T {
        // What was published before this read is in the journal when the read begins. (A failing
        // write leaves the snapshots queued; the read goes on without them.)
        if hasQueuedSnapshots { await commitQueuedSnapshots() }
        do {
            return try await pool.read(body)
        } catch {
            throw .readFailed("\(error)")
        }
    }

    /// Writes a consistent copy of the journal to `destination`, a file that must not exist yet
    /// (created 0600), while the daemon keeps running: SQLite's online backup, reading one
    /// snapshot (a read transaction in WAL mode does not hold up the writer, so alarms keep being
    /// stored and acknowledged meanwhile; what is committed after the snapshot is not in the copy).
    /// The copy is a complete journal: put it in place of `journal.sqlite` (daemon stopped) to
    /// restore it. Runs on a thread of its own, not the caller's.
    public func backup(to destination: String) async throws(JournalError) {
        let fd = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw .backupFailed("cannot create \(destination): \(String(cString: strerror(errno)))")
        }
        close(fd)
        // Everything published before the request is in the copy.
        if hasQueuedSnapshots { await commitQueuedSnapshots() }
        let pool = self.pool
        let result: Result<Void, any Error> = await withCheckedContinuation { continuation in
            let thread = Thread {
                continuation.resume(returning: Result {
                    let copy = try DatabaseQueue(path: destination)
                    try pool.backup(to: copy)
                    try copy.close()
                })
            }
            thread.start()
        }
        if case .failure(let error) = result {
            unlink(destination)
            throw .backupFailed("\(error)")
        }
    }

    /// True when the database answers a trivial query and accepts a write transaction.
    public func healthCheck() async -> Bool {
        do {
            _ = try await pool.write { db in try db.execute(sql: "SELECT 1") }
            return true
        } catch {
            return false
        }
    }

    /// The highest event id stored, 0 when none.
    public func latestEventID() async throws(JournalError) -> Int64 {
        try await read { db in try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(id), 0) FROM event") ?? 0 }
    }

    /// Stored events with id > `after`, oldest first, optionally filtered.
    public func events(after: Int64, device: String? = nil, pump: String? = nil, types: Set<String>? = nil, limit: Int = 10_000) async throws(JournalError) -> [StoredEvent] {
        try await read { db in
            var sql = "SELECT id, time_ms, device, pump, type, data FROM event WHERE id > ?"
            var arguments: [any DatabaseValueConvertible] = [after]
            if let device {
                sql += " AND device = ?"
                arguments.append(device)
            }
            if let pump {
                sql += " AND pump = ?"
                arguments.append(pump)
            }
            if let types, !types.isEmpty {
                sql += " AND type IN (" + Array(repeating: "?", count: types.count).joined(separator: ",") + ")"
                arguments += types.sorted()
            }
            sql += " ORDER BY id LIMIT ?"
            arguments.append(limit)
            return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)).map(StoredEvent.init(row:))
        }
    }

    /// Deletes what is older than `days` days: events, history, ended alarms and their records.
    /// Active alarms are never pruned, whatever their age.
    @discardableResult
    public func prune(olderThanDays days: Int, nowMs: Int64) async throws(JournalError) -> Int {
        let cutoff = nowMs - Int64(days) * 86_400_000
        return try await write { db in
            try db.execute(sql: "DELETE FROM event WHERE time_ms < ?", arguments: [cutoff])
            var removed = db.changesCount
            try db.execute(sql: "DELETE FROM history WHERE received_ms < ?", arguments: [cutoff])
            removed += db.changesCount
            try db.execute(sql: """
                DELETE FROM alarm_transition WHERE alarm_ref IN
                  (SELECT id FROM alarm WHERE state = 'ended' AND COALESCE(cleared_at_ms, raised_at_ms) < ?)
                """, arguments: [cutoff])
            try db.execute(sql: "DELETE FROM alarm WHERE state = 'ended' AND COALESCE(cleared_at_ms, raised_at_ms) < ?", arguments: [cutoff])
            removed += db.changesCount
            try db.execute(sql: "DELETE FROM alarm_message WHERE received_ms < ?", arguments: [cutoff])
            try db.execute(sql: "DELETE FROM device_session WHERE ended_ms IS NOT NULL AND ended_ms < ?", arguments: [cutoff])
            return removed
        }
    }
}

/// A journal failure, with SQLite's reason.
public enum JournalError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The database could not be opened or migrated.
    case cannotOpen(path: String, reason: String)
    /// A write transaction failed and was rolled back (disk full, read-only, I/O error).
    case writeFailed(String)
    /// A read failed.
    case readFailed(String)
    /// A backup copy could not be made; nothing was left behind.
    case backupFailed(String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason): "cannot open the journal at \(path): \(reason)"
        case .writeFailed(let reason): "journal write failed, nothing stored: \(reason)"
        case .readFailed(let reason): "journal read failed: \(reason)"
        case .backupFailed(let reason): "journal backup failed: \(reason)"
        }
    }
}

/// One published event as stored.
public struct StoredEvent: Hashable, Sendable {
    /// The global, increasing event id.
    public var id: Int64
    /// When it was stored (host time, ms).
    public var timeMs: Int64
    /// The programmer serial it concerns ("" for the bridge itself).
    public var device: String
    /// The pump it belongs to (``PumpIdentity/id``); nil outside any pump session.
    public var pump: String?
    /// `device`, `status`, `reservoir`, `alarm`, `program`, `refill`.
    public var type: String
    /// The JSON object sent as the SSE `data:`.
    public var data: String

    init(row: Row) {
        id = row["id"]
        timeMs = row["time_ms"]
        device = row["device"]
        pump = row["pump"]
        type = row["type"]
        data = row["data"]
    }

    /// Creates a record.
    public init(id: Int64, timeMs: Int64, device: String, pump: String? = nil, type: String, data: String) {
        self.id = id
        self.timeMs = timeMs
        self.device = device
        self.pump = pump
        self.type = type
        self.data = data
    }
}

extension Database {
    /// Inserts an event and returns its id: `id` when given (a snapshot published before its
    /// write, ``Journal/queueSnapshots(_:nowMs:)``), else the sequence's next.
    func insertEvent(id: Int64? = nil, timeMs: Int64, device: String, pump: String? = nil, type: String, data: String) throws -> Int64 {
        if let id {
            try executeCached("INSERT INTO event (id, time_ms, device, pump, type, data) VALUES (?, ?, ?, ?, ?, ?)", [id, timeMs, device, pump, type, data])
            return id
        }
        try executeCached("INSERT INTO event (time_ms, device, pump, type, data) VALUES (?, ?, ?, ?, ?)", [timeMs, device, pump, type, data])
        return lastInsertedRowID
    }

    /// The event id sequence (`AUTOINCREMENT`): the highest id ever stored, or moved on at start.
    func eventSequence() throws -> Int64 {
        try Int64.fetchOne(cachedStatement(sql: "SELECT seq FROM sqlite_sequence WHERE name = 'event'")) ?? 0
    }

    /// Runs one statement of the live path from the connection's statement cache: it is parsed
    /// once per connection, not on every frame (`execute(sql:)` prepares it each time, which was
    /// the largest share of the live path's CPU time; scripts/profile-live-path.py).
    func executeCached(_ sql: String, _ arguments: StatementArguments = StatementArguments()) throws {
        try cachedStatement(sql: sql).execute(arguments: arguments)
    }
}
