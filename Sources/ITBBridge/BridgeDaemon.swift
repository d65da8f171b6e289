import CITBShims
import Foundation
public import NIOCore
public import Hummingbird
import ITBSerial
public import Logging
public import ServiceLifecycle
import Synchronization

/// The whole daemon as one service: opens the journal, starts the core, serves the API on its
/// Unix socket, follows the configured and discovered programmers, and runs the periodic checks,
/// until graceful shutdown (SIGTERM, SIGINT). `itb-bridged` is a thin `main` over this; tests
/// run it in-process.
public struct BridgeDaemon: Service {
    /// What the daemon was told.
    public let configuration: BridgeConfiguration
    private let logger: Logger
    private let onReady: @Sendable () -> Void
    private let onTick: @Sendable () -> Void
    private let tickInterval: Duration
    private let onStatus: @Sendable (DaemonStatus) -> Void
    private let onStopping: @Sendable () -> Void

    /// Creates the daemon. `onReady` runs once the journal is open and the socket accepts
    /// connections at its final path (systemd's `READY=1`); `onTick` runs from the main loop at
    /// least every `tickInterval` (the watchdog ping; shorten the interval when the watchdog
    /// timeout is short; the loop wakes sooner when a device is due to go stale), right after
    /// `onStatus` has been given the current ``DaemonStatus`` (systemd's `STATUS=`); `onStopping`
    /// runs once when graceful shutdown begins (SIGTERM, SIGINT: systemd's `STOPPING=1`).
    public init(configuration: BridgeConfiguration, logger: Logger,
                onReady: @escaping @Sendable () -> Void = {}, onTick: @escaping @Sendable () -> Void = {},
                tickInterval: Duration = .seconds(5),
                onStatus: @escaping @Sendable (DaemonStatus) -> Void = { _ in },
                onStopping: @escaping @Sendable () -> Void = {}) {
        self.configuration = configuration
        self.logger = logger
        self.onReady = onReady
        self.onTick = onTick
        self.tickInterval = tickInterval
        self.onStatus = onStatus
        self.onStopping = onStopping
    }

    /// How long an API connection may stay silent while no response is being written.
    public static let connectionIdleTimeout: TimeAmount = .seconds(10)

    public func run() async throws {
        // One daemon per state directory, taken before the journal is opened and held until the
        // daemon stops (the kernel drops it if the process dies).
        let lock = try StateDirectoryLock(directory: configuration.stateDirectory)
        defer { lock.release() }
        let journal = try Journal(directory: configuration.stateDirectory)
        let nowMs: @Sendable () -> Int64 = { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }
        do {
            let pruned = try await journal.prune(olderThanDays: configuration.retentionDays, nowMs: nowMs())
            if pruned > 0 { logger.info("journal retention: pruned old records", metadata: ["records": "\(pruned)"]) }
        } catch {
            logger.error("journal retention pruning failed", metadata: ["error": "\(error)"])
        }
        let core = BridgeCore(configuration: configuration, journal: journal, metrics: BridgeMetrics(), logger: logger, now: nowMs)
        let socket = try SocketPublisher(path: configuration.socketPath, mode: configuration.socketMode, group: configuration.socketGroup)
        let logger = self.logger
        let onReady = self.onReady
        let app = Application(
            router: BridgeRoutes.router(core: core),
            // A connection that sends nothing for 10 s while no response is being written (a
            // half-sent request, an idle keep-alive) is closed; event streams are never cut by it.
            server: .http1(configuration: .init(idleTimeout: BridgeDaemon.connectionIdleTimeout)),
            configuration: .init(address: .unixDomainSocket(path: socket.temporaryPath), serverName: "itb-bridged"),
            onServerRunning: { _ in
                do {
                    try socket.publish()
                    logger.notice("API listening", metadata: ["socket": "\(socket.path)", "mode": "\(String(socket.mode, radix: 8))"])
                    onReady()
                } catch {
                    logger.critical("\(error)")
                }
            },
            logger: Logger(label: "itb-bridged.http", factory: { _ in SwiftLogNoOpLogHandler() }))
        let devices = DeviceSupervisor(core: core, configuration: configuration, logger: logger)
        let ticker = Ticker(core: core, configuration: configuration, interval: tickInterval,
                            onTick: onTick, onStatus: onStatus, onStopping: onStopping, logger: logger)
        var groupConfiguration = ServiceGroupConfiguration(
            services: [.init(service: app), .init(service: devices), .init(service: ticker)],
            logger: logger)
        groupConfiguration.gracefulShutdownSignals = [.sigterm, .sigint]
        let group = ServiceGroup(configuration: groupConfiguration)
        defer { socket.remove() }
        do {
            try await group.run()
        } catch let error as IOError where error.description.hasPrefix("bind(") || error.description.contains("listen(") {
            // NIO's own words (`bind(descriptor:ptr:bytes:): No such file or directory) (errno: 2)`)
            // name neither the path nor what to do.
            throw SocketListenError(path: socket.path, temporaryPath: socket.temporaryPath, errno: error.errnoCode)
        } catch SocketAddressError.unixDomainSocketPathTooLong {
            throw SocketListenError(path: socket.path, temporaryPath: socket.temporaryPath, errno: ENAMETOOLONG)
        }
        // The snapshots published last are written and synced before the journal closes.
        do {
            try await journal.syncDeferred()
        } catch {
            logger.error("journal: the last snapshots could not be written at shutdown", metadata: ["error": "\(error)"])
        }
        logger.notice("shutting down: API socket removed, journal closed")
    }
}

/// Follows every configured path and every programmer udev reports, one session each.
struct DeviceSupervisor: Service {
    let core: BridgeCore
    let configuration: BridgeConfiguration
    let logger: Logger

    func run() async throws {
        let (added, addedContinuation) = AsyncStream.makeStream(of: String.self)
        let sessions = Mutex<[String: DeviceSession]>([:])
        var discovery: DeviceDiscovery?
        if configuration.discovery {
            let d = DeviceDiscovery(rules: configuration.matchRules)
            let logger = self.logger
            d.start { event in
                switch event {
                case .added(let device):
                    logger.notice("programmer found by udev", metadata: ["path": "\(device.path)", "serial": "\(device.serial ?? "unknown")"])
                    if let existing = sessions.withLock({ $0[device.path] }) {
                        existing.deviceAppeared()
                    } else {
                        addedContinuation.yield(device.path)
                    }
                case .removed(let node):
                    logger.info("udev: device removed", metadata: ["node": "\(node)"])
                case .unavailable(let reason):
                    logger.warning("device discovery unavailable: \(reason)")
                }
            }
            discovery = d
        }
        for path in configuration.devices { addedContinuation.yield(path) }
        let replays = configuration.replayFiles.map { ReplaySession(path: $0, core: core, logger: logger) }
        if configuration.devices.isEmpty && !configuration.discovery && configuration.replayFiles.isEmpty {
            logger.warning("no devices configured and discovery is off: the bridge will serve the journal only")
        }
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                for replay in replays { group.addTask { await replay.run() } }
                for await path in added {
                    let isNew = sessions.withLock { current -> Bool in current[path] == nil }
                    guard isNew else { continue }
                    let session = DeviceSession(path: path, core: core, configuration: configuration, logger: logger)
                    sessions.withLock { $0[path] = session }
                    logger.info("following device", metadata: ["path": "\(path)"])
                    group.addTask { await session.run() }
                }
            }
        }
        addedContinuation.finish()
        discovery?.stop()
    }
}

/// The main loop's clock: stale checks, syncing deferred journal commits, keep-alives for idle
/// event streams, the status line and the watchdog ping, and daily retention pruning. It sleeps
/// until the next device could go stale, and never longer than `interval` or `staleAfter`, so an
/// idle daemon wakes rarely while a silent device is still flagged on time. It is the last service
/// of the group, so the first to hear of graceful shutdown: that is when `onStopping` runs.
struct Ticker: Service {
    let core: BridgeCore
    let configuration: BridgeConfiguration
    let interval: Duration
    let onTick: @Sendable () -> Void
    let onStatus: @Sendable (DaemonStatus) -> Void
    let onStopping: @Sendable () -> Void
    let logger: Logger

    func run() async throws {
        await withGracefulShutdownHandler {
            // Cancelled as soon as graceful shutdown begins, which also ends the loop's sleep.
            try? await cancelWhenGracefulShutdown {
                var lastPrune = ContinuousClock.now
                var subscribers = 0
                while !Task.isCancelled {
                    let nextStaleMs = await core.tick()
                    do {
                        try await core.journal.syncDeferred()
                    } catch {
                        logger.error("journal: cannot sync deferred snapshot commits", metadata: ["error": "\(error)"])
                    }
                    core.hub.keepAliveIdle(after: .seconds(15))
                    // Clients gone (cut off as lagged, say) leave their buffers free in the C
                    // heap; give that memory back rather than keep the peak for ever.
                    let current = core.hub.subscriberCount
                    if current < subscribers { _ = itb_release_free_memory() }
                    subscribers = current
                    onStatus(core.daemonStatus())
                    onTick()
                    if ContinuousClock.now - lastPrune > .seconds(86_400) {
                        lastPrune = ContinuousClock.now
                        _ = try? await core.journal.prune(olderThanDays: configuration.retentionDays, nowMs: core.now())
                    }
                    var sleep = min(interval, configuration.staleAfter)
                    if let nextStaleMs { sleep = min(sleep, .milliseconds(max(1, nextStaleMs - core.now()))) }
                    try await Task.sleep(for: sleep)
                }
            }
        } onGracefulShutdown: {
            onStopping()
        }
        // Shutting down (the ticker is stopped first, before the API): end every live event
        // stream, or the HTTP server would wait for them forever.
        core.hub.close()
    }
}

/// The API socket could not be bound or listened on: which path, why, and what to do.
public struct SocketListenError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The socket's public path.
    public var path: String
    /// The temporary name actually bound (beside it).
    public var temporaryPath: String
    /// The system's error number.
    public var errno: Int32

    /// Creates the error for `path` (bound as `temporaryPath`) and the system's error number.
    public init(path: String, temporaryPath: String, errno: Int32) {
        self.path = path
        self.temporaryPath = temporaryPath
        self.errno = errno
    }

    public var description: String {
        let directory = (path as NSString).deletingLastPathComponent
        let hint: String = switch errno {
        case ENOENT, ENOTDIR: "the directory \(directory) does not exist (or stopped existing); create it, or choose another --socket"
        case EACCES, EPERM: "this user may not create files in \(directory); run as the daemon's user (itb-bridge), or choose another --socket"
        case EADDRINUSE: "something else is already at \(temporaryPath); remove it"
        case EROFS: "\(directory) is on a read-only file system; choose another --socket"
        case ENAMETOOLONG: "the path is too long for a Unix socket (at most 107 bytes, with the temporary name's suffix); choose a shorter --socket"
        default: "choose another --socket, or check \(directory)"
        }
        return "cannot listen on the API socket \(path): \(String(cString: strerror(errno))) (errno \(errno)); \(hint)"
    }
}

