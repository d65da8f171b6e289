import ITBClient
import PostgresNIO

/// Why forwarding stopped or paused, worded for the operator. Every case but ``configuration``
/// is retried with back-off by ``Forwarder``.
public enum ForwardError: Error, Sendable, CustomStringConvertible {
    /// A setting is wrong (missing password file, unreadable CA file, bad config line): fix it and
    /// restart; retrying would not help.
    case configuration(String)
    /// The bridge's API could not be reached or broke the stream.
    case bridge(String)
    /// PostgreSQL could not be reached, refused the login, or failed a statement.
    case postgres(String)
    /// PostgreSQL's position for this bridge moved under us: another itb-forward writes with the
    /// same bridge id.
    case positionMoved(bridgeID: String, expected: Int64)
    /// The database was migrated by a newer itb-forward.
    case schemaTooNew(database: Int, known: Int)
    /// The bridge's journal ends before the position PostgreSQL has for it.
    case journalBehind(bridgeID: String, journal: Int64, position: Int64)

    public var description: String {
        switch self {
        case .configuration(let message): message
        case .bridge(let message): "bridge: \(message)"
        case .postgres(let message): "PostgreSQL: \(message)"
        case .positionMoved(let bridgeID, let expected):
            "the position of bridge `\(bridgeID)` in itb_forward_position is no longer \(expected): another itb-forward writes with the same --bridge-id; give each bridge its own id"
        case .schemaTooNew(let database, let known):
            "the database has schema version \(database), this itb-forward knows up to \(known): upgrade itb-forward"
        case .journalBehind(let bridgeID, let journal, let position):
            "the bridge's journal ends at event \(journal) but PostgreSQL has bridge `\(bridgeID)` at \(position): was the journal replaced? forward it under a new --bridge-id, or delete that bridge's rows and position"
        }
    }

    /// Whether ``Forwarder`` should wait and try again.
    public var isRetryable: Bool {
        switch self {
        case .configuration, .schemaTooNew: false
        // A journal behind the position is also what a power cut leaves for a while (snapshots
        // forwarded but not yet fsynced by the bridge): forwarding goes on once the journal
        // passes the position again; a replaced journal keeps this warning in the log.
        case .bridge, .postgres, .positionMoved, .journalBehind: true
        }
    }

    /// A PostgresNIO error as an operator message: the server's own message and SQLSTATE when it
    /// sent one (PSQLError's description hides them).
    static func postgres(_ error: any Error, doing what: String) -> ForwardError {
        if let error = error as? ForwardError { return error }
        if let psql = error as? PSQLError {
            if let info = psql.serverInfo, let message = info[.message] {
                return .postgres("\(what): \(message) (SQLSTATE \(info[.sqlState] ?? "?"))")
            }
            return .postgres("\(what): \(psql.code)\(psql.underlying.map { " (\($0))" } ?? "")")
        }
        return .postgres("\(what): \(error)")
    }

    /// A client error of the bridge's API as an operator message.
    static func bridge(_ error: any Error) -> ForwardError {
        if let error = error as? ForwardError { return error }
        if let client = error as? ClientError { return .bridge("\(client)") }
        return .bridge("\(error)")
    }
}
