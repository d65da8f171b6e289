import ArgumentParser

/// `itbctl alarms`: the journal's alarms, the pump's and the bridge's own.
struct Alarms: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alarms",
        abstract: "List alarms (pump's and bridge's), by id.",
        discussion: """
            One row per alarm, in id order (the order they were raised). STATE is active \
            (nobody has acknowledged it), acknowledged (someone has; the condition is still \
            present) or ended (it cleared). ACK BY is the user who acknowledged it (the name the \
            uid had then; the uid when it had none), NOTE the note given with `itbctl ack ID \
            --note TEXT`. `--json` prints GET /v1/alarms as the daemon answers it (oldest change \
            first, the order `--since` pages in).
            """)

    @OptionGroup var options: ClientOptions

    @Flag(name: .long, help: "Only alarms that have not ended (active or acknowledged).")
    var active = false

    @Option(name: .long, help: ArgumentHelp("Only this programmer's alarms.", valueName: "device"))
    var device: String?

    @Option(name: .long, help: ArgumentHelp("Only these priorities: high, medium, low, info, unknown (comma-separated).", valueName: "priority"))
    var priority: String?

    @Option(name: .long, help: ArgumentHelp("Only these states: active, acknowledged, ended (comma-separated).", valueName: "state"))
    var state: String?

    @Option(name: .long, help: ArgumentHelp("Only alarms whose last change has an event id above this.", valueName: "event-id"))
    var since: Int64?

    @Option(name: .long, help: ArgumentHelp("At most this many alarms (1–10000; the daemon's default is 1000).", valueName: "n"))
    var limit: Int?

    func validate() throws {
        if let since, since < 0 { throw ValidationError("--since must be an event id (0 or more)") }
        if let limit, !(1...10_000).contains(limit) { throw ValidationError("--limit must be from 1 to 10000") }
    }

    func run() throws {
        try reportingFailures {
            let path = pathWithQuery("/v1/alarms", [
                ("active", active ? "true" : nil), ("device", device), ("priority", priority), ("state", state),
                ("since", since.map(String.init)), ("limit", limit.map(String.init)),
            ])
            let (reply, document) = try options.api.document(path)
            if options.json {
                printDocument(reply.text)
                return
            }
            let alarms = document["alarms"]?.array ?? []
            if alarms.isEmpty {
                printLine(active ? "No active alarms." : "No alarms.")
                return
            }
            var table = Table(["ID", "DEVICE", "SOURCE", "CODE", "PRIORITY", "STATE", "RAISED AT", "ACK BY", "NOTE"], rightAligned: [0])
            for alarm in Self.sortedByID(alarms) { table.append(Self.row(alarm)) }
            printLine(table.render())
        }
    }

    /// Alarms in id order (the API lists them by last change, for paging with `since`).
    static func sortedByID(_ alarms: [JSONValue]) -> [JSONValue] {
        alarms.sorted { ($0["id"]?.int64 ?? 0) < ($1["id"]?.int64 ?? 0) }
    }

    /// Who acknowledged: the user name, else `uid N`; nil when nobody has.
    static func acknowledgedBy(_ alarm: JSONValue) -> String? {
        if let name = alarm["acknowledged_by_user"]?.string { return name }
        return alarm["acknowledged_by_uid"]?.text.map { "uid \($0)" }
    }

    /// One alarm's row; unknown codes and priorities show their raw value.
    static func row(_ alarm: JSONValue) -> [String] {
        var code = cell(alarm["code"]?.string)
        if code == "unknown", let raw = alarm["code_raw"]?.text { code += "(\(raw))" }
        var priority = cell(alarm["priority"]?.string)
        if let raw = alarm["priority_raw"]?.text { priority += "(\(raw))" }
        return [
            cell(alarm["id"]?.text), cell(alarm["device"]?.string), cell(alarm["source"]?.string), code, priority,
            cell(alarm["state"]?.string), cell(alarm["raised_at"]?.string), cell(acknowledgedBy(alarm)),
            cell(alarm["acknowledgement_note"]?.string),
        ]
    }
}
