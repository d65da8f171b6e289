import ArgumentParser
import Dispatch
import ITBSimulator
#if canImport(Glibc)
import Glibc
#endif

/// `itbctl simulate`: a programmer on a pseudo-terminal, playing a scenario.
struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a simulated ITB programmer on a pseudo-terminal.",
        discussion: """
            Prints the pty path and keeps a symbolic link to it at --link (re-pointed when the \
            simulated programmer is re-plugged); start itb-bridged with --device on the link. \
            Speaks the device side of protocol v1, minor revision 1: heartbeats, boot id, alarm \
            retransmission until acknowledged, PUMP_SESSION begin re-sent with PROGRAMMER_INFO. \
            Pump time runs --accel times faster than real time (86400: a day a second). Clinic \
            scenarios (clinic-day, clinic-week) interrogate pump after pump; --truth writes what \
            each pump did as JSON, after each visit and when the simulator stops.
            """)

    @Option(help: ArgumentHelp("A built-in scenario name (see --list) or a JSON scenario file.", valueName: "name"))
    var scenario: String = "normal"

    @Option(help: "Pump seconds per real second (default 3600; clinic scenarios: their own, 600).")
    var accel: Double?

    @Option(help: ArgumentHelp("Play the whole scenario in about this many real seconds (sets --accel).", valueName: "seconds"))
    var playIn: Double?

    @Option(help: ArgumentHelp("Keep a symbolic link to the pty here.", valueName: "path"))
    var link: String?

    @Option(help: "Seed for the noise generator.")
    var seed: UInt64 = 42

    @Option(help: ArgumentHelp("Real milliseconds between telemetry rounds.", valueName: "ms"))
    var intervalMs: Int = 200

    @Option(help: ArgumentHelp("Write the ground truth (what each pump did) as JSON here.", valueName: "file"))
    var truth: String?

    @Option(help: ArgumentHelp("The programmer serial it announces (default PGM-SIM-0001).", valueName: "serial"))
    var programmerSerial: String?

    @Option(help: ArgumentHelp("Append a line per alarm issued (`issued ID CODE`) and per ACK received (`ack ID stored|rejected`) to this file, flushed at once: what a test compares with the bridge's journal.", valueName: "path"))
    var alarmLog: String?

    @Flag(help: "Exit when the scenario's duration has passed.")
    var exitAtEnd = false

    @Flag(help: "List the built-in scenarios and exit.")
    var list = false

    func validate() throws {
        guard (accel ?? 1) > 0 else { throw ValidationError("--accel must be positive") }
        guard intervalMs >= 10 else { throw ValidationError("--interval-ms must be at least 10") }
        if let programmerSerial {
            guard !programmerSerial.isEmpty, programmerSerial.utf8.count <= 16, programmerSerial.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
                throw ValidationError("--programmer-serial must be 1 to 16 printable ASCII characters")
            }
        }
    }

    func run() throws {
        if list {
            for s in Scenario.builtIn { print(s.name.padding(toLength: 16, withPad: " ", startingAt: 0) + s.description) }
            for s in ClinicScenario.builtIn { print(s.name.padding(toLength: 16, withPad: " ", startingAt: 0) + s.description) }
            return
        }
        if let clinic = ClinicScenario.named(scenario) {
            return try runClinic(clinic)
        }
        if (scenario.hasSuffix(".json") || scenario.contains("/")) && ClinicScenario.isClinicFile(path: scenario) {
            let clinic: ClinicScenario
            do {
                clinic = try ClinicScenario.load(path: scenario)
            } catch {
                throw ValidationError("cannot load the clinic scenario file \(scenario): \(error)")
            }
            return try runClinic(clinic)
        }
        let chosen: Scenario
        if let builtIn = Scenario.named(scenario) {
            chosen = builtIn
        } else if scenario.hasSuffix(".json") || scenario.contains("/") {
            do {
                chosen = try Scenario.load(path: scenario)
            } catch {
                throw ValidationError("cannot load the scenario file \(scenario): \(error)")
            }
        } else {
            // Not the generic usage line: the person needs the names, not the options.
            printError("simulate: unknown scenario '\(scenario)'; these exist: "
                       + (Scenario.builtIn.map(\.name) + ClinicScenario.builtIn.map(\.name)).joined(separator: ", ")
                       + " (or give a JSON scenario file: a path ending in .json)")
            throw ExitCode.validationFailure
        }
        var options = self.options
        options.acceleration = playIn.map { chosen.durationDays * 86_400 / max($0, 0.1) } ?? accel ?? 3600
        let runner: SimulationRunner
        do {
            runner = try SimulationRunner(scenario: chosen, options: options)
        } catch {
            printError("simulate: \(error)")
            throw ExitCode(1)
        }
        if let alarmLog {
            let fd = open(alarmLog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                printError("simulate: cannot open --alarm-log \(alarmLog): \(String(cString: strerror(errno)))")
                throw ExitCode(1)
            }
            // One write(2) per line on an O_APPEND descriptor: a reader never sees half a line.
            let append: @Sendable (String) -> Void = { line in
                let bytes = Array((line + "\n").utf8)
                _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            }
            runner.endpoint.onAlarmSent = { alarm in append("issued \(alarm.alarmID) \(alarm.code.rawValue)") }
            runner.endpoint.onAck = { ack in
                guard ack.ackedType == .alarm else { return }
                append("ack \(ack.alarmID) \(ack.status == .stored ? "stored" : "rejected")")
            }
        }
        let sources = onTerminationSignals { runner.stop() }
        defer { sources.forEach { $0.cancel() } }
        try writeStdout(Array((runner.slavePath + "\n").utf8))
        printError("simulate: scenario \(chosen.name) (\(chosen.description)) on \(link ?? runner.slavePath), \(options.acceleration)× pump time; Ctrl-C to stop")
        do {
            try runner.run()
        } catch {
            printError("simulate: \(error)")
            throw ExitCode(1)
        }
    }

    /// The options every scenario shares.
    private var options: SimulationRunner.Options {
        var options = SimulationRunner.Options()
        options.link = link
        options.seed = seed
        options.telemetryInterval = .milliseconds(intervalMs)
        options.stopAtEnd = exitAtEnd
        options.truthPath = truth
        if let programmerSerial { options.programmer.programmerSerial = programmerSerial }
        return options
    }

    /// Plays a clinic scenario: its visits in real time at --accel (or --play-in for the visits
    /// together), the gaps between them skipped.
    private func runClinic(_ clinic: ClinicScenario) throws {
        var options = self.options
        options.acceleration = playIn.map { clinic.visitSeconds / max($0, 0.1) } ?? accel ?? clinic.defaultAcceleration
        let runner: ClinicRunner
        do {
            runner = try ClinicRunner(scenario: clinic, options: options)
        } catch {
            printError("simulate: \(error)")
            throw ExitCode(1)
        }
        let sources = onTerminationSignals { runner.stop() }
        defer { sources.forEach { $0.cancel() } }
        try writeStdout(Array((runner.slavePath + "\n").utf8))
        printError("simulate: scenario \(clinic.name) (\(clinic.description)) on \(link ?? runner.slavePath), "
            + "\(clinic.visits.count) visits, \(options.acceleration)× clinic time; Ctrl-C to stop")
        do {
            try runner.run()
        } catch {
            printError("simulate: \(error)")
            throw ExitCode(1)
        }
    }
}
