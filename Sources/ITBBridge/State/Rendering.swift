import ITBJSON
import ITBProtocol
import ITBSerial

/// Renders the API's resources as JSON. The one place that names their fields, used by the GET
/// routes and by the events published for SSE, so both always say the same thing.
enum Rendering {
    static func string(_ build: (inout JSONWriter) -> Void) -> String {
        var json = JSONWriter(capacity: 1024)
        build(&json)
        return String(decoding: json.bytes, as: UTF8.self)
    }

    static func optionalTime(_ key: StaticString, _ ms: Int64?, _ json: inout JSONWriter) {
        json.key(key)
        if let ms { json.time(ms: ms, absentWhenZero: false) } else { json.null() }
    }

    static func counters(_ counters: DecoderCounters, _ json: inout JSONWriter) {
        json.beginObject()
        for (name, value) in counters.namedValues {
            json.key(name)
            json.int(value)
        }
        json.endObject()
    }

    /// `GET /v1/devices/{id}` and the `device` event.
    static func device(_ state: DeviceState, _ json: inout JSONWriter) {
        json.beginObject()
        json.key("id"); json.protocolText(state.id)
        json.key("path"); json.string(state.path)
        json.key("link_state"); json.string(state.linkStateName)
        json.key("link_detail"); json.string(state.link.description)
        optionalTime("link_state_since", state.linkSinceMs, &json)
        optionalTime("last_seen", state.lastSeenMs, &json)
        json.key("clock_offset_ms"); if let offset = state.clockOffsetMs { json.int(offset) } else { json.null() }
        json.key("boot_changes"); json.int(state.bootChanges)
        json.key("programmer")
        if let info = state.programmerInfo {
            json.beginObject()
            MessageJSON.writeFields(of: .programmerInfo(info.value), into: &json)
            optionalTime("received_at", info.receivedAtMs, &json)
            json.endObject()
        } else {
            json.null()
        }
        json.key("heartbeat")
        if let heartbeat = state.heartbeat {
            json.beginObject()
            MessageJSON.writeFields(of: .heartbeat(heartbeat.value), into: &json)
            optionalTime("received_at", heartbeat.receivedAtMs, &json)
            json.endObject()
        } else {
            json.null()
        }
        json.key("pump"); if let pump = state.pump { json.string(pump.id) } else { json.null() }
        json.key("pump_session")
        if let session = state.pumpSession {
            json.beginObject()
            MessageJSON.writeFields(of: .pumpSession(session.value), into: &json)
            optionalTime("received_at", session.receivedAtMs, &json)
            json.endObject()
        } else {
            json.null()
        }
        json.key("counters"); counters(state.counters, &json)
        json.endObject()
    }

    /// `GET /v1/devices/{id}/status` and the `status` event.
    static func status(_ device: String, pump: String?, _ status: Stamped<PumpStatus>, _ json: inout JSONWriter) {
        json.beginObject()
        json.key("device"); json.protocolText(device)
        json.key("pump"); if let pump { json.string(pump) } else { json.null() }
        optionalTime("received_at", status.receivedAtMs, &json)
        json.key("clock_offset_ms"); if let offset = status.clockOffsetMs { json.int(offset) } else { json.null() }
        MessageJSON.writeFields(of: .pumpStatus(status.value), into: &json)
        json.endObject()
    }

    /// `GET /v1/devices/{id}/reservoir` and the `reservoir` event: the pump's figures, the
    /// derived values and the last refill.
    static func reservoir(_ state: DeviceState, _ configuration: BridgeConfiguration, _ json: inout JSONWriter) {
        json.beginObject()
        json.key("device"); json.protocolText(state.id)
        json.key("pump"); if let pump = state.pump { json.string(pump.id) } else { json.null() }
        if let reservoir = state.reservoir {
            optionalTime("received_at", reservoir.receivedAtMs, &json)
            json.key("clock_offset_ms"); if let offset = reservoir.clockOffsetMs { json.int(offset) } else { json.null() }
            MessageJSON.writeFields(of: .reservoir(reservoir.value), into: &json)
        }
        json.key("derived")
        if let derived = state.derived(configuration) {
            derivedValues(derived, configuration, &json)
        } else {
            json.null()
        }
        json.key("last_refill")
        if let refill = state.lastRefill { self.refill(state.id, pump: state.pump?.id, refill, configuration, &json) } else { json.null() }
        json.endObject()
    }

    static func derivedValues(_ d: DerivedValues, _ configuration: BridgeConfiguration, _ json: inout JSONWriter) {
        json.beginObject()
        json.key("daily_dose_ug"); json.double(d.dailyDoseUg, digits: 1)
        json.key("concentration_ug_per_ml"); json.int(d.concentrationUgPerML)
        json.key("flow_ul_per_day"); if let flow = d.flowULPerDay { json.double(flow, digits: 3) } else { json.null() }
        json.key("days_until_low_reservoir_alarm"); if let days = d.daysUntilLowReservoirAlarm { json.double(days, digits: 2) } else { json.null() }
        optionalTime("low_reservoir_alarm_date", d.lowReservoirAlarmDateMs, &json)
        optionalTime("stability_limit_date", d.stabilityLimitDateMs, &json)
        optionalTime("refill_due_date", d.refillDueDateMs, &json)
        json.key("refill_due_reason"); if let reason = d.refillDueReason { json.string(reason.rawValue) } else { json.null() }
        json.key("refill_margin_days"); json.double(configuration.refillMarginDays, digits: 2)
        json.key("stability_limit_days"); json.double(configuration.stabilityLimitDays, digits: 2)
        json.endObject()
    }

    /// A refill with its discrepancy (the `refill` event, and `last_refill`).
    static func refill(_ device: String, pump: String?, _ refill: Stamped<Refill>, _ configuration: BridgeConfiguration, _ json: inout JSONWriter) {
        json.beginObject()
        json.key("device"); json.protocolText(device)
        json.key("pump"); if let pump { json.string(pump) } else { json.null() }
        optionalTime("received_at", refill.receivedAtMs, &json)
        MessageJSON.writeFields(of: .refill(refill.value), into: &json)
        let discrepancy = DerivedValues.refillDiscrepancy(refill.value)
        json.key("discrepancy"); if let discrepancy { json.double(discrepancy, digits: 4) } else { json.null() }
        json.key("discrepancy_bound"); json.double(configuration.refillDiscrepancyBound, digits: 4)
        json.key("discrepancy_flagged"); json.bool(discrepancy.map { abs($0) > configuration.refillDiscrepancyBound } ?? false)
        json.endObject()
    }

    /// `GET /v1/devices/{id}/program` and the `program` event.
    static func program(_ device: String, pump: String?, _ program: Stamped<DoseProgram>, _ json: inout JSONWriter) {
        json.beginObject()
        json.key("device"); json.protocolText(device)
        json.key("pump"); if let pump { json.string(pump) } else { json.null() }
        optionalTime("received_at", program.receivedAtMs, &json)
        MessageJSON.writeFields(of: .doseProgram(program.value), into: &json)
        json.endObject()
    }
}
