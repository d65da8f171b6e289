// Random protocol v1 payloads for property tests: every field drawn from its whole range, with
// its extremes (0, 1, the maximum, i64's minimum, the edges of RFC 3339's years) far more often
// than a uniform draw would give them, `char[N]` fields with any bytes (control bytes, DEL, bytes
// above 0x7F, NUL in the middle). Payloads are built as raw bytes from
// protocol-spec/PROTOCOL.md §5, not through the typed structs: those cannot express every value
// (a `char[N]` byte above 0x7F, an alarm detail of arbitrary bytes, a count that does not match
// the entries).

public import ITBProtocol

/// One generated payload with its message type and what a receiver must do with it.
public struct RandomFrame: Sendable {
    /// What protocol-spec/PROTOCOL.md §2.2 says a receiver does with the frame.
    public enum Kind: Sendable, Hashable {
        /// A programmer → host message of at least its minimum length: delivered.
        case programmerToHost
        /// `ACK` or `HOST_HEARTBEAT` coming from the programmer: delivered (the type is known),
        /// ignored by the bridge.
        case wrongDirection
        /// A type outside the ten of §3: counted in `unknown_types`, skipped.
        case unknownType
        /// Shorter than its type's minimum (counts and detail length included): counted in
        /// `short_payloads`, skipped.
        case shortPayload
    }

    /// The message type on the wire.
    public var type: MessageType
    /// The payload bytes.
    public var payload: [UInt8]
    /// What a receiver does with it.
    public var kind: Kind

    /// Creates a frame description.
    public init(type: MessageType, payload: [UInt8], kind: Kind) {
        self.type = type
        self.payload = payload
        self.kind = kind
    }
}

/// Seeded generator of random payloads of every message type (``RandomFrame``).
///
/// Integers come from ``ExtremeDraw``; `char[N]` fields from ``text(width:)``. Reserved bytes are
/// sometimes non-zero and some payloads carry trailing bytes of a later minor version: a receiver
/// must ignore both (§1, §2.6).
public struct RandomFrameGenerator: Sendable {
    /// The underlying generator (its state is the seed: the same seed gives the same frames).
    public var random: SplitMix64
    /// The `programmer_serial` of generated `PROGRAMMER_INFO` payloads (NUL-padded to 16 bytes),
    /// so that a stream keeps talking about one programmer; nil draws it like any `char[16]`.
    public var programmerSerial: [UInt8]?

    /// The programmer → host types, in type order.
    public static let programmerToHostTypes: [MessageType] = [
        .programmerInfo, .pumpSession, .pumpStatus, .reservoir, .doseProgram, .refill, .alarm, .heartbeat,
    ]

    /// Creates a generator from `seed`.
    public init(seed: UInt64, programmerSerial: [UInt8]? = nil) {
        random = SplitMix64(seed: seed)
        self.programmerSerial = programmerSerial
    }

    /// The next frame of a mix: mostly valid programmer → host messages of every type in about
    /// equal shares, plus host → programmer types sent the wrong way, unknown types and short
    /// payloads (about 4 % each).
    public mutating func next() -> RandomFrame {
        let roll = int(0..<100)
        switch roll {
        case 0..<4:
            let type: MessageType = bool() ? .ack : .hostHeartbeat
            return RandomFrame(type: type, payload: payload(of: type), kind: .wrongDirection)
        case 4..<8:
            return unknownType()
        case 8..<12:
            return shortPayload()
        default:
            let type = Self.programmerToHostTypes[int(0..<Self.programmerToHostTypes.count)]
            return RandomFrame(type: type, payload: payload(of: type), kind: .programmerToHost)
        }
    }

    /// A valid payload of a known `type`, at least its minimum length.
    public mutating func payload(of type: MessageType) -> [UInt8] {
        var bytes: [UInt8] = []
        // One field after the other (short statements: long `+` chains type-check slowly).
        func put<T: FixedWidthInteger>(_ value: T) { bytes += Self.le(value) }
        switch type {
        case .programmerInfo:
            put(u64()); put(u32()); put(u16())
            bytes += reserved(2)
            bytes += programmerSerial.map { Array(($0 + [UInt8](repeating: 0, count: 16)).prefix(16)) } ?? text(width: 16)
            bytes += text(width: 16)
        case .pumpSession:
            put(time()); put(time()); put(u32()); put(u16())
            put(enumeration(known: 1...2)); put(enumeration(known: 0...2))
            bytes += text(width: 16)
            bytes += text(width: 16)
        case .pumpStatus:
            put(time()); put(u32()); put(u32()); put(u32())
            put(enumeration(known: 0...4)); put(enumeration(known: 0...4))
            put(bool() ? UInt8(255) : u8())
            bytes += reserved(1)
        case .reservoir:
            put(time()); put(time()); put(u32()); put(u32()); put(u32()); put(u32())
            put(enumeration(known: 0...1))
            bytes += reserved(7)
        case .doseProgram:
            let steps = oneOf([0, 1, 13, int(0...13)])
            let boluses = oneOf([0, 1, 24, int(0...24)])
            put(time()); put(u32()); put(u32()); put(u16()); put(u16())
            put(enumeration(known: 0...4)); put(UInt8(steps)); put(UInt8(boluses))
            bytes += reserved(1)
            for _ in 0..<steps {
                put(u16())
                bytes += reserved(2)
                put(u32())
            }
            for _ in 0..<boluses { put(u16()); put(u16()); put(u32()) }
        case .refill:
            put(time()); put(u32()); put(u32()); put(u32()); put(u32())
            bytes += text(width: 16)
        case .alarm:
            bytes = alarmPayload(alarmID: alarmID())
        case .heartbeat:
            put(u64()); put(u32()); put(u32()); put(u32())
            bytes += reserved(4)
        case .ack:
            put(u32()); put(u32()); put(u16())
            put(enumeration(known: 1...2))
            bytes += reserved(1)
        case .hostHeartbeat:
            put(time()); put(u32())
            bytes += reserved(4)
        default:
            preconditionFailure("payload(of:) takes a known type, not \(type)")
        }
        // A later minor version may append fields (§2.6): sometimes there are some.
        if int(0..<10) == 0 {
            bytes += random.bytes(int(1...min(32, FrameLayout.maximumPayloadLength - bytes.count)))
        }
        return bytes
    }

    /// An `ALARM` payload with `alarmID` and every other field random: detail length 0–64 (0 and
    /// 64 often) of bytes 0x00–0xFF (a NUL ends the text early).
    public mutating func alarmPayload(alarmID: UInt32) -> [UInt8] {
        let detailLength = oneOf([0, 1, 64, int(0...64)])
        var bytes = Self.le(time())
        bytes += Self.le(alarmID)
        bytes += Self.le(u16())
        bytes += [enumeration(known: 1...4), enumeration(known: 1...2), UInt8(detailLength)]
        bytes += reserved(7)
        bytes += detail(detailLength)
        return bytes
    }

    /// An alarm id of the whole range that §5 allows (≥ 1), extremes often.
    public mutating func alarmID() -> UInt32 {
        max(1, u32())
    }

    /// A frame of a type outside the ten of §3, with a random payload.
    public mutating func unknownType() -> RandomFrame {
        var raw: UInt16
        repeat {
            raw = oneOf([0x0000, 0x0009, 0x00FF, 0x0100, 0x0103, 0x7FFF, 0x8000, 0xFFFF, u16()])
        } while MessageType(rawValue: raw).fixedMinimumLength != nil
        let length = oneOf([0, 1, 64, FrameLayout.maximumPayloadLength, int(0...128)])
        return RandomFrame(type: MessageType(rawValue: raw), payload: random.bytes(length), kind: .unknownType)
    }

    /// A frame of a known type whose payload is shorter than that type's minimum: cut below the
    /// fixed part, or (`DOSE_PROGRAM`, `ALARM`) shorter than its counts or detail length say, or
    /// with counts or a detail length above the protocol's maximum.
    public mutating func shortPayload() -> RandomFrame {
        let type = MessageType.allKnown[int(0..<MessageType.allKnown.count)]
        let fixed = type.fixedMinimumLength!
        var bytes = payload(of: type)
        switch (type, int(0..<3)) {
        case (.doseProgram, 1):
            // Counts that need more entries than the payload holds.
            bytes = Array(bytes.prefix(24))
            bytes[21] = UInt8(int(1...13))
            bytes[22] = UInt8(int(0...24))
            bytes += random.bytes(int(0..<(8 * (Int(bytes[21]) + Int(bytes[22])))))
        case (.doseProgram, 2):
            // More steps or boluses than the protocol allows: short whatever the length.
            bytes = Array(bytes.prefix(24))
            if bool() { bytes[21] = UInt8(int(14...255)) } else { bytes[22] = UInt8(int(25...255)) }
            bytes += random.bytes(int(0...(FrameLayout.maximumPayloadLength - 24)))
        case (.alarm, 1):
            // Fewer detail bytes than detail_length says.
            bytes = Array(bytes.prefix(24))
            bytes[16] = UInt8(int(1...64))
            bytes += random.bytes(int(0..<Int(bytes[16])))
        case (.alarm, 2):
            // A detail length above 64: short whatever the length.
            bytes = Array(bytes.prefix(24))
            bytes[16] = UInt8(int(65...255))
            bytes += random.bytes(int(0...(FrameLayout.maximumPayloadLength - 24)))
        default:
            bytes = Array(bytes.prefix(oneOf([0, fixed - 1, int(0..<fixed)])))
        }
        return RandomFrame(type: type, payload: bytes, kind: .shortPayload)
    }

    // MARK: - Field draws

    /// A `char[width]` field: printable text, text with any bytes, bytes with a NUL in the middle
    /// (what follows it is not text), or all `width` bytes without a NUL.
    public mutating func text(width: Int) -> [UInt8] {
        let special: [UInt8] = [0x01, 0x1F, 0x20, 0x22, 0x5C, 0x7E, 0x7F, 0x80, 0xB0, 0xC3, 0xE9, 0xFF]
        var bytes = [UInt8](repeating: 0, count: width)
        let length = oneOf([0, 1, width, int(0...width)])
        let mode = int(0..<3)
        for index in 0..<length {
            switch mode {
            case 0: bytes[index] = UInt8(int(0x20...0x7E))
            case 1: bytes[index] = bool() ? special[int(0..<special.count)] : UInt8(int(1...255))
            default: bytes[index] = UInt8(truncatingIfNeeded: random.next())  // NULs included
            }
        }
        // Sometimes bytes after the terminating NUL: not part of the text.
        if length + 1 < width, int(0..<4) == 0 {
            for index in (length + 1)..<width { bytes[index] = UInt8(truncatingIfNeeded: random.next()) }
        }
        return bytes
    }

    /// `count` detail bytes of any value, the special ones often.
    public mutating func detail(_ count: Int) -> [UInt8] {
        let special: [UInt8] = [0x00, 0x01, 0x7F, 0x80, 0xB0, 0xE9, 0xFF, 0x22, 0x5C]
        return (0..<count).map { _ in bool() ? special[int(0..<special.count)] : UInt8(truncatingIfNeeded: random.next()) }
    }

    /// A time field (i64 ms): ``ExtremeDraw/time(_:)``.
    public mutating func time() -> Int64 { ExtremeDraw.time(&random) }
    /// A u8: ``ExtremeDraw/unsigned(_:)``.
    public mutating func u8() -> UInt8 { ExtremeDraw.unsigned(&random) }
    /// A u16: ``ExtremeDraw/unsigned(_:)``.
    public mutating func u16() -> UInt16 { ExtremeDraw.unsigned(&random) }
    /// A u32: ``ExtremeDraw/unsigned(_:)``.
    public mutating func u32() -> UInt32 { ExtremeDraw.unsigned(&random) }
    /// A u64: ``ExtremeDraw/unsigned(_:)``.
    public mutating func u64() -> UInt64 { ExtremeDraw.unsigned(&random) }

    /// An enumeration byte: a known value half the time, else any byte (extremes often).
    public mutating func enumeration(known: ClosedRange<UInt8>) -> UInt8 {
        bool() ? UInt8(int(Int(known.lowerBound)...Int(known.upperBound))) : u8()
    }

    /// Reserved bytes: zeros as §1 says they are sent, sometimes not (they must be ignored).
    public mutating func reserved(_ count: Int) -> [UInt8] {
        int(0..<5) == 0 ? random.bytes(count) : [UInt8](repeating: 0, count: count)
    }

    /// A uniform integer in `range`.
    public mutating func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &random) }
    /// A uniform integer in `range`.
    public mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) }
    /// A fair coin.
    public mutating func bool() -> Bool { random.next() & 1 == 1 }
    /// One of `choices`, uniformly.
    public mutating func oneOf<T>(_ choices: [T]) -> T { choices[int(0..<choices.count)] }

    /// Little-endian bytes of an integer.
    public static func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }
}

/// Integer draws that give a field's extremes far more often than a uniform draw.
public enum ExtremeDraw {
    /// The earliest time RFC 3339 can write: 0001-01-01T00:00:00.000Z, in ms since the epoch.
    public static let earliestRFC3339Ms: Int64 = -62_135_596_800_000
    /// The latest time RFC 3339 can write: 9999-12-31T23:59:59.999Z, in ms since the epoch.
    public static let latestRFC3339Ms: Int64 = 253_402_300_799_999

    /// An unsigned integer: half the time one of 0, 1, 2, 0x7F…F, 0x80…0, max − 1, max; else uniform.
    public static func unsigned<T: FixedWidthInteger & UnsignedInteger>(_ random: inout SplitMix64) -> T {
        if random.next() & 1 == 0 {
            let extremes: [T] = [0, 1, 2, T.max >> 1, (T.max >> 1) + 1, T.max - 1, T.max]
            return extremes[Int(random.next() % UInt64(extremes.count))]
        }
        return T(truncatingIfNeeded: random.next())
    }

    /// A time (i64 ms): 40 % extremes (0 = absent, ±1, i64's minimum and maximum and their
    /// neighbours, the first and last millisecond RFC 3339 can write and one beyond each), 25 %
    /// uniform over RFC 3339's years, 15 % within ten years of 2026, 20 % uniform over all of i64.
    public static func time(_ random: inout SplitMix64) -> Int64 {
        let roll = random.next() % 100
        switch roll {
        case 0..<40:
            let extremes: [Int64] = [
                0, 1, -1, .min, .min + 1, .max, .max - 1, Int64(Int32.max), Int64(Int32.min), Int64(UInt32.max),
                earliestRFC3339Ms, earliestRFC3339Ms - 1, latestRFC3339Ms, latestRFC3339Ms + 1,
            ]
            return extremes[Int(random.next() % UInt64(extremes.count))]
        case 40..<65:
            return Int64.random(in: earliestRFC3339Ms...latestRFC3339Ms, using: &random)
        case 65..<80:
            let year2026: Int64 = 1_767_225_600_000
            return Int64.random(in: (year2026 - 315_576_000_000)...(year2026 + 315_576_000_000), using: &random)
        default:
            return Int64(bitPattern: random.next())
        }
    }
}
