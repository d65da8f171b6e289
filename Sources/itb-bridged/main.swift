// itb-bridged: the bridge daemon. Argument parsing and wiring only; the daemon is ITBBridge.
import ArgumentParser
import Foundation
import ITBBridge
import ITBSerial
import Logging
import Synchronization

@main
struct ITBBridged: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "itb-bridged",
        abstract: "Bridge ITB pump programmer telemetry to a JSON API on a Unix socket (read-only towards therapy).",
        discussion: """
            Settings come from the config file (--config), then from these flags, which win. \
            `itb-bridged --check-config FILE` reports every problem in a config file, with its line \
            number, without starting the daemon.

            The API is HTTP/1.1 + JSON on the Unix socket: try
              curl --unix-socket /run/itb-bridge/api.sock http://localhost/v1/health
            """,
        version: BridgeRoutes.version)

    @Option(name: .long, help: ArgumentHelp("A programmer device path (tty, pty or symlink); repeatable. Used besides or instead of udev discovery.", valueName: "path"))
    var device: [String] = []

    @Option(name: .long, help: ArgumentHelp("The API socket path (default /run/itb-bridge/api.sock).", valueName: "path"))
    var socket: String?

    @Option(name: .long, help: ArgumentHelp("Group of the API socket (name or number).", valueName: "group"))
    var socketGroup: String?

    @Option(name: .long, help: ArgumentHelp("File mode of the API socket, octal (default 0660).", valueName: "mode"))
    var socketMode: String?

    @Option(name: .customLong("state-dir"), help: ArgumentHelp("Directory of the journal (default /var/lib/itb-bridge).", valueName: "dir"))
    var stateDirectory: String?

    @Option(name: .long, help: ArgumentHelp("Config file (key = value lines; see systemd/itb-bridged.conf).", valueName: "file"))
    var config: String?

    @Option(name: .customLong("check-config"), help: ArgumentHelp("Check this config file and exit: every problem is reported with its line number; exit status 1 if there is one, 0 if none. The daemon is not started.", valueName: "file"))
    var checkConfig: String?

    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String?

    @Option(name: .long, help: ArgumentHelp("USB ids of a programmer adapter, VVVV:PPPP[:SERIAL]; repeatable; replaces the configured ones.", valueName: "ids"))
    var match: [String] = []

    @Flag(name: .long, help: "Do not discover programmers through udev; follow only --device paths.")
    var noDiscovery = false

    @Option(name: .long, help: ArgumentHelp("Serial line speed (default 115200).", valueName: "rate"))
    var baudRate: Int?

    @Option(name: .long, help: ArgumentHelp("Replay a capture file through the pipeline, read-only (repeatable); e.g. with --no-discovery and no --device.", valueName: "file"))
    var replay: [String] = []

    @Option(name: .customLong("capture-dir"), help: ArgumentHelp("Record every device's raw traffic to rotating .itbcap files here.", valueName: "dir"))
    var captureDirectory: String?

    mutating func run() async throws {
        if let checkConfig {
            throw ExitCode(Self.check(configFile: checkConfig))
        }
        var configuration = BridgeConfiguration()
        if let config {
            let text: String
            do {
                text = try String(contentsOfFile: config, encoding: .utf8)
            } catch {
                throw ValidationError("cannot read the config file \(config): \(error.localizedDescription)")
            }
            do {
                configuration = try ConfigurationFile.parse(text)
            } catch {
                throw ValidationError("\(config): \(error)")
            }
        }
        if !device.isEmpty { configuration.devices = device }
        if let socket { configuration.socketPath = socket }
        if let socketGroup { configuration.socketGroup = socketGroup }
        if let socketMode {
            guard let mode = UInt32(socketMode, radix: 8), mode <= 0o777 else { throw ValidationError("--socket-mode: expected an octal mode such as 0660") }
            configuration.socketMode = mode
        }
        if let stateDirectory { configuration.stateDirectory = stateDirectory }
        if let logLevel { configuration.logLevel = logLevel }
        if noDiscovery { configuration.discovery = false }
        if !match.isEmpty {
            configuration.matchRules = try match.map { text in
                guard let rule = USBMatchRule(parsing: text) else { throw ValidationError("--match: expected VVVV:PPPP[:SERIAL], found \(text)") }
                return rule
            }
        }
        if let captureDirectory { configuration.captureDirectory = captureDirectory }
        if !replay.isEmpty { configuration.replayFiles = replay }
        if let baudRate {
            guard SerialConfiguration.supportedBaudRates.contains(baudRate) else { throw ValidationError("--baud-rate: unsupported rate \(baudRate)") }
            configuration.serial.baudRate = baudRate
        }
        guard let level = Logger.Level(rawValue: configuration.logLevel) else {
            throw ValidationError("--log-level: expected trace, debug, info, notice, warning, error or critical")
        }
        // Under systemd, journald's native protocol, so that metadata become fields to filter on
        // (`journalctl -u itb-bridged DEVICE=…`); elsewhere, lines on stderr.
        if JournaldLogHandler.shouldUse() {
            let journal = JournaldConnection()
            LoggingSystem.bootstrap { label in JournaldLogHandler(label: label, level: level, connection: journal) }
        } else {
            LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, level: level) }
        }
        let logger = Logger(label: "itb-bridged")
        let notifier = SystemdNotifier()
        let descriptorLimit = ProcessLimits.raiseDescriptorLimit()
        logger.notice("itb-bridged \(BridgeRoutes.version) starting", metadata: [
            "socket": "\(configuration.socketPath)", "state_dir": "\(configuration.stateDirectory)",
            "devices": "\(configuration.devices.joined(separator: ","))", "discovery": "\(configuration.discovery)",
            "systemd_notify": "\(notifier.isEnabled)", "max_open_files": "\(descriptorLimit.map { "\($0)" } ?? "unknown")",
            "watchdog": "\(notifier.watchdogInterval.map { "\($0)" } ?? "off")",
        ])
        if let problem = notifier.configurationProblem { logger.warning("\(problem)") }
        // A failed notification is logged once per kind, not on every tick.
        let reported = ReportedOnce()
        let notify: @Sendable (String, () throws -> Void) -> Void = { kind, body in
            do {
                try body()
            } catch {
                if reported.first(kind) { logger.error("\(error)") }
            }
        }
        let socketPath = configuration.socketPath
        let daemon = BridgeDaemon(
            configuration: configuration, logger: logger,
            onReady: { notify("ready") { try notifier.ready(status: "ready; API on \(socketPath)") } },
            onTick: { notify("watchdog") { try notifier.watchdogTick() } },
            tickInterval: notifier.recommendedTickInterval,
            onStatus: { status in notify("status") { try notifier.status(status.line) } },
            onStopping: {
                logger.notice("graceful shutdown requested")
                notify("stopping") { try notifier.stopping() }
            })
        do {
            try await daemon.run()
        } catch {
            logger.critical("itb-bridged stopped: \(error)")
            throw ExitCode(1)
        }
        logger.notice("itb-bridged stopped")
    }
}

extension ITBBridged {
    /// `--check-config FILE`: prints every problem as `FILE:LINE: message` on stderr (or that
    /// there is none, on stdout); returns the exit status, 1 when there is a problem.
    static func check(configFile path: String) -> Int32 {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            FileHandle.standardError.write(Data("itb-bridged: cannot read the config file \(path): \(error.localizedDescription)\n".utf8))
            return 1
        }
        let (_, problems) = ConfigurationFile.check(text)
        for problem in problems {
            FileHandle.standardError.write(Data("\(path):\(problem.line): \(problem.message)\n".utf8))
        }
        if problems.isEmpty {
            print("\(path): no problems found")
            return 0
        }
        FileHandle.standardError.write(Data("itb-bridged: \(problems.count) problem\(problems.count == 1 ? "" : "s") in \(path)\n".utf8))
        return 1
    }
}

/// Remembers which kinds of failure were already logged.
final class ReportedOnce: Sendable {
    private let seen = Mutex<Set<String>>([])
    /// True the first time `kind` is given.
    func first(_ kind: String) -> Bool { seen.withLock { $0.insert(kind).inserted } }
}
