// JSONWriter: every output is valid JSON that means what was written; numbers in their exact
// forms (tenths, hex64, fixed-point doubles).

import ITBJSON
import Testing

@Suite("JSONWriter")
struct JSONWriterTests {
    static let nastyStrings: [String] = [
        "", "plain", "\"", "\\", "\\\"", "\"\\\"\\", "/", "a\"b\\c", "\u{0}", "nul\u{0}inside", "\u{1}\u{1F}",
        "\n\r\t\u{8}\u{C}", "\u{7F}", "tab\there", "é", "naïve café", "日本語", "🙂 emoji", "\u{FFFD}", "\u{2028}\u{2029}",
        String(repeating: "\"\\", count: 500), "</script>", "{\"json\":[1,2]}",
    ]

    @Test("a Swift String with quotes, backslashes, control characters or non-ASCII text round-trips through JSON", arguments: nastyStrings)
    func nastyStringRoundTrips(_ value: String) throws {
        let json = written { $0.string(value) }
        #expect(try JSONValue.parse(json.bytes) == .string(value))
        // Control characters never appear raw in the output.
        #expect(!json.bytes.contains { $0 < 0x20 })
    }

    @Test("a Swift String's non-ASCII characters are written as UTF-8, not as one escape per byte")
    func stringKeepsUTF8() {
        #expect(written { $0.string("café 🙂") }.bytes == Array("\"café 🙂\"".utf8))
        #expect(written { $0.string("\u{7F}\u{1}") }.text == "\"\\u007f\\u0001\"")
    }

    @Test("a String key with nasty characters round-trips as an object key", arguments: nastyStrings)
    func nastyKeyRoundTrips(_ value: String) throws {
        let json = written { json in
            json.beginObject()
            json.key(value)
            json.int(1)
            json.endObject()
        }
        #expect(try JSONValue.parse(json.bytes) == .object([value: .number(1)]))
    }

    @Test("raw bytes of every value 0x00–0xFF render as printable ASCII JSON, each byte outside 0x20–0x7E as \\u00XX")
    func everyByteValue() throws {
        let all = (0...255).map(UInt8.init)
        let json = written { json in all.withUnsafeBytes { json.string(bytes: $0) } }
        #expect(json.bytes.allSatisfy { (0x20...0x7E).contains($0) })
        let expected = String(String.UnicodeScalarView(all.map { Unicode.Scalar($0) }))
        #expect(try JSONValue.parse(json.bytes) == .string(expected))
        #expect(json.text.contains("\\u00b7") && json.text.contains("\\u00e1"))
        #expect(json.text.contains("\\u0000"))
        #expect(json.text.contains("\\u007f"))
        #expect(json.text.contains("\\\"") && json.text.contains("\\\\"))
    }

    @Test("seeded random byte strings always render as valid JSON that decodes to the same bytes")
    func randomByteStrings() throws {
        var rng = SplitMix64(seed: 0x1503_0000_0000_0001)
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let json = written { json in bytes.withUnsafeBytes { json.string(bytes: $0) } }
            guard case .string(let text) = try JSONValue.parse(json.bytes) else {
                Issue.record("not a string: \(json.text)")
                return
            }
            #expect(text.unicodeScalars.map { UInt8($0.value) } == bytes)
        }
    }

    @Test("tenths render with exactly one digit after the point", arguments: [
        (0, "0.0"), (5, "0.5"), (10, "1.0"), (4000, "400.0"), (5005, "500.5"), (4125, "412.5"), (319_874, "31987.4"),
        (Int64(UInt32.max), "429496729.5"), (-5, "-0.5"), (-15, "-1.5"), (-4000, "-400.0"),
    ] as [(Int64, String)])
    func tenths(_ value: Int64, _ text: String) throws {
        let json = written { $0.tenths(value) }
        #expect(json.text == text)
        #expect(try JSONValue.parse(json.bytes) == .number(Double(value) / 10))
    }

    @Test("tenths of unsigned wire fields render the same as their signed value")
    func tenthsUnsigned() {
        #expect(written { $0.tenths(UInt32.max) }.text == "429496729.5")
        #expect(written { $0.tenths(UInt16(7)) }.text == "0.7")
        #expect(written { $0.tenths(UInt64.max) }.text == "1844674407370955161.5")
    }

    @Test("hex64 renders 16 lower-case hex digits in a string", arguments: [
        (0, "0000000000000000"), (1, "0000000000000001"), (0x3F9A_1C2E_5B7D_4E61, "3f9a1c2e5b7d4e61"),
        (0xABCD_EF00_0000_0000, "abcdef0000000000"), (UInt64.max, "ffffffffffffffff"),
    ] as [(UInt64, String)])
    func hex64(_ value: UInt64, _ text: String) throws {
        let json = written { $0.hex64(value) }
        #expect(json.text == "\"\(text)\"")
        #expect(try JSONValue.parse(json.bytes) == .string(text))
        #expect(UInt64(text, radix: 16) == value)
    }

    @Test("double renders a fixed number of digits after the point, rounded half away from zero", arguments: [
        (1.5, 3, "1.500"), (0.1234, 3, "0.123"), (0.125, 2, "0.13"), (-0.125, 2, "-0.13"), (2.5, 0, "3"), (-2.5, 0, "-3"), (1.0, 1, "1.0"),
        (-0.0001, 3, "0.000"), (-0.0, 2, "0.00"), (-1.25, 2, "-1.25"), (123456.789, 2, "123456.79"), (0.000_001, 6, "0.000001"),
        (99.9999, 3, "100.000"), (42, 0, "42"),
    ] as [(Double, Int, String)])
    func doubleText(_ value: Double, _ digits: Int, _ text: String) throws {
        let json = written { $0.double(value, digits: digits) }
        #expect(json.text == text)
        #expect(try JSONValue.parse(json.bytes) == .number(Double(text)!))
    }

    @Test("double renders not-a-number and infinities as null", arguments: [Double.nan, .infinity, -.infinity, .signalingNaN])
    func doubleNonFinite(_ value: Double) throws {
        let json = written { $0.double(value) }
        #expect(json.text == "null")
        #expect(try JSONValue.parse(json.bytes) == .null)
    }

    @Test("seeded random doubles render as JSON numbers within half a unit of their last digit")
    func randomDoubles() throws {
        var rng = SplitMix64(seed: 0x1503_0000_0000_0002)
        for _ in 0..<5000 {
            let digits = Int.random(in: 0...6, using: &rng)
            let value = Double.random(in: -1_000_000...1_000_000, using: &rng)
            let json = written { $0.double(value, digits: digits) }
            guard case .number(let parsed) = try JSONValue.parse(json.bytes) else {
                Issue.record("\(value) rendered as \(json.text)")
                return
            }
            var unit = 1.0
            for _ in 0..<digits { unit /= 10 }
            #expect(abs(parsed - value) <= unit / 2 + 1e-9, "\(value) with \(digits) digits rendered as \(json.text)")
        }
    }

    @Test("double renders huge and tiny finite values as valid JSON numbers instead of trapping", arguments: [
        1e15, 1e19, 1e20, -1e20, 1.7976931348623157e308, -1.7976931348623157e308, 9.2e18, .leastNonzeroMagnitude,
        8_999_999_999.999_999, 9_007_199_254.740_991, -9_007_199_254_740_992,
    ])
    func doubleExtremes(_ value: Double) throws {
        for digits in 0...6 {
            let json = written { $0.double(value, digits: digits) }
            guard case .number(let parsed) = try JSONValue.parse(json.bytes) else {
                Issue.record("\(value) rendered as \(json.text)")
                return
            }
            var unit = 1.0
            for _ in 0..<digits { unit /= 10 }
            #expect(abs(parsed - value) <= max(abs(value) * 1e-15, unit / 2), "\(value) with \(digits) digits rendered as \(json.text)")
        }
    }

    @Test("integers of every width and sign render exactly", arguments: [
        (Int64.min, "-9223372036854775808"), (Int64.max, "9223372036854775807"), (0, "0"), (-1, "-1"), (1_000_000, "1000000"),
    ] as [(Int64, String)])
    func integers(_ value: Int64, _ text: String) {
        #expect(written { $0.int(value) }.text == text)
    }

    @Test("unsigned 64-bit integers render exactly")
    func unsignedIntegers() {
        #expect(written { $0.int(UInt64.max) }.text == "18446744073709551615")
        #expect(written { $0.int(UInt8(255)) }.text == "255")
    }

    @Test("objects, arrays and scalars nest with commas exactly where JSON needs them")
    func nesting() throws {
        let json = written { json in
            json.beginObject()
            json.key("a"); json.int(1)
            json.key("b"); json.beginArray(); json.int(1); json.string("two"); json.null(); json.bool(true); json.bool(false)
            json.beginObject(); json.endObject(); json.beginArray(); json.endArray(); json.endArray()
            json.key("c"); json.beginObject(); json.key("d", suffix: "_raw"); json.tenths(UInt32(12)); json.endObject()
            json.key("e"); json.time(ms: 0)
            json.key("f"); json.time(ms: 0, absentWhenZero: false)
            json.key("g"); json.time(ms: 1_795_514_400_000)
            json.key("h"); json.string("static")
            json.endObject()
        }
        #expect(json.text == #"{"a":1,"b":[1,"two",null,true,false,{},[]],"c":{"d_raw":1.2},"e":null,"f":"1970-01-01T00:00:00.000Z","g":"2026-11-24T10:00:00.000Z","h":"static"}"#)
        #expect(try JSONValue.parse(json.bytes) == .object([
            "a": .number(1),
            "b": .array([.number(1), .string("two"), .null, .bool(true), .bool(false), .object([:]), .array([])]),
            "c": .object(["d_raw": .number(1.2)]),
            "e": .null, "f": .string("1970-01-01T00:00:00.000Z"), "g": .string("2026-11-24T10:00:00.000Z"),
            "h": .string("static"),
        ]))
    }

    @Test("records separated by endLine() are each valid JSON, and removeAll() starts afresh")
    func linesAndReset() throws {
        var json = JSONWriter()
        json.beginObject(); json.key("n"); json.int(1); json.endObject(); json.endLine()
        json.beginObject(); json.key("n"); json.int(2); json.endObject(); json.endLine()
        let lines = json.bytes.split(separator: UInt8(ascii: "\n")).map(Array.init)
        #expect(lines.count == 2)
        #expect(try lines.map(JSONValue.parse) == [.object(["n": .number(1)]), .object(["n": .number(2)])])
        json.removeAll()
        #expect(json.bytes.isEmpty)
        json.int(3)
        #expect(json.text == "3")
    }
}
