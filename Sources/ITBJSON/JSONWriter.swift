/// Writes JSON text into a reusable byte buffer, without Foundation and without allocating once
/// the buffer has grown to its working size.
///
/// It is a plain appender: the caller writes keys and values in order and the writer places the
/// commas. It does not check that the calls make well-formed JSON; ``MessageJSON`` and the tests
/// do that. Strings are escaped per RFC 8259 (control characters, quote, backslash).
public struct JSONWriter: Sendable {
    /// The text written so far, UTF-8.
    public private(set) var bytes: [UInt8]
    /// Whether the next key or array element needs a comma before it.
    private var needsComma = false

    /// Creates a writer with `capacity` bytes reserved.
    public init(capacity: Int = 4096) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Empties the buffer, keeping its capacity.
    public mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        needsComma = false
    }

    /// Appends raw bytes (a newline between records, an already rendered fragment).
    public mutating func appendRaw(_ raw: some Sequence<UInt8>) {
        bytes.append(contentsOf: raw)
    }

    /// Appends one raw byte.
    public mutating func appendRaw(byte: UInt8) {
        bytes.append(byte)
    }

    /// Ends a record: appends a newline and resets comma state.
    public mutating func endLine() {
        bytes.append(UInt8(ascii: "\n"))
        needsComma = false
    }

    private mutating func separate() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
    }

    /// `{`
    public mutating func beginObject() {
        separate()
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
    }

    /// `}`
    public mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    /// `[`
    public mutating func beginArray() {
        separate()
        bytes.append(UInt8(ascii: "["))
        needsComma = false
    }

    /// `]`
    public mutating func endArray() {
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    /// An object key (plain ASCII, not escaped) and its colon.
    public mutating func key(_ name: StaticString, suffix: StaticString = "") {
        separate()
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        suffix.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
        needsComma = false
    }

    /// An object key given as a String (escaped; non-ASCII characters kept as UTF-8).
    public mutating func key(_ name: String) {
        separate()
        writeEscaped(name.utf8, keepingUTF8: true)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    /// `null`
    public mutating func null() {
        separate()
        bytes.append(contentsOf: [UInt8(ascii: "n"), UInt8(ascii: "u"), UInt8(ascii: "l"), UInt8(ascii: "l")])
        needsComma = true
    }

    /// `true` or `false`.
    public mutating func bool(_ value: Bool) {
        separate()
        if value {
            bytes.append(contentsOf: [UInt8(ascii: "t"), UInt8(ascii: "r"), UInt8(ascii: "u"), UInt8(ascii: "e")])
        } else {
            bytes.append(contentsOf: [UInt8(ascii: "f"), UInt8(ascii: "a"), UInt8(ascii: "l"), UInt8(ascii: "s"), UInt8(ascii: "e")])
        }
        needsComma = true
    }

    /// An integer (of any type up to 64 bits). Inlined into the caller, so each integer type is
    /// written through one of two non-generic paths instead of generic code across modules.
    @inlinable
    public mutating func int<T: BinaryInteger>(_ value: T) {
        if let signed = Int64(exactly: value) {
            writeInteger(magnitude: signed.magnitude, negative: signed < 0)
        } else {
            writeInteger(magnitude: UInt64(value), negative: false)
        }
    }

    /// A fixed-point value stored in tenths, written as a decimal with one digit after the point
    /// (`5005` → `500.5`, `4000` → `400.0`).
    @inlinable
    public mutating func tenths<T: BinaryInteger>(_ value: T) {
        if let signed = Int64(exactly: value) {
            writeTenths(magnitude: signed.magnitude, negative: signed < 0)
        } else {
            writeTenths(magnitude: UInt64(value), negative: false)
        }
    }

    /// An integer given as its magnitude and sign (``int(_:)``'s one path).
    @usableFromInline
    mutating func writeInteger(magnitude: UInt64, negative: Bool) {
        separate()
        if negative { bytes.append(UInt8(ascii: "-")) }
        appendDecimal(magnitude)
        needsComma = true
    }

    /// Tenths given as their magnitude and sign (``tenths(_:)``'s one path).
    @usableFromInline
    mutating func writeTenths(magnitude: UInt64, negative: Bool) {
        separate()
        if negative { bytes.append(UInt8(ascii: "-")) }
        appendDecimal(magnitude / 10)
        bytes.append(UInt8(ascii: "."))
        bytes.append(UInt8(ascii: "0") + UInt8(magnitude % 10))
        needsComma = true
    }

    /// A floating-point number with up to `digits` digits after the point (derived values only;
    /// the wire has no floats). Not-a-number and infinities are written as `null`. A value too
    /// large for `digits` fixed-point digits to be exact (|value| × 10^digits ≥ 2^53) is written
    /// in Swift's shortest round-trip form (`1e+20`), which is also a JSON number.
    public mutating func double(_ value: Double, digits: Int = 3) {
        guard value.isFinite else { return null() }
        separate()
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9_007_199_254_740_992 else {
            // Beyond 2^53 the fixed-point digits are not exact, and beyond 2^64 the integer
            // conversion below would trap.
            bytes.append(contentsOf: value.description.utf8)
            needsComma = true
            return
        }
        if value < 0 && scaled != 0 { bytes.append(UInt8(ascii: "-")) }
        // Split in integers: `scaled` is an exact integer below 2^53, so no rounding can make the
        // fraction negative.
        var power: UInt64 = 1
        for _ in 0..<digits { power *= 10 }
        let units = UInt64(scaled)
        let whole = units / power
        var fraction = units % power
        appendDecimal(whole)
        if digits > 0 {
            bytes.append(UInt8(ascii: "."))
            var divisor: UInt64 = 1
            for _ in 1..<digits { divisor *= 10 }
            for _ in 0..<digits {
                bytes.append(UInt8(ascii: "0") + UInt8(fraction / divisor))
                fraction %= divisor
                divisor /= 10
                if divisor == 0 { break }
            }
        }
        needsComma = true
    }

    /// A string from a Swift String, escaped. Non-ASCII characters are kept as their UTF-8 (a
    /// Swift String is always valid UTF-8), so the JSON string means the same text.
    public mutating func string(_ value: String) {
        separate()
        var copy = value
        copy.withUTF8 { writeEscaped($0, keepingUTF8: true) }
        needsComma = true
    }

    /// A string from raw bytes (fixed-width ASCII fields), escaped. Bytes above 0x7F are written
    /// as `\u00XX` so the output is always valid JSON, whatever the device sent.
    public mutating func string(bytes raw: UnsafeRawBufferPointer) {
        separate()
        writeEscaped(raw)
        needsComma = true
    }

    /// A string from a static ASCII literal (no escaping needed).
    public mutating func string(_ value: StaticString) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        value.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        needsComma = true
    }

    /// A protocol text (a decoded `char[N]` field or alarm detail, one code point per byte, as
    /// `ITBProtocol` decodes them) as a JSON string: every code point outside 0x20–0x7E is written
    /// `\u00XX` of its byte (PROTOCOL.md §7), so `43 50 01 58 E9` reads `"CP\u0001X\u00e9"`.
    public mutating func protocolText(_ value: String) {
        separate()
        writeEscaped(value.unicodeScalars.lazy.map { $0.value <= 0xFF ? UInt8($0.value) : UInt8(ascii: "?") })
        needsComma = true
    }

    /// A value that is already JSON text (a stored rendering), written as it is.
    public mutating func rendered(_ json: String) {
        separate()
        var copy = json
        copy.withUTF8 { bytes.append(contentsOf: $0) }
        needsComma = true
    }

    /// A time in ms since the epoch as RFC 3339 UTC with milliseconds; `null` when `0` and
    /// `absentWhenZero` (the protocol's "absent"), and `null` when RFC 3339 cannot show it
    /// (outside ``RFC3339/representable``): never a plausible-looking wrong date. Use
    /// ``timeField(_:ms:absentWhenZero:)`` for a keyed field, which also keeps the raw value.
    public mutating func time(ms: Int64, absentWhenZero: Bool = true) {
        if ms == 0 && absentWhenZero { return null() }
        guard RFC3339.representable.contains(ms) else { return null() }
        separate()
        bytes.append(UInt8(ascii: "\""))
        RFC3339.append(ms: ms, to: &bytes)
        bytes.append(UInt8(ascii: "\""))
        needsComma = true
    }

    /// `"<key>": <time>` for a time field: the RFC 3339 string; `null` when absent (0, with
    /// `absentWhenZero`); and for a value outside years 0001–9999, which RFC 3339 cannot show,
    /// `null` followed by `"<key>_raw"` with the integer, so the value is kept but never shown as a
    /// plausible wrong date (PROTOCOL.md §7).
    public mutating func timeField(_ key: StaticString, ms: Int64, absentWhenZero: Bool = true) {
        self.key(key)
        time(ms: ms, absentWhenZero: absentWhenZero)
        if !(ms == 0 && absentWhenZero) && !RFC3339.representable.contains(ms) {
            self.key(key, suffix: "_raw")
            int(ms)
        }
    }

    private static let hex: StaticString = "0123456789abcdef"

    /// A `UInt64` as 16 lower-case hex digits in a string (too large for a JSON number).
    public mutating func hex64(_ value: UInt64) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        Self.hex.withUTF8Buffer { digits in
            for shift in stride(from: 60, through: 0, by: -4) {
                bytes.append(digits[Int((value >> UInt64(shift)) & 0xF)])
            }
        }
        bytes.append(UInt8(ascii: "\""))
        needsComma = true
    }

    private mutating func appendDecimal(_ value: UInt64) {
        var v = value
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[19 - count] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                count += 1
            } while v > 0
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[(20 - count)...]))
        }
    }

    /// Writes `raw` as a JSON string. Bytes outside 0x20–0x7E become `\u00XX` (protocol text:
    /// each byte is one character), except that with `keepingUTF8` bytes from 0x80 up are copied
    /// as they are (the caller guarantees valid UTF-8, as a Swift String does).
    private mutating func writeEscaped<C: Collection>(_ raw: C, keepingUTF8: Bool = false) where C.Element == UInt8 {
        bytes.append(UInt8(ascii: "\""))
        for byte in raw {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x20...0x7E: bytes.append(byte)
            case 0x80...0xFF where keepingUTF8: bytes.append(byte)
            default:
                bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                Self.hex.withUTF8Buffer { digits in
                    bytes.append(digits[Int(byte >> 4)])
                    bytes.append(digits[Int(byte & 0xF)])
                }
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
