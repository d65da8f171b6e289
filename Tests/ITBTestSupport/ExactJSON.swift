// A strict JSON reader for tests that must see exactly what the daemon wrote: which characters of
// a string were escapes, and every digit of a number (64-bit integers and tenths compare exactly,
// where JSONSerialization would round through Double).

/// A JSON value read strictly after RFC 8259, keeping what a general-purpose parser throws away:
/// numbers keep their text and strings remember which characters were written as escapes.
public indirect enum ExactJSON: Sendable, Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    /// A number, as written (`-12`, `400.0`, `1e3`).
    case number(String)
    case string(JSONString)
    case array([ExactJSON])
    case object(JSONFields)

    /// Why a text is not JSON, and where.
    public struct ParseError: Error, CustomStringConvertible {
        /// Byte offset of the problem.
        public let offset: Int
        /// What is wrong there.
        public let reason: String
        public var description: String { "not valid JSON at byte \(offset): \(reason)" }
    }

    /// Parses one JSON text (surrounding white space allowed, nothing else); throws ``ParseError``.
    public static func parse(_ bytes: [UInt8]) throws(ParseError) -> ExactJSON {
        var reader = Reader(bytes: bytes)
        reader.skipSpace()
        let value = try reader.value(depth: 0)
        reader.skipSpace()
        guard reader.index == bytes.count else { throw ParseError(offset: reader.index, reason: "text after the value") }
        return value
    }

    /// Parses a JSON text given as a String (its UTF-8 bytes).
    public static func parse(_ text: String) throws(ParseError) -> ExactJSON { try parse(Array(text.utf8)) }

    /// The object's fields, or nil when this is not an object.
    public var object: JSONFields? { if case .object(let fields) = self { fields } else { nil } }
    /// The array's elements, or nil when this is not an array.
    public var array: [ExactJSON]? { if case .array(let elements) = self { elements } else { nil } }
    /// The string's value, or nil when this is not a string.
    public var string: String? { if case .string(let text) = self { text.value } else { nil } }
    /// True for `null`.
    public var isNull: Bool { self == .null }

    /// The number as an integer when it is written as one (`-12`, not `12.0` or `1e1`) and fits.
    public var integer: Int128? {
        guard case .number(let text) = self else { return nil }
        return Int128(text)
    }

    /// The number times 10 when that is a whole number (`400.5` → 4005, `7` → 70); nil for
    /// anything else (more decimals, exponents, not a number).
    public var tenths: Int128? {
        guard case .number(let text) = self, !text.contains("e"), !text.contains("E") else { return nil }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard let whole = Int128(parts[0]) else { return nil }
        let negative = text.hasPrefix("-")
        var result = whole * 10
        if parts.count == 2 {
            let fraction = parts[1]
            guard let first = fraction.first?.wholeNumberValue, fraction.dropFirst().allSatisfy({ $0 == "0" }) else { return nil }
            result += negative ? -Int128(first) : Int128(first)
        }
        return result
    }

    public var description: String {
        switch self {
        case .null: "null"
        case .bool(let value): String(value)
        case .number(let text): text
        case .string(let text): text.source
        case .array(let elements): "[" + elements.map(\.description).joined(separator: ",") + "]"
        case .object(let fields): "{" + fields.pairs.map { "\(String(reflecting: $0.key)):\($0.value)" }.joined(separator: ",") + "}"
        }
    }

    private struct Reader {
        let bytes: [UInt8]
        var index = 0

        mutating func skipSpace() {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
        }

        func fail(_ reason: String) -> ParseError { ParseError(offset: index, reason: reason) }

        mutating func expect(_ literal: String, _ value: ExactJSON) throws(ParseError) -> ExactJSON {
            let text = Array(literal.utf8)
            guard index + text.count <= bytes.count, Array(bytes[index..<(index + text.count)]) == text else { throw fail("expected \(literal)") }
            index += text.count
            return value
        }

        mutating func value(depth: Int) throws(ParseError) -> ExactJSON {
            guard depth < 256 else { throw fail("nested too deeply") }
            guard index < bytes.count else { throw fail("unexpected end") }
            switch bytes[index] {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try expect("true", .bool(true))
            case UInt8(ascii: "f"): return try expect("false", .bool(false))
            case UInt8(ascii: "n"): return try expect("null", .null)
            default: return try number()
            }
        }

        mutating func object(depth: Int) throws(ParseError) -> ExactJSON {
            index += 1
            var fields = JSONFields()
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(fields)
            }
            while true {
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                let key = try string().value
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                index += 1
                skipSpace()
                let element = try value(depth: depth + 1)
                guard fields[key] == nil else { throw fail("duplicate key \(String(reflecting: key))") }
                fields.append(key, element)
                skipSpace()
                guard index < bytes.count else { throw fail("unterminated object") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                guard bytes[index] == UInt8(ascii: "}") else { throw fail("expected ',' or '}'") }
                index += 1
                return .object(fields)
            }
        }

        mutating func array(depth: Int) throws(ParseError) -> ExactJSON {
            index += 1
            var elements: [ExactJSON] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            }
            while true {
                skipSpace()
                elements.append(try value(depth: depth + 1))
                skipSpace()
                guard index < bytes.count else { throw fail("unterminated array") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                guard bytes[index] == UInt8(ascii: "]") else { throw fail("expected ',' or ']'") }
                index += 1
                return .array(elements)
            }
        }

        mutating func number() throws(ParseError) -> ExactJSON {
            let start = index
            func digits() -> Int {
                let from = index
                while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 { index += 1 }
                return index - from
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count else { throw fail("expected a value") }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
            } else {
                guard digits() > 0 else { throw fail("expected a value") }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                guard digits() > 0 else { throw fail("expected digits after '.'") }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                guard digits() > 0 else { throw fail("expected exponent digits") }
            }
            return .number(String(decoding: bytes[start..<index], as: UTF8.self))
        }

        mutating func hex4() throws(ParseError) -> UInt32 {
            guard index + 4 <= bytes.count else { throw fail("short \\u escape") }
            var value: UInt32 = 0
            for byte in bytes[index..<(index + 4)] {
                let digit: UInt32
                switch byte {
                case 0x30...0x39: digit = UInt32(byte - 0x30)
                case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
                case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
                default: throw fail("bad hex digit in \\u escape")
                }
                value = value << 4 | digit
            }
            index += 4
            return value
        }

        mutating func string() throws(ParseError) -> JSONString {
            let start = index
            index += 1
            var scalars: [Unicode.Scalar] = []
            var escaped: [Bool] = []
            while true {
                guard index < bytes.count else { throw fail("unterminated string") }
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    index += 1
                    return JSONString(scalars: scalars, escaped: escaped, source: String(decoding: bytes[start..<index], as: UTF8.self))
                }
                if byte < 0x20 { throw fail("raw control character 0x\(String(byte, radix: 16)) in a string") }
                if byte == UInt8(ascii: "\\") {
                    index += 1
                    guard index < bytes.count else { throw fail("unterminated escape") }
                    let kind = bytes[index]
                    index += 1
                    let scalar: Unicode.Scalar
                    switch kind {
                    case UInt8(ascii: "\""): scalar = "\""
                    case UInt8(ascii: "\\"): scalar = "\\"
                    case UInt8(ascii: "/"): scalar = "/"
                    case UInt8(ascii: "b"): scalar = "\u{08}"
                    case UInt8(ascii: "f"): scalar = "\u{0C}"
                    case UInt8(ascii: "n"): scalar = "\n"
                    case UInt8(ascii: "r"): scalar = "\r"
                    case UInt8(ascii: "t"): scalar = "\t"
                    case UInt8(ascii: "u"):
                        var code = try hex4()
                        if (0xD800...0xDBFF).contains(code) {
                            guard index + 6 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                                throw fail("lone high surrogate")
                            }
                            index += 2
                            let low = try hex4()
                            guard (0xDC00...0xDFFF).contains(low) else { throw fail("bad low surrogate") }
                            code = 0x10000 + (code - 0xD800) << 10 + (low - 0xDC00)
                        } else if (0xDC00...0xDFFF).contains(code) {
                            throw fail("lone low surrogate")
                        }
                        guard let value = Unicode.Scalar(code) else { throw fail("bad \\u escape") }
                        scalar = value
                    default:
                        throw fail("unknown escape \\\(Character(Unicode.Scalar(kind)))")
                    }
                    scalars.append(scalar)
                    escaped.append(true)
                    continue
                }
                // Raw UTF-8: one scalar of 1–4 bytes, validated.
                let length = byte < 0x80 ? 1 : byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC2 ? 2 : 0
                guard length > 0, index + length <= bytes.count else { throw fail("invalid UTF-8") }
                var decoder = UTF8()
                var iterator = bytes[index..<(index + length)].makeIterator()
                guard case .scalarValue(let scalar) = decoder.decode(&iterator), iterator.next() == nil else { throw fail("invalid UTF-8") }
                scalars.append(scalar)
                escaped.append(false)
                index += length
            }
        }
    }
}

/// A JSON string's characters, each with whether it was written as an escape.
public struct JSONString: Sendable, Equatable {
    /// The characters, unescaped.
    public var scalars: [Unicode.Scalar]
    /// `escaped[i]`: `scalars[i]` was written as `\…`.
    public var escaped: [Bool]
    /// The string as written, quotes included.
    public var source: String
    /// The value.
    public var value: String { String(String.UnicodeScalarView(scalars)) }
}

/// An object's members in the order written (keys are unique: the parser rejects duplicates).
public struct JSONFields: Sendable, Equatable {
    /// The members in order.
    public private(set) var pairs: [(key: String, value: ExactJSON)] = []
    private var positions: [String: Int] = [:]

    /// An empty object.
    public init() {}

    /// Adds a member (the parser has checked that `key` is new).
    mutating func append(_ key: String, _ value: ExactJSON) {
        positions[key] = pairs.count
        pairs.append((key, value))
    }

    /// The member named `key`.
    public subscript(key: String) -> ExactJSON? { positions[key].map { pairs[$0].value } }

    /// The keys in order.
    public var keys: [String] { pairs.map(\.key) }

    public static func == (a: JSONFields, b: JSONFields) -> Bool {
        a.pairs.count == b.pairs.count && a.pairs.allSatisfy { b[$0.key] == $0.value }
    }
}
