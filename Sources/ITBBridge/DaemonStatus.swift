/// A summary of the daemon for the service manager's status line (`systemctl status` shows it
/// as `Status: "…"`): which programmers are connected, how many links are stale, and whether
/// journal writes succeed. Taken by the ticker once per turn of the main loop.
public struct DaemonStatus: Sendable, Hashable {
    /// Serial numbers of the programmers whose link is connected, sorted.
    public var connectedDevices: [String]
    /// Connected programmers that have sent nothing for longer than `stale_after_s`.
    public var staleDevices: Int
    /// Followed paths whose programmer has not identified itself yet.
    public var unidentifiedPaths: Int
    /// False while journal writes fail (alarms are then neither stored nor acknowledged).
    public var journalHealthy: Bool

    /// Creates a summary.
    public init(connectedDevices: [String], staleDevices: Int, unidentifiedPaths: Int, journalHealthy: Bool) {
        self.connectedDevices = connectedDevices
        self.staleDevices = staleDevices
        self.unidentifiedPaths = unidentifiedPaths
        self.journalHealthy = journalHealthy
    }

    /// One line for `STATUS=`, most important first, for example
    /// `1 programmer connected (PGM-000123); journal ok`.
    public var line: String {
        var parts: [String] = []
        if !journalHealthy { parts.append("JOURNAL WRITES FAILING: alarms are not stored") }
        switch connectedDevices.count {
        case 0: parts.append("no programmer connected")
        case 1: parts.append("1 programmer connected (\(connectedDevices[0]))")
        default:
            let shown = connectedDevices.prefix(4).joined(separator: ", ")
            parts.append("\(connectedDevices.count) programmers connected (\(shown)\(connectedDevices.count > 4 ? ", …" : ""))")
        }
        if staleDevices > 0 { parts.append("\(staleDevices) silent (data stale)") }
        if unidentifiedPaths > 0 {
            parts.append("\(unidentifiedPaths) followed port\(unidentifiedPaths == 1 ? "" : "s") with no programmer identified")
        }
        if journalHealthy { parts.append("journal ok") }
        return parts.joined(separator: "; ")
    }
}

extension BridgeCore {
    /// The summary the service manager's status line shows.
    public func daemonStatus() -> DaemonStatus {
        let devices = deviceStates()
        let connected = devices.filter { if case .connected = $0.link { true } else { false } }
        return DaemonStatus(connectedDevices: connected.map(\.id),
                            staleDevices: connected.filter(\.stale).count,
                            unidentifiedPaths: unidentifiedSessions().count,
                            journalHealthy: journalHealthy)
    }
}
