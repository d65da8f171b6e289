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
public final class EventStreamReader: @unchecked Sendable {
    // @unchecked: a reader belongs to the one thread that reads it.
    private var reader: ResponseReader
    private let chunked: Bool
    private var text: [UInt8] = []
    private var finished = false

    init(reader: ResponseReader, head: ResponseReader.Head) {
        self.reader = reader
        self.chunked = head.chunked
        if !chunked {
            // Body bytes that arrived with the head.
            text = self.reader.buffer
            self.reader.buffer.removeAll()
        }
    }

    /// The next event; nil when the stream ended. Comments and keep-alives are skipped. Throws
    /// ``ClientError/timedOut(socket:)`` when nothing arrives within `timeout`.
    public func next(timeout: Duration = .seconds(10)) throws(ClientError) -> ServerSentEvent? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let event = parseOne() { return event }
            if finished { return nil }
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw .timedOut(socket: reader.connection.socketPath) }
            let waitMs = Int32(clamping: max(1, remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000))
            if chunked {
                do {
                    if let chunk = try reader.readChunk(waitMs: waitMs) {
                        text += chunk
                    } else {
                        finished = true
                    }
                } catch {
                    if case .timedOut = error { continue }
                    if case .protocolError = error { finished = true; continue }
                    throw error
                }
            } else {
                guard let more = try reader.fill(waitMs: waitMs) else { continue }
                if more {
                    text += reader.buffer
                    reader.buffer.removeAll()
                } else {
                    finished = true
                }
            }
        }
    }

    /// Closes the connection.
    public func close() { reader.connection.close() }

    /// Parses one complete event (ended by a blank line) from the text received so far.
    private func parseOne() -> ServerSentEvent? {
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
