import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Issue 15, itbctl's first hour: global options anywhere, "not running" told apart, help text
// without hard line breaks, unknown scenarios named, and a file with no frames is an error.

@Suite("itbctl command line: options, messages, help")
struct CommandLineTests {
    @Test("--socket and --json are accepted before the subcommand as after it")
    func globalOptionsBeforeTheSubcommand() async throws {
        let daemon = try await TestDaemon(name: "global-options")
        do {
            let socket = daemon.socketPath
            let scratch = daemon.directory.path
            try await daemon.connectProgrammer()
            for arguments in [["--socket", socket, "devices"], ["--socket=\(socket)", "devices"], ["--json", "--socket", socket, "devices"],
                              ["devices", "--socket", socket]] {
                let result = try await Itbctl.run(arguments, directory: scratch)
                #expect(result.status == 0, "\(arguments): \(result)")
                #expect(result.stdout.contains(testProgrammer.programmerSerial), "\(arguments): \(result)")
            }
            let json = try await Itbctl.run(["--json", "--socket", socket, "devices"], directory: scratch)
            #expect((try parseObject(json.stdout)["devices"] as? [Any])?.count == 1, "\(json)")
        } catch {
            await daemon.shutdown()
            throw error
        }
        await daemon.shutdown()
    }

    @Test("no socket file, a missing directory, a regular file, a directory and a stale socket each get their own message (exit 3)")
    func notRunningCasesAreToldApart() async throws {
        let scratch = try ScratchDirectory("not-running")
        defer { scratch.remove() }
        let regular = scratch.path + "/regular"
        try "not a socket".write(toFile: regular, atomically: true, encoding: .utf8)
        let stale = scratch.path + "/stale.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(stale.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        close(fd)  // bound, never listened, closed: a stale socket file

        let cases: [(path: String, says: String)] = [
            (scratch.path + "/api.sock", "no socket at \(scratch.path)/api.sock"),
            (scratch.path + "/gone/api.sock", "the directory \(scratch.path)/gone does not exist"),
            (regular, "\(regular) is not a socket but a regular file"),
            (scratch.path, "\(scratch.path) is not a socket but a directory"),
            (stale, "a stale socket left by a daemon that stopped"),
        ]
        var messages: Set<String> = []
        for (path, says) in cases {
            let result = try await Itbctl.run(["--socket", path, "status"], directory: scratch.path)
            #expect(result.status == 3, "\(path): \(result)")
            #expect(result.stderr.contains(says), "\(path): \(result)")
            messages.insert(result.stderr.replacingOccurrences(of: path, with: "PATH"))
        }
        #expect(messages.count == cases.count, "each case its own message")
    }

    @Test("help text has no hard line breaks inside a sentence, at any terminal width")
    func helpTextIsNotHardWrapped() async throws {
        let scratch = try ScratchDirectory("help")
        defer { scratch.remove() }
        for command in [[], ["devices"], ["status"], ["pumps"], ["pump"], ["alarms"], ["ack"], ["watch"], ["backup"], ["simulate"], ["record"], ["replay"], ["decode"]] {
            // Wider than any paragraph: the parser wraps at the terminal width, which is not a hard break.
            let result = try await Itbctl.run(command + ["--help"], environment: ["COLUMNS": "5000"], directory: scratch.path)
            #expect(result.status == 0, "\(command): \(result)")
            let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            for (line, next) in zip(lines, lines.dropFirst()) {
                let text = line.trimmingCharacters(in: .whitespaces)
                let following = next.trimmingCharacters(in: .whitespaces)
                guard !text.isEmpty, !following.isEmpty, let first = following.first else { continue }
                // A sentence that goes on on the next line: the line does not end a sentence or a
                // label, and the next one continues it in lower case.
                let ends = [".", ":", ")", "!", "?"].contains { text.hasSuffix($0) }
                #expect(ends || !first.isLowercase, "itbctl \(command.joined(separator: " ")) --help breaks a sentence:\n\(line)\n\(next)")
            }
        }
    }

    @Test("simulate --scenario with an unknown name says so and lists the scenarios that exist")
    func unknownScenario() async throws {
        let scratch = try ScratchDirectory("scenario")
        defer { scratch.remove() }
        let result = try await Itbctl.run(["simulate", "--scenario", "nope"], directory: scratch.path)
        #expect(result.status == 64, "\(result)")
        #expect(result.stderr.contains("unknown scenario 'nope'; these exist: normal, low-reservoir"), "\(result)")
        #expect(!result.stderr.contains("Usage:"), "\(result)")
    }

    @Test("decode of a file with no frames (not a capture, not a dump) exits 6 with a clear message")
    func decodeWithoutFrames() async throws {
        let scratch = try ScratchDirectory("decode-empty")
        defer { scratch.remove() }
        let text = scratch.path + "/passwd"
        try "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n".write(toFile: text, atomically: true, encoding: .utf8)
        let empty = scratch.path + "/empty.bin"
        FileManager.default.createFile(atPath: empty, contents: Data())
        for file in [text, empty] {
            let result = try await Itbctl.run(["decode", file], directory: scratch.path)
            #expect(result.status == 6, "\(file): \(result)")
            #expect(result.stderr.contains("no frames found"), "\(file): \(result)")
            #expect(result.stdout.isEmpty)
        }
    }
}
