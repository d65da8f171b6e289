public import Logging

/// Follows one bridge's journal into PostgreSQL, exactly once, until cancelled.
///
/// Each pass connects to PostgreSQL, migrates the schema, reads the bridge's position there, and
/// follows `/v1/events` with `Last-Event-ID` = that position; every batch goes in with its new
/// position in one transaction (``PostgresWriter/write(_:after:)``). Whatever breaks (either side
/// gone, a statement failed, the bridge restarted), the pass ends, the forwarder waits by
/// ``Backoff`` and starts again from the position PostgreSQL has, so nothing is written twice or
/// lost. `lagged` resumes at once. The next batch is read from the bridge while the current one is
/// written.
public struct Forwarder: Sendable {
    /// What it runs with.
    public var settings: ForwardSettings
    /// Where it logs.
    public var logger: Logger
    /// The back-off between passes.
    public var backoff: Backoff
    /// Called after each committed batch with the new position (tests, progress).
    public var onCommit: @Sendable (_ position: Int64, _ count: Int) -> Void

    /// A forwarder; `settings.postgres` must be set.
    public init(settings: ForwardSettings, logger: Logger, backoff: Backoff = Backoff(),
                onCommit: @escaping @Sendable (_ position: Int64, _ count: Int) -> Void = { _, _ in }) {
        self.settings = settings
        self.logger = logger
        self.backoff = backoff
        self.onCommit = onCommit
    }

    /// Runs until the task is cancelled; throws only what retrying cannot fix (a configuration
    /// error, a newer schema, a journal behind its position).
    public func run() async throws(ForwardError) {
        guard let location = settings.postgres else { throw .configuration("no PostgreSQL given: pass --postgres URL or set `postgres` in the config file") }
        let password = try settings.password()
        let bridgeID = settings.effectiveBridgeID
        var logger = self.logger
        logger[metadataKey: "bridge_id"] = "\(bridgeID)"
        var backoff = self.backoff
        logger.info("forwarding", metadata: ["socket": "\(settings.socketPath)", "postgres": "\(location)", "tls": "\(settings.effectiveTLS.rawValue)"])
        while !Task.isCancelled {
            do {
                let resume = try await pass(location, password: password, bridgeID: bridgeID, backoff: &backoff, logger: logger)
                if resume { continue }
            } catch {
                guard error.isRetryable else { throw error }
                if Task.isCancelled { break }
                let delay = backoff.failed()
                logger.warning("\(error); retrying in \(delay)", metadata: ["failures": "\(backoff.failures)"])
                try? await Task.sleep(for: delay)
            }
        }
    }

    /// One pass: connect both sides and forward until something breaks (throws) or the bridge
    /// lags this client (returns true: resume at once). Returns false when cancelled.
    private func pass(_ location: PostgresLocation, password: String?, bridgeID: String, backoff: inout Backoff,
                      logger: Logger) async throws(ForwardError) -> Bool {
        let writer = try await PostgresWriter.connect(location, tls: settings.effectiveTLS, caFile: settings.tlsCAFile,
                                                      password: password, bridgeID: bridgeID, logger: logger)
        do {
            let resume = try await forward(writer, backoff: &backoff, logger: logger)
            await writer.close()
            return resume
        } catch {
            await writer.close()
            throw error
        }
    }

    private func forward(_ writer: PostgresWriter, backoff: inout Backoff, logger: Logger) async throws(ForwardError) -> Bool {
        try await writer.migrate()
        var position = StreamPosition(committed: try await writer.position())
        let journalEnd = try await BridgeEventStream.lastEventID(socketPath: settings.socketPath)
        if journalEnd < position.committed {
            throw .journalBehind(bridgeID: writer.bridgeID, journal: journalEnd, position: position.committed)
        }
        let stream = try await BridgeEventStream.open(socketPath: settings.socketPath, after: position.committed)
        backoff.succeeded()
        logger.info("following the bridge's journal", metadata: ["after": "\(position.committed)", "journal_end": "\(journalEnd)"])
        let rule = settings.batch
        var reading = Task { try await stream.read(rule) }
        // One exit: the read in flight finishes within the rule's delay and is waited for before
        // the stream is closed, so that its descriptor is never closed under a blocked read.
        let outcome: Result<Bool, ForwardError>
        do {
            outcome = .success(try await follow(stream, writer, &position, &reading, logger: logger))
        } catch {
            outcome = .failure(error)
        }
        _ = await reading.result
        stream.close()
        return try outcome.get()
    }

    /// Writes batch after batch; returns true when lagged (resume), false when cancelled.
    private func follow(_ stream: BridgeEventStream, _ writer: PostgresWriter, _ position: inout StreamPosition,
                        _ reading: inout Task<BridgeEventStream.Batch, any Error>, logger: Logger) async throws(ForwardError) -> Bool {
        let rule = settings.batch
        while !Task.isCancelled {
            let batch: BridgeEventStream.Batch
            do { batch = try await reading.value } catch { throw error as? ForwardError ?? .bridge("\(error)") }
            for event in batch.events {
                do { try position.take(event.id) } catch { throw .bridge("\(error)") }
            }
            if batch.end == .more {
                reading = Task { try await stream.read(rule) }
            }
            if let last = batch.events.last?.id {
                do {
                    try await writer.write(batch.events, after: position.committed)
                } catch {
                    position.rollBack()
                    throw error
                }
                position.commit(through: last)
                onCommit(last, batch.events.count)
                logger.debug("committed", metadata: ["events": "\(batch.events.count)", "position": "\(last)"])
            }
            switch batch.end {
            case .more: continue
            case .lagged:
                logger.notice("the bridge cut this stream off as lagged; resuming", metadata: ["position": "\(position.committed)"])
                return true
            case .ended:
                throw .bridge("the event stream ended (the bridge stopped or restarted) at \(position.committed)")
            }
        }
        return false
    }
}
