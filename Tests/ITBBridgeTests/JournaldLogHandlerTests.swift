import Foundation
@testable import ITBBridge
import Logging
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Parses journald's native protocol: `NAME=value\n`, or `NAME\n` + UInt64 LE length + bytes + `\n`.
func parseJournalEntry(_ bytes: [UInt8]) throws -> [String: String] {
    var fields: [String: String] = [:]
    var index = 0
    while index < bytes.count {
        guard let end = bytes[index...].firstIndex(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "=") }) else {
            throw HarnessError("unterminated field at \(index)")
        }
        let name = String(decoding: bytes[index..<end], as: UTF8.self)
        if bytes[end] == UInt8(ascii: "=") {
            guard let newline = bytes[end...].firstIndex(of: UInt8(ascii: "\n")) else { throw HarnessError("no newline after \(name)") }
            fields[name] = String(decoding: bytes[(end + 1)..<newline], as: UTF8.self)
            index = newline + 1
        } else {
            guard end + 9 <= bytes.count else { throw HarnessError("short length of \(name)") }
            var length: UInt64 = 0
            for i in 0..<8 { length |= UInt64(bytes[end + 1 + i]) << (8 * UInt64(i)) }
            let start = end + 9
            let stop = start + Int(length)
            guard stop < bytes.count, bytes[stop] == UInt8(ascii: "\n") else { throw HarnessError("bad binary field \(name)") }
            fields[name] = String(decoding: bytes[start..<stop], as: UTF8.self)
            index = stop + 1
        }
    }
    return fields
}

@Suite("Journald: native protocol log handler")
struct JournaldLogHandlerTests {
    @Test("one datagram per entry with MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and the metadata as fields journald can filter on")
    func fieldsArrive() throws {
        let directory = try ScratchDirectory("journald")
        defer { directory.remove() }
        let journal = try DatagramSocket(path: directory.path + "/socket")
        let connection = JournaldConnection(socketPath: journal.path)
        let logger = Logger(label: "itb-bridged") { label in JournaldLogHandler(label: label, level: .info, connection: connection) }

        logger.notice("alarm raised: motor_stall", metadata: [
            "device": "PGM-000123", "alarm_code": "motor_stall", "event_id": "42",
            "detail": "line one\nline two", "message": "forged", "2nd": "x", "path": "/dev/itb/programmer-A1",
        ])
        let entry = try parseJournalEntry(try #require(journal.receive(timeout: .seconds(2)), "a datagram reached the socket"))
        #expect(entry["PRIORITY"] == "5")
        #expect(entry["SYSLOG_IDENTIFIER"] == "itb-bridged")
        #expect(entry["LOGGER"] == "itb-bridged")
        #expect(entry["DEVICE"] == "PGM-000123")
        #expect(entry["ALARM_CODE"] == "motor_stall")
        #expect(entry["EVENT_ID"] == "42")
        #expect(entry["PATH"] == "/dev/itb/programmer-A1")
        #expect(entry["DETAIL"] == "line one\nline two", "a value with a newline survives (binary field)")
        #expect(entry["ITB_MESSAGE"] == "forged", "metadata cannot replace MESSAGE")
        #expect(entry["ITB_2ND"] == "x", "a field name may not start with a digit")
        let message = try #require(entry["MESSAGE"])
        #expect(message.hasPrefix("alarm raised: motor_stall "))
        #expect(message.contains("device=PGM-000123") && message.contains("alarm_code=motor_stall"),
                "plain journalctl output keeps the key=value pairs: \(message)")
        #expect(entry["CODE_FILE"]?.hasSuffix("JournaldLogHandlerTests.swift") == true)
        #expect(entry["CODE_LINE"].flatMap(Int.init) != nil)

        // Levels map to syslog priorities; below the handler's level nothing is sent.
        logger.debug("not sent")
        logger.error("journal write failed")
        logger.critical("JOURNAL WRITE FAILED")
        let error = try parseJournalEntry(try #require(journal.receive(timeout: .seconds(2))))
        #expect(error["PRIORITY"] == "3" && error["MESSAGE"] == "journal write failed")
        let critical = try parseJournalEntry(try #require(journal.receive(timeout: .seconds(2))))
        #expect(critical["PRIORITY"] == "2")
        #expect(journal.receive(timeout: .milliseconds(100)) == nil)
    }

    @Test("field names: upper case, A-Z 0-9 _ only, never starting with _ or a digit, at most 64 bytes")
    func fieldNames() {
        #expect(JournaldLogHandler.fieldName(forMetadataKey: "device") == "DEVICE")
        #expect(JournaldLogHandler.fieldName(forMetadataKey: "alarm-code.v2") == "ALARM_CODE_V2")
        #expect(JournaldLogHandler.fieldName(forMetadataKey: "_PID") == "PID", "journald's trusted fields cannot be forged")
        #expect(JournaldLogHandler.fieldName(forMetadataKey: "priority") == "ITB_PRIORITY")
        #expect(JournaldLogHandler.fieldName(forMetadataKey: "___") == nil)
        #expect(JournaldLogHandler.fieldName(forMetadataKey: String(repeating: "k", count: 100))?.utf8.count == 64)
    }

    @Test("without journald at the socket path, send fails (the handler then writes to stderr) and nothing crashes")
    func noJournald() throws {
        let directory = try ScratchDirectory("journald-absent")
        defer { directory.remove() }
        let connection = JournaldConnection(socketPath: directory.path + "/missing")
        #expect(connection.send(Array("MESSAGE=x\n".utf8)) == false)
        let logger = Logger(label: "itb-bridged") { label in JournaldLogHandler(label: label, level: .critical, connection: connection) }
        logger.critical("falls back to stderr (this line is expected in the test output)")
    }

    @Test("chosen only when JOURNAL_STREAM names this process's stderr and journald's socket exists")
    func selection() throws {
        let directory = try ScratchDirectory("journald-select")
        defer { directory.remove() }
        let journal = try DatagramSocket(path: directory.path + "/socket")
        var st = stat()
        #expect(fstat(STDERR_FILENO, &st) == 0)
        let stream = "\(st.st_dev):\(st.st_ino)"
        #expect(JournaldLogHandler.shouldUse(environment: ["JOURNAL_STREAM": stream], socketPath: journal.path))
        #expect(!JournaldLogHandler.shouldUse(environment: [:], socketPath: journal.path))
        #expect(!JournaldLogHandler.shouldUse(environment: ["JOURNAL_STREAM": "\(st.st_dev):\(st.st_ino &+ 1)"], socketPath: journal.path),
                "inherited by a process whose stderr goes elsewhere")
        #expect(!JournaldLogHandler.shouldUse(environment: ["JOURNAL_STREAM": stream], socketPath: directory.path + "/missing"))
        #expect(!JournaldLogHandler.shouldUse(environment: ["JOURNAL_STREAM": "garbage"], socketPath: journal.path))
    }
}
