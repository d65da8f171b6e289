// Global options: the client options (`--socket PATH`, `--json`) may be typed anywhere on the
// command line, also before the subcommand (`itbctl --socket X status`), as a person types them.
// swift-argument-parser only accepts a subcommand's options after its name, so they are moved
// there before parsing: a rule on the argument list, tested without running anything.

/// Moves the global options a user typed before the subcommand to just after its name.
enum GlobalOptions {
    /// Options that take a value (`--socket PATH` or `--socket=PATH`).
    static let valued: Set<String> = ["--socket"]
    /// Flags.
    static let flags: Set<String> = ["--json"]

    /// `arguments` (without the program name) with the global options found before the first
    /// subcommand name moved to right after it; unchanged when there is no subcommand or no
    /// global option before it. A `--socket` without a value is left where it is, so the parser
    /// reports it.
    static func reordered(_ arguments: [String], subcommands: Set<String>) -> [String] {
        var moved: [String] = []
        var kept: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if subcommands.contains(argument) {
                guard !moved.isEmpty else { return arguments }
                return kept + [argument] + moved + arguments[(index + 1)...]
            }
            if argument == "--" { return arguments }
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            if valued.contains(name) {
                if argument.contains("=") {
                    moved.append(argument)
                } else if index + 1 < arguments.count {
                    moved += [argument, arguments[index + 1]]
                    index += 1
                } else {
                    kept.append(argument)
                }
            } else if flags.contains(argument) {
                moved.append(argument)
            } else {
                kept.append(argument)
            }
            index += 1
        }
        return arguments
    }
}
