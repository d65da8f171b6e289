// The bridge daemon in the test's own process, as the end-to-end, replay, scenario and itbctl
// suites run it.

public import ITBBridge
public import ITBClient
public import ITBProtocol
public import ITBSimulator
public import ITBTestSupport
import Logging
import Synchronization

/// The bridge daemon in this process on a scratch directory, following one simulated
/// programmer. It can be stopped and started again on the same state directory, on its socket
/// or on another one.
///
/// `Sendable` for real: the directory, the programmer and the socket are immutable; what changes
/// (the configuration the daemon runs with, its task) is behind a `Mutex`. The programmer is a
/// ``ProgrammerEndpoint``, itself safe to share; blocking calls on it run off the cooperative pool
/// (``withProgrammer(_:)``).
public final class TestDaemon: Sendable {
    /// The scratch directory: `api.sock`, `state/`.
    public let directory: ScratchDirectory
    /// The simulated programmer whose pty the daemon follows.
    public let programmer: ProgrammerEndpoint
    /// The socket clients are told about; the daemon may run on another one for a while.
    public let socketPath: String

    private struct State {
        var configuration: BridgeConfiguration
        var task: Task<Void, any Error>?
    }
    private let state: Mutex<State>

    /// What the daemon runs with now (its socket is the one it serves now).
    public var configuration: BridgeConfiguration { state.withLock { $0.configuration } }

    /// A client of the socket the daemon currently serves.
    public var client: UnixHTTPClient { UnixHTTPClient(socketPath: configuration.socketPath, timeout: .seconds(10)) }

    /// Starts the daemon and waits until its socket is published. `configure` changes the test
    /// configuration: the programmer's pty only, no discovery, a socket and state directory in
    /// ``directory``, HOST_HEARTBEAT every 200 ms.
    public init(name: String, configure: (inout BridgeConfiguration) -> Void = { _ in }) async throws {
        directory = try ScratchDirectory(name)
        programmer = try ProgrammerEndpoint(info: testProgrammer, initialRetransmitDelay: .milliseconds(200),
                                            maximumRetransmitDelay: .seconds(1))
        var configuration = BridgeConfiguration()
        configuration.devices = [programmer.pty.slavePath]
        configuration.discovery = false
        configuration.socketPath = directory.path + "/api.sock"
        configuration.stateDirectory = directory.path + "/state"
        configuration.heartbeatInterval = .milliseconds(200)
        configure(&configuration)
        socketPath = configuration.socketPath
        state = Mutex(State(configuration: configuration, task: nil))
        try await start()
    }

    /// Starts (or starts again) the daemon on the same state directory, on its socket or, to
    /// hide it from clients, on `otherSocket`; returns once the socket is published.
    public func start(otherSocket: String? = nil) async throws {
        let configuration = state.withLock { state in
            state.configuration.socketPath = otherSocket ?? socketPath
            return state.configuration
        }
        var logger = Logger(label: "itb-test") { label in DaemonLogHandler(label: label, level: .warning, journald: false) }
        logger.logLevel = .warning
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        let daemon = BridgeDaemon(configuration: configuration, logger: logger, onReady: { readyContinuation.yield() })
        let task = Task { try await daemon.run() }
        state.withLock { $0.task = task }
        var iterator = ready.makeAsyncIterator()
        _ = await iterator.next()
    }

    /// Stops the daemon as SIGTERM would (cancellation) and waits for it; the state directory
    /// and the programmer stay, for ``start(otherSocket:)``.
    public func stop() async {
        let task = state.withLock { state in
            defer { state.task = nil }
            return state.task
        }
        task?.cancel()
        _ = try? await task?.value
    }

    /// Stops the daemon, closes the programmer and removes the scratch directory.
    public func shutdown() async {
        await stop()
        programmer.pty.close()
        directory.remove()
    }

    // MARK: the API, off the cooperative pool

    /// `GET path`.
    public func get(_ path: String) async throws -> HTTPResponse {
        let client = self.client
        return try await blocking { try client.get(path) }
    }

    /// A request with `method`, `path` and `body`.
    public func request(_ method: String, _ path: String, body: [UInt8] = []) async throws -> HTTPResponse {
        let client = self.client
        return try await blocking { try client.request(method, path, body: body) }
    }

    /// `GET path` as a JSON object; throws unless it answers 200.
    public func json(_ path: String) async throws -> [String: Any] {
        let response = try await get(path)
        guard response.status == 200 else { throw HarnessError("GET \(path) answered \(response.status): \(response.text)") }
        return try JSONObject.parse(response.body)
    }

    /// Waits until `GET path` answers 200 and `predicate` holds for its JSON.
    public func waitFor(_ path: String, timeout: Duration = .seconds(10),
                        _ predicate: @escaping ([String: Any]) -> Bool) async throws -> [String: Any] {
        try await waitForJSON(client, path, timeout: timeout, predicate)
    }

    // MARK: the programmer

    /// Runs `body` with the programmer on a thread of its own.
    public func withProgrammer<T: Sendable>(_ body: @escaping @Sendable (ProgrammerEndpoint) throws -> T) async throws -> T {
        let programmer = self.programmer
        return try await blocking { try body(programmer) }
    }

    /// Services the programmer (ACKs, host heartbeats, retransmissions) until `condition` holds
    /// or `timeout` passes; true if it held.
    public func serviceProgrammer(timeout: Duration = .seconds(15),
                                  until condition: @escaping @Sendable (ProgrammerEndpoint) -> Bool) async throws -> Bool {
        try await withProgrammer { try $0.service(until: condition, timeout: timeout) }
    }

    /// Connects the programmer: it announces itself once the bridge has sent a HOST_HEARTBEAT;
    /// returns when the API shows it connected.
    public func connectProgrammer() async throws {
        try await waitUntilIdentified(programmer, client: client)
    }

    /// Raises an alarm and services the programmer until the bridge has stored it (ACK stored).
    @discardableResult
    public func raiseAndStore(_ code: AlarmCode, _ priority: AlarmPriority, transition: AlarmTransition = .raised,
                              detail: String = "") async throws -> Alarm {
        let alarm = try await withProgrammer {
            try $0.raise(code: code, priority: priority, transition: transition, detail: detail, onsetTimeMs: nowMs())
        }
        guard try await serviceProgrammer(until: { $0.pending[alarm.alarmID] == nil }) else {
            throw HarnessError("alarm \(alarm.alarmID) was never acknowledged as stored")
        }
        return alarm
    }
}
