/// RFC 3339 UTC timestamps with milliseconds (`2026-11-24T10:00:00.000Z`), without Foundation.
///
/// The calendar arithmetic is Howard Hinnant's `civil_from_days`, exact for the proleptic
/// Gregorian calendar over the whole `Int64` millisecond range this protocol can carry.
public enum RFC3339 {
    /// The instants RFC 3339 can show as four-digit years: 0001-01-01T00:00:00.000Z through
    /// 9999-12-31T23:59:59.999Z, in ms since the epoch. Year 0000, which the grammar allows but
    /// many parsers refuse, is left out. A time outside is rendered `null` with its raw value.
    public static let representable: ClosedRange<Int64> = -62_135_596_800_000...253_402_300_799_999

    /// Appends the timestamp for `ms` milliseconds since the Unix epoch to `bytes`.
    public static func append(ms: Int64, to bytes: inout [UInt8]) {
        let (days, msOfDay) = floorDivide(ms, 86_400_000)
        let (year, month, day) = civil(fromDays: days)
        if year < 0 || year > 9999 {
            // Outside four-digit years RFC 3339 has no form; clamp visibly rather than lie.
            appendDigits(year < 0 ? 0 : 9999, 4, &bytes)
        } else {
            appendDigits(year, 4, &bytes)
        }
        bytes.append(UInt8(ascii: "-"))
        appendDigits(month, 2, &bytes)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(day, 2, &bytes)
        bytes.append(UInt8(ascii: "T"))
        appendDigits(msOfDay / 3_600_000, 2, &bytes)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(msOfDay / 60_000 % 60, 2, &bytes)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(msOfDay / 1000 % 60, 2, &bytes)
        bytes.append(UInt8(ascii: "."))
        appendDigits(msOfDay % 1000, 3, &bytes)
        bytes.append(UInt8(ascii: "Z"))
    }

    /// The timestamp as a String.
    public static func string(ms: Int64) -> String {
        var bytes: [UInt8] = []
        append(ms: ms, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC only) back to ms since the epoch; nil otherwise.
    public static func parse(_ text: String) -> Int64? {
        let b = Array(text.utf8)
        func number(_ from: Int, _ count: Int) -> Int64? {
            guard from + count <= b.count else { return nil }
            var value: Int64 = 0
            for i in from..<(from + count) {
                guard b[i] >= 48 && b[i] <= 57 else { return nil }
                value = value * 10 + Int64(b[i] - 48)
            }
            return value
        }
        guard b.count >= 20, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"),
              b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t"),
              b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"),
              let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
              let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var i = 19
        var millis: Int64 = 0
        if b[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if digits < 3 { millis = millis * 10 + Int64(b[i] - 48) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            if digits < 3 { for _ in digits..<3 { millis *= 10 } }
        }
        guard i == b.count - 1, b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") else { return nil }
        let days = self.days(fromCivil: year, month, day)
        return ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis
    }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        let q = a / b
        let r = a % b
        return r < 0 ? (q - 1, r + b) : (q, r)
    }

    /// Days since 1970-01-01 → (year, month, day).
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    /// (year, month, day) → days since 1970-01-01.
    static func days(fromCivil y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    private static func appendDigits(_ value: Int64, _ width: Int, _ bytes: inout [UInt8]) {
        var divisor: Int64 = 1
        for _ in 1..<width { divisor *= 10 }
        var v = value
        while divisor > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8(v / divisor % 10))
            v %= divisor
            divisor /= 10
        }
    }
}
