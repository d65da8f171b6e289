import ArgumentParser
import Dispatch
import ITBClient
import ITBJSON
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `itbctl watch`: follows the daemon's event stream, one line per event, across disconnects and
/// daemon restarts, missing nothing and repeating nothing.
struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Follow live events (alarms, status, reservoir, …), one line per event.",
        discussion: """
            Starts at the daemon's newest event (or after --since) and prints every later event. \
            When the connection drops or the daemon restarts, it reconnects (waiting 0.5 s, \
            doubling up to 5 s) and resumes with Last-Event-ID, so events published meanwhile are \
            printed once, in order. A client that falls too far behind is disconnected by the \
            daemon: that is reported on stderr as a warning and the stream resumes from the \
            last event printed. Ctrl-C (SIGINT) or SIGTERM stops it, with exit status 0.

            Human lines: TIME TYPE DEVICE SUMMARY. `--json`: one object per line, \
            {"id": event id, "event": type, "data": the event's object as the daemon sent it}.
            """)

    @OptionGroup var options: ClientOptions

    @Option(name: .long, help: ArgumentHelp("Only this programmer's events.", valueName: "device"))
    var device: String?

    @Option(name: .long, help: ArgumentHelp(
        "Only these event types, comma-separated: device, status, reservoir, alarm, program, refill.", valueName: "types"))
    var types: String?

    @Option(name: .long, help: ArgumentHelp(
        "Start after this event id instead of at the newest event (earlier events come from the journal).", valueName: "event-id"))
    var since: Int64?

    func validate() throws {
        if let since, since < 0 { throw ValidationError("--since must be an event id (0 or more)") }
    }

    /// Backoff before reconnecting: the first wait, and the longest.
    static let firstRetryDelay: Duration = .milliseconds(500)
    static let longestRetryDelay: Duration = .seconds(5)
    /// How long one read waits before checking for a stop signal.
    static let pollInterval: Duration = .milliseconds(250)

    func run() throws {
        try reportingFailures {
            let api = options.api
            let path = pathWithQuery("/v1/events", [("device", device), ("types", types)])
            let signalSources = StopSignal.install()
            defer { signalSources.forEach { $0.cancel() } }

            // Where to start: after --since, else after the newest event (from /v1/health), so
            // a reconnection before the first event still knows what it has not seen.
            var lastID: Int64? = try since ?? api.latestEventID()
            // The first connection's failures are the command's: a wrong socket exits at once.
            var stream: EventStreamReader? = try Self.open(api, path, after: lastID)
            var retryDelay = Self.firstRetryDelay
            var outage: String?

            while !StopSignal.requested {
                guard let current = stream else {
                    // Disconnected: reconnect, resuming after the last event printed.
                    do throws(ClientError) {
                        if let latest = try? api.latestEventID(), let last = lastID, latest < last {
                            printWarning("the daemon's journal restarted its event ids (newest \(latest), last printed \(last)); "
                                         + "following its events from the beginning of the new journal")
                            lastID = 0
                        }
                        stream = try api.client.events(path, lastEventID: lastID)
                        if let lastID {
                            printWarning("reconnected to itb-bridged; resuming after event \(lastID)")
                        } else {
                            printWarning("reconnected to itb-bridged, without Last-Event-ID (this daemon does not report its newest "
                                         + "event id): events published while disconnected may be missing")
                        }
                        outage = nil
                        retryDelay = Self.firstRetryDelay
                    } catch {
                        switch error {
                        case .permissionDenied:
                            throw CommandFailure(error)
                        case .httpStatus(let status, let body) where status < 500:
                            throw Reply(status: status, text: body).failure
                        default:
                            if outage == nil {
                                outage = error.description
                                printWarning("cannot reach itb-bridged (\(error.description)); retrying")
                            }
                            StopSignal.sleep(retryDelay)
                            retryDelay = min(retryDelay * 2, Self.longestRetryDelay)
                        }
                    }
                    continue
                }

                do throws(ClientError) {
                    guard let event = try current.next(timeout: Self.pollInterval) else {
                        current.close()
                        stream = nil
                        outage = "the daemon closed the event stream"
                        printWarning("itb-bridged closed the event stream (stopped or restarting); reconnecting, "
                                     + "resuming after event \(lastID.map(String.init) ?? "none")")
                        StopSignal.sleep(retryDelay)
                        retryDelay = min(retryDelay * 2, Self.longestRetryDelay)
                        continue
                    }
                    // The daemon's end-of-replay marker: a milestone for programs, not an event to print.
                    if event.event == "caught_up" { continue }
                    if event.event == "lagged" {
                        let message = (try? JSONValue.parse(event.data))?["message"]?.string ?? event.data
                        printWarning("lagged: \(message); resuming after event \(lastID.map(String.init) ?? "none")")
                        current.close()
                        stream = nil
                        outage = "lagged"
                        continue
                    }
                    if let id = event.id {
                        // The daemon neither repeats nor reorders; this guard keeps that promise
                        // even if a resumption overlapped.
                        if let last = lastID, id <= last { continue }
                        lastID = id
                    }
                    printLine(options.json ? Self.jsonLine(event) : Self.humanLine(event))
                } catch {
                    if case .timedOut = error { continue }
                    current.close()
                    stream = nil
                    outage = error.description
                    printWarning("lost the event stream (\(error.description)); reconnecting")
                    StopSignal.sleep(retryDelay)
                    retryDelay = min(retryDelay * 2, Self.longestRetryDelay)
                }
            }
            stream?.close()
            flushOutput()
        }
    }

    /// Opens the stream; failures are the command's (exit 3, 4, 1).
    static func open(_ api: DaemonAPI, _ path: String, after lastID: Int64?) throws(CommandFailure) -> EventStreamReader {
        do {
            return try api.client.events(path, lastEventID: lastID)
        } catch {
            if case .httpStatus(let status, let body) = error { throw Reply(status: status, text: body).failure }
            throw CommandFailure(error)
        }
    }

    /// `{"id":N,"event":"type","data":{…}}`, on one line.
    static func jsonLine(_ event: ServerSentEvent) -> String {
        // The data is one JSON document; raw newlines in it can only be white space.
        var data = event.data.replacingNewlines()
        if data.isEmpty { data = "null" }
        let quotedType = JSONValue.string(event.event).serialized
        return "{\"id\":\(event.id.map(String.init) ?? "null"),\"event\":\(quotedType),\"data\":\(data)}"
    }

    /// `TIME  TYPE  DEVICE  SUMMARY`.
    static func humanLine(_ event: ServerSentEvent) -> String {
        guard let data = try? JSONValue.parse(event.data) else {
            return RFC3339Now.string + "  " + pad(event.event, 9) + "  -  " + event.data
        }
        let device = data["device"]?.string ?? (event.event == "device" ? data["id"]?.string : nil)
        return cell(time(of: event.event, data)) + "  " + pad(event.event, 9) + "  " + cell(device) + "  " + summary(of: event.event, data)
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    /// When the event happened, as the daemon gives it (RFC 3339); now when the data has no time.
    static func time(of type: String, _ data: JSONValue) -> String {
        switch type {
        case "alarm":
            switch data["state"]?.string {
            case "ended": if let at = data["cleared_at"]?.string { return at }
            case "acknowledged": if let at = data["acknowledged_at"]?.string { return at }
            default: break
            }
            if let at = data["raised_at"]?.string { return at }
        case "device":
            if let at = data["link_state_since"]?.string ?? data["last_seen"]?.string { return at }
        default:
            if let at = data["received_at"]?.string { return at }
        }
        return RFC3339Now.string
    }

    /// A short, type-specific summary.
    static func summary(of type: String, _ data: JSONValue) -> String {
        switch type {
        case "alarm":
            var text = "alarm " + cell(data["id"]?.text) + " " + cell(data["code"]?.string) + " (" + cell(data["priority"]?.string)
                + ", " + cell(data["source"]?.string) + ") " + cell(data["state"]?.string)
            if let uid = data["acknowledged_by_uid"]?.text, data["state"]?.string == "acknowledged" { text += " by uid " + uid }
            if let detail = data["detail"]?.string, !detail.isEmpty { text += ": " + detail }
            return text
        case "device":
            var text = "link " + cell(data["link_state"]?.string)
            if let detail = data["link_detail"]?.string, !detail.isEmpty, detail != data["link_state"]?.string { text += " (" + detail + ")" }
            if let path = data["path"]?.string { text += " on " + path }
            return text
        case "status":
            var text = cell(data["pump_state"]?.string) + ", " + cell(data["daily_dose_ug"]?.text) + " µg/day at "
                + cell(data["concentration_ug_per_ml"]?.text) + " µg/mL"
            let alarms = (data["active_alarms"]?.array ?? []).compactMap(\.string)
            text += ", pump alarms: " + (alarms.isEmpty ? "none" : alarms.joined(separator: ", "))
            return text
        case "reservoir":
            var text = cell(data["volume_ul"]?.text) + " µL of " + cell(data["capacity_ul"]?.text) + " µL"
            if let derived = data["derived"] {
                if let days = derived["days_until_low_reservoir_alarm"]?.text { text += ", LRA in " + days + " days" }
                if let due = derived["refill_due_date"]?.string {
                    text += ", refill due " + due + (derived["refill_due_reason"]?.string.map { " (" + $0 + ")" } ?? "")
                }
            }
            return text
        case "program":
            return cell(data["mode"]?.string) + ", " + cell(data["daily_dose_ug"]?.text) + " µg/day"
        case "refill":
            var text = "filled " + cell(data["volume_filled_ul"]?.text) + " µL at " + cell(data["concentration_ug_per_ml"]?.text) + " µg/mL"
            if let discrepancy = data["discrepancy"]?.text { text += ", discrepancy " + discrepancy }
            if data["discrepancy_flagged"]?.bool == true { text += " FLAGGED" }
            return text
        default:
            return data.serialized
        }
    }
}

/// The current host time in RFC 3339.
enum RFC3339Now {
    static var string: String { RFC3339.string(ms: currentTimeMs()) }
}

/// SIGINT and SIGTERM set a flag that the watch loop checks between reads, so it stops cleanly.
enum StopSignal {
    private static let flag = Atomic<Bool>(false)

    /// True once SIGINT or SIGTERM arrived.
    static var requested: Bool { flag.load(ordering: .relaxed) }

    /// Installs the handlers (the default action would kill the process with a non-zero status)
    /// with the tool's shared `onTerminationSignals`; keep the returned sources alive.
    static func install() -> [any DispatchSourceSignal] {
        // A parent may have left them blocked: the handlers must see them.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        sigprocmask(SIG_UNBLOCK, &signals, nil)
        return onTerminationSignals { flag.store(true, ordering: .relaxed) }
    }

    /// Sleeps up to `duration`, waking early when a stop is requested.
    static func sleep(_ duration: Duration) {
        let deadline = ContinuousClock.now + duration
        while !requested, ContinuousClock.now < deadline {
            let slice = min(deadline - ContinuousClock.now, .milliseconds(50))
            guard slice > .zero else { break }
            var request = timespec(tv_sec: Int(slice.components.seconds), tv_nsec: Int(slice.components.attoseconds / 1_000_000_000))
            _ = nanosleep(&request, nil)
        }
    }
}

extension String {
    /// The text with CR and LF turned into spaces.
    func replacingNewlines() -> String {
        String(unicodeScalars.map { $0 == "\n" || $0 == "\r" ? " " : Character($0) })
    }
}
