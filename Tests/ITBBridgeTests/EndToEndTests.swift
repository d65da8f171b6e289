import Foundation
import ITBBridge
import ITBClient
import ITBJSON
import ITBProtocol
import ITBSimulator
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The whole bridge in-process: a simulated programmer on a real pty, the real daemon, a real
/// SQLite journal, and HTTP over the real Unix socket.
@Suite("End to end: pty → daemon → API")
struct EndToEndTests {
    @Test("frames written into the pty come back from GET and SSE with the right values and hand-computed derived values")
    func telemetryReachesTheAPI() async throws {
        let bridge = try await TestDaemon(name: "e2e")
        do {
            try await bridge.connectProgrammer()
            let device = testProgrammer.programmerSerial
            let client = bridge.client
            let stream = try await blocking { try client.events("/v1/events?device=\(device)&types=status,reservoir,program") }
            defer { stream.close() }

            let now = nowMs()
            let lastRefill = now - 10 * 86_400_000
            try await bridge.withProgrammer { p in
                try p.send(.pumpStatus(PumpStatus(deviceTimeMs: now, dailyDoseUgX10: 4000, concentrationUgPerML: 2000, activeAlarmMask: 0,
                                                  pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: 87)))
                try p.send(.doseProgram(DoseProgram(deviceTimeMs: now, dailyDoseUgX10: 4000, patientBolusDoseUgX10: 0, patientBolusLockoutMin: 0,
                                                    patientBolusMaxPerDay: 0, mode: .simpleContinuous, flexSteps: [], periodicBoluses: [])))
                try p.send(.reservoir(Reservoir(deviceTimeMs: now, lastRefillTimeMs: lastRefill, volumeULX10: 390_000, capacityUL: 40_000,
                                                lowReservoirThresholdUL: 2000, deliveredSinceRefillULX10: 10_000, volumeSource: .calculated)))
            }

            let status = try await bridge.waitFor("/v1/devices/\(device)/status") { ($0["daily_dose_ug"] as? Double) == 400 }
            #expect(status["pump_state"] as? String == "infusing")
            #expect(status["concentration_ug_per_ml"] as? Int == 2000)
            #expect(status["link_quality_pct"] as? Int == 87)
            #expect(status["device_time"] as? String == RFC3339.string(ms: now))

            let reservoir = try await bridge.waitFor("/v1/devices/\(device)/reservoir") { $0["volume_ul"] as? Double == 39_000 }
            let derived = try #require(reservoir["derived"] as? [String: Any])
            let offset = try #require(reservoir["clock_offset_ms"] as? Int64 ?? (reservoir["clock_offset_ms"] as? Int).map(Int64.init))
            // By hand: 400 µg/day × 1000 / 2000 µg/mL = 200 µL/day; (39 000 − 2 000) / 200 = 185 days.
            #expect(derived["flow_ul_per_day"] as? Double == 200)
            #expect(derived["days_until_low_reservoir_alarm"] as? Double == 185)
            // Stability (last fill + 180 d = 170 days from now) comes before the LRA (185 days):
            // due = last fill + 180 d − 4 d, in host time (device time + offset).
            let day: Int64 = 86_400_000
            #expect(derived["refill_due_reason"] as? String == "drug_stability")
            #expect(derived["stability_limit_date"] as? String == RFC3339.string(ms: lastRefill + offset + 180 * day))
            #expect(derived["refill_due_date"] as? String == RFC3339.string(ms: lastRefill + offset + 176 * day))
            #expect(derived["low_reservoir_alarm_date"] as? String == RFC3339.string(ms: now + offset + 185 * day))

            let program = try await bridge.json("/v1/devices/\(device)/program")
            #expect(program["mode"] as? String == "simple_continuous")

            // The same values arrived as live events, each with its journal id.
            var seen: [String: [String: Any]] = [:]
            var ids: [Int64] = []
            while seen.count < 3 {
                guard let event = try await blocking({ try stream.next(timeout: .seconds(10)) }) else { break }
                seen[event.event] = try JSONObject.parse(Array(event.data.utf8))
                if let id = event.id { ids.append(id) }
            }
            #expect(seen["status"]?["daily_dose_ug"] as? Double == 400)
            #expect((seen["reservoir"]?["derived"] as? [String: Any])?["flow_ul_per_day"] as? Double == 200)
            #expect(seen["program"]?["daily_dose_ug"] as? Double == 400)
            #expect(ids == ids.sorted() && Set(ids).count == ids.count)
        } catch {
            await bridge.shutdown()
            throw error
        }
        await bridge.shutdown()
    }

    @Test("an alarm is acknowledged only once it is in the journal, and a retransmission is stored once and acknowledged again")
    func reliableAlarms() async throws {
        let bridge = try await TestDaemon(name: "alarms")
        do {
            try await bridge.connectProgrammer()
            let device = testProgrammer.programmerSerial
            let alarm = try await bridge.withProgrammer { p in
                try p.raise(code: .lowReservoir, priority: .medium, detail: "2.0 mL left", onsetTimeMs: nowMs())
            }
            #expect(try await bridge.serviceProgrammer { $0.acks.contains { $0.alarmID == alarm.alarmID && $0.status == .stored } })
            // The ACK is out, so the alarm must already be stored.
            let alarms = try await bridge.json("/v1/alarms?device=\(device)")
            let list = try #require(alarms["alarms"] as? [[String: Any]])
            #expect(list.count == 1)
            #expect(list.first?["code"] as? String == "low_reservoir")
            #expect(list.first?["state"] as? String == "active")
            #expect(list.first?["device_alarm_id"] as? Int == Int(alarm.alarmID))
            #expect(list.first?["detail"] as? String == "2.0 mL left")

            // Retransmit the same alarm twice (lost ACKs): two more ACKs, still one alarm.
            let acksBefore = try await bridge.withProgrammer { $0.acks.count }
            try await bridge.withProgrammer { p in
                try p.send(.alarm(alarm), flags: .retransmission)
                try p.send(.alarm(alarm), flags: .retransmission)
            }
            #expect(try await bridge.serviceProgrammer { $0.acks.count >= acksBefore + 2 })
            let after = try await bridge.json("/v1/alarms?device=\(device)")
            #expect((after["alarms"] as? [[String: Any]])?.count == 1)
            let eventsOfAlarm = try await bridge.json("/v1/alarms/\(list.first?["id"] as? Int ?? 0)")
            #expect((eventsOfAlarm["transitions"] as? [[String: Any]])?.count == 1)

            // The pump clears it: the same alarm ends.
            _ = try await bridge.withProgrammer { p in
                try p.raise(code: .lowReservoir, priority: .medium, transition: .cleared, onsetTimeMs: nowMs())
            }
            #expect(try await bridge.serviceProgrammer { $0.pending.isEmpty })
            let cleared = try await bridge.json("/v1/alarms?device=\(device)")
            #expect((cleared["alarms"] as? [[String: Any]])?.first?["state"] as? String == "ended")
        } catch {
            await bridge.shutdown()
            throw error
        }
        await bridge.shutdown()
    }

    @Test("acknowledging records the peer's uid and time, changes nothing on the pump, and an ended alarm cannot be acknowledged")
    func acknowledgement() async throws {
        let bridge = try await TestDaemon(name: "ack")
        do {
            try await bridge.connectProgrammer()
            _ = try await bridge.withProgrammer { try $0.raise(code: .motorStall, priority: .high, onsetTimeMs: nowMs()) }
            #expect(try await bridge.serviceProgrammer { $0.pending.isEmpty })
            let list = try #require(try await bridge.json("/v1/alarms?active=true")["alarms"] as? [[String: Any]])
            let id = try #require(list.first?["id"] as? Int)
            let ackedBefore = try await bridge.withProgrammer { Set($0.acks.map(\.alarmID)) }
            let acked = try await bridge.request("POST", "/v1/alarms/\(id)/acknowledge")
            #expect(acked.status == 200)
            let body = try JSONObject.parse(acked.body)
            #expect(body["state"] as? String == "acknowledged")
            #expect(body["acknowledged_by_uid"] as? Int == Int(getuid()))
            #expect(body["acknowledged_at"] is String)
            // Nothing went to the programmer because of it: no ACK for any alarm it had not sent
            // (a retransmission in flight may be ACKed again; that is the protocol, not the ack).
            try await Task.sleep(for: .milliseconds(300))
            _ = try await bridge.serviceProgrammer(timeout: .milliseconds(100)) { _ in false }
            #expect(try await bridge.withProgrammer { Set($0.acks.map(\.alarmID)) } == ackedBefore)
            // Idempotent.
            #expect(try await bridge.request("POST", "/v1/alarms/\(id)/acknowledge").status == 200)
            // The pump clears it; acknowledging now is a conflict.
            _ = try await bridge.withProgrammer { try $0.raise(code: .motorStall, priority: .high, transition: .cleared, onsetTimeMs: nowMs()) }
            #expect(try await bridge.serviceProgrammer { $0.pending.isEmpty })
            let conflict = try await bridge.request("POST", "/v1/alarms/\(id)/acknowledge")
            #expect(conflict.status == 409)
            #expect(try JSONObject.parse(conflict.body)["error"] as? String == "alarm_ended")
        } catch {
            await bridge.shutdown()
            throw error
        }
        await bridge.shutdown()
    }

    @Test("an SSE client that reconnects with Last-Event-ID receives exactly the events it missed, then live ones")
    func resumeWithLastEventID() async throws {
        let bridge = try await TestDaemon(name: "resume")
        do {
            try await bridge.connectProgrammer()
            let client = bridge.client
            var stream = try await blocking { try client.events("/v1/events?types=alarm") }
            _ = try await bridge.withProgrammer { try $0.raise(code: .eri, priority: .low, onsetTimeMs: nowMs()) }
            let firstEvent = try await blocking { [stream] in try stream.next(timeout: Duration.seconds(10)) }
            let first = try #require(firstEvent)
            let lastSeen = try #require(first.id)
            stream.close()

            // While disconnected: three alarm transitions.
            try await bridge.withProgrammer { p in
                try p.raise(code: .lowReservoir, priority: .medium, onsetTimeMs: nowMs())
                try p.raise(code: .flowFault, priority: .high, onsetTimeMs: nowMs())
                try p.raise(code: .lowReservoir, priority: .medium, transition: .cleared, onsetTimeMs: nowMs())
            }
            #expect(try await bridge.serviceProgrammer { $0.pending.isEmpty })
            let missed = try #require(try await bridge.json("/v1/alarms?since=\(lastSeen)")["alarms"] as? [[String: Any]])

            stream = try await blocking { try client.events("/v1/events?types=alarm", lastEventID: lastSeen) }
            defer { stream.close() }
            var replayed: [ServerSentEvent] = []
            for _ in 0..<3 {
                if let event = try await blocking({ [stream] in try stream.next(timeout: .seconds(10)) }) { replayed.append(event) }
            }
            #expect(replayed.count == 3)
            #expect(replayed.allSatisfy { $0.event == "alarm" && ($0.id ?? 0) > lastSeen })
            let replayedIDs = replayed.compactMap(\.id)
            #expect(replayedIDs == replayedIDs.sorted())
            let replayedCodes = try replayed.map { try JSONObject.parse(Array($0.data.utf8))["code"] as? String }
            #expect(replayedCodes == ["low_reservoir", "flow_fault", "low_reservoir"])
            #expect(Set(missed.compactMap { $0["event_id"] as? Int }).isSubset(of: Set(replayed.compactMap { $0.id.map(Int.init) })))

            // The end of the replay is marked once, without an id (Last-Event-ID stays put).
            let markerEvent = try await blocking { [stream] in try stream.next(timeout: Duration.seconds(10)) }
            let marker = try #require(markerEvent)
            #expect(marker.event == "caught_up")
            #expect(marker.id == nil)
            #expect(try JSONObject.parse(Array(marker.data.utf8))["last_event_id"] as? Int == replayed.last?.id.map { Int($0) })

            // Then live, with no repeat.
            _ = try await bridge.withProgrammer { try $0.raise(code: .memoryError, priority: .high, onsetTimeMs: nowMs()) }
            let liveEvent = try await blocking { [stream] in try stream.next(timeout: Duration.seconds(10)) }
            let live = try #require(liveEvent)
            #expect((live.id ?? 0) > (replayed.last?.id ?? 0))
            #expect(try JSONObject.parse(Array(live.data.utf8))["code"] as? String == "memory_error")
        } catch {
            await bridge.shutdown()
            throw error
        }
        await bridge.shutdown()
    }

    @Test("a client that never reads is cut off while another client receives every event")
    func slowClientIsCutOff() async throws {
        let bridge = try await TestDaemon(name: "lagged") { $0.subscriberBufferEvents = 1024 }
        do {
            try await bridge.connectProgrammer()
            let client = bridge.client
            let stuck = try await blocking { try client.events("/v1/events?types=status") }
            let reader = try await blocking { try client.events("/v1/events?types=status") }
            defer {
                stuck.close()
                reader.close()
            }
            // Enough events to fill the stuck client's socket buffers and then its 1024-event queue.
            let total = 5000
            let received = Task {
                try await blocking { () -> Int in
                    var count = 0
                    var previous: Int64 = 0
                    while count < total, let event = try reader.next(timeout: .seconds(20)) {
                        guard event.event == "status", let id = event.id, id > previous else { break }
                        previous = id
                        count += 1
                    }
                    return count
                }
            }
            try await bridge.withProgrammer { p in
                for i in 0..<total {
                    // Each status differs (link quality), so each becomes an event.
                    try p.send(.pumpStatus(PumpStatus(deviceTimeMs: nowMs(), dailyDoseUgX10: 4000, concentrationUgPerML: 2000,
                                                      activeAlarmMask: UInt32(i), pumpState: .infusing, dosingMode: .simpleContinuous,
                                                      linkQualityPct: UInt8(i % 100))))
                    if i % 10 == 9 { usleep(5000) }
                }
            }
            #expect(try await received.value == total, "the reading client must get every event, in order")
            // The stuck client was dropped: it is no longer a subscriber, and its stream ends early.
            _ = try await bridge.waitFor("/v1/health", timeout: .seconds(10)) { ($0["subscribers"] as? Int) == 1 }
            let stuckCount = try await blocking { () -> (Int, Bool) in
                var count = 0
                var lagged = false
                while let event = try? stuck.next(timeout: .seconds(5)) {
                    if event.event == "lagged" { lagged = true } else { count += 1 }
                }
                return (count, lagged)
            }
            #expect(stuckCount.0 < total)
        } catch {
            await bridge.shutdown()
            throw error
        }
        await bridge.shutdown()
    }

    @Test("malformed HTTP, oversized bodies, unknown paths and bad ids get JSON errors, and the daemon carries on")
    func badRequests() async throws {
        let bridge = try await TestDaemon(name: "bad")
        do {
            func expectError(_ response: HTTPResponse, _ status: Int, _ code: String? = nil) throws {
                #expect(response.status == status, "\(response.text)")
                let body = try JSONObject.parse(response.body)
                #expect(body["error"] is String)
                #expect(body["message"] is String)
                if let code { #expect(body["error"] as? String == code) }
            }
            try expectError(try await bridge.get("/v1/no-such-thing"), 404, "not_found")
            try expectError(try await bridge.get("/v1/devices/NOPE"), 404, "unknown_device")
            try expectError(try await bridge.get("/v1/devices/NOPE/reservoir"), 404, "unknown_device")
            try expectError(try await bridge.get("/v1/alarms/abc"), 400, "bad_alarm_id")
            try expectError(try await bridge.get("/v1/alarms/99999"), 404, "unknown_alarm")
            try expectError(try await bridge.get("/v1/alarms?since=-4"), 400, "bad_request")
            try expectError(try await bridge.get("/v1/alarms?active=maybe"), 400, "bad_request")
            try expectError(try await bridge.get("/v1/events?types=status,bogus"), 400, "bad_request")
            try expectError(try await bridge.request("POST", "/v1/alarms/1/acknowledge", body: [UInt8](repeating: 0x41, count: 100_000)), 413, "body_too_large")

            // Raw garbage on the socket: the connection is refused or closed, never a crash.
            let socketPath = bridge.configuration.socketPath
            let garbageAnswer = try await blocking { () -> String in
                let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
                defer { close(fd) }
                var address = sockaddr_un()
                address.sun_family = sa_family_t(AF_UNIX)
                withUnsafeMutableBytes(of: &address.sun_path) { raw in
                    let bytes = Array(socketPath.utf8)
                    raw.copyBytes(from: bytes)
                    raw[bytes.count] = 0
                }
                _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
                let garbage = Array("\u{01}\u{02}NOT HTTP AT ALL\r\n\r\n\r\n".utf8) + [UInt8](repeating: 0xFF, count: 4096)
                _ = garbage.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                var buffer = [UInt8](repeating: 0, count: 4096)
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, 5000)
                let n = recv(fd, &buffer, buffer.count, 0)
                return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : ""
            }
            #expect(garbageAnswer.isEmpty || garbageAnswer.hasPrefix("HTTP/1.1 400"))

            let health = try await bridge.json("/v1/health")
            #expect(health["status"] as? String == "ok")
        } catch {
            await bridge.shutdown()
            throw error
        }
        await bridge.shutdown()
    }

    @Test("the socket has the configured file mode and group from the moment it appears")
    func socketModeAndGroup() async throws {
        // Group 1 exists on every Debian system (daemon); fall back to our own group.
        let groupID: UInt32 = getgrgid(1) != nil ? 1 : getgid()
        let bridge = try await TestDaemon(name: "mode") {
            $0.socketMode = 0o640
            $0.socketGroup = String(groupID)
        }
        var st = stat()
        #expect(stat(bridge.configuration.socketPath, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o640)
        #expect(st.st_gid == groupID)
        #expect((st.st_mode & S_IFMT) == S_IFSOCK)
        await bridge.shutdown()
        #expect(access(bridge.configuration.socketPath, F_OK) != 0, "the socket is removed on shutdown")
    }
}

@Suite("The OpenAPI document matches the live routes")
struct OpenAPIDocumentTests {
    /// Every route the router serves, as (method, path template).
    static let served: Set<String> = [
        "GET /v1/health", "GET /v1/devices", "GET /v1/devices/{id}", "GET /v1/devices/{id}/status",
        "GET /v1/devices/{id}/reservoir", "GET /v1/devices/{id}/program", "GET /v1/alarms", "GET /v1/alarms/{alarm}",
        "POST /v1/alarms/{alarm}/acknowledge", "POST /v1/backup", "GET /v1/events", "GET /metrics", "GET /v1/openapi.json",
        "GET /v1/pumps", "GET /v1/pumps/{pump}", "GET /v1/pumps/{pump}/reservoir", "GET /v1/pumps/{pump}/refills",
        "GET /v1/pumps/{pump}/programs", "GET /v1/pumps/{pump}/sessions",
    ]

    @Test("the document served at /v1/openapi.json lists exactly the served routes, and each of them answers")
    func documentMatchesRoutes() async throws {
        let bridge = try await TestDaemon(name: "openapi")
        do {
            let document = try await bridge.json("/v1/openapi.json")
            #expect(document["openapi"] as? String == "3.1.0")
            let paths = try #require(document["paths"] as? [String: [String: Any]])
            var documented: Set<String> = []
            for (path, operations) in paths {
                for method in operations.keys { documented.insert("\(method.uppercased()) \(path)") }
            }
            #expect(documented == Self.served)
            // Each documented route exists: none answers the router's own "no such endpoint".
            for route in documented.sorted() where !route.hasSuffix("/v1/events") {
                let parts = route.split(separator: " ")
                let path = String(parts[1]).replacingOccurrences(of: "{id}", with: "NOPE").replacingOccurrences(of: "{alarm}", with: "1")
                    .replacingOccurrences(of: "{pump}", with: "1-NOPE")
                let response = try await bridge.request(String(parts[0]), path)
                if response.status == 404 {
                    let body = try JSONObject.parse(response.body)
                    #expect(body["error"] as? String != "not_found", "\(route) is documented but not served")
                }
            }
            let client = bridge.client
            let stream = try await blocking { try client.events("/v1/events") }
            stream.close()
        } catch {
            await bridge.shutdown()
            throw error
        }
        await bridge.shutdown()
    }
}

extension RawConnection {
    /// Everything received until `needle` has arrived (or `timeout`), as text.
    func read(until needle: String, timeout: Duration) -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = ContinuousClock.now + timeout
        while !String(decoding: received, as: UTF8.self).contains(needle) {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { break }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, Int32(clamping: left.components.seconds * 1000 + 1)) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            received += buffer[0..<n]
        }
        return String(decoding: received, as: UTF8.self)
    }
}

@Suite("Event streams: framing of live events written next to the socket")
struct EventStreamFramingTests {
    /// Checks that the alarm event in `received` is framed as the response head says: one
    /// well-formed chunk (`<hex length>\r\n`, that many bytes, `\r\n`) when the body is chunked,
    /// bare SSE lines otherwise.
    private func checkFraming(_ received: String, _ client: String) throws {
        let head = try #require(received.range(of: "\r\n\r\n"), "\(client): no response head")
        let chunked = received[..<head.lowerBound].lowercased().contains("transfer-encoding: chunked")
        let eventStart = try #require(received.range(of: "id: "), "\(client): no event")
        let event = received[eventStart.lowerBound...]
        #expect(event.contains("event: alarm") && event.contains("motor_stall"), "\(client)")
        if chunked {
            let sizeLine = try #require(received[head.upperBound..<eventStart.lowerBound]
                .split(separator: "\r\n", omittingEmptySubsequences: false).dropLast().last)
            let size = try #require(Int(sizeLine, radix: 16), "\(client): chunk size line \(sizeLine.debugDescription)")
            #expect(Array(event.utf8).count == size + 2 && event.hasSuffix("\n\n\r\n"), "\(client): chunk of \(size) bytes: \(event.debugDescription)")
        } else {
            #expect(received[head.upperBound...].hasPrefix("retry: 2000\n") && !event.contains("\r\n"), "\(client): bare SSE")
        }
    }

    @Test("a live event, written next to the socket, is framed as the response head says: one well-formed chunk of a chunked body, for an HTTP/1.1 and an HTTP/1.0 request alike")
    func framingFollowsTheResponseHead() async throws {
        let bridge = try await TestDaemon(name: "framing")
        do {
            try await bridge.connectProgrammer()
            let socketPath = bridge.configuration.socketPath
            let http11 = try RawConnection(path: socketPath)
            let http10 = try RawConnection(path: socketPath)
            defer { http11.close(); http10.close() }
            #expect(http11.send("GET /v1/events?types=alarm HTTP/1.1\r\nHost: x\r\n\r\n"))
            #expect(http10.send("GET /v1/events?types=alarm HTTP/1.0\r\n\r\n"))
            _ = try await waitForJSON(bridge.client, "/v1/health") { ($0["subscribers"] as? Int) == 2 }
            try await Task.sleep(for: .milliseconds(200))  // both streams attached to the hub
            _ = try await bridge.withProgrammer { try $0.raise(code: .motorStall, priority: .high, onsetTimeMs: nowMs()) }
            for (connection, name) in [(http11, "HTTP/1.1"), (http10, "HTTP/1.0")] {
                let received = try await blocking { connection.read(until: "}\n\n", timeout: .seconds(10)) }
                let complete = received.contains("\r\n\r\n") && received.hasSuffix("}\n\n")
                    ? received + (try await blocking { connection.read(until: "\r\n", timeout: .milliseconds(300)) })
                    : received
                try checkFraming(complete, name)
            }
        } catch {
            await bridge.shutdown()
            throw error
        }
        await bridge.shutdown()
    }
}

@Suite("Methods a path does not serve")
struct MethodNotAllowedTests {
    @Test("a method a served path does not take gets 405 with Allow naming the ones it does, as JSON; an unknown path stays 404")
    func methodNotAllowed() async throws {
        let bridge = try await TestDaemon(name: "methods")
        do {
            let client = bridge.client
            for (method, path, allow) in [("DELETE", "/v1/health", "GET"), ("PUT", "/v1/devices/PGM-1", "GET"),
                                          ("GET", "/v1/alarms/7/acknowledge", "POST"), ("TRACE", "/v1/events", "GET")] {
                let response = try await blocking { try client.request(method, path) }
                #expect(response.status == 405, "\(method) \(path): \(response.status)")
                #expect(response.header("Allow") == allow, "\(method) \(path)")
                let body = try JSONObject.parse(response.body)
                #expect(body["error"] as? String == "method_not_allowed")
            }
            let unknown = try await blocking { try client.request("DELETE", "/v1/nothing/here") }
            #expect(unknown.status == 404)
            #expect(try JSONObject.parse(unknown.body)["error"] as? String == "not_found")
        } catch {
            await bridge.shutdown()
            throw error
        }
        await bridge.shutdown()
    }
}
