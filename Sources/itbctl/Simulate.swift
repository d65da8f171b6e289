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
            Prints the pty path and keeps a symbolic link to it at --link (re-pointed when the
            simulated programmer is re-plugged); start itb-bridged with --device on the link.
            Speaks the device side of protocol v1: heartbeats, boot id, alarm retransmission until
            acknowledged. Pump time runs --accel times faster than real time (86400: a day a second).
            """)

    @Option(help: ArgumentHelp("A built-in scenario name (see --list) or a JSON scenario file.", valueName: "name"))
    var scenario: String = "normal"

    @Option(help: "Pump seconds per real second.")
    var accel: Double = 3600

    @Option(help: ArgumentHelp("Play the whole scenario in about this many real seconds (sets --accel).", valueName: "seconds"))
    var playIn: Double?

    @Option(help: ArgumentHelp("Keep a symbolic link to the pty here.", valueName: "path"))
    var link: String?

    @Option(help: "Seed for the noise generator.")
    var seed: UInt64 = 42

    @Option(help: ArgumentHelp("Real milliseconds between telemetry rounds.", valueName: "ms"))
    var intervalMs: Int = 200

    @Flag(help: "Exit when the scenario's duration has passed.")
    var exitAtEnd = false

    @Flag(help: "List the built-in scenarios and exit.")
    var list = false

    func validate() throws {
        guard accel > 0 else { throw ValidationError("--accel must be positive") }
        guard intervalMs >= 10 else { throw ValidationError("--interval-ms must be at least 10") }
    }

    func run() throws {
        if list {
            for s in Scenario.builtIn { print(s.name.padding(toLength: 16, withPad: " ", startingAt: 0) + s.description) }
            return
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
            throw ValidationError("no scenario named \(scenario); `itbctl simulate --list` shows them")
        }
        var options = SimulationRunner.Options()
        options.acceleration = playIn.map { chosen.durationDays * 86_400 / max($0, 0.1) } ?? accel
        options.link = link
        options.seed = seed
        options.telemetryInterval = .milliseconds(intervalMs)
        options.stopAtEnd = exitAtEnd
        let runner: SimulationRunner
        do {
            runner = try SimulationRunner(scenario: chosen, options: options)
        } catch {
            printError("simulate: \(error)")
            throw ExitCode(1)
        }
        let sources = onTerminationSignals { runner.stop() }
        defer { sources.forEach { $0.cancel() } }
        try writeStdout(Array((runner.slavePath + "\n").utf8))
        printError("simulate: scenario \(chosen.name) (\(chosen.description)) on \(link ?? runner.slavePath), \(accel)× pump time; Ctrl-C to stop")
        do {
            try runner.run()
        } catch {
            printError("simulate: \(error)")
            throw ExitCode(1)
        }
    }
}
