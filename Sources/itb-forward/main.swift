// itb-forward: follows one bridge's journal into PostgreSQL, exactly once. Argument parsing and
// wiring only; the forwarding is ITBForward.
import ArgumentParser
import Foundation
import ITBForward
import Logging
import ServiceLifecycle

@main
struct ITBForwardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "itb-forward",
        abstract: "Forward one itb-bridged's event journal into PostgreSQL, exactly once.",
        discussion: """
            Settings come from the config file (--config), then from these flags, which win.
            The password is never a flag: --password-file, or systemd's LoadCredential=postgres-password:….
            Example:
              itb-forward --socket /run/itb-bridge/api.sock \\
                --postgres 'postgresql://itb_forward@db.clinic.example:5432/itb' --tls verify-full \\
                --tls-ca-file /etc/itb-bridge/postgres-ca.pem --password-file /etc/itb-bridge/postgres-password
            """)

    @Option(name: .long, help: ArgumentHelp("The bridge's API socket (default /run/itb-bridge/api.sock).", valueName: "path"))
    var socket: String?

    @Option(name: .long, help: ArgumentHelp("libpq URL: postgresql://user@host:port/db, or postgresql://user@/db?host=/socket/dir.", valueName: "url"))
    var postgres: String?

    @Option(name: .customLong("bridge-id"), help: ArgumentHelp("This bridge's name in itb_event.bridge_id (default: the host name).", valueName: "id"))
    var bridgeID: String?

    @Option(name: .customLong("password-file"), help: ArgumentHelp("File whose first line is the PostgreSQL password (default: $CREDENTIALS_DIRECTORY/postgres-password if present).", valueName: "path"))
    var passwordFile: String?

    @Option(name: .long, help: ArgumentHelp("TLS to PostgreSQL: disable, require or verify-full (default: verify-full over TCP, disable on a Unix socket).", valueName: "mode"))
    var tls: String?

    @Option(name: .customLong("tls-ca-file"), help: ArgumentHelp("CA certificates (PEM) that sign the server's certificate (default: the system's).", valueName: "path"))
    var tlsCAFile: String?

    @Option(name: .long, help: ArgumentHelp("Config file (key = value lines; see systemd/itb-forward.conf).", valueName: "file"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String?

    mutating func run() async throws {
        var settings = ForwardSettings()
        if let config {
            guard let data = FileManager.default.contents(atPath: config) else {
                throw ValidationError("cannot read the config file \(config)")
            }
            do {
                try settings.apply(configFile: String(decoding: data, as: UTF8.self))
            } catch {
                throw ValidationError("\(config): \(error)")
            }
        }
        if let socket { settings.socketPath = socket }
        if let postgres {
            do { settings.postgres = try PostgresLocation(url: postgres) } catch { throw ValidationError("\(error)") }
        }
        if let bridgeID { settings.bridgeID = bridgeID }
        if let passwordFile { settings.passwordFile = passwordFile }
        if let tls {
            guard let mode = TLSMode(rawValue: tls) else { throw ValidationError("--tls: expected disable, require or verify-full") }
            settings.tls = mode
        }
        if let tlsCAFile { settings.tlsCAFile = tlsCAFile }
        if let logLevel { settings.logLevel = logLevel }
        guard settings.postgres != nil else {
            throw ValidationError("no PostgreSQL given: pass --postgres URL or set `postgres` in the config file")
        }
        guard let level = Logger.Level(rawValue: settings.logLevel) else {
            throw ValidationError("log level: expected trace, debug, info, notice, warning, error or critical")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "itb-forward")
        let service = ForwardService(forwarder: Forwarder(settings: settings, logger: logger))
        let group = ServiceGroup(services: [service], gracefulShutdownSignals: [], cancellationSignals: [.sigterm, .sigint], logger: logger)
        do {
            try await group.run()
        } catch let error as ForwardError {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
    }
}

/// The forwarder as a service: SIGTERM and SIGINT cancel it; a batch is committed whole or not at
/// all, so stopping at any instant loses nothing.
struct ForwardService: Service {
    let forwarder: Forwarder

    func run() async throws {
        try await forwarder.run()
    }
}
