// RFC 3339 timestamps (PROTOCOL.md §7): `YYYY-MM-DDTHH:MM:SS.mmmZ`, always three millisecond digits.

import ITBJSON
import Testing

@Suite("RFC 3339")
struct RFC3339Tests {
    @Test("known instants format exactly and parse back", arguments: [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (1_795_514_400_000, "2026-11-24T10:00:00.000Z"),
        (1_773_480_413_589, "2026-03-14T09:26:53.589Z"),
        (1_709_210_096_789, "2024-02-29T12:34:56.789Z"),
        (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
        (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (-86_400_000, "1969-12-31T00:00:00.000Z"),
        (-2_203_891_200_000, "1900-03-01T00:00:00.000Z"),
        (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),
        (-62_167_219_200_000, "0000-01-01T00:00:00.000Z"),
    ] as [(Int64, String)])
    func knownInstants(_ ms: Int64, _ text: String) {
        #expect(RFC3339.string(ms: ms) == text)
        #expect(RFC3339.parse(text) == ms)
        var bytes: [UInt8] = []
        RFC3339.append(ms: ms, to: &bytes)
        #expect(bytes == Array(text.utf8))
    }

    @Test("1900 is not a leap year: the day after 1900-02-28 is 1900-03-01")
    func centuryNotLeap() {
        #expect(RFC3339.string(ms: -2_203_891_200_000 - 86_400_000) == "1900-02-28T00:00:00.000Z")
    }

    @Test("format then parse returns the same millisecond for 100,000 seeded instants in 0...253402300799999")
    func randomRoundTrip() {
        var rng = SplitMix64(seed: 0x3339_0000_0000_0001)
        var failures: [Int64] = []
        for _ in 0..<100_000 {
            let ms = Int64.random(in: 0...253_402_300_799_999, using: &rng)
            let text = RFC3339.string(ms: ms)
            if text.utf8.count != 24 || RFC3339.parse(text) != ms { failures.append(ms) }
        }
        #expect(failures.isEmpty, "round trip failed for \(failures.prefix(10))")
    }

    @Test("format then parse returns the same millisecond for seeded instants before 1970, back to year 0")
    func randomRoundTripBefore1970() {
        var rng = SplitMix64(seed: 0x3339_0000_0000_0002)
        var failures: [Int64] = []
        for _ in 0..<20_000 {
            let ms = Int64.random(in: -62_167_219_200_000...(-1), using: &rng)
            let text = RFC3339.string(ms: ms)
            if text.utf8.count != 24 || RFC3339.parse(text) != ms { failures.append(ms) }
        }
        #expect(failures.isEmpty, "round trip failed for \(failures.prefix(10))")
    }

    @Test("every day boundary of 2023–2025 formats as midnight of the next calendar day")
    func dayBoundaries() {
        var expected = (year: 2023, month: 1, day: 1)
        let daysInMonth = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        var ms: Int64 = 1_672_531_200_000  // 2023-01-01
        while expected.year < 2026 {
            let text = "\(expected.year)-\(pad(expected.month))-\(pad(expected.day))T00:00:00.000Z"
            #expect(RFC3339.string(ms: ms) == text)
            #expect(RFC3339.string(ms: ms - 1) .hasSuffix("T23:59:59.999Z"))
            let leap = expected.year % 4 == 0 && (expected.year % 100 != 0 || expected.year % 400 == 0)
            let length = expected.month == 2 && leap ? 29 : daysInMonth[expected.month - 1]
            expected.day += 1
            if expected.day > length { expected.day = 1; expected.month += 1 }
            if expected.month > 12 { expected.month = 1; expected.year += 1 }
            ms += 86_400_000
        }
    }

    private func pad(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

    @Test("parse accepts lower-case t and z, no fraction, and fractions of 1 to 9 digits (truncated to ms)", arguments: [
        ("2026-11-24t10:00:00.000z", 1_795_514_400_000),
        ("2026-11-24T10:00:00Z", 1_795_514_400_000),
        ("2026-11-24T10:00:00.5Z", 1_795_514_400_500),
        ("2026-11-24T10:00:00.05Z", 1_795_514_400_050),
        ("2026-11-24T10:00:00.123456Z", 1_795_514_400_123),
        ("2026-11-24T10:00:00.999999999Z", 1_795_514_400_999),
    ] as [(String, Int64)])
    func parseVariants(_ text: String, _ ms: Int64) {
        #expect(RFC3339.parse(text) == ms)
    }

    @Test("parse rejects anything that is not a UTC RFC 3339 timestamp", arguments: [
        "", "2026", "2026-11-24", "2026-11-24T10:00:00", "2026-11-24T10:00:00.", "2026-11-24T10:00:00.Z",
        "2026-11-24 10:00:00Z", "2026-11-24T10:00:00+01:00", "2026-11-24T10:00:00.000+00:00", "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z", "2026-11-00T00:00:00Z", "2026-11-32T00:00:00Z", "2026-11-24T24:00:00Z",
        "2026-11-24T10:60:00Z", "2026-11-24T10:00:61Z", "2026-11-24T10:00:00.000ZZ", "2026-11-24T10:00:00.000Z ",
        " 2026-11-24T10:00:00.000Z", "20261124T100000Z", "2026-1a-24T10:00:00Z", "+026-11-24T10:00:00Z",
        "2026-11-24T10:00:00.1a2Z",
    ])
    func parseRejects(_ text: String) {
        #expect(RFC3339.parse(text) == nil)
    }

    @Test("instants outside years 0000–9999 still give a well-formed 24-character timestamp without trapping", arguments: [
        Int64.max, Int64.min, 253_402_300_800_000, -62_167_219_200_001,
    ])
    func outOfRange(_ ms: Int64) {
        let text = RFC3339.string(ms: ms)
        #expect(text.utf8.count == 24)
        #expect(text.hasSuffix("Z"))
    }
}
