import Foundation
import ITBBridge
import ITBClient
import ITBSimulator
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("systemd notify: the built daemon against a real notify socket")
struct SystemdNotifyProcessTests {
    @Test("READY=1 only once the API socket is published and answers; periodic WATCHDOG=1; STATUS= with the connected programmer; STOPPING=1 on SIGTERM, then exit 0")
    func notifyProtocol() async throws {
        let directory = try ScratchDirectory("notify")
        defer { directory.remove() }
        let notify = try DatagramSocket(path: directory.path + "/notify")
        let socketPath = directory.path + "/api.sock"
        let programmer = try ProgrammerEndpoint(info: testProgrammer, initialRetransmitDelay: .milliseconds(200),
                                                maximumRetransmitDelay: .seconds(1))
        defer { programmer.pty.close() }
        let daemon = try DaemonProcess(
            arguments: ["--no-discovery", "--device", programmer.pty.slavePath, "--socket", socketPath,
                        "--socket-mode", "0640", "--state-dir", directory.path + "/state", "--log-level", "warning"],
            socketPath: socketPath, log: directory.path + "/daemon.log",
            environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])
        var exited = false
        defer { if !exited { daemon.kill9() } }

        // READY=1, and at that very moment the socket is in place with its final mode and answers.
        struct AtReady: Sendable {
            var before: [String] = []
            var ready: String?
            var statted = false
            var mode: UInt32 = 0
            var health: Int?
        }
        let atReady = try await blocking { () -> AtReady in
            var seen = AtReady()
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline, seen.ready == nil {
                guard let bytes = notify.receive(timeout: .milliseconds(100)) else { continue }
                let text = String(decoding: bytes, as: UTF8.self)
                if text.split(separator: "\n").contains("READY=1") {
                    var st = stat()
                    seen.statted = lstat(socketPath, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK
                    seen.mode = UInt32(st.st_mode & 0o777)
                    seen.ready = text
                    seen.health = (try? UnixHTTPClient(socketPath: socketPath, timeout: .seconds(5)).get("/v1/health"))?.status
                } else {
                    seen.before.append(text)
                }
            }
            return seen
        }
        let ready = try #require(atReady.ready, "READY=1 within 30 s; before it: \(atReady.before)")
        #expect(atReady.statted, "the API socket exists when READY=1 arrives")
        #expect(atReady.mode == 0o640, "with its final mode (found \(String(atReady.mode, radix: 8)))")
        #expect(atReady.health == 200, "and answers /v1/health")
        #expect(ready.contains("STATUS="), "READY=1 carries a status line: \(ready)")

        // The programmer connects while the watchdog keeps being pinged.
        let stopProgrammer = StopFlag()
        async let servicing: Void = blocking {
            while !stopProgrammer.isStopped { _ = try? programmer.service(timeout: .milliseconds(20)) }
        }
        let window = try await blocking { () -> [ReceivedDatagram] in
            var received: [ReceivedDatagram] = []
            // What queued up since READY=1 is kept for the status check, but not counted as pings.
            while let bytes = notify.receive(timeout: .zero) {
                let text = String(decoding: bytes, as: UTF8.self)
                if text != "WATCHDOG=1" { received.append(ReceivedDatagram(text: text, at: .now)) }
            }
            let start = ContinuousClock.now
            while ContinuousClock.now - start < .milliseconds(1500) {
                if let bytes = notify.receive(timeout: .milliseconds(50)) {
                    received.append(ReceivedDatagram(text: String(decoding: bytes, as: UTF8.self), at: .now))
                }
            }
            return received
        }
        let pings = window.filter { $0.text == "WATCHDOG=1" }
        #expect(pings.count >= 2, "WATCHDOG=1 at least twice in 1.5 s with WATCHDOG_USEC=400000; got \(window.map(\.text))")
        #expect(pings.count <= 10, "pinged at most every WATCHDOG_USEC/2, not on every 100 ms turn of the loop; got \(pings.count)")

        // STATUS= names the connected programmer.
        let statusLines = try await blocking { () -> [String] in
            var lines = window.map(\.text).filter { $0.hasPrefix("STATUS=") }
            let deadline = ContinuousClock.now + .seconds(15)
            while !lines.contains(where: { $0.contains(testProgrammer.programmerSerial) }), ContinuousClock.now < deadline {
                if let bytes = notify.receive(timeout: .milliseconds(100)) {
                    let text = String(decoding: bytes, as: UTF8.self)
                    if text.hasPrefix("STATUS=") { lines.append(text) }
                }
            }
            return lines
        }
        stopProgrammer.stop()
        try await servicing
        #expect(statusLines.contains { $0.hasPrefix("STATUS=1 programmer connected (\(testProgrammer.programmerSerial))") },
                "status lines: \(statusLines)")
        // Before the programmer identified itself, the line said so (the pre-READY tick, or one
        // right after READY=1, depending on timing).
        let earlier = atReady.before + statusLines
        #expect(earlier.contains { $0.hasPrefix("STATUS=no programmer connected") }, "status lines: \(earlier)")

        // SIGTERM: STOPPING=1, then a clean exit, without waiting out the main loop's sleep.
        let signalled = ContinuousClock.now
        kill(daemon.process.processIdentifier, SIGTERM)
        let stopping = try await blocking { () -> String? in
            let deadline = ContinuousClock.now + .seconds(15)
            while ContinuousClock.now < deadline {
                if let bytes = notify.receive(timeout: .milliseconds(100)) {
                    let text = String(decoding: bytes, as: UTF8.self)
                    if text.split(separator: "\n").contains("STOPPING=1") { return text }
                }
            }
            return nil
        }
        #expect(stopping != nil, "STOPPING=1 after SIGTERM")
        let process = daemon.process
        try await blocking { process.waitUntilExit() }
        exited = true
        #expect(ContinuousClock.now - signalled < .seconds(3), "the daemon stops promptly (systemd's stop timeout is not a wait to use up)")
        #expect(process.terminationReason == .exit && process.terminationStatus == 0,
                "exit 0 after SIGTERM (reason \(process.terminationReason.rawValue), status \(process.terminationStatus))")
        #expect(access(socketPath, F_OK) != 0, "the API socket is removed on shutdown")
    }
}

@Suite("systemd notify: SystemdNotifier")
struct SystemdNotifierTests {
    @Test("without NOTIFY_SOCKET every call is a no-op")
    func unsetIsNoOp() throws {
        let notifier = SystemdNotifier(environment: ["WATCHDOG_USEC": "1000000"])
        #expect(!notifier.isEnabled)
        #expect(notifier.watchdogInterval == nil, "no socket, nobody to ping")
        #expect(notifier.configurationProblem == nil)
        try notifier.ready(status: "ready")
        #expect(try notifier.watchdogTick() == false)
        try notifier.stopping()
        #expect(notifier.recommendedTickInterval == .seconds(5))
    }

    @Test("without a watchdog the main loop sleeps up to 5 s, yet SIGTERM stops the daemon at once")
    func promptStopWithoutWatchdog() async throws {
        let directory = try ScratchDirectory("prompt-stop")
        defer { directory.remove() }
        let socketPath = directory.path + "/api.sock"
        let daemon = try DaemonProcess(arguments: ["--no-discovery", "--socket", socketPath, "--state-dir", directory.path + "/state"],
                                       socketPath: socketPath, log: directory.path + "/daemon.log")
        try await daemon.waitReady()
        try await Task.sleep(for: .milliseconds(300))  // the loop is now in its long sleep
        let signalled = ContinuousClock.now
        try await blocking { daemon.terminate() }
        #expect(ContinuousClock.now - signalled < .seconds(3), "stopped \(ContinuousClock.now - signalled) after SIGTERM")
        #expect(daemon.process.terminationReason == .exit && daemon.process.terminationStatus == 0)
    }

    @Test("an absolute path: READY=1 with STATUS, STOPPING=1, status lines only when they change")
    func absolutePath() throws {
        let directory = try ScratchDirectory("notifier")
        defer { directory.remove() }
        let socket = try DatagramSocket(path: directory.path + "/notify")
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.path])
        #expect(notifier.isEnabled)
        #expect(notifier.socketAddress == socket.path)
        try notifier.ready(status: "ready; API on /run/itb-bridge/api.sock")
        #expect(socket.receive(timeout: .seconds(2)).map { String(decoding: $0, as: UTF8.self) }
                == "READY=1\nSTATUS=ready; API on /run/itb-bridge/api.sock")
        #expect(try notifier.status("1 programmer connected (PGM-1)"))
        #expect(try notifier.status("1 programmer connected (PGM-1)") == false, "unchanged: not sent again")
        #expect(socket.receive(timeout: .seconds(2)).map { String(decoding: $0, as: UTF8.self) } == "STATUS=1 programmer connected (PGM-1)")
        #expect(socket.receive(timeout: .milliseconds(100)) == nil)
        try notifier.status("two\nlines")
        #expect(socket.receive(timeout: .seconds(2)).map { String(decoding: $0, as: UTF8.self) } == "STATUS=two lines",
                "a newline cannot start a new assignment")
        try notifier.stopping()
        #expect(socket.receive(timeout: .seconds(2)).map { String(decoding: $0, as: UTF8.self) } == "STOPPING=1\nSTATUS=shutting down")
    }

    @Test("an abstract socket (leading @)")
    func abstractSocket() throws {
        let name = "@itb-bridge-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let socket = try DatagramSocket(path: name)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": name, "WATCHDOG_USEC": "2000000"])
        #expect(notifier.isEnabled)
        #expect(try notifier.watchdogTick())
        #expect(socket.receive(timeout: .seconds(2)).map { String(decoding: $0, as: UTF8.self) } == "WATCHDOG=1")
    }

    @Test("the watchdog is pinged at most every WATCHDOG_USEC/2, and the loop runs often enough to do so")
    func watchdogRate() throws {
        let directory = try ScratchDirectory("watchdog")
        defer { directory.remove() }
        let socket = try DatagramSocket(path: directory.path + "/notify")
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "400000"])
        #expect(notifier.watchdogInterval == .milliseconds(400))
        #expect(notifier.recommendedTickInterval == .milliseconds(100))
        let start = ContinuousClock.now
        #expect(try notifier.watchdogTick(now: start), "the first turn pings")
        #expect(try notifier.watchdogTick(now: start + .milliseconds(100)) == false)
        #expect(try notifier.watchdogTick(now: start + .milliseconds(199)) == false)
        #expect(try notifier.watchdogTick(now: start + .milliseconds(200)))
        #expect(try notifier.watchdogTick(now: start + .milliseconds(300)) == false)
        #expect(try notifier.watchdogTick(now: start + .milliseconds(450)))
        var pings = 0
        while socket.receive(timeout: .milliseconds(100)) != nil { pings += 1 }
        #expect(pings == 3)
        // A 30 s watchdog (the shipped unit): the loop sleeps at most 5 s, well within 7.5 s.
        let slow = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "30000000"])
        #expect(slow.recommendedTickInterval == .seconds(5))
    }

    @Test("WATCHDOG_PID naming another process turns the watchdog off; malformed variables are reported")
    func environmentChecks() throws {
        let directory = try ScratchDirectory("watchdog-env")
        defer { directory.remove() }
        let socket = try DatagramSocket(path: directory.path + "/notify")
        let other = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"],
                                    processID: 4242)
        #expect(other.watchdogInterval == nil)
        let ours = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "4242"],
                                   processID: 4242)
        #expect(ours.watchdogInterval == .seconds(1))
        let badUsec = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "soon"])
        #expect(badUsec.watchdogInterval == nil)
        #expect(badUsec.configurationProblem == .badWatchdogInterval("soon"))
        #expect(badUsec.isEnabled, "notifications still work")
        let relative = SystemdNotifier(environment: ["NOTIFY_SOCKET": "run/notify"])
        #expect(!relative.isEnabled)
        #expect(relative.configurationProblem == .badAddress("run/notify"))
        #expect(relative.configurationProblem?.description.contains("NOTIFY_SOCKET=run/notify") == true)
        let tooLong = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/" + String(repeating: "x", count: 200)])
        #expect(!tooLong.isEnabled)
    }

    @Test("a vanished notify socket is an error that says what to check, not a crash")
    func sendFailure() throws {
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/itb-notify"])
        #expect(notifier.isEnabled)
        #expect(throws: SystemdNotifier.Failure.self) { try notifier.ready(status: "ready") }
        do {
            try notifier.ready(status: "ready")
        } catch {
            #expect(error.description.contains("NOTIFY_SOCKET=/nonexistent/itb-notify"))
        }
    }

    @Test("the status line: connected programmers first, stale links, unidentified ports, journal health")
    func statusLine() {
        #expect(DaemonStatus(connectedDevices: [], staleDevices: 0, unidentifiedPaths: 0, journalHealthy: true).line
                == "no programmer connected; journal ok")
        #expect(DaemonStatus(connectedDevices: ["PGM-1"], staleDevices: 1, unidentifiedPaths: 1, journalHealthy: true).line
                == "1 programmer connected (PGM-1); 1 silent (data stale); 1 followed port with no programmer identified; journal ok")
        #expect(DaemonStatus(connectedDevices: ["A", "B", "C", "D", "E"], staleDevices: 0, unidentifiedPaths: 0, journalHealthy: false).line
                == "JOURNAL WRITES FAILING: alarms are not stored; 5 programmers connected (A, B, C, D, …)")
    }
}
