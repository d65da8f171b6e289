public import Logging
import NIOSSL
public import PostgresNIO
import Synchronization

/// One connection to PostgreSQL for one bridge: migrates the schema, reads the bridge's position,
/// and writes batches of events with the new position in the same statement, so that a batch is
/// either there with its position or not there at all.
///
/// `Sendable` for real: its properties are immutable and `PostgresConnection` is itself
/// `Sendable`. The forwarder uses it from one task, one statement after another.
public struct PostgresWriter: Sendable {
    /// The connection.
    public let connection: PostgresConnection
    /// The bridge whose events it writes.
    public let bridgeID: String
    private let logger: Logger

    /// Connects and logs in; throws a ``ForwardError`` an operator can act on.
    public static func connect(_ location: PostgresLocation, tls: TLSMode, caFile: String?, password: String?,
                               bridgeID: String, logger: Logger) async throws(ForwardError) -> PostgresWriter {
        let configuration = try makeConfiguration(location, tls: tls, caFile: caFile, password: password)
        do {
            let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
            return PostgresWriter(connection: connection, bridgeID: bridgeID, logger: logger)
        } catch {
            throw .postgres(error, doing: "cannot connect to \(location)")
        }
    }

    /// PostgresNIO's configuration for `location`.
    static func makeConfiguration(_ location: PostgresLocation, tls: TLSMode, caFile: String?,
                                  password: String?) throws(ForwardError) -> PostgresConnection.Configuration {
        switch location.endpoint {
        case .unixSocket:
            guard tls == .disable else {
                throw .configuration("--tls \(tls.rawValue) with a Unix socket: TLS is for TCP; use --tls disable (the socket's permissions protect it)")
            }
            return PostgresConnection.Configuration(unixSocketPath: location.socketFile!, username: location.user,
                                                    password: password, database: location.database)
        case .tcp(let host, let port):
            let mode: PostgresConnection.Configuration.TLS
            switch tls {
            case .disable:
                mode = .disable
            case .require, .verifyFull:
                var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
                tlsConfiguration.certificateVerification = tls == .verifyFull ? .fullVerification : .none
                if let caFile { tlsConfiguration.trustRoots = .file(caFile) }
                do {
                    mode = .require(try NIOSSLContext(configuration: tlsConfiguration))
                } catch {
                    throw .configuration("--tls-ca-file \(caFile ?? "(system roots)"): cannot load the CA certificates: \(error)")
                }
            }
            return PostgresConnection.Configuration(host: host, port: port, username: location.user, password: password,
                                                    database: location.database, tls: mode)
        }
    }

    /// The longest one statement may take before the connection is given up as dead.
    static let statementTimeout: Duration = .seconds(60)

    /// Runs `body` on the connection, or throws at once if the connection is closed or closes
    /// meanwhile, or after ``statementTimeout``. PostgresNIO 1.33 drops a query sent on a channel that has just
    /// closed (the server crashed) without ever failing it; a forwarder must not wait on it forever.
    /// The abandoned wait, if any, stays parked on its leaked promise; the connection is closed.
    private func guarded<T: Sendable>(_ what: String, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws(ForwardError) -> T {
        let connection = self.connection
        guard !connection.isClosed else { throw .postgres("\(what): the connection was lost (the server stopped or restarted)") }
        let resumed = Mutex<CheckedContinuation<Result<T, any Error>, Never>?>(nil)
        // The first of the statement, the timeout and cancellation (SIGTERM) resumes the caller.
        let finish: @Sendable (Result<T, any Error>) -> Bool = { result in
            resumed.withLock { continuation in
                guard let waiting = continuation else { return false }
                waiting.resume(returning: result)
                continuation = nil
                return true
            }
        }
        let result: Result<T, any Error> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                resumed.withLock { $0 = continuation }
                if Task.isCancelled { _ = finish(.failure(CancellationError())) }
                // The connection closing (the server crashed or restarted) ends the wait at once,
                // also for a query PostgresNIO dropped unanswered.
                connection.closeFuture.whenComplete { _ in
                    _ = finish(.failure(ForwardError.postgres("\(what): the connection was lost (the server stopped or restarted)")))
                }
                let timer = Task {
                    try await Task.sleep(for: Self.statementTimeout)
                    if finish(.failure(ForwardError.postgres("\(what): no answer in \(Self.statementTimeout); giving the connection up"))) {
                        try? await connection.close()
                    }
                }
                Task {
                    let outcome: Result<T, any Error>
                    do { outcome = .success(try await body(connection)) } catch { outcome = .failure(error) }
                    timer.cancel()
                    _ = finish(outcome)
                }
            }
        } onCancel: {
            _ = finish(.failure(CancellationError()))
        }
        do {
            return try result.get()
        } catch {
            throw .postgres(error, doing: what)
        }
    }

    /// Closes the connection.
    public func close() async {
        try? await connection.close()
    }

    /// Applies the migrations the database lacks, in one transaction under an advisory lock;
    /// returns the schema version the database is at.
    @discardableResult
    public func migrate() async throws(ForwardError) -> Int {
        let logger = self.logger
        return try await guarded("migrating the schema") { connection in
            try await connection.query("BEGIN", logger: logger)
            do {
                try await connection.query("SELECT pg_advisory_xact_lock(\(Schema.migrationLockKey))", logger: logger)
                try await connection.query(PostgresQuery(unsafeSQL: Schema.createVersionTable), logger: logger)
                var current = 0
                for try await version in try await connection.query("SELECT COALESCE(max(version), 0) FROM itb_schema_version", logger: logger).decode(Int.self) {
                    current = version
                }
                guard current <= Schema.currentVersion else {
                    throw ForwardError.schemaTooNew(database: current, known: Schema.currentVersion)
                }
                for migration in Schema.migrations where migration.version > current {
                    for statement in migration.statements {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await connection.query("INSERT INTO itb_schema_version (version, description) VALUES (\(migration.version), \(migration.description))", logger: logger)
                    logger.notice("schema migrated", metadata: ["version": "\(migration.version)", "what": "\(migration.description)"])
                }
                try await connection.query("COMMIT", logger: logger)
                return Schema.currentVersion
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    /// The last event id written for this bridge (0 for a bridge never forwarded; its row is
    /// created).
    public func position() async throws(ForwardError) -> Int64 {
        let (logger, bridgeID) = (self.logger, self.bridgeID)
        return try await guarded("reading the position of bridge `\(bridgeID)`") { connection in
            try await connection.query("""
                INSERT INTO itb_forward_position (bridge_id, last_event_id) VALUES (\(bridgeID), 0) ON CONFLICT (bridge_id) DO NOTHING
                """, logger: logger)
            for try await id in try await connection.query("SELECT last_event_id FROM itb_forward_position WHERE bridge_id = \(bridgeID)", logger: logger).decode(Int64.self) {
                return id
            }
            throw ForwardError.postgres("the position row of bridge `\(bridgeID)` vanished while it was read")
        }
    }

    /// Writes `events` (ids ascending, all after `after`) and moves the bridge's position from
    /// `after` to the last id, in one statement and thus one transaction. Throws
    /// ``ForwardError/positionMoved(bridgeID:expected:)`` (writing nothing) if the position is not
    /// `after`: another forwarder writes for this bridge id.
    public func write(_ events: [JournalEvent], after: Int64) async throws(ForwardError) {
        guard let last = events.last?.id else { return }
        let ids = events.map(\.id)
        let types = events.map(\.type)
        let data = events.map(\.data)
        let count = Int64(events.count)
        // The UPDATE runs first (CTEs of one statement share a snapshot; the INSERT reads its
        // result), so the rows go in only if the position was `after`, and the position moves
        // only with them.
        let query: PostgresQuery = """
            WITH moved AS (
                UPDATE itb_forward_position
                SET last_event_id = \(last), events_forwarded = events_forwarded + \(count), updated_at = now()
                WHERE bridge_id = \(bridgeID) AND last_event_id = \(after)
                RETURNING 1
            ), inserted AS (
                INSERT INTO itb_event (bridge_id, event_id, time, programmer, pump, type, data)
                SELECT \(bridgeID), e.id, itb_event_time(e.data),
                       COALESCE(e.data->>'device', CASE WHEN e.type = 'device' THEN e.data->>'id' END),
                       e.data->>'pump', e.type, e.data
                FROM (SELECT u.id, u.type, u.data::jsonb AS data
                      FROM unnest(\(ids)::bigint[], \(types)::text[], \(data)::text[]) AS u(id, type, data)) AS e
                WHERE EXISTS (SELECT 1 FROM moved)
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM inserted)
            """
        let logger = self.logger
        let (moved, inserted) = try await guarded("writing events \(ids.first!)…\(last) of bridge `\(bridgeID)`") { connection in
            var counts: (Int64, Int64) = (0, 0)
            for try await row in try await connection.query(query, logger: logger).decode((Int64, Int64).self) { counts = row }
            return counts
        }
        guard moved == 1 else { throw .positionMoved(bridgeID: bridgeID, expected: after) }
        guard inserted == count else {
            throw .postgres("wrote \(inserted) of \(count) events \(ids.first!)…\(last) of bridge `\(bridgeID)`")
        }
    }
}
