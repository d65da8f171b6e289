import Foundation
@_exported import ITBTestSupport
import ITBBridge
import ITBClient
import ITBProtocol
import ITBSerial
import ITBSimulator
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An in-process bridge daemon on a scratch directory, following one simulated programmer.
final class BridgeHarness: @unchecked Sendable {
    // @unchecked: `programmer` is driven from one test at a time, through `blocking`.
    let directory: ScratchDirectory
    let configuration: BridgeConfiguration
    let programmer: ProgrammerEndpoint
    let client: UnixHTTPClient
    private var task: Task<Void, any Error>?

    /// Starts the daemon and waits until its socket is published.
    init(name: String, configure: (inout BridgeConfiguration) -> Void = { _ in }) async throws {
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
        self.configuration = configuration
        client = UnixHTTPClient(socketPath: configuration.socketPath, timeout: .seconds(10))
        var logger = Logger(label: "itb-test") { label in DaemonLogHandler(label: label, level: .warning, journald: false) }
        logger.logLevel = .warning
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        let daemon = BridgeDaemon(configuration: configuration, logger: logger, onReady: { readyContinuation.yield() })
        task = Task { try await daemon.run() }
        var iterator = ready.makeAsyncIterator()
        _ = await iterator.next()
    }

    /// Stops the daemon (as SIGTERM would: cancellation) and removes the scratch directory.
    func stop() async {
        task?.cancel()
        _ = try? await task?.value
        programmer.pty.close()
        directory.remove()
    }

    // Blocking calls, off the cooperative pool.

    func get(_ path: String) async throws -> HTTPResponse {
        let client = self.client
        return try await blocking { try client.get(path) }
    }

    func request(_ method: String, _ path: String, body: [UInt8] = []) async throws -> HTTPResponse {
        let client = self.client
        return try await blocking { try client.request(method, path, body: body) }
    }

    func json(_ path: String) async throws -> [String: Any] {
        let response = try await get(path)
        guard response.status == 200 else { throw HarnessError("GET \(path) answered \(response.status): \(response.text)") }
        return try JSONObject.parse(response.body)
    }

    /// Runs `body` with the programmer on a thread of its own.
    func withProgrammer<T: Sendable>(_ body: @escaping @Sendable (ProgrammerEndpoint) throws -> T) async throws -> T {
        let programmer = self.programmer
        return try await blocking { try body(programmer) }
    }

    /// Services the programmer (reads ACKs, host heartbeats; retransmits) until `condition`
    /// holds or `timeout` passes; true if it held.
    func serviceProgrammer(timeout: Duration = .seconds(10), until condition: @escaping @Sendable (ProgrammerEndpoint) -> Bool) async throws -> Bool {
        try await withProgrammer { try $0.service(until: condition, timeout: timeout) }
    }

    /// Waits until `GET path` gives 200 and `predicate` holds for its JSON.
    func waitFor(_ path: String, timeout: Duration = .seconds(10), _ predicate: @escaping ([String: Any]) -> Bool) async throws -> [String: Any] {
        try await waitForJSON(client, path, timeout: timeout, predicate)
    }

    /// Connects the programmer: it announces itself once the bridge has opened the port.
    func connectProgrammer() async throws {
        try await waitUntilIdentified(programmer, client: client)
    }
}

