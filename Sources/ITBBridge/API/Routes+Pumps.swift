import Foundation
public import Hummingbird
import ITBJSON
import HTTPTypes
import NIOCore

/// The pump-centric API (`/v1/pumps…`): the refill worklist, one pump's record, and its reservoir,
/// refill, program and session histories. A pump's `id` is ``PumpIdentity/id``.
extension BridgeRoutes {
    /// How far a pump's projected volume may be carried forward: beyond this it is not shown.
    static let projectionLimitDays = 400.0

    static func addPumpRoutes(to router: Router<BridgeRequestContext>, _ core: BridgeQueries) {
        router.get("/v1/pumps") { request, _ in
            let query = request.uri.queryParameters
            var filter = PumpFilter()
            filter.dueBeforeMs = try query.get("due_before").map { value in
                guard let ms = parseDate(value) else {
                    throw APIError.badQuery("due_before", "an RFC 3339 date (2026-12-24) or date-time (2026-12-24T00:00:00Z)")
                }
                return ms
            }
            filter.battery = try query.get("battery").map { value in
                guard ["ok", "eri", "eos", "unknown"].contains(value) else { throw APIError.badQuery("battery", "ok, eri, eos or unknown") }
                return value
            }
            filter.hasActiveAlarms = try query.get("has_active_alarms").map { try boolean($0, "has_active_alarms") }
            let limit = try limitParameter(query.get("limit"), default: 100, maximum: 1000)
            let cursor = try query.get("after").map { text in
                guard let cursor = PumpCursor(text) else { throw APIError.badQuery("after", "the `next` cursor of a previous page") }
                return cursor
            }
            let pumps = try await journalCall { try await core.pumps(filter, after: cursor, limit: limit) }
            let now = core.nowMs()
            return json { json in
                json.beginObject()
                json.key("pumps")
                json.beginArray()
                for pump in pumps { renderPump(pump, nowMs: now, detail: false, &json) }
                json.endArray()
                json.key("next")
                if pumps.count == limit, let last = pumps.last {
                    json.string(PumpCursor(refillDueMs: last.refillDueMs, id: last.id).text)
                } else {
                    json.null()
                }
                json.endObject()
            }
        }

        router.get("/v1/pumps/:pump") { _, context in
            let pump = try await knownPump(core, context)
            let now = core.nowMs()
            return json { renderPump(pump, nowMs: now, detail: true, &$0) }
        }

        router.get("/v1/pumps/:pump/reservoir") { request, context in
            let pump = try await knownPump(core, context)
            let query = request.uri.queryParameters
            let since = try query.get("since").map { value in
                guard let ms = parseDate(value) else { throw APIError.badQuery("since", "an RFC 3339 date or date-time") }
                return ms
            }
            let until = try query.get("until").map { value in
                guard let ms = parseDate(value) else { throw APIError.badQuery("until", "an RFC 3339 date or date-time") }
                return ms
            }
            let after = try query.get("after").map { value in
                guard let n = Int64(value), n >= 0 else { throw APIError.badQuery("after", "the `next` cursor of a previous page") }
                return n
            }
            let limit = try limitParameter(query.get("limit"), default: 10_000, maximum: 100_000)
            let readings = try await journalCall {
                try await core.pumpReadings(id: pump.id, sinceMs: since, untilMs: until, after: after, limit: limit)
            }
            let next = readings.count == limit ? readings.last.map { String($0.id) } : nil
            if request.headers[.accept]?.contains("text/csv") == true {
                var csv = "received_at,device_time,volume_ul,programmer\n"
                for reading in readings {
                    let object = (try? JSONSerialization.jsonObject(with: Data(reading.data.utf8))) as? [String: Any]
                    let volume = (object?["volume_ul"] as? NSNumber).map { "\($0)" } ?? ""
                    csv += RFC3339.string(ms: reading.receivedMs) + "," + (reading.deviceTimeMs.map(RFC3339.string(ms:)) ?? "") + ","
                        + volume + "," + csvField(reading.programmer) + "\n"
                }
                var headers: HTTPFields = [.contentType: "text/csv; charset=utf-8", .cacheControl: "no-store"]
                if let next { headers[HTTPField.Name("Link")!] = "<?after=\(next)>; rel=\"next\"" }
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: csv)))
            }
            return json { json in
                json.beginObject()
                json.key("pump"); json.string(pump.id)
                json.key("readings")
                json.beginArray()
                for reading in readings {
                    json.beginObject()
                    json.key("received_at"); json.time(ms: reading.receivedMs, absentWhenZero: false)
                    json.key("programmer"); json.protocolText(reading.programmer)
                    json.key("reading"); json.rendered(reading.data)
                    json.endObject()
                }
                json.endArray()
                json.key("next"); if let next { json.string(next) } else { json.null() }
                json.endObject()
            }
        }

        router.get("/v1/pumps/:pump/refills") { _, context in
            let pump = try await knownPump(core, context)
            let refills = try await journalCall { try await core.pumpRefills(id: pump.id) }
            let configuration = core.configuration
            return json { json in
                json.beginObject()
                json.key("pump"); json.string(pump.id)
                json.key("refills")
                json.beginArray()
                var previousConcentration: Int64?
                for refill in refills {
                    renderRefill(refill, previousConcentration: previousConcentration, capacityUL: refill.capacityUL ?? pump.reservoirCapacityUL,
                                 configuration, &json)
                    previousConcentration = refill.concentration
                }
                json.endArray()
                json.endObject()
            }
        }

        router.get("/v1/pumps/:pump/programs") { _, context in
            let pump = try await knownPump(core, context)
            let programs = try await journalCall { try await core.pumpPrograms(id: pump.id) }
            return json { json in
                json.beginObject()
                json.key("pump"); json.string(pump.id)
                json.key("programs")
                json.beginArray()
                var previousDose: Double?
                for program in programs {
                    let object = (try? JSONSerialization.jsonObject(with: Data(program.data.utf8))) as? [String: Any]
                    let dose = (object?["daily_dose_ug"] as? NSNumber)?.doubleValue
                    json.beginObject()
                    json.key("received_at"); json.time(ms: program.receivedMs, absentWhenZero: false)
                    json.key("programmer"); json.protocolText(program.programmer)
                    json.key("mode"); if let mode = object?["mode"] as? String { json.string(mode) } else { json.null() }
                    json.key("daily_dose_ug"); if let dose { json.double(dose, digits: 1) } else { json.null() }
                    json.key("change_ug_per_day")
                    if let dose, let previousDose { json.double(dose - previousDose, digits: 1) } else { json.null() }
                    json.key("change_pct")
                    if let dose, let previousDose, previousDose != 0 { json.double((dose - previousDose) / previousDose * 100, digits: 1) } else { json.null() }
                    json.key("concentration_ug_per_ml"); if let c = program.concentration { json.int(c) } else { json.null() }
                    json.key("event_id"); json.int(program.eventID)
                    json.key("program"); json.rendered(program.data)
                    json.endObject()
                    if let dose { previousDose = dose }
                }
                json.endArray()
                json.endObject()
            }
        }

        router.get("/v1/pumps/:pump/sessions") { _, context in
            let pump = try await knownPump(core, context)
            let sessions = try await journalCall { try await core.pumpSessions(id: pump.id) }
            return json { json in
                json.beginObject()
                json.key("pump"); json.string(pump.id)
                json.key("sessions")
                json.beginArray()
                for session in sessions { renderSession(session, &json) }
                json.endArray()
                json.endObject()
            }
        }
    }

    /// The pump named by the path, or a 404 `unknown_pump`.
    static func knownPump(_ core: BridgeQueries, _ context: BridgeRequestContext) async throws -> PumpRecord {
        let id = try context.parameters.require("pump")
        guard let pump = try await journalCall({ try await core.pump(id: id) }) else { throw APIError.unknownPump(id) }
        return pump
    }

    /// One worklist row, or (with `detail`) the whole pump.
    static func renderPump(_ pump: PumpRecord, nowMs: Int64, detail: Bool, _ json: inout JSONWriter) {
        json.beginObject()
        json.key("id"); json.string(pump.id)
        json.key("pump_serial"); json.protocolText(pump.pumpSerial)
        json.key("manufacturer_code"); json.int(pump.manufacturerCode)
        json.key("pump_model"); json.protocolText(pump.pumpModel)
        json.key("reservoir_capacity_ul"); json.int(pump.reservoirCapacityUL)
        Rendering.optionalTime("implant_date", pump.implantDateMs, &json)
        json.key("battery_state"); json.string(pump.batteryState)
        if let raw = pump.batteryStateRaw { json.key("battery_state_raw"); json.int(raw) }
        Rendering.optionalTime("eri_date", pump.eriDateMs, &json)
        // About 90 days after ERI the pump stops (end of service).
        Rendering.optionalTime("projected_end_of_service", pump.eriDateMs.flatMap { TimeArithmetic.sum($0, 90 * 86_400_000) }, &json)
        Rendering.optionalTime("first_seen", pump.firstSeenMs, &json)
        Rendering.optionalTime("last_seen", pump.lastSeenMs, &json)
        json.key("reservoir"); if let reservoir = pump.reservoir { json.rendered(reservoir) } else { json.null() }
        // The volume carried forward from the last reading at the programmed flow: a projection,
        // not a measurement (the pump itself only calculates its volume).
        var projected: Double?
        if let volume = pump.volumeUL, let flow = pump.flowULPerDay, let at = pump.readingAtMs {
            let days = Double(nowMs - at) / 86_400_000
            if days >= 0, days <= projectionLimitDays { projected = max(0, volume - flow * days) }
        }
        json.key("projected_volume_ul"); if let projected { json.double(projected, digits: 1) } else { json.null() }
        Rendering.optionalTime("projected_at", projected == nil ? nil : nowMs, &json)
        json.key("derived"); if let derived = pump.derived { json.rendered(derived) } else { json.null() }
        json.key("active_alarms"); json.int(pump.activeAlarms)
        json.key("last_programmer"); json.protocolText(pump.lastProgrammer)
        json.key("last_interrogation"); if let session = pump.lastSession { renderSession(session, &json) } else { json.null() }
        if detail {
            json.key("status"); if let status = pump.status { json.rendered(status) } else { json.null() }
            json.key("program"); if let program = pump.program { json.rendered(program) } else { json.null() }
        }
        json.endObject()
    }

    static func renderSession(_ session: PumpSessionRecord, _ json: inout JSONWriter) {
        json.beginObject()
        json.key("id"); json.int(session.id)
        json.key("programmer"); json.protocolText(session.programmer)
        Rendering.optionalTime("began_at", session.beganMs, &json)
        Rendering.optionalTime("ended_at", session.endedMs, &json)
        json.key("end_cause"); if let cause = session.endCause { json.string(cause) } else { json.null() }
        json.endObject()
    }

    /// A refill with its checks: the discrepancy as a ratio and in µL, flagged beyond the bound
    /// for the pump's size, and a change of concentration against the previous refill.
    static func renderRefill(_ refill: PumpRefillRecord, previousConcentration: Int64?, capacityUL: Int64,
                             _ configuration: BridgeConfiguration, _ json: inout JSONWriter) {
        let discrepancyUL = refill.measured - refill.expected
        let denominator = Double(refill.filled) - Double(refill.expected)
        let ratio = denominator == 0 ? nil : Double(discrepancyUL) / denominator
        let bound = capacityUL <= 20_000 ? configuration.refillDiscrepancyBoundSmallPumpUL : configuration.refillDiscrepancyBoundLargePumpUL
        let flagged = discrepancyUL.magnitude > UInt64(bound)
        let concentrationChanged = previousConcentration.map { $0 != refill.concentration } ?? false
        json.beginObject()
        Rendering.optionalTime("refill_time", TimeArithmetic.deviceTime(refill.refillTimeMs), &json)
        Rendering.optionalTime("received_at", refill.receivedMs, &json)
        json.key("programmer"); json.protocolText(refill.programmer)
        json.key("concentration_ug_per_ml"); json.int(refill.concentration)
        json.key("volume_filled_ul"); json.int(refill.filled)
        json.key("expected_residual_ul"); json.int(refill.expected)
        json.key("measured_residual_ul"); json.int(refill.measured)
        json.key("drug_lot"); json.protocolText(refill.lot)
        json.key("discrepancy"); if let ratio { json.double(ratio, digits: 4) } else { json.null() }
        json.key("discrepancy_ul"); json.int(discrepancyUL)
        json.key("discrepancy_bound_ul"); json.int(bound)
        json.key("flagged"); json.bool(flagged)
        json.key("flag_reason")
        if flagged {
            let kind = discrepancyUL < 0 ? "over-infusion (less drawn out than expected)" : "under-delivery or stall (more drawn out than expected)"
            json.string("measured residual differs from expected by \(discrepancyUL.magnitude) µL, beyond \(bound) µL for a \(capacityUL / 1000) mL pump: \(kind)")
        } else {
            json.null()
        }
        json.key("concentration_changed"); json.bool(concentrationChanged)
        json.key("previous_concentration_ug_per_ml"); if let previousConcentration { json.int(previousConcentration) } else { json.null() }
        json.key("event_id"); json.int(refill.eventID)
        json.endObject()
    }

    /// `2026-12-24` (midnight UTC) or an RFC 3339 date-time; nil otherwise.
    static func parseDate(_ text: String) -> Int64? {
        if text.count == 10 { return RFC3339.parse(text + "T00:00:00Z") }
        return RFC3339.parse(text)
    }

    static func boolean(_ value: String, _ name: String) throws -> Bool {
        switch value {
        case "true", "1", "yes": return true
        case "false", "0", "no": return false
        default: throw APIError.badQuery(name, "true or false")
        }
    }

    static func limitParameter(_ value: String?, default fallback: Int, maximum: Int) throws -> Int {
        guard let value else { return fallback }
        guard let n = Int(value), (1...maximum).contains(n) else { throw APIError.badQuery("limit", "a whole number from 1 to \(maximum)") }
        return n
    }

    static func csvField(_ text: String) -> String {
        text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
    }
}
