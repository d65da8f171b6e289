import Foundation
public import Hummingbird
import ITBJSON
import ITBProtocol
import NIOCore

/// The HTTP API (`the OpenAPI document, `Resources/openapi.json``, `GET /v1/openapi.json`): read-only views of the bridge's state,
/// alarm acknowledgement (which changes nothing on any pump), live events, metrics.
public enum BridgeRoutes {
    /// The daemon's version, reported by `/v1/health`.
    public static let version = "0.1.0"

    /// Builds the router over `core`.
    public static func router(core: BridgeCore) -> Router<BridgeRequestContext> {
        router(queries: core.queries)
    }

    /// Builds the router over the bridge's query interface.
    public static func router(queries: BridgeQueries) -> Router<BridgeRequestContext> {
        let core = queries
        let router = Router(context: BridgeRequestContext.self)
        router.middlewares.add(JSONErrorMiddleware())
        router.middlewares.add(StrictQueryMiddleware())

        router.get("/v1/health") { _, _ in
            let database = await core.journalAnswers()
            let journalHealthy = core.journalHealthy
            let devices = core.deviceStates()
            let connected = devices.filter { if case .connected = $0.link { true } else { false } }.count
            let uptimeMs = core.nowMs() - core.startedAtMs
            // The newest event id: where a client that has seen nothing yet resumes from
            // (`itbctl watch` opens its stream with it as Last-Event-ID, so no event is missed).
            let lastEventID = try? await core.latestEventID()
            return json { json in
                json.beginObject()
                json.key("status"); json.string(database && journalHealthy ? "ok" : "degraded")
                json.key("version"); json.string(version)
                json.key("protocol_major"); json.int(FrameLayout.majorVersion)
                json.key("uptime_s"); json.int(uptimeMs / 1000)
                json.key("started_at"); json.time(ms: core.startedAtMs)
                json.key("database_ok"); json.bool(database && journalHealthy)
                json.key("journal"); json.string(core.journalPath)
                json.key("devices_connected"); json.int(connected)
                json.key("devices_known"); json.int(devices.count)
                json.key("subscribers"); json.int(core.subscriberCount)
                json.key("last_event_id"); if let lastEventID { json.int(lastEventID) } else { json.null() }
                json.endObject()
            }
        }

        router.get("/v1/devices") { _, _ in
            let devices = core.deviceStates()
            let unidentified = core.unidentifiedSessions()
            return json { json in
                json.beginObject()
                json.key("devices")
                json.beginArray()
                for device in devices { Rendering.device(device, &json) }
                json.endArray()
                json.key("unidentified")
                json.beginArray()
                for session in unidentified {
                    json.beginObject()
                    json.key("path"); json.string(session.path)
                    json.key("link_detail"); json.string(session.link.description)
                    json.endObject()
                }
                json.endArray()
                json.endObject()
            }
        }

        router.get("/v1/devices/:id") { _, context in
            let device = try await knownDevice(core, context)
            return json { Rendering.device(device, &$0) }
        }

        router.get("/v1/devices/:id/status") { _, context in
            let device = try await knownDevice(core, context)
            guard let status = device.status else {
                throw APIError(.notFound, "no_status", "programmer \(device.id) has no current pump status: none since its pump session began, or none outside a session (a pump's values stay under /v1/pumps/{id} once its session ends)")
            }
            return json { Rendering.status(device.id, pump: device.pump?.id, status, &$0) }
        }

        router.get("/v1/devices/:id/reservoir") { _, context in
            let device = try await knownDevice(core, context)
            guard device.reservoir != nil else {
                throw APIError(.notFound, "no_reservoir", "programmer \(device.id) has no current reservoir reading: none since its pump session began, or none outside a session (a pump's values stay under /v1/pumps/{id} once its session ends)")
            }
            let configuration = core.configuration
            return json { Rendering.reservoir(device, configuration, &$0) }
        }

        router.get("/v1/devices/:id/program") { _, context in
            let device = try await knownDevice(core, context)
            guard let program = device.program else {
                throw APIError(.notFound, "no_program", "programmer \(device.id) has no current dose program: none since its pump session began, or none outside a session (a pump's values stay under /v1/pumps/{id} once its session ends)")
            }
            return json { Rendering.program(device.id, pump: device.pump?.id, program, &$0) }
        }

        router.get("/v1/alarms") { request, _ in
            let query = try alarmQuery(request.uri.queryParameters)
            if let device = query.device { try await requireKnownDevice(core, device) }
            if let pump = query.pump, try await !journalCall({ try await core.pumpExists(id: pump) }) { throw APIError.unknownPump(pump) }
            let alarms = try await journalCall { try await core.alarms(query) }
            return json { json in
                json.beginObject()
                json.key("alarms")
                json.beginArray()
                for alarm in alarms { alarm.writeJSON(into: &json) }
                json.endArray()
                json.endObject()
            }
        }

        router.get("/v1/alarms/:alarm") { _, context in
            let id = try alarmID(context)
            guard let (alarm, transitions) = try await journalCall({ try await core.alarm(id: id) }) else {
                throw APIError(.notFound, "unknown_alarm", "no alarm with id \(id)")
            }
            return json { json in
                json.beginObject()
                json.key("alarm"); alarm.writeJSON(into: &json)
                json.key("transitions")
                json.beginArray()
                for transition in transitions {
                    json.beginObject()
                    json.key("state"); json.string(transition.state)
                    json.key("at"); json.time(ms: transition.atMs)
                    json.key("by_uid"); if let uid = transition.byUID { json.int(uid) } else { json.null() }
                    json.key("event_id"); json.int(transition.eventID)
                    json.endObject()
                }
                json.endArray()
                json.endObject()
            }
        }

        router.post("/v1/alarms/:alarm/acknowledge") { request, context in
            let id = try alarmID(context)
            // No body is needed; one that is sent must be small, and may carry a note.
            let limit = core.configuration.maxRequestBodyBytes
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: limit)
            } catch let error as HTTPError where error.status == .contentTooLarge {
                throw APIError(.contentTooLarge, "body_too_large", "request body too large (limit \(limit) bytes, max_request_body_bytes)")
            }
            let acknowledgement = try AcknowledgementRequest(body: Array(buffer: body))
            guard let uid = await context.peerUID() else {
                throw APIError(.forbidden, "no_peer_credentials", "acknowledging needs a Unix-socket client whose uid the kernel can tell")
            }
            // The uid is the identity; its user name now is kept beside it (accounts change).
            let userName = UserNames.name(uid: uid)
            let outcome = try await journalCall {
                try await core.acknowledge(alarm: id, uid: Int64(uid), userName: userName, note: acknowledgement.note)
            }
            switch outcome {
            case .notFound:
                throw APIError(.notFound, "unknown_alarm", "no alarm with id \(id)")
            case .alreadyEnded(let alarm):
                throw APIError(.conflict, "alarm_ended", "alarm \(alarm.id) (\(alarm.code)) has already ended; there is nothing to acknowledge")
            case .acknowledged(let alarm, _), .alreadyAcknowledged(let alarm):
                return json { alarm.writeJSON(into: &$0) }
            }
        }

        router.post("/v1/backup") { request, context in
            let limit = core.configuration.maxRequestBodyBytes
            do {
                _ = try await request.body.collect(upTo: limit)
            } catch let error as HTTPError where error.status == .contentTooLarge {
                throw APIError(.contentTooLarge, "body_too_large", "request body too large (limit \(limit) bytes, max_request_body_bytes)")
            }
            // Restricted like acknowledging: the kernel must vouch for who asks (and it is logged).
            guard let uid = await context.peerUID() else {
                throw APIError(.forbidden, "no_peer_credentials", "a backup needs a Unix-socket client whose uid the kernel can tell")
            }
            return try await JournalBackup.response(core: core, uid: uid)
        }

        router.get("/v1/events") { request, context in
            try await EventStream.response(request: request, context: context, core: core)
        }

        router.get("/metrics") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(bytes: core.metricsText())))
        }

        router.get("/v1/openapi.json") { _, _ in
            guard let document = OpenAPIDocument.bytes else {
                throw APIError(.internalServerError, "internal_error", "the OpenAPI document is missing from this build")
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: document)))
        }
        addPumpRoutes(to: router, core)
        return router
    }

    /// A 200 JSON response rendered by `build`.
    static func json(_ build: (inout JSONWriter) -> Void) -> Response {
        var json = JSONWriter(capacity: 2048)
        build(&json)
        json.appendRaw(byte: UInt8(ascii: "\n"))
        return Response(
            status: .ok,
            headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(bytes: json.bytes)))
    }

    static func knownDevice(_ core: BridgeQueries, _ context: BridgeRequestContext) async throws -> DeviceState {
        let id = try context.parameters.require("id")
        guard let device = core.device(id) else {
            if try await journalCall({ try await core.hasRecords(device: id) }) {
                throw APIError(.notFound, "not_connected_since_start",
                               "programmer \(id) has not connected since the bridge started; its alarms and events are in the journal "
                               + "(GET /v1/alarms?device=\(id), GET /v1/events?device=\(id))")
            }
            throw APIError.unknownDevice(id)
        }
        return device
    }

    /// The rule for an id in a filter (`device=` of `/v1/alarms` and `/v1/events`), the same as
    /// in a path: a programmer the bridge has never seen (not since it started, and not in its
    /// journal) is 404 `unknown_device`, never an empty list that reads as "no alarms".
    static func requireKnownDevice(_ core: BridgeQueries, _ id: String) async throws {
        if core.device(id) != nil { return }
        if try await journalCall({ try await core.hasRecords(device: id) }) { return }
        throw APIError.unknownDevice(id)
    }

    /// `GET /v1/alarms`'s query as an ``AlarmQuery``; a value out of its range is a 400 naming it.
    static func alarmQuery(_ parameters: some Sequence<(key: Substring, value: Substring)>) throws -> AlarmQuery {
        var query = AlarmQuery()
        for (key, rawValue) in parameters {
            let value = String(rawValue)
            switch key {
            case "active":
                query.active = try boolean(value, "active")
            case "since":
                guard let n = Int64(value), n >= 0 else { throw APIError.badQuery("since", "an event id (a whole number ≥ 0)") }
                query.sinceEventID = n
            case "limit":
                query.limit = try limitParameter(value, default: 1000, maximum: 10_000)
            case "device":
                query.device = value
            case "pump":
                query.pump = value
            case "state":
                let names = value.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                let states = names.compactMap(AlarmRecord.State.init(rawValue:))
                guard !names.isEmpty, states.count == names.count else {
                    throw APIError.badQuery("state", "active, acknowledged or ended, or a comma-separated list of them")
                }
                query.states = Set(states)
            case "priority":
                let names = value.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                guard !names.isEmpty, names.allSatisfy({ AlarmQuery.priorities.contains($0) }) else {
                    throw APIError.badQuery("priority", AlarmQuery.priorities.joined(separator: ", ") + ", or a comma-separated list of them")
                }
                query.priorities = Set(names)
            default:
                break  // unknown names are refused before the route (StrictQueryMiddleware)
            }
        }
        return query
    }

    static func alarmID(_ context: BridgeRequestContext) throws -> Int64 {
        let text = try context.parameters.require("alarm")
        guard let id = Int64(text), id > 0 else {
            throw APIError(.badRequest, "bad_alarm_id", "alarm ids are positive whole numbers, not `\(text)`")
        }
        return id
    }

    /// Maps a journal failure to 503: the data exists, the database cannot be used right now.
    static func journalCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as JournalError {
            throw APIError(.serviceUnavailable, "journal_unavailable", "the journal cannot be used right now: \(error)")
        }
    }
}

/// The OpenAPI 3.1 document, kept in the repository (`Sources/ITBBridge/Resources/openapi.json`)
/// and embedded in the binary at build time, so an installed daemon needs no file beside it.
enum OpenAPIDocument {
    static let bytes: [UInt8]? = PackageResources.openapi_json

    /// Each path template of the document (split into segments, `{name}` matching any one
    /// segment) with the methods it lists. The document is checked against the live routes by
    /// the test suite, so this is the routes' own list.
    static let templates: [(segments: [String], methods: [String], query: [String: Set<String>])] = {
        guard let bytes, let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              let paths = object["paths"] as? [String: Any] else { return [] }
        let verbs = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
        /// The names of the `in: query` parameters in a parameter list.
        func queryNames(_ list: Any?) -> Set<String> {
            Set((list as? [[String: Any]] ?? []).compactMap { $0["in"] as? String == "query" ? $0["name"] as? String : nil })
        }
        return paths.compactMap { path, item in
            guard let operations = item as? [String: Any] else { return nil }
            let methods = verbs.filter { operations[$0] != nil }.map { $0.uppercased() }
            let shared = queryNames(operations["parameters"])
            var query: [String: Set<String>] = [:]
            for verb in verbs {
                guard let operation = operations[verb] as? [String: Any] else { continue }
                query[verb.uppercased()] = shared.union(queryNames(operation["parameters"]))
            }
            return (path.split(separator: "/").map(String.init), methods, query)
        }
    }()

    /// The template matching `path` (a request path, not a template), if any.
    private static func template(matching path: String) -> (segments: [String], methods: [String], query: [String: Set<String>])? {
        let segments = path.split(separator: "/")
        for template in templates where template.segments.count == segments.count {
            let matches = zip(template.segments, segments).allSatisfy { pattern, segment in
                (pattern.hasPrefix("{") && pattern.hasSuffix("}")) || pattern == segment
            }
            if matches { return template }
        }
        return nil
    }

    /// The methods served at `path` (a request path, not a template); empty when none is.
    static func methods(servingPath path: String) -> [String] {
        template(matching: path)?.methods ?? []
    }

    /// The query parameters `method` takes at `path`; nil when that method is not served there.
    static func queryParameters(method: String, path: String) -> Set<String>? {
        template(matching: path)?.query[method]
    }
}
