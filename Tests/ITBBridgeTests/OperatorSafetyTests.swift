import Foundation
import ITBBridge
import ITBClient
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Issue 15, the operator's first hour: one daemon per state directory, a private journal, and a
// config file checked without starting the daemon.

@Suite("Operator: state directory lock, journal file modes, --check-config")
struct OperatorSafetyTests {
    @Test("a second daemon on the same state directory exits non-zero naming the directory and the holder's pid, and the first loses nothing")
    func secondDaemonIsRefused() async throws {
        let directory = try ScratchDirectory("two-daemons")
        defer { directory.remove() }
        let state = directory.path + "/state"
        let first = try DaemonProcess(arguments: ["--no-discovery", "--socket", directory.path + "/a.sock", "--state-dir", state, "--log-level", "warning"],
                                      socketPath: directory.path + "/a.sock", log: directory.path + "/first.log")
        defer { first.terminate() }
        try await first.waitReady()
        let before = try await blocking { try UnixHTTPClient(socketPath: directory.path + "/a.sock").get("/v1/health") }
        let lastEventBefore = try JSONObject.parse(before.body)["last_event_id"] as? Int

        let second = try await blocking {
            try runCommand(try DaemonProcess.executable.path,
                           ["--no-discovery", "--socket", directory.path + "/b.sock", "--state-dir", state, "--log-level", "warning"])
        }
        #expect(second.status != 0, "\(second.output)")
        #expect(second.output.contains("state directory \(state)"), "\(second.output)")
        #expect(second.output.contains("pid \(first.process.processIdentifier)"), "\(second.output)")
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/b.sock"), "the second daemon must not serve")
        // The lock file names the holder.
        let holder = try String(contentsOfFile: state + "/" + StateDirectoryLock.fileName, encoding: .utf8)
        #expect(holder.trimmingCharacters(in: .whitespacesAndNewlines) == String(first.process.processIdentifier))

        // The first still serves, its journal untouched by the attempt (no start gap added).
        let after = try await blocking { try UnixHTTPClient(socketPath: directory.path + "/a.sock").get("/v1/health") }
        #expect(after.status == 200)
        #expect(try JSONObject.parse(after.body)["last_event_id"] as? Int == lastEventBefore)
        #expect(try JSONObject.parse(after.body)["database_ok"] as? Bool == true)
    }

    @Test("the lock is released when the daemon stops: the next one starts on the same state directory")
    func lockIsReleasedAtStop() async throws {
        let directory = try ScratchDirectory("lock-release")
        defer { directory.remove() }
        let arguments = ["--no-discovery", "--socket", directory.path + "/api.sock", "--state-dir", directory.path + "/state", "--log-level", "warning"]
        let first = try DaemonProcess(arguments: arguments, socketPath: directory.path + "/api.sock", log: directory.path + "/1.log")
        try await first.waitReady()
        first.terminate()
        let second = try DaemonProcess(arguments: arguments, socketPath: directory.path + "/api.sock", log: directory.path + "/2.log")
        defer { second.terminate() }
        try await second.waitReady()
    }

    @Test("the journal and its -wal and -shm files are created 0600, and the state directory 0700")
    func journalIsPrivate() async throws {
        let bridge = try await TestDaemon(name: "journal-mode")
        do {
            try await bridge.connectProgrammer()
            let state = bridge.configuration.stateDirectory
            for suffix in ["", "-wal", "-shm"] {
                var info = stat()
                #expect(stat(state + "/journal.sqlite" + suffix, &info) == 0, "journal.sqlite\(suffix) exists")
                #expect(info.st_mode & 0o777 == 0o600, "journal.sqlite\(suffix) is \(String(info.st_mode & 0o777, radix: 8))")
            }
            var directoryInfo = stat()
            #expect(stat(state, &directoryInfo) == 0)
            #expect(directoryInfo.st_mode & 0o777 == 0o700)
        } catch {
            await bridge.stop()
            throw error
        }
        await bridge.stop()
    }

    @Test("a journal an older version left 0644 is made 0600 when it is opened")
    func olderJournalIsNarrowed() throws {
        let directory = try ScratchDirectory("journal-narrow")
        defer { directory.remove() }
        _ = try Journal(directory: directory.path)
        #expect(chmod(directory.path + "/journal.sqlite", 0o644) == 0)
        _ = try Journal(directory: directory.path)
        var info = stat()
        #expect(stat(directory.path + "/journal.sqlite", &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
    }

    @Test("itb-bridged --check-config reports every problem with its line number and exits 1; a good file exits 0")
    func checkConfig() async throws {
        let directory = try ScratchDirectory("check-config")
        defer { directory.remove() }
        let bad = directory.path + "/bad.conf"
        try """
            # a comment
            log_level = loud
            socket = /run/itb-bridge/api.sock
            baud_rate = 7
            nonsense
            retention_days = 30
            stale_afterr_s = 5
            """.write(toFile: bad, atomically: true, encoding: .utf8)
        let daemon = try DaemonProcess.executable.path
        let result = try await blocking { try runCommand(daemon, ["--check-config", bad]) }
        #expect(result.status == 1, "\(result.output)")
        for (line, text) in [(2, "log_level"), (4, "baud_rate: unsupported baud rate 7"), (5, "expected `key = value`"),
                             (7, "unknown setting `stale_afterr_s`")] {
            #expect(result.output.contains("\(bad):\(line): ") && result.output.contains(text), "line \(line): \(result.output)")
        }
        #expect(!result.output.contains("\(bad):3:") && !result.output.contains("\(bad):6:"))
        #expect(result.output.contains("4 problems"), "\(result.output)")

        let good = directory.path + "/good.conf"
        try "log_level = info\nretention_days = 30\n".write(toFile: good, atomically: true, encoding: .utf8)
        let fine = try await blocking { try runCommand(daemon, ["--check-config", good]) }
        #expect(fine.status == 0, "\(fine.output)")
        #expect(fine.output.contains("no problems found"))
    }

    @Test("a socket the daemon cannot bind is reported with its path, the reason and what to do, not NIO's bind(descriptor:ptr:bytes:)")
    func bindErrorIsExplained() async throws {
        let directory = try ScratchDirectory("bind-error")
        defer { directory.remove() }
        // A public path that fits a Unix socket address, whose temporary name beside it does not.
        var socketDirectory = directory.path
        while socketDirectory.utf8.count < 90 { socketDirectory += "/d" }
        try FileManager.default.createDirectory(atPath: socketDirectory, withIntermediateDirectories: true)
        let socketPath = socketDirectory + "/" + String(repeating: "s", count: max(1, 94 - socketDirectory.utf8.count)) + ".sock"
        #expect(socketPath.utf8.count < 104, "the public path itself fits")
        let result = try await blocking {
            try runCommand(try DaemonProcess.executable.path,
                           ["--no-discovery", "--socket", socketPath, "--state-dir", directory.path + "/state", "--log-level", "warning"])
        }
        #expect(result.status != 0, "\(result.output)")
        #expect(result.output.contains("cannot listen on the API socket \(socketPath)"), "\(result.output)")
        #expect(result.output.contains("choose a shorter --socket"), "\(result.output)")
        #expect(!result.output.contains("bind(descriptor"), "\(result.output)")
    }

    @Test("the bind failures an operator meets each name the path and a remedy")
    func bindErrorWording() {
        for (code, remedy) in [(ENOENT, "does not exist"), (EACCES, "may not create files in /run/x"), (EADDRINUSE, "remove it"), (EROFS, "read-only")] {
            let error = SocketListenError(path: "/run/x/api.sock", temporaryPath: "/run/x/.api.sock.1.tmp", errno: code)
            #expect(error.description.hasPrefix("cannot listen on the API socket /run/x/api.sock: "), "\(error)")
            #expect(error.description.contains(remedy), "\(error)")
        }
    }
}
