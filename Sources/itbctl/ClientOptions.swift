// What the clinic-side client commands (devices, status, alarms, ack, watch) share: the socket
// and output options, the request helper that turns every failure into the documented exit code,
// a small JSON reader that keeps numbers as the daemon wrote them, and aligned tables.
import ArgumentParser
import ITBClient
import ITBJSON
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - Options

/// `--socket` and `--json`, shared by every client command.
struct ClientOptions: ParsableArguments {
    /// The daemon's socket when neither `--socket` nor `ITB_SOCKET` says otherwise.
    static let defaultSocket = "/run/itb-bridge/api.sock"

    @Option(name: .long, help: ArgumentHelp(
        "The daemon's API socket (default: $ITB_SOCKET when set, else \(defaultSocket)).",
        valueName: "path"))
    var socket: String?

    @Flag(name: .long, help: "Print the daemon's JSON as it is, for scripts, instead of a table.")
    var json = false

    /// The socket to use: `--socket`, else `ITB_SOCKET`, else the daemon's default.
    var socketPath: String {
        if let socket { return socket }
        if let fromEnvironment = getenv("ITB_SOCKET").map({ String(cString: $0) }), !fromEnvironment.isEmpty { return fromEnvironment }
        return Self.defaultSocket
    }

    /// The API over that socket.
    var api: DaemonAPI { DaemonAPI(client: UnixHTTPClient(socketPath: socketPath, timeout: .seconds(10))) }
}

// MARK: - Failures and exit codes

/// A failure to report on stderr, with the exit code `ITBCtl`'s help documents.
struct CommandFailure: Error {
    /// 1 failure, 3 daemon not running, 4 permission denied, 5 not found.
    var exitCode: Int32
    /// What to tell the person at the terminal.
    var message: String

    /// Exit code 1: a request failed or the answer was an error.
    static let failed: Int32 = 1
    /// Exit code 3: nothing listens at the socket.
    static let daemonNotRunning: Int32 = 3
    /// Exit code 4: the socket may not be opened by this user.
    static let permissionDenied: Int32 = 4
    /// Exit code 5: unknown device or alarm.
    static let notFound: Int32 = 5

    /// The failure for a client error: `ClientError`'s description is already worded for people.
    init(_ error: ClientError) {
        switch error {
        case .daemonNotRunning: exitCode = Self.daemonNotRunning
        case .permissionDenied: exitCode = Self.permissionDenied
        default: exitCode = Self.failed
        }
        message = error.description
    }

    /// A failure with an explicit code and message.
    init(exitCode: Int32, message: String) {
        self.exitCode = exitCode
        self.message = message
    }
}

/// Runs a command's body; a ``CommandFailure`` is printed on stderr and becomes its exit code.
func reportingFailures(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let failure as CommandFailure {
        flushOutput()
        printError(failure.message)
        throw ExitCode(failure.exitCode)
    }
}

// MARK: - Requests

/// One answer from the daemon.
struct Reply {
    /// HTTP status.
    var status: Int
    /// The body as text, without trailing white space.
    var text: String

    /// The body as JSON; a failure (exit 1) when it is not JSON.
    func document() throws(CommandFailure) -> JSONValue {
        do {
            return try JSONValue.parse(text)
        } catch {
            throw CommandFailure(exitCode: CommandFailure.failed,
                                 message: "unexpected answer from itb-bridged (not JSON: \(error.reason)): \(text.prefix(200))")
        }
    }

    /// The API error code (`unknown_device`, `no_status`, …) of an error answer.
    var errorCode: String? { (try? JSONValue.parse(text))?["error"]?.string }

    /// The failure an error answer stands for: exit 5 for 404, 1 otherwise, with the daemon's
    /// `message`.
    var failure: CommandFailure {
        let document = try? JSONValue.parse(text)
        let message = document?["message"]?.string ?? "itb-bridged answered \(status): \(text.prefix(200))"
        return CommandFailure(exitCode: status == 404 ? CommandFailure.notFound : CommandFailure.failed, message: message)
    }
}

/// The daemon's HTTP API, blocking: fine in a command-line process, whose `run()` is synchronous.
struct DaemonAPI {
    /// The client over the daemon's socket.
    var client: UnixHTTPClient

    /// Sends one request; connection failures become exit codes 3, 4 or 1.
    func send(_ method: String, _ path: String, body: String = "") throws(CommandFailure) -> Reply {
        do {
            let headers: [(String, String)] = body.isEmpty ? [] : [("Content-Type", "application/json")]
            let response = try client.request(method, path, body: Array(body.utf8), headers: headers)
            var text = response.text
            while let last = text.last, last == "\n" || last == "\r" || last == " " { text.removeLast() }
            return Reply(status: response.status, text: text)
        } catch {
            throw CommandFailure(error)
        }
    }

    /// Sends one request that must succeed (2xx); an error answer becomes its failure.
    func require(_ method: String, _ path: String) throws(CommandFailure) -> Reply {
        let reply = try send(method, path)
        guard (200..<300).contains(reply.status) else { throw reply.failure }
        return reply
    }

    /// `GET path` as JSON; an error answer becomes its failure.
    func document(_ path: String) throws(CommandFailure) -> (reply: Reply, document: JSONValue) {
        let reply = try require("GET", path)
        return (reply, try reply.document())
    }

    /// The newest journal event id (`last_event_id` of `/v1/health`); nil from a daemon that
    /// does not report it.
    func latestEventID() throws(CommandFailure) -> Int64? {
        try document("/v1/health").document["last_event_id"]?.int64
    }
}

/// Percent-encodes `text` for a path segment or a query value (RFC 3986 unreserved kept).
func percentEncoded(_ text: String) -> String {
    let hex = Array("0123456789ABCDEF".unicodeScalars)
    var out = ""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            out += "%"
            out.unicodeScalars.append(hex[Int(byte >> 4)])
            out.unicodeScalars.append(hex[Int(byte & 0xF)])
        }
    }
    return out
}

/// `path?name=value&…` for the parameters that are set, values percent-encoded.
func pathWithQuery(_ path: String, _ parameters: [(String, String?)]) -> String {
    let pairs = parameters.compactMap { name, value in value.map { "\(name)=\(percentEncoded($0))" } }
    return pairs.isEmpty ? path : path + "?" + pairs.joined(separator: "&")
}

// MARK: - Output

/// Prints one line on stdout and flushes it at once, so that a pipe sees each line as it comes.
func printLine(_ line: String) {
    print(line)
    flushOutput()
}

/// Prints a JSON document (or any text) as one block ending in exactly one newline.
func printDocument(_ text: String) {
    printLine(text)
}

/// Flushes standard output (every stdio stream: `stdout` itself is not concurrency-safe to name).
func flushOutput() {
    fflush(nil)
}

/// Writes `itbctl: message` on stderr.
func printError(_ message: String) {
    writeStandardError("itbctl: \(message)\n")
}

/// Writes `itbctl: warning: message` on stderr.
func printWarning(_ message: String) {
    writeStandardError("itbctl: warning: \(message)\n")
}

/// Writes text to file descriptor 2, unbuffered.
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return
        }
        bytes = bytes.dropFirst(n)
    }
}

/// Host time now, ms since the Unix epoch.
func currentTimeMs() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
}

/// An aligned, plain-text table: a header row, then rows, columns two spaces apart.
struct Table {
    /// Column titles (with units where a column has them).
    var headers: [String]
    /// Cells, one array per row.
    var rows: [[String]] = []
    /// Columns whose cells are right-aligned (numbers).
    var rightAligned: Set<Int> = []

    /// Creates a table with these column titles.
    init(_ headers: [String], rightAligned: Set<Int> = []) {
        self.headers = headers
        self.rightAligned = rightAligned
    }

    /// Appends a row.
    mutating func append(_ row: [String]) { rows.append(row) }

    /// The table as lines of text, trailing blanks removed.
    func render() -> String {
        let all = [headers] + rows
        var widths = [Int](repeating: 0, count: headers.count)
        for row in all {
            for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], cell.count) }
        }
        var lines: [String] = []
        for row in all {
            var line = ""
            for index in 0..<headers.count {
                let cell = index < row.count ? row[index] : ""
                let padding = String(repeating: " ", count: widths[index] - cell.count)
                if index > 0 { line += "  " }
                line += rightAligned.contains(index) ? padding + cell : cell + padding
            }
            while line.last == " " { line.removeLast() }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}

/// Aligned `label  value` lines under a heading, for one record (`itbctl status`).
struct Details {
    private var items: [(String, String)] = []

    /// Adds a line.
    mutating func add(_ label: String, _ value: String) { items.append((label, value)) }

    /// The lines, each indented by two spaces, labels padded to one width.
    func render() -> String {
        let width = items.map(\.0.count).max() ?? 0
        return items.map { label, value in
            "  " + label + String(repeating: " ", count: width - label.count) + "  " + value
        }.joined(separator: "\n")
    }
}

/// A cell for an optional value: the text, or `-` when absent.
func cell(_ value: String?) -> String {
    guard let value, !value.isEmpty else { return "-" }
    return value
}

// MARK: - JSON

/// A JSON value as the daemon sent it; numbers keep their text (`400`, `39000.5`), so tables show
/// exactly what the API says.
enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Members in the order the daemon wrote them.
    case object([Member])

    /// One member of an object.
    struct Member: Equatable, Sendable {
        /// Its name.
        var key: String
        /// Its value.
        var value: JSONValue
    }

    /// Why a text is not JSON.
    struct ParseError: Error {
        /// What was wrong, and where.
        var reason: String
    }

    /// Parses one JSON document (surrounded by optional white space).
    static func parse(_ text: String) throws(ParseError) -> JSONValue {
        var parser = Parser(bytes: Array(text.utf8))
        parser.skipWhiteSpace()
        let value = try parser.value(depth: 0)
        parser.skipWhiteSpace()
        guard parser.index == parser.bytes.count else { throw ParseError(reason: "extra text at byte \(parser.index)") }
        return value
    }

    /// The member `key` of an object; nil for a missing member, for JSON null, or for a non-object.
    subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self, let value = members.first(where: { $0.key == key })?.value else { return nil }
        if case .null = value { return nil }
        return value
    }

    /// The string, if this is one.
    var string: String? { if case .string(let s) = self { s } else { nil } }
    /// The number's text, if this is a number.
    var numberText: String? { if case .number(let n) = self { n } else { nil } }
    /// The number as an integer, if it is a whole number.
    var int64: Int64? { numberText.flatMap { Int64($0) } }
    /// The number as a Double.
    var double: Double? { numberText.flatMap { Double($0) } }
    /// The Boolean, if this is one.
    var bool: Bool? { if case .bool(let b) = self { b } else { nil } }
    /// The elements, if this is an array.
    var array: [JSONValue]? { if case .array(let a) = self { a } else { nil } }

    /// Scalars as display text (strings as they are, numbers as written); nil for null,
    /// arrays and objects.
    var text: String? {
        switch self {
        case .string(let s): s
        case .number(let n): n
        case .bool(let b): b ? "true" : "false"
        default: nil
        }
    }

    /// The value as compact JSON text (members in their order, numbers as they were written).
    var serialized: String {
        var out = ""
        serialize(into: &out)
        return out
    }

    private func serialize(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n
        case .string(let s): Self.quote(s, into: &out)
        case .array(let elements):
            out += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { out += "," }
                element.serialize(into: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (index, member) in members.enumerated() {
                if index > 0 { out += "," }
                Self.quote(member.key, into: &out)
                out += ":"
                member.value.serialize(into: &out)
            }
            out += "}"
        }
    }

    private static func quote(_ text: String, into out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0

        mutating func skipWhiteSpace() {
            while index < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[index]) { index += 1 }
        }

        func fail(_ what: String) -> ParseError { ParseError(reason: "\(what) at byte \(index)") }

        mutating func expect(_ literal: String, _ value: JSONValue) throws(ParseError) -> JSONValue {
            let expected = Array(literal.utf8)
            guard index + expected.count <= bytes.count, Array(bytes[index..<(index + expected.count)]) == expected else {
                throw fail("expected \(literal)")
            }
            index += expected.count
            return value
        }

        mutating func value(depth: Int) throws(ParseError) -> JSONValue {
            guard depth < 256 else { throw fail("nesting too deep") }
            guard index < bytes.count else { throw fail("unexpected end") }
            switch bytes[index] {
            case UInt8(ascii: "n"): return try expect("null", .null)
            case UInt8(ascii: "t"): return try expect("true", .bool(true))
            case UInt8(ascii: "f"): return try expect("false", .bool(false))
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "["):
                index += 1
                var elements: [JSONValue] = []
                skipWhiteSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                    index += 1
                    return .array(elements)
                }
                while true {
                    skipWhiteSpace()
                    elements.append(try value(depth: depth + 1))
                    skipWhiteSpace()
                    guard index < bytes.count else { throw fail("unterminated array") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(elements) }
                    throw fail("expected , or ]")
                }
            case UInt8(ascii: "{"):
                index += 1
                var members: [Member] = []
                skipWhiteSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                    index += 1
                    return .object(members)
                }
                while true {
                    skipWhiteSpace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
                    let key = try string()
                    skipWhiteSpace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected :") }
                    index += 1
                    skipWhiteSpace()
                    members.append(Member(key: key, value: try value(depth: depth + 1)))
                    skipWhiteSpace()
                    guard index < bytes.count else { throw fail("unterminated object") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
                    throw fail("expected , or }")
                }
            default:
                return .number(try number())
            }
        }

        mutating func number() throws(ParseError) -> String {
            let start = index
            if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
            var digits = 0
            while index < bytes.count {
                let byte = bytes[index]
                if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
                    digits += 1
                } else if !(byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
                            || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-")) {
                    break
                }
                index += 1
            }
            let text = String(decoding: bytes[start..<index], as: UTF8.self)
            guard digits > 0, Double(text) != nil else { index = start; throw fail("invalid value") }
            return text
        }

        mutating func hex4() throws(ParseError) -> UInt32 {
            guard index + 4 <= bytes.count, let value = UInt32(String(decoding: bytes[index..<(index + 4)], as: UTF8.self), radix: 16) else {
                throw fail("bad \\u escape")
            }
            index += 4
            return value
        }

        mutating func string() throws(ParseError) -> String {
            index += 1  // the opening quote
            var out: [UInt8] = []
            while true {
                guard index < bytes.count else { throw fail("unterminated string") }
                let byte = bytes[index]
                index += 1
                switch byte {
                case UInt8(ascii: "\""):
                    return String(decoding: out, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard index < bytes.count else { throw fail("unterminated escape") }
                    let escape = bytes[index]
                    index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800..<0xDC00).contains(scalar), index + 6 <= bytes.count,
                           bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") {
                            index += 2
                            let low = try hex4()
                            if (0xDC00..<0xE000).contains(low) {
                                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                            }
                        }
                        out.append(contentsOf: Array(String(Unicode.Scalar(scalar).map(Character.init) ?? "\u{FFFD}").utf8))
                    default:
                        throw fail("bad escape")
                    }
                default:
                    out.append(byte)
                }
            }
        }
    }
}
