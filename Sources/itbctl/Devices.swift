import ArgumentParser

/// `itbctl devices`: the programmers the daemon knows, and the ports it has not identified yet.
struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List the programmers the daemon knows, with link state and line counters.",
        discussion: """
            One row per programmer (by serial): link state, serial port, when a frame was last \
            received, the pump in session, frames accepted and CRC errors (header and payload \
            CRC failures) on its line. Ports opened but not yet identified follow. \
            `--json` prints GET /v1/devices as the daemon answers it.
            """)

    @OptionGroup var options: ClientOptions

    func run() throws {
        try reportingFailures {
            let (reply, document) = try options.api.document("/v1/devices")
            if options.json {
                printDocument(reply.text)
                return
            }
            let devices = document["devices"]?.array ?? []
            let unidentified = document["unidentified"]?.array ?? []
            if devices.isEmpty {
                printLine("No programmers known to the bridge.")
            } else {
                var table = Table(["ID", "LINK", "PATH", "LAST SEEN", "PUMP SERIAL", "FRAMES ACCEPTED", "CRC ERRORS"], rightAligned: [5, 6])
                for device in devices { table.append(Self.row(device)) }
                printLine(table.render())
            }
            if !unidentified.isEmpty {
                printLine("")
                printLine("Ports not identified yet (no PROGRAMMER_INFO received):")
                var table = Table(["PATH", "LINK DETAIL"])
                for port in unidentified { table.append([cell(port["path"]?.string), cell(port["link_detail"]?.string)]) }
                printLine(table.render())
            }
        }
    }

    /// One device's row.
    static func row(_ device: JSONValue) -> [String] {
        let counters = device["counters"]
        let crcErrors = (counters?["payload_crc_errors"]?.int64 ?? 0) + (counters?["header_rejects_header_crc"]?.int64 ?? 0)
        return [
            cell(device["id"]?.string),
            cell(device["link_state"]?.string),
            cell(device["path"]?.string),
            device["last_seen"]?.string ?? "never",
            cell(device["pump_session"]?["pump_serial"]?.string),
            cell(counters?["frames_accepted"]?.text),
            counters == nil ? "-" : String(crcErrors),
        ]
    }
}
