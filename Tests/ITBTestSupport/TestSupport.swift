// Test helpers shared by every test target (test targets cannot share source files, so they
// live in this small library, which only test targets depend on). Each target re-exports it from
// its own support file. What only the bridge and itbctl suites need (the test daemon, the
// programmer driver, the executables, the daemon's JSON) is in ITBBridgeTestSupport.

public import Foundation
public import ITBProtocol
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Seeded randomness

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast generator whose whole state is one seed, so
/// every random test reproduces exactly from the seed written in the test.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` random bytes.
    public mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) }
    }

    /// `count` random bytes none of which is 0xB7, so they can never start (or complete) a magic.
    public mutating func garbage(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in
            var byte: UInt8
            repeat { byte = UInt8(truncatingIfNeeded: next()) } while byte == FrameLayout.magic.0
            return byte
        }
    }
}

// MARK: - JSON values

/// A parsed JSON value that compares the way JSON means it: numbers numerically (500 == 500.0),
/// objects without regard to key order.
public indirect enum JSONValue: Equatable, Sendable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Converts what `JSONSerialization` returns.
    public init(foundation value: Any) {
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
    public static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        JSONValue(foundation: try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]))
    }

    public var description: String {
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

// MARK: - Running things in tests

/// Runs a blocking call on its own thread, never on the cooperative pool: an in-process daemon
/// needs that pool, and a test blocked on it would starve the daemon it is waiting for.
public func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    let result: Result<T, any Error> = await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: Result { try body() }) }.start()
    }
    return try result.get()
}

/// A fresh directory under the system's temporary directory (mode 0755, so that another user can
/// reach a socket in it), removed by `remove()`.
public struct ScratchDirectory: Sendable {
    /// Its path.
    public let path: String
    /// Creates the directory; `name` makes it recognisable.
    public init(_ name: String) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("itb-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
    }
    /// Removes it and everything in it.
    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// A failure of the test machinery itself, with what it was waiting for.
public struct HarnessError: Error, CustomStringConvertible {
    public let description: String
    /// Creates the error.
    public init(_ description: String) { self.description = description }
}

/// A realistic programmer identity for the tests.
public let testProgrammer = ProgrammerInfo(bootID: 0x1234_5678_9ABC, firmwareVersion: 0x02_04_01, protocolMinor: 0,
                                           programmerSerial: "PGM-000123", hardwareModel: "ITB-CP 8840")

/// Host time now, ms.
public func nowMs() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

// MARK: - Proof runs: fault-suite sizes and figure lines

/// The size of the fault suite. CI runs the short version of each fault test; the proof run
/// (`scripts/proof.sh`, which sets `ITB_PROOF_SCALE=full`) runs the counts that issue 8 asks for
/// and its figures go to BENCHMARKS.md.
public enum ProofScale {
    /// True in the proof run.
    public static var isFull: Bool { ProcessInfo.processInfo.environment["ITB_PROOF_SCALE"] == "full" }

    /// `full` in the proof run, `short` otherwise.
    public static func count(short: Int, full: Int) -> Int { isFull ? full : short }

    /// Prints one figure line, `FIGURE name: key=value …`, which `scripts/proof.sh` collects
    /// into its report. Fields keep the order given.
    public static func figure(_ name: String, _ fields: KeyValuePairs<String, any CustomStringConvertible>) {
        let text = fields.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        print("FIGURE \(name): scale=\(isFull ? "full" : "short") \(text)")
    }
}
