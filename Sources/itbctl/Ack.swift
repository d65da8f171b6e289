import ArgumentParser

/// `itbctl ack ALARM`: records that someone has seen an alarm. Nothing changes on the pump.
struct Ack: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ack",
        abstract: "Acknowledge an alarm (recorded by the bridge only: nothing changes on the pump).",
        discussion: """
            Records, in the bridge's journal, that the alarm has been seen, with your uid, your \
            user name, the time and an optional note (--note "called patient"). The pump is not told and its therapy does not change: the bridge never \
            sends anything but ACK frames and heartbeats to a programmer. Acknowledging again is \
            harmless; an alarm that has already ended cannot be acknowledged (exit 1). An \
            unknown alarm id exits 5. `--json` prints the alarm as the daemon answers it.
            """)

    @OptionGroup var options: ClientOptions

    @Argument(help: ArgumentHelp("The alarm's id (the ID column of `itbctl alarms`).", valueName: "alarm"))
    var alarm: Int64

    @Option(help: ArgumentHelp("A note kept with the acknowledgement (at most 1000 characters).", valueName: "text"))
    var note: String?

    func validate() throws {
        guard alarm > 0 else { throw ValidationError("alarm ids are positive whole numbers") }
        if let note, note.unicodeScalars.count > 1000 { throw ValidationError("--note is \(note.unicodeScalars.count) characters long; at most 1000 are kept") }
    }

    func run() throws {
        try reportingFailures {
            let body = note.map { JSONValue.object([.init(key: "note", value: .string($0))]).serialized } ?? ""
            let reply = try options.api.send("POST", "/v1/alarms/\(alarm)/acknowledge", body: body)
            guard (200..<300).contains(reply.status) else {
                var failure = reply.failure
                if reply.status == 409, reply.errorCode == "alarm_ended" {
                    failure.message += " (nothing was changed)"
                }
                throw failure
            }
            if options.json {
                printDocument(reply.text)
                return
            }
            let record = try reply.document()
            var text = "Alarm \(cell(record["id"]?.text)) (\(cell(record["code"]?.string)), \(cell(record["priority"]?.string)) priority, "
                + "\(cell(record["source"]?.string)), programmer \(cell(record["device"]?.string))) is \(cell(record["state"]?.string))"
            if let by = Alarms.acknowledgedBy(record) { text += ": acknowledged by \(by)" }
            if let at = record["acknowledged_at"]?.string { text += " at \(at)" }
            if let note = record["acknowledgement_note"]?.string { text += " (note: \(note))" }
            printLine(text + ".")
            printLine("Nothing changes on the pump: acknowledging only records, in the bridge's journal, that the alarm has been seen.")
        }
    }
}
