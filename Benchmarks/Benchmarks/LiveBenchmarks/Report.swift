// Output: one machine-readable `FIGURE perf.<section>: key=value …` line per section (the format
// of `ProofScale.figure` in Tests/ITBTestSupport/TestSupport.swift, which scripts/proof.sh
// collects), readable lines around it, and daemon problems gathered for the summary.
import Foundation

enum Report {
    /// `quick` (`--quick`), `full` (the defaults) or `custom` (sizes given by flags).
    static var scale = "full"
    /// Problems found in the daemon (crash, lost events, cut-off subscribers, HTTP errors, …).
    private(set) static var problems: [String] = []
    /// Notes the reader must see (a daemon started under prlimit, a section skipped, …).
    private(set) static var notes: [String] = []

    /// Prints `FIGURE perf.<section>: scale=… key=value …`; fields keep the order given.
    static func figure(_ section: String, _ fields: KeyValuePairs<String, any CustomStringConvertible>) {
        let text = fields.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        print("FIGURE perf.\(section): scale=\(scale) \(text)")
        fflush(stdout)
    }

    /// A daemon problem: printed now and again in the summary; the bench exits with status 1.
    static func problem(_ text: String) {
        problems.append(text)
        print("PROBLEM: \(text)")
        fflush(stdout)
    }

    /// Something that changes how a figure was measured: printed now and in the summary.
    static func note(_ text: String) {
        notes.append(text)
        print("NOTE: \(text)")
        fflush(stdout)
    }

    /// A readable line.
    static func line(_ text: String) {
        print(text)
        fflush(stdout)
    }
}
