import Synchronization

/// One Server-Sent Event.
public struct ServerSentEvent: Hashable, Sendable {
    /// `id:`, the journal event id.
    public var id: Int64?
    /// `event:`, the type (`alarm`, `status`, … or `lagged`).
    public var event: String
    /// `data:` lines joined with newlines.
    public var data: String
}

/// Reads Server-Sent Events from an open stream, blocking up to a timeout per call.
///
/// `Sendable` for real: a reader is usually read by one thread, but a test or tool may hand it to
/// another, or close it from another to end a wait. What it has received and parsed is behind a
/// `Mutex`, held for the whole of ``next(timeout:)`` (so two readers take events one after the
/// other, never half of one each); ``close()`` takes no lock, so it never waits for a blocked
/// ``next(timeout:)``.
public final class EventStreamReader: Sendable {
    private struct State {
        var reader: ResponseReader
        var text: [UInt8] = []
        var finished = false
    }

    private let connection: Connection
    private let chunked: Bool
    private let state: Mutex<State>

    init(reader: ResponseReader, head: ResponseReader.Head) {
        connection = reader.connection
        chunked = head.chunked
        var state = State(reader: reader)
        if !chunked {
            // Body bytes that arrived with the head.
            state.text = state.reader.buffer
            state.reader.buffer.removeAll()
        }
        self.state = Mutex(state)
    }

    /// The next event; nil when the stream ended. Comments and keep-alives are skipped. Throws
    /// ``ClientError/timedOut(socket:)`` when nothing arrives within `timeout`.
    public func next(timeout: Duration = .seconds(10)) throws(ClientError) -> ServerSentEvent? {
        let chunked = self.chunked
        return try state.withLock { (state) throws(ClientError) -> ServerSentEvent? in
            try Self.next(&state, chunked: chunked, timeout: timeout)
        }
    }

    /// Closes the connection.
    public func close() { connection.close() }

    private static func next(_ state: inout State, chunked: Bool, timeout: Duration) throws(ClientError) -> ServerSentEvent? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let event = parseOne(&state.text) { return event }
            if state.finished { return nil }
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw .timedOut(socket: state.reader.connection.socketPath) }
            let waitMs = Int32(clamping: max(1, remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000))
            if chunked {
                do {
                    if let chunk = try state.reader.readChunk(waitMs: waitMs) {
                        state.text += chunk
                    } else {
                        state.finished = true
                    }
                } catch {
                    if case .timedOut = error { continue }
                    if case .protocolError = error { state.finished = true; continue }
                    throw error
                }
            } else {
                guard let more = try state.reader.fill(waitMs: waitMs) else { continue }
                if more {
                    state.text += state.reader.buffer
                    state.reader.buffer.removeAll()
                } else {
                    state.finished = true
                }
            }
        }
    }

    /// Parses one complete event (ended by a blank line) from the text received so far.
    private static func parseOne(_ text: inout [UInt8]) -> ServerSentEvent? {
        while let end = ResponseReader.find([10, 10], in: text) {
            let block = String(decoding: text[0..<end], as: UTF8.self)
            text.removeFirst(end + 2)
            var id: Int64?
            var type = "message"
            var data: [String] = []
            for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.hasPrefix(":") { continue }
                let parts = line.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
                let field = String(parts[0])
                var value = parts.count > 1 ? String(parts[1]) : ""
                if value.hasPrefix(" ") { value.removeFirst() }
                switch field {
                case "id": id = Int64(value)
                case "event": type = value
                case "data": data.append(value)
                default: break
                }
            }
            if data.isEmpty && id == nil && type == "message" { continue }
            return ServerSentEvent(id: id, event: type, data: data.joined(separator: "\n"))
        }
        return nil
    }
}
