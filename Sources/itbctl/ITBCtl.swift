// itbctl: the client of itb-bridged and the field engineer's tool. Argument parsing and wiring;
// the work is in the libraries (ITBClient, ITBSimulator, ITBCapture, ITBProtocol, ITBJSON).
import ArgumentParser

@main
struct ITBCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "itbctl",
        abstract: "Client of itb-bridged, programmer simulator, and capture tools.",
        discussion: """
            Exit codes: 0 success; 1 a request failed or the answer was an error; 64 usage error (EX_USAGE);
            3 the daemon is not running (nothing listens at the socket); 4 permission denied on
            the socket; 5 not found (unknown device or alarm); 6 bad input data (a damaged capture,
            for decode with --strict).
            """,
        version: "0.1.0",
        subcommands: [
            // Clinic-side client commands (over the daemon's socket).
            Devices.self, Status.self, Pumps.self, Pump.self, Alarms.self, Ack.self, Watch.self,
            // Engineering tools.
            Simulate.self, Record.self, Replay.self, Decode.self,
        ])
}
