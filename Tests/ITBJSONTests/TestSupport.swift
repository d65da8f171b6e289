// Shared helpers of the ITBJSON test suite: parsing JSON text into comparable values, and a
// seeded random number generator. (Test targets cannot share source files, so these two small
// helpers also exist in ITBProtocolTests/TestSupport.swift; within this target they live only here.)

import Foundation
import ITBJSON

/// SplitMix64: a tiny generator whose whole state is one seed, so random tests reproduce exactly.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A parsed JSON value that compares the way JSON means it: numbers numerically, objects without
/// regard to key order.
indirect enum JSONValue: Equatable, Sendable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Converts what `JSONSerialization` returns.
    init(foundation value: Any) {
        switch value {
        case is NSNull:
            self = .null
        case let text as String:
            self = .string(text)
        case let list as [Any]:
            self = .array(list.map(JSONValue.init(foundation:)))
        case let dictionary as [String: Any]:
            self = .object(dictionary.mapValues(JSONValue.init(foundation:)))
        case let number as NSNumber:
            // A JSON boolean comes back as an NSNumber made from a Bool (type encoding "c").
            if String(cString: number.objCType) == "c" {
                self = .bool(number.boolValue)
            } else {
                self = .number(number.doubleValue)
            }
        default:
            preconditionFailure("unexpected JSONSerialization value \(type(of: value))")
        }
    }

    /// Parses JSON text; throws if it is not valid JSON.
    static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        JSONValue(foundation: try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]))
    }

    var description: String {
        switch self {
        case .null: "null"
        case .bool(let b): String(b)
        case .number(let n): String(n)
        case .string(let s): String(reflecting: s)
        case .array(let a): "[" + a.map(\.description).joined(separator: ",") + "]"
        case .object(let o): "{" + o.keys.sorted().map { "\(String(reflecting: $0)):\(o[$0]!)" }.joined(separator: ",") + "}"
        }
    }
}

/// The text a writer produced, for comparing exact output.
extension JSONWriter {
    var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// Writes one value with a fresh writer and returns the writer.
func written(_ write: (inout JSONWriter) -> Void) -> JSONWriter {
    var json = JSONWriter()
    write(&json)
    return json
}
