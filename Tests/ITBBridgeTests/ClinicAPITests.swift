import Foundation
import ITBBridge
import ITBClient
import ITBProtocol
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Issue 15, the clinic developer's first hour: strict query parameters, one rule for unknown ids
// in filters, the alarm filters clinics expect, and acknowledgements with a note and a user name.

@Suite("Clinic API: strict queries, unknown ids, alarm filters, acknowledgement notes")
struct ClinicAPITests {
    /// Every path of the OpenAPI document with its GET/POST operations' query parameter names.
    static func documentedOperations(_ document: [String: Any]) -> [(method: String, path: String, query: Set<String>)] {
        let paths = document["paths"] as? [String: [String: Any]] ?? [:]
        var operations: [(method: String, path: String, query: Set<String>)] = []
        for (path, item) in paths {
            for method in ["get", "post"] {
                guard let operation = item[method] as? [String: Any] else { continue }
                let names = (operation["parameters"] as? [[String: Any]] ?? []).compactMap { $0["in"] as? String == "query" ? $0["name"] as? String : nil }
                let concrete = path.replacingOccurrences(of: "{id}", with: testProgrammer.programmerSerial).replacingOccurrences(of: "{alarm}", with: "1")
                operations.append((method.uppercased(), concrete, Set(names)))
            }
        }
        return operations.sorted { $0.path < $1.path }
    }

    @Test("an unknown query parameter is a 400 naming it, on every route; the documented ones are accepted")
    func unknownQueryParameters() async throws {
        let bridge = try await TestDaemon(name: "strict-query")
        do {
            try await bridge.connectProgrammer()
            let document = try await bridge.json("/v1/openapi.json")
            let operations = Self.documentedOperations(document)
            #expect(operations.count >= 12)
            for (method, path, _) in operations {
                let response = try await bridge.request(method, path + "?actve=true")
                #expect(response.status == 400, "\(method) \(path)?actve=true answered \(response.status)")
                let body = try JSONObject.parse(response.body)
                #expect(body["error"] as? String == "unknown_query_parameter", "\(method) \(path)")
                #expect((body["message"] as? String)?.contains("`actve`") == true, "\(method) \(path): \(body)")
            }
            #expect(try await bridge.get("/v1/alarms?active=true&device=\(testProgrammer.programmerSerial)&limit=5&since=0&priority=high&state=active").status == 200)
            let alarms = Set(operations.first { $0.path == "/v1/alarms" }?.query ?? [])
            #expect(alarms == ["active", "device", "pump", "since", "limit", "priority", "state"])
        } catch {
            await bridge.stop()
            throw error
        }
        await bridge.stop()
    }

    @Test("?priority= and ?state= filter alarms, accept comma-separated lists, and reject values that do not exist")
    func priorityAndStateFilters() async throws {
        let bridge = try await TestDaemon(name: "alarm-filters")
        do {
            try await bridge.connectProgrammer()
            try await bridge.withProgrammer { p in
                _ = try p.raise(code: .motorStall, priority: .high, onsetTimeMs: nowMs())
                _ = try p.raise(code: .lowReservoir, priority: .medium, onsetTimeMs: nowMs())
                _ = try p.raise(code: .eri, priority: .low, onsetTimeMs: nowMs())
            }
            #expect(try await bridge.serviceProgrammer { $0.pending.isEmpty })
            func codes(_ query: String) async throws -> [String] {
                let list = try await bridge.json("/v1/alarms?" + query)["alarms"] as? [[String: Any]] ?? []
                return list.compactMap { $0["code"] as? String }.sorted()
            }
            #expect(try await codes("priority=high") == ["motor_stall"])
            #expect(try await codes("priority=high,low") == ["eri", "motor_stall"])
            let high = try #require(try await bridge.json("/v1/alarms?priority=high")["alarms"] as? [[String: Any]])
            let stall = try #require(high.first?["id"] as? Int)
            #expect(try await bridge.request("POST", "/v1/alarms/\(stall)/acknowledge").status == 200)
            #expect(try await codes("state=acknowledged") == ["motor_stall"])
            #expect(try await codes("state=active") == ["eri", "low_reservoir"])
            #expect(try await codes("state=active&priority=medium") == ["low_reservoir"])
            #expect(try await codes("state=ended").isEmpty)
            for bad in ["priority=urgent", "priority=", "state=open", "state=active,"] {
                let response = try await bridge.get("/v1/alarms?" + bad)
                #expect(response.status == 400, "\(bad)")
                let name = String(bad.prefix { $0 != "=" })
                #expect(response.text.contains("`\(name)`"), "\(bad): \(response.text)")
            }
        } catch {
            await bridge.stop()
            throw error
        }
        await bridge.stop()
    }

    @Test("an id the bridge has never seen is 404 unknown_device in a filter as in a path: alarms, events, devices")
    func unknownIDsInFilters() async throws {
        let bridge = try await TestDaemon(name: "unknown-ids")
        do {
            try await bridge.connectProgrammer()
            for path in ["/v1/alarms?device=NOPE", "/v1/events?device=NOPE", "/v1/devices/NOPE", "/v1/devices/NOPE/status"] {
                let response = try await bridge.get(path)
                #expect(response.status == 404, "\(path): \(response.status)")
                #expect(try JSONObject.parse(response.body)["error"] as? String == "unknown_device", "\(path)")
            }
            // A known programmer with nothing matching: an empty list, not a 404.
            let known = try await bridge.json("/v1/alarms?device=\(testProgrammer.programmerSerial)&state=ended")
            #expect((known["alarms"] as? [Any])?.isEmpty == true)
        } catch {
            await bridge.stop()
            throw error
        }
        await bridge.stop()
    }

    @Test("an acknowledgement keeps the uid, the user name it had then, and the note; `by` and unknown members are refused")
    func acknowledgementNoteAndUserName() async throws {
        let bridge = try await TestDaemon(name: "ack-note")
        do {
            try await bridge.connectProgrammer()
            _ = try await bridge.withProgrammer { try $0.raise(code: .motorStall, priority: .high, onsetTimeMs: nowMs()) }
            #expect(try await bridge.serviceProgrammer { $0.pending.isEmpty })
            let all = try #require(try await bridge.json("/v1/alarms")["alarms"] as? [[String: Any]])
            let id = try #require(all.first?["id"] as? Int)

            for bad in [#"{"by": "alice", "note": "x"}"#, #"{"nots": "typo"}"#, #"{"note": 5}"#, "not json",
                        #"{"note": ""# + String(repeating: "n", count: 1001) + #""}"#] {
                let refused = try await bridge.request("POST", "/v1/alarms/\(id)/acknowledge", body: Array(bad.utf8))
                #expect(refused.status == 400, "\(bad.prefix(40)): \(refused.text)")
            }
            // Nothing was recorded by the refused requests.
            #expect(try await bridge.json("/v1/alarms/\(id)")["alarm"].flatMap { ($0 as? [String: Any])?["state"] as? String } == "active")

            let acked = try await bridge.request("POST", "/v1/alarms/\(id)/acknowledge", body: Array(#"{"note": "called patient"}"#.utf8))
            #expect(acked.status == 200, "\(acked.text)")
            let expectedName = getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) }
            let alarm = try #require(try await bridge.json("/v1/alarms/\(id)")["alarm"] as? [String: Any])
            #expect(alarm["acknowledged_by_uid"] as? Int == Int(getuid()))
            #expect(alarm["acknowledged_by_user"] as? String == expectedName)
            #expect(alarm["acknowledgement_note"] as? String == "called patient")
            let listed = try #require(try await bridge.json("/v1/alarms")["alarms"] as? [[String: Any]]).first
            #expect(listed?["acknowledgement_note"] as? String == "called patient")
        } catch {
            await bridge.stop()
            throw error
        }
        await bridge.stop()
    }

    @Test("the document types the programmer, heartbeat and pump_session objects, and the live device matches them member for member")
    func typedDeviceObjects() async throws {
        let bridge = try await TestDaemon(name: "typed-device")
        do {
            try await bridge.connectProgrammer()
            try await bridge.withProgrammer { p in
                try p.heartbeat(uptimeS: 60)
                try p.send(.pumpSession(PumpSession(implantDateMs: nowMs() - 86_400_000, eriDateMs: 0, reservoirCapacityUL: 40_000,
                                                    manufacturerCode: 1, event: .begin, batteryState: .ok, pumpModel: "SynchroMed-T",
                                                    pumpSerial: "SN-1")))
            }
            let device = try await bridge.waitFor("/v1/devices/\(testProgrammer.programmerSerial)") {
                $0["pump_session"] is [String: Any] && $0["heartbeat"] is [String: Any]
            }
            let document = try await bridge.json("/v1/openapi.json")
            let schemas = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: [String: Any]])
            let deviceProperties = try #require(schemas["Device"]?["properties"] as? [String: [String: Any]])
            for (member, schemaName) in [("programmer", "ProgrammerInfo"), ("heartbeat", "Heartbeat"), ("pump_session", "PumpSessionMessage")] {
                let reference = (deviceProperties[member]?["oneOf"] as? [[String: Any]])?.first?["$ref"] as? String
                #expect(reference == "#/components/schemas/\(schemaName)", "\(member)")
                let schema = try #require(schemas[schemaName])
                #expect(schema["type"] as? String == "object")
                let properties = Set((schema["properties"] as? [String: Any] ?? [:]).keys)
                let required = Set(schema["required"] as? [String] ?? [])
                let live = Set(try #require(device[member] as? [String: Any]).keys)
                #expect(live.isSubset(of: properties), "\(member): undocumented \(live.subtracting(properties))")
                #expect(required.isSubset(of: live), "\(member): missing \(required.subtracting(live))")
            }
        } catch {
            await bridge.stop()
            throw error
        }
        await bridge.stop()
    }
}
