public import ITBProtocol

/// Renders protocol messages as JSON with the names the API uses (`protocol-spec/PROTOCOL.md` §7).
///
/// The one place where wire fields get their JSON names: `itbctl decode` and the daemon's API both
/// render through here, so they cannot drift apart. Rendering reads the typed views in place and
/// allocates nothing once the writer's buffer has grown.
public enum MessageJSON {
    /// Writes `{"type":…,"seq":…,"flags":…, <fields>}` for one frame (the `itbctl decode` record),
    /// with a `direction` first when one is given.
    public static func writeFrame(_ frame: Frame, direction: StaticString? = nil, into json: inout JSONWriter) {
        json.beginObject()
        if let direction {
            json.key("direction")
            json.string(direction)
        }
        json.key("type")
        if let name = frame.type.name { json.string(name) } else { json.string("unknown") }
        json.key("seq")
        json.int(frame.sequence)
        json.key("flags")
        json.int(frame.flags.rawValue)
        writeFields(of: frame, into: &json)
        json.endObject()
    }

    /// Writes the fields of `frame`'s message as key/value pairs into the currently open object.
    /// A frame of an unknown type writes `type_raw` and nothing else.
    public static func writeFields(of frame: Frame, into json: inout JSONWriter) {
        let payload = frame.payload
        switch frame.type {
        case .programmerInfo: if let v = ProgrammerInfoView(payload: payload) { write(v, into: &json) }
        case .pumpSession: if let v = PumpSessionView(payload: payload) { write(v, into: &json) }
        case .pumpStatus: if let v = PumpStatusView(payload: payload) { write(v, into: &json) }
        case .reservoir: if let v = ReservoirView(payload: payload) { write(v, into: &json) }
        case .doseProgram: if let v = DoseProgramView(payload: payload) { write(v, into: &json) }
        case .refill: if let v = RefillView(payload: payload) { write(v, into: &json) }
        case .alarm: if let v = AlarmView(payload: payload) { write(v, into: &json) }
        case .heartbeat: if let v = HeartbeatView(payload: payload) { write(v, into: &json) }
        case .ack: if let v = AckView(payload: payload) { write(v, into: &json) }
        case .hostHeartbeat: if let v = HostHeartbeatView(payload: payload) { write(v, into: &json) }
        default:
            json.key("type_raw")
            json.int(frame.type.rawValue)
        }
    }

    /// Writes an owned message's fields (the daemon's stored state) with the same names.
    public static func writeFields(of message: Message, into json: inout JSONWriter) {
        var writer = PayloadWriter()
        message.payload.encode(into: &writer)
        let frameBytes = FrameEncoder.frame(type: message.type, sequence: 0, payload: writer.bytes)
        frameBytes.withUnsafeBytes { raw in
            // The encoder's own output always validates; a failure would be an encoder bug.
            if let frame = Frame(validating: raw) { writeFields(of: frame, into: &json) }
        }
    }

    /// An enumeration: its name, or `"unknown"` plus `<key>_raw`.
    static func enumeration<E: WireEnumeration>(_ key: StaticString, _ value: E, into json: inout JSONWriter) {
        json.key(key)
        if let name = value.name {
            json.string(name)
        } else {
            json.string("unknown")
            json.key(key, suffix: "_raw")
            json.int(value.rawValue)
        }
    }

    static func write(_ v: ProgrammerInfoView, into json: inout JSONWriter) {
        json.key("boot_id"); json.hex64(v.bootID)
        json.key("firmware_version")
        let fw = v.firmwareVersion
        var text = JSONWriter(capacity: 16)
        text.appendRaw(String(fw >> 16 & 0xFFFF).utf8)
        text.appendRaw(byte: UInt8(ascii: "."))
        text.appendRaw(String(fw >> 8 & 0xFF).utf8)
        text.appendRaw(byte: UInt8(ascii: "."))
        text.appendRaw(String(fw & 0xFF).utf8)
        text.bytes.withUnsafeBytes { json.string(bytes: $0) }
        json.key("protocol_minor"); json.int(v.protocolMinor)
        json.key("programmer_serial"); json.string(bytes: v.programmerSerialBytes)
        json.key("hardware_model"); json.string(bytes: v.hardwareModelBytes)
    }

    static func write(_ v: PumpSessionView, into json: inout JSONWriter) {
        enumeration("event", v.event, into: &json)
        json.key("manufacturer_code"); json.int(v.manufacturerCode)
        json.key("pump_model"); json.string(bytes: v.pumpModelBytes)
        json.key("pump_serial"); json.string(bytes: v.pumpSerialBytes)
        json.key("reservoir_capacity_ul"); json.int(v.reservoirCapacityUL)
        json.timeField("implant_date", ms: v.implantDateMs)
        enumeration("battery_state", v.batteryState, into: &json)
        json.timeField("eri_date", ms: v.eriDateMs)
    }

    static func write(_ v: PumpStatusView, into json: inout JSONWriter) {
        json.timeField("device_time", ms: v.deviceTimeMs)
        enumeration("pump_state", v.pumpState, into: &json)
        enumeration("dosing_mode", v.dosingMode, into: &json)
        json.key("daily_dose_ug"); json.tenths(v.dailyDoseUgX10)
        json.key("concentration_ug_per_ml"); json.int(v.concentrationUgPerML)
        json.key("active_alarm_mask"); json.int(v.activeAlarmMask)
        json.key("active_alarms")
        writeAlarmMask(v.activeAlarmMask, into: &json)
        json.key("link_quality_pct")
        if v.linkQualityPct == PumpStatus.linkQualityUnknown { json.null() } else { json.int(v.linkQualityPct) }
    }

    /// The alarm mask as a list of code names, ascending; an unknown bit k as `unknown_<k+1>`.
    public static func writeAlarmMask(_ mask: UInt32, into json: inout JSONWriter) {
        json.beginArray()
        var rest = mask
        while rest != 0 {
            let bit = rest.trailingZeroBitCount
            rest &= rest &- 1
            let code = AlarmCode(rawValue: UInt16(bit + 1))
            if let name = code.name {
                json.string(name)
            } else {
                var text = JSONWriter(capacity: 16)
                text.appendRaw("unknown_".utf8)
                text.appendRaw(String(bit + 1).utf8)
                text.bytes.withUnsafeBytes { json.string(bytes: $0) }
            }
        }
        json.endArray()
    }

    static func write(_ v: ReservoirView, into json: inout JSONWriter) {
        json.timeField("device_time", ms: v.deviceTimeMs)
        json.key("volume_ul"); json.tenths(v.volumeULX10)
        json.key("capacity_ul"); json.int(v.capacityUL)
        json.key("low_reservoir_threshold_ul"); json.int(v.lowReservoirThresholdUL)
        enumeration("volume_source", v.volumeSource, into: &json)
        json.timeField("last_refill_time", ms: v.lastRefillTimeMs)
        json.key("delivered_since_refill_ul"); json.tenths(v.deliveredSinceRefillULX10)
    }

    static func write(_ v: DoseProgramView, into json: inout JSONWriter) {
        json.timeField("device_time", ms: v.deviceTimeMs)
        enumeration("mode", v.mode, into: &json)
        json.key("daily_dose_ug"); json.tenths(v.dailyDoseUgX10)
        json.key("patient_bolus_dose_ug"); json.tenths(v.patientBolusDoseUgX10)
        json.key("patient_bolus_lockout_min"); json.int(v.patientBolusLockoutMin)
        json.key("patient_bolus_max_per_day"); json.int(v.patientBolusMaxPerDay)
        json.key("flex_steps")
        json.beginArray()
        for index in 0..<v.flexStepCount {
            let step = v.flexStep(index)
            json.beginObject()
            json.key("start_minute"); json.int(step.startMinute)
            json.key("rate_ug_per_day"); json.tenths(step.rateUgPerDayX10)
            json.endObject()
        }
        json.endArray()
        json.key("periodic_boluses")
        json.beginArray()
        for index in 0..<v.periodicBolusCount {
            let bolus = v.periodicBolus(index)
            json.beginObject()
            json.key("start_minute"); json.int(bolus.startMinute)
            json.key("duration_min"); json.int(bolus.durationMin)
            json.key("dose_ug"); json.tenths(bolus.doseUgX10)
            json.endObject()
        }
        json.endArray()
    }

    static func write(_ v: RefillView, into json: inout JSONWriter) {
        json.timeField("refill_time", ms: v.refillTimeMs)
        json.key("concentration_ug_per_ml"); json.int(v.concentrationUgPerML)
        json.key("volume_filled_ul"); json.int(v.volumeFilledUL)
        json.key("expected_residual_ul"); json.int(v.expectedResidualUL)
        json.key("measured_residual_ul"); json.int(v.measuredResidualUL)
        json.key("drug_lot"); json.string(bytes: v.drugLotBytes)
    }

    static func write(_ v: AlarmView, into json: inout JSONWriter) {
        json.key("alarm_id"); json.int(v.alarmID)
        let code = v.code
        json.key("code")
        if let name = code.name { json.string(name) } else { json.string("unknown") }
        json.key("code_raw"); json.int(code.rawValue)
        enumeration("priority", v.priority, into: &json)
        enumeration("transition", v.transition, into: &json)
        json.timeField("onset_time", ms: v.onsetTimeMs)
        json.key("detail"); json.string(bytes: v.detailBytes)
    }

    static func write(_ v: HeartbeatView, into json: inout JSONWriter) {
        json.key("boot_id"); json.hex64(v.bootID)
        json.key("uptime_s"); json.int(v.uptimeS)
        json.key("highest_alarm_id"); json.int(v.highestAlarmID)
        json.key("unacked_alarm_count"); json.int(v.unackedAlarmCount)
    }

    static func write(_ v: AckView, into json: inout JSONWriter) {
        json.key("acked_seq"); json.int(v.ackedSequence)
        json.key("alarm_id"); json.int(v.alarmID)
        json.key("acked_type")
        if let name = v.ackedType.name {
            json.string(name)
        } else {
            json.string("unknown")
            json.key("acked_type_raw"); json.int(v.ackedType.rawValue)
        }
        enumeration("status", v.status, into: &json)
    }

    static func write(_ v: HostHeartbeatView, into json: inout JSONWriter) {
        json.timeField("host_time", ms: v.hostTimeMs)
        json.key("uptime_s"); json.int(v.uptimeS)
    }
}
