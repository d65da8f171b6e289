import Foundation
public import Logging

/// A swift-log handler for a daemon: one line per event on stderr. Under systemd (when
/// `JOURNAL_STREAM` is set) each line starts with its syslog priority, `<3>` … `<7>`, which
/// journald reads as the entry's priority, and carries no timestamp (journald adds its own);
/// elsewhere lines carry an RFC 3339 timestamp and the level. Metadata follows as `key=value`.
public struct DaemonLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let journald: Bool

    /// Creates a handler; `journald` nil means: whether stderr is connected to the journal.
    public init(label: String, level: Logger.Level, journald: Bool? = nil) {
        self.label = label
        self.logLevel = level
        self.journald = journald ?? (ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = ""
        if journald {
            line += "<\(Self.priority(event.level))>"
        } else {
            line += Date().formatted(.iso8601) + " " + event.level.rawValue.uppercased() + " "
        }
        line += event.message.description
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            let text = "\(value)"
            line += " \(key)=" + (text.contains(" ") || text.isEmpty ? "\"\(text)\"" : text)
        }
        line += "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }
}
