// MessageJSON beyond the golden vectors: the alarm mask list, text fields with bytes outside
// printable ASCII, and owned messages rendering like their frames.

import ITBJSON
import ITBProtocol
import Testing

@Suite("MessageJSON")
struct MessageJSONTests {
    /// Renders the fields of one frame inside an object and parses them.
    private func fields(type: MessageType, payload: [UInt8]) throws -> [String: JSONValue] {
        let bytes = FrameEncoder.frame(type: type, sequence: 1, payload: payload)
        let json = try bytes.withUnsafeBytes { raw -> [UInt8] in
            let frame = try #require(Frame(validating: raw))
            var json = JSONWriter()
            json.beginObject()
            MessageJSON.writeFields(of: frame, into: &json)
            json.endObject()
            return json.bytes
        }
        guard case .object(let object) = try JSONValue.parse(json) else {
            Issue.record("not an object")
            return [:]
        }
        return object
    }

    @Test("the active alarm mask lists names in ascending bit order and unknown bits as unknown_<k+1>", arguments: [
        (0, []), (0b1, ["low_reservoir"]), (0xFF, ["low_reservoir", "empty_reservoir", "eri", "eos", "motor_stall",
                                                  "low_battery_reset", "memory_error", "flow_fault"]),
        ((1 << 0) | (1 << 4) | (1 << 11), ["low_reservoir", "motor_stall", "unknown_12"]),
        (1 << 31, ["unknown_32"]), (1 << 8, ["unknown_9"]),
    ] as [(UInt32, [String])])
    func alarmMask(_ mask: UInt32, _ names: [String]) throws {
        var json = JSONWriter()
        MessageJSON.writeAlarmMask(mask, into: &json)
        #expect(try JSONValue.parse(json.bytes) == .array(names.map(JSONValue.string)))
    }

    @Test("a mask with all 32 bits lists 32 entries, the last unknown_32")
    func fullMask() throws {
        var json = JSONWriter()
        MessageJSON.writeAlarmMask(.max, into: &json)
        guard case .array(let list) = try JSONValue.parse(json.bytes) else {
            Issue.record("not an array")
            return
        }
        #expect(list.count == 32)
        #expect(list.last == .string("unknown_32"))
    }

    @Test("text fields keep bytes outside 0x20–0x7E, escaped as \\u00XX, and end at the first NUL")
    func textFieldEscapes() throws {
        var detail: [UInt8] = Array("flow fault ".utf8) + [0xB7, 0xE1, 0x01, 0x7F, 0x22, 0x5C]
        detail += [0x00] + Array("hidden".utf8)
        var writer = PayloadWriter()
        writer.write(Int64(0))
        writer.write(UInt32(63))
        writer.write(AlarmCode.flowFault.rawValue)
        writer.write(AlarmPriority.high.rawValue)
        writer.write(AlarmTransition.raised.rawValue)
        writer.write(UInt8(detail.count))
        writer.writeZeros(7)
        writer.writeBytes(detail)
        let object = try fields(type: .alarm, payload: writer.bytes)
        #expect(object["detail"] == .string("flow fault \u{B7}\u{E1}\u{01}\u{7F}\"\\"))
        #expect(object["onset_time"] == .null)
        #expect(object["code"] == .string("flow_fault"))
        #expect(object["code_raw"] == .number(8))
    }

    @Test("an unknown alarm code renders as unknown with its raw number; a known one still carries code_raw")
    func alarmCodeRaw() throws {
        var writer = PayloadWriter()
        Alarm(onsetTimeMs: 1, alarmID: 2, code: .init(rawValue: 0x42), priority: .init(rawValue: 9), transition: .cleared)
            .encode(into: &writer)
        let object = try fields(type: .alarm, payload: writer.bytes)
        #expect(object["code"] == .string("unknown"))
        #expect(object["code_raw"] == .number(0x42))
        #expect(object["priority"] == .string("unknown"))
        #expect(object["priority_raw"] == .number(9))
        #expect(object["transition"] == .string("cleared"))
        #expect(object["transition_raw"] == nil)
        #expect(object["onset_time"] == .string("1970-01-01T00:00:00.001Z"))
    }

    @Test("link quality 255 renders as null, 0–100 as the number")
    func linkQuality() throws {
        for (raw, expected) in [(UInt8(255), JSONValue.null), (0, .number(0)), (100, .number(100))] {
            var writer = PayloadWriter()
            PumpStatus(
                deviceTimeMs: 0, dailyDoseUgX10: 4005, concentrationUgPerML: 500, activeAlarmMask: 0, pumpState: .stopped,
                dosingMode: .prime, linkQualityPct: raw
            ).encode(into: &writer)
            let object = try fields(type: .pumpStatus, payload: writer.bytes)
            #expect(object["link_quality_pct"] == expected)
            #expect(object["daily_dose_ug"] == .number(400.5))
            #expect(object["device_time"] == .null)
        }
    }

    @Test("an owned message renders the same fields as the frame it came from")
    func ownedMessageMatchesFrame() throws {
        let message = Message.doseProgram(.init(
            deviceTimeMs: 1_795_514_400_000, dailyDoseUgX10: 4125, patientBolusDoseUgX10: 500, patientBolusLockoutMin: 120,
            patientBolusMaxPerDay: 4, mode: .flex, flexSteps: [.init(startMinute: 0, rateUgPerDayX10: 3505)],
            periodicBoluses: [.init(startMinute: 480, durationMin: 15, doseUgX10: 250)]))
        var writer = PayloadWriter()
        message.payload.encode(into: &writer)
        let fromFrame = try fields(type: message.type, payload: writer.bytes)
        var json = JSONWriter()
        json.beginObject()
        MessageJSON.writeFields(of: message, into: &json)
        json.endObject()
        #expect(try JSONValue.parse(json.bytes) == .object(fromFrame))
        #expect(fromFrame["flex_steps"] == .array([.object(["start_minute": .number(0), "rate_ug_per_day": .number(350.5)])]))
        #expect(fromFrame["periodic_boluses"] == .array([.object([
            "start_minute": .number(480), "duration_min": .number(15), "dose_ug": .number(25),
        ])]))
        #expect(fromFrame["device_time"] == .string("2026-11-24T10:00:00.000Z"))
    }
}
