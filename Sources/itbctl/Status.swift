import ArgumentParser

/// `itbctl status [DEVICE]`: what the bridge knows of one programmer's pump, or of every one.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show pump state, dose, reservoir, refill date and alarms of one programmer (or all).",
        discussion: """
            Combines GET /v1/devices/{id}, /status, /reservoir and the device's open alarms \
            (GET /v1/alarms?active=true&device=…). A status or reservoir the pump has not \
            reported yet is shown as "not reported yet", not as an error. Derived values (flow, \
            days until the low-reservoir alarm (LRA), refill due date) are the bridge's, computed \
            from the pump's figures. `--json` prints one document: {"device", "status", \
            "reservoir", "active_alarms"} with the daemon's objects as they are (status and \
            reservoir null when not reported yet); without DEVICE, {"devices": [those]}.
            """)

    @OptionGroup var options: ClientOptions

    @Argument(help: ArgumentHelp("A programmer serial (see `itbctl devices`); every programmer when omitted.", valueName: "device"))
    var device: String?

    func run() throws {
        try reportingFailures {
            let api = options.api
            var reports: [Report] = []
            if let device {
                reports.append(try Report.fetch(api, deviceID: device))
            } else {
                let list = try api.document("/v1/devices").document
                for entry in list["devices"]?.array ?? [] {
                    guard let id = entry["id"]?.string else { continue }
                    reports.append(try Report.fetch(api, deviceID: id))
                }
            }
            if options.json {
                if device != nil, let only = reports.first {
                    printDocument(only.json)
                } else {
                    printDocument("{\"devices\":[" + reports.map(\.json).joined(separator: ",") + "]}")
                }
                return
            }
            if reports.isEmpty {
                printLine("No programmers known to the bridge.")
                return
            }
            printLine(reports.map { $0.humanReadable() }.joined(separator: "\n\n"))
        }
    }

    /// What the daemon says about one programmer.
    struct Report {
        /// `GET /v1/devices/{id}`, raw and parsed.
        var deviceText: String
        var device: JSONValue
        /// `GET /v1/devices/{id}/status`; nil when not reported yet.
        var statusText: String?
        var status: JSONValue?
        /// `GET /v1/devices/{id}/reservoir`; nil when not reported yet.
        var reservoirText: String?
        var reservoir: JSONValue?
        /// The device's active and acknowledged alarms from the journal.
        var activeAlarms: [JSONValue]

        /// Fetches the four resources; an unknown device is a failure (exit 5).
        static func fetch(_ api: DaemonAPI, deviceID: String) throws(CommandFailure) -> Report {
            let base = "/v1/devices/" + percentEncoded(deviceID)
            let (deviceReply, device) = try api.document(base)
            let (statusText, status) = try optional(api, base + "/status", absentCode: "no_status")
            let (reservoirText, reservoir) = try optional(api, base + "/reservoir", absentCode: "no_reservoir")
            let alarms = try api.document(pathWithQuery("/v1/alarms", [("active", "true"), ("device", deviceID)])).document
            return Report(deviceText: deviceReply.text, device: device, statusText: statusText, status: status,
                          reservoirText: reservoirText, reservoir: reservoir, activeAlarms: alarms["alarms"]?.array ?? [])
        }

        /// `GET path`, where a 404 with `absentCode` means "not reported yet" (nil).
        static func optional(_ api: DaemonAPI, _ path: String, absentCode: String) throws(CommandFailure) -> (String?, JSONValue?) {
            let reply = try api.send("GET", path)
            if reply.status == 404, reply.errorCode == absentCode { return (nil, nil) }
            guard (200..<300).contains(reply.status) else { throw reply.failure }
            return (reply.text, try reply.document())
        }

        /// The `--json` document: the daemon's objects as they are.
        var json: String {
            "{\"device\":\(deviceText),\"status\":\(statusText ?? "null"),\"reservoir\":\(reservoirText ?? "null"),"
                + "\"active_alarms\":\(JSONValue.array(activeAlarms).serialized)}"
        }

        /// The human-readable block.
        func humanReadable() -> String {
            let notYet = "not reported yet"
            var heading = cell(device["id"]?.string) + "  " + cell(device["link_state"]?.string)
            if let path = device["path"]?.string { heading += "  " + path }
            var details = Details()
            details.add("last seen", device["last_seen"]?.string ?? "never")
            if let session = device["pump_session"] {
                var pump = "serial " + cell(session["pump_serial"]?.string)
                if let model = session["pump_model"]?.string, !model.isEmpty { pump += ", model " + model }
                if let battery = session["battery_state"]?.string { pump += ", battery " + battery }
                details.add("pump", pump)
            }

            if let status {
                var state = cell(status["pump_state"]?.string)
                if let raw = status["pump_state_raw"]?.text { state += " (raw \(raw))" }
                if let mode = status["dosing_mode"]?.string { state += ", " + mode }
                details.add("pump state", state)
                details.add("daily dose", cell(status["daily_dose_ug"]?.text) + " µg/day")
                details.add("concentration", cell(status["concentration_ug_per_ml"]?.text) + " µg/mL")
                details.add("status received", cell(status["received_at"]?.string))
            } else {
                details.add("pump status", notYet)
            }

            if let reservoir {
                var volume = cell(reservoir["volume_ul"]?.text) + " µL of " + cell(reservoir["capacity_ul"]?.text) + " µL"
                volume += ", low-reservoir threshold " + cell(reservoir["low_reservoir_threshold_ul"]?.text) + " µL"
                if let source = reservoir["volume_source"]?.string { volume += " (" + source + ")" }
                details.add("reservoir", volume)
                details.add("reservoir received", cell(reservoir["received_at"]?.string))
                if let derived = reservoir["derived"] {
                    details.add("flow (derived)", derived["flow_ul_per_day"]?.text.map { $0 + " µL/day" } ?? "unknown (no dose or concentration)")
                    var lra = derived["days_until_low_reservoir_alarm"]?.text.map { $0 + " days" } ?? "unknown"
                    if let date = derived["low_reservoir_alarm_date"]?.string { lra += " (on " + date + ")" }
                    details.add("until LRA", lra)
                    if let date = derived["refill_due_date"]?.string {
                        details.add("refill due", date + (derived["refill_due_reason"]?.string.map { " (" + $0 + ")" } ?? ""))
                    } else {
                        details.add("refill due", "unknown")
                    }
                    if let stability = derived["stability_limit_date"]?.string { details.add("stability limit", stability) }
                } else {
                    details.add("derived values", "not available yet (need a pump status and a reservoir reading)")
                }
                if let refill = reservoir["last_refill"] {
                    var text = cell(refill["refill_time"]?.string ?? refill["received_at"]?.string)
                    text += ": filled " + cell(refill["volume_filled_ul"]?.text) + " µL at " + cell(refill["concentration_ug_per_ml"]?.text) + " µg/mL"
                    text += "; residual expected " + cell(refill["expected_residual_ul"]?.text) + " µL, measured " + cell(refill["measured_residual_ul"]?.text) + " µL"
                    details.add("last refill", text)
                    var discrepancy = refill["discrepancy"]?.text ?? "unknown"
                    if let bound = refill["discrepancy_bound"]?.text { discrepancy += " (bound ±" + bound + ")" }
                    if refill["discrepancy_flagged"]?.bool == true { discrepancy += "  FLAGGED: check for over- or under-infusion" }
                    details.add("refill discrepancy", discrepancy)
                } else {
                    details.add("last refill", "none reported")
                }
            } else {
                details.add("reservoir", notYet)
            }

            if let status {
                let names = (status["active_alarms"]?.array ?? []).compactMap(\.string)
                details.add("pump alarms", names.isEmpty ? "none" : names.joined(separator: ", "))
            }
            if activeAlarms.isEmpty {
                details.add("open alarms", "none")
            } else {
                let lines = activeAlarms.map { alarm in
                    "#" + cell(alarm["id"]?.text) + " " + cell(alarm["code"]?.string) + " (" + cell(alarm["priority"]?.string) + ", "
                        + cell(alarm["state"]?.string) + ", " + cell(alarm["source"]?.string) + ")"
                }
                details.add("open alarms", lines.joined(separator: "; "))
            }
            return heading + "\n" + details.render()
        }
    }
}
