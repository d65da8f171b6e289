// itbctl: the client of itb-bridged and the field engineer's tool. Argument parsing and wiring;
// the work is in the libraries (ITBClient, ITBSimulator, ITBCapture, ITBProtocol, ITBJSON).
import ArgumentParser

@main
struct ITBCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "itbctl",
        abstract: "Client of itb-bridged, programmer simulator, and capture tools.",
        discussion: """
            The client options --socket PATH and --json may be given anywhere, also before the \
            command: `itbctl --socket /tmp/api.sock status`.

            Exit codes: 0 success; 1 a request failed or the answer was an error; 3 the daemon is \
            not running (no socket at the path, its directory missing, not a socket, or a stale \
            socket nobody listens on); 4 permission denied on the socket or its directory; \
            5 not found (unknown device or alarm); 6 bad input data (a damaged capture, for decode \
            with --strict; a file with no frames); 64 usage error (EX_USAGE).
            """,
        version: "0.1.0",
        subcommands: [
            // Clinic-side client commands (over the daemon's socket).
            Devices.self, Status.self, Pumps.self, Pump.self, Alarms.self, Ack.self, Watch.self, Backup.self,
            // Engineering tools.
            Simulate.self, Record.self, Replay.self, Decode.self,
        ])

    /// Parses the command line with the global options moved after the subcommand
    /// (``GlobalOptions``), then runs the command as swift-argument-parser's own `main` would.
    static func main() async {
        let names = Set(configuration.subcommands.map { $0._commandName })
        let arguments = GlobalOptions.reordered(Array(CommandLine.arguments.dropFirst()), subcommands: names)
        do {
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
