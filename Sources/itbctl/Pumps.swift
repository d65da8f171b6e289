import ArgumentParser
import Foundation

/// `itbctl pumps`: the refill worklist across every pump the bridge has seen.
struct Pumps: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pumps",
        abstract: "List pumps by refill due date (the refill worklist).",
        discussion: """
            One row per pump (GET /v1/pumps, every page), soonest refill first; pumps without a \
            due date last. VOLUME is the latest reading as the pump calculated it; PROJECTED \
            carries it forward to now at the programmed flow (a projection, not a measurement). \
            `--json` prints the daemon's rows as one document; `--csv` prints the table as CSV.
            """)

    @OptionGroup var options: ClientOptions

    @Option(name: .customLong("due-within"), help: ArgumentHelp("Only pumps whose refill is due within this: 14d, 36h or a number of days.", valueName: "time"))
    var dueWithin: String?

    @Option(name: .long, help: ArgumentHelp("Only pumps with this battery state: ok, eri, eos.", valueName: "state"))
    var battery: String?

    @Flag(name: .customLong("active-alarms"), help: "Only pumps with active alarms.")
    var activeAlarms = false

    @Flag(name: .long, help: "Print CSV instead of a table.")
    var csv = false

    /// `14d`, `36h`, `2.5` (days) as milliseconds.
    static func duration(_ text: String) -> Int64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        let (number, unit): (Substring, Double) = trimmed.hasSuffix("d") ? (trimmed.dropLast(), 86_400_000)
            : trimmed.hasSuffix("h") ? (trimmed.dropLast(), 3_600_000) : (Substring(trimmed), 86_400_000)
        guard let value = Double(number), value >= 0, value < 100_000 else { return nil }
        return Int64((value * unit).rounded())
    }

    func validate() throws {
        if let dueWithin, Self.duration(dueWithin) == nil {
            throw ValidationError("--due-within takes a time such as 14d, 36h or 7 (days), not `\(dueWithin)`")
        }
        if let battery, !["ok", "eri", "eos"].contains(battery) { throw ValidationError("--battery is ok, eri or eos, not `\(battery)`") }
        if csv && options.json { throw ValidationError("--csv and --json cannot be combined") }
    }

    func run() throws {
        try reportingFailures {
            let api = options.api
            var parameters: [(String, String?)] = [("battery", battery), ("has_active_alarms", activeAlarms ? "true" : nil), ("limit", "1000")]
            if let dueWithin, let ms = Self.duration(dueWithin) {
                parameters.append(("due_before", rfc3339(currentTimeMs() + ms)))
            }
            var rows: [JSONValue] = []
            var texts: [String] = []
            var after: String?
            repeat {
                let (reply, document) = try api.document(pathWithQuery("/v1/pumps", parameters + [("after", after)]))
                texts.append(reply.text)
                rows += document["pumps"]?.array ?? []
                after = document["next"]?.string
            } while after != nil
            if options.json {
                printDocument("{\"pumps\":[" + rows.map(\.serialized).joined(separator: ",") + "]}")
                return
            }
            let headers = ["PUMP", "SERIAL", "MODEL", "BATTERY", "VOLUME µL", "PROJECTED µL", "REFILL DUE", "REASON", "ALARMS", "LAST SEEN BY"]
            let table = rows.map(Self.row)
            if csv {
                printLine(([headers] + table).map { $0.map(csvField).joined(separator: ",") }.joined(separator: "\n"))
                return
            }
            if rows.isEmpty {
                printLine(dueWithin == nil ? "No pumps known to the bridge." : "No pump's refill is due within \(dueWithin!).")
                return
            }
            var rendered = Table(headers, rightAligned: [4, 5, 8])
            for row in table { rendered.append(row) }
            printLine(rendered.render())
        }
    }

    static func row(_ pump: JSONValue) -> [String] {
        let derived = pump["derived"]
        let due = derived?["refill_due_date"]?.string.map { String($0.prefix(10)) } ?? "-"
        return [
            pump["id"]?.string ?? "?", pump["pump_serial"]?.string ?? "?", pump["pump_model"]?.string ?? "",
            pump["battery_state"]?.string ?? "", pump["reservoir"]?["volume_ul"]?.numberText ?? "-",
            pump["projected_volume_ul"]?.numberText ?? "-", due, derived?["refill_due_reason"]?.string ?? "-",
            pump["active_alarms"]?.numberText ?? "0", pump["last_programmer"]?.string ?? "",
        ]
    }
}

/// `itbctl pump ID`: one pump's record.
struct Pump: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pump",
        abstract: "Show one pump: summary, reservoir chart, refills and dose changes.",
        discussion: """
            Combines GET /v1/pumps/{id}, /reservoir, /refills, /programs and /sessions. The chart \
            is the reservoir volume over the readings' history (the pump's calculated volume). \
            Refills flagged for their discrepancy or a change of concentration are marked. \
            `--json` prints {"pump", "readings", "refills", "programs", "sessions"} with the \
            daemon's objects as they are.
            """)

    @OptionGroup var options: ClientOptions

    @Argument(help: ArgumentHelp("A pump id (see `itbctl pumps`): <manufacturer code>-<serial>.", valueName: "pump"))
    var pump: String

    func run() throws {
        try reportingFailures {
            let api = options.api
            let id = pump.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? pump
            let (summaryReply, summary) = try api.document("/v1/pumps/\(id)")
            let (readingsReply, readings) = try api.document("/v1/pumps/\(id)/reservoir")
            let (refillsReply, refills) = try api.document("/v1/pumps/\(id)/refills")
            let (programsReply, programs) = try api.document("/v1/pumps/\(id)/programs")
            let (sessionsReply, sessions) = try api.document("/v1/pumps/\(id)/sessions")
            if options.json {
                printDocument("{\"pump\":\(summaryReply.text.trimmed),\"readings\":\(readingsReply.text.trimmed),\"refills\":\(refillsReply.text.trimmed),"
                    + "\"programs\":\(programsReply.text.trimmed),\"sessions\":\(sessionsReply.text.trimmed)}")
                return
            }
            var details = Details()
            details.add("pump", "\(summary["id"]?.string ?? pump)  \(summary["pump_model"]?.string ?? "")  serial \(summary["pump_serial"]?.string ?? "?")")
            details.add("reservoir", "\(summary["reservoir_capacity_ul"]?.numberText ?? "?") µL capacity; last read \(summary["reservoir"]?["volume_ul"]?.numberText ?? "-") µL; projected now \(summary["projected_volume_ul"]?.numberText ?? "-") µL")
            let derived = summary["derived"]
            details.add("refill due", "\(derived?["refill_due_date"]?.string ?? "-") (\(derived?["refill_due_reason"]?.string ?? "-"))")
            var battery = summary["battery_state"]?.string ?? "?"
            if let eri = summary["eri_date"]?.string { battery += ", ERI \(eri.prefix(10)), end of service about \(summary["projected_end_of_service"]?.string?.prefix(10) ?? "?")" }
            details.add("battery", battery)
            details.add("dose", summary["program"].map { "\($0["daily_dose_ug"]?.numberText ?? "?") µg/day, \($0["mode"]?.string ?? "?")" } ?? "no program received")
            details.add("alarms", "\(summary["active_alarms"]?.numberText ?? "0") active")
            let last = summary["last_interrogation"]
            details.add("last seen", "\(last?["began_at"]?.string ?? "-") by \(last?["programmer"]?.string ?? "-") (\(last?["end_cause"]?.string ?? "open"))")
            details.add("sessions", "\(sessions["sessions"]?.array?.count ?? 0)")
            var out = [details.render(), "", "Reservoir (µL):", Self.chart(readings["readings"]?.array ?? [])]

            out.append("\nRefills:")
            var refillTable = Table(["REFILL TIME", "µg/mL", "FILLED µL", "EXPECTED µL", "MEASURED µL", "Δ µL", "FLAGS"], rightAligned: [1, 2, 3, 4, 5])
            for refill in refills["refills"]?.array ?? [] {
                var flags: [String] = []
                if refill["flagged"]?.bool == true { flags.append("DISCREPANCY") }
                if refill["concentration_changed"]?.bool == true {
                    flags.append("CONCENTRATION CHANGED from \(refill["previous_concentration_ug_per_ml"]?.numberText ?? "?")")
                }
                refillTable.append([refill["refill_time"]?.string ?? "-", refill["concentration_ug_per_ml"]?.numberText ?? "",
                                    refill["volume_filled_ul"]?.numberText ?? "", refill["expected_residual_ul"]?.numberText ?? "",
                                    refill["measured_residual_ul"]?.numberText ?? "", refill["discrepancy_ul"]?.numberText ?? "",
                                    flags.joined(separator: ", ")])
            }
            out.append(refillTable.rows.isEmpty ? "none recorded" : refillTable.render())

            out.append("\nDose changes:")
            var programTable = Table(["RECEIVED", "MODE", "µg/day", "CHANGE µg/day", "CHANGE %", "µg/mL"], rightAligned: [2, 3, 4, 5])
            for program in programs["programs"]?.array ?? [] {
                programTable.append([program["received_at"]?.string ?? "-", program["mode"]?.string ?? "",
                                     program["daily_dose_ug"]?.numberText ?? "", program["change_ug_per_day"]?.numberText ?? "-",
                                     program["change_pct"]?.numberText ?? "-", program["concentration_ug_per_ml"]?.numberText ?? "-"])
            }
            out.append(programTable.rows.isEmpty ? "none recorded" : programTable.render())
            printLine(out.joined(separator: "\n"))
        }
    }

    /// A terminal chart of the volumes, oldest left: 8 rows of blocks, at most 60 columns (the
    /// readings are sampled evenly when there are more), with the range on the left.
    static func chart(_ readings: [JSONValue]) -> String {
        let volumes = readings.compactMap { $0["reading"]?["volume_ul"]?.double }
        guard !volumes.isEmpty else { return "no readings" }
        let columns = min(60, volumes.count)
        let sampled = (0..<columns).map { volumes[$0 * (volumes.count - 1) / max(1, columns - 1)] }
        let top = max(sampled.max() ?? 0, 1)
        let height = 8
        var lines: [String] = []
        for row in (0..<height).reversed() {
            let threshold = top * Double(row) / Double(height)
            let label = row == height - 1 ? String(format: "%8.0f ┤", top) : (row == 0 ? String(format: "%8.0f ┤", 0.0) : "         │")
            lines.append(label + sampled.map { $0 > threshold ? "█" : " " }.joined())
        }
        let first = readings.first?["received_at"]?.string?.prefix(10) ?? ""
        let last = readings.last?["received_at"]?.string?.prefix(10) ?? ""
        lines.append("          \(first) … \(last)  (\(volumes.count) readings)")
        return lines.joined(separator: "\n")
    }
}

/// A CSV field, quoted when it must be.
func csvField(_ text: String) -> String {
    text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
}

/// Milliseconds since the epoch as RFC 3339 UTC.
func rfc3339(_ ms: Int64) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
}

extension String {
    /// Without the trailing newline the daemon's documents end with.
    var trimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}
