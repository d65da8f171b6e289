import ArgumentParser

/// `itbctl alarms`: the journal's alarms, the pump's and the bridge's own.
struct Alarms: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alarms",
        abstract: "List alarms (pump's and bridge's), oldest change first.",
        discussion: """
            STATE is active (nobody has acknowledged it), acknowledged (someone has; the \
            condition is still present) or ended (it cleared). ACK BY is the uid that \
            acknowledged it. Acknowledge with `itbctl ack ID`. `--json` prints GET /v1/alarms \
            as the daemon answers it.
            """)

    @OptionGroup var options: ClientOptions

    @Flag(name: .long, help: "Only alarms that have not ended (active or acknowledged).")
    var active = false

    @Option(name: .long, help: ArgumentHelp("Only this programmer's alarms.", valueName: "device"))
    var device: String?

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
                ("active", active ? "true" : nil), ("device", device),
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
            var table = Table(["ID", "DEVICE", "SOURCE", "CODE", "PRIORITY", "STATE", "RAISED AT", "ACK BY (UID)"], rightAligned: [0, 7])
            for alarm in alarms { table.append(Self.row(alarm)) }
            printLine(table.render())
        }
    }

    /// One alarm's row; unknown codes and priorities show their raw value.
    static func row(_ alarm: JSONValue) -> [String] {
        var code = cell(alarm["code"]?.string)
        if code == "unknown", let raw = alarm["code_raw"]?.text { code += "(\(raw))" }
        var priority = cell(alarm["priority"]?.string)
        if let raw = alarm["priority_raw"]?.text { priority += "(\(raw))" }
        return [
            cell(alarm["id"]?.text), cell(alarm["device"]?.string), cell(alarm["source"]?.string), code, priority,
            cell(alarm["state"]?.string), cell(alarm["raised_at"]?.string), cell(alarm["acknowledged_by_uid"]?.text),
        ]
    }
}
