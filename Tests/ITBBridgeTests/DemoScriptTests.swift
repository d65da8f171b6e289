import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// scripts/demo.sh, run as a new user runs it, with `swift` replaced by a stand-in that reports the
// binaries this test run already built (so the test builds nothing and stays fast).
@Suite("scripts/demo.sh")
struct DemoScriptTests {
    /// A directory with a `swift` that prints the bin path of this build for `--show-bin-path`,
    /// and for `build` writes a few lines of compiler-like output (`fail` makes it fail).
    static func fakeSwift(in directory: String, buildFails: Bool = false) throws -> String {
        let binPath = try DaemonProcess.executable.deletingLastPathComponent().path
        let bin = directory + "/fake-bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        let script = """
            #!/usr/bin/env bash
            case "$*" in
              *--show-bin-path*) echo "\(binPath)" ;;
              build*)
                for i in $(seq 1 2000); do echo "[$i/2000] Compiling Something File$i.swift"; done
                \(buildFails ? "echo 'Sources/X.swift:1:1: error: cannot find thing in scope'; exit 1" : "exit 0")
                ;;
            esac
            """
        try script.write(toFile: bin + "/swift", atomically: true, encoding: .utf8)
        chmod(bin + "/swift", 0o755)
        return bin
    }

    static func runDemo(_ directory: String, fakeBin: String, environment: [String: String]) throws -> (status: Int32, output: String) {
        var env = ["DEMO_DIR": directory + "/demo", "PATH": fakeBin + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")]
        env.merge(environment) { $1 }
        return try runCommand("/bin/bash", [repositoryRoot + "/scripts/demo.sh"], environment: env)
    }

    @Test("a simulator that fails is reported with its error and a non-zero exit, not as a running demo")
    func simulatorFailureIsShown() async throws {
        let directory = try ScratchDirectory("demo-fail")
        defer { directory.remove() }
        let fake = try Self.fakeSwift(in: directory.path)
        let result = try await blocking { try Self.runDemo(directory.path, fakeBin: fake, environment: ["SCENARIO": "nope", "DEMO_SECONDS": "2"]) }
        #expect(result.status == 1, "\(result.output)")
        #expect(result.output.contains("the simulated programmer did not start"), "\(result.output)")
        #expect(result.output.contains("unknown scenario 'nope'"), "\(result.output)")
        #expect(!result.output.contains("itb-bridged is running"), "\(result.output)")
    }

    @Test("each run starts with a fresh journal and says so; the build shows progress on one line, not the compiler's output; the default clinic day ends with the refill worklist of its pumps")
    func freshStateAndQuietBuild() async throws {
        let directory = try ScratchDirectory("demo-fresh")
        defer { directory.remove() }
        let fake = try Self.fakeSwift(in: directory.path)
        let stale = directory.path + "/demo/state/left-over-from-last-run"
        try FileManager.default.createDirectory(atPath: directory.path + "/demo/state", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: stale, contents: Data("old".utf8))
        let result = try await blocking { try Self.runDemo(directory.path, fakeBin: fake, environment: ["DEMO_SECONDS": "3"]) }
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("starting with a fresh journal"), "\(result.output)")
        #expect(!FileManager.default.fileExists(atPath: stale), "the previous run's state is gone")
        #expect(result.output.contains("itb-bridged is running"), "\(result.output)")
        // The main job is the clinic day: pump after pump, then the refill worklist.
        #expect(result.output.contains("the clinic day is over; the refill worklist"), "\(result.output)")
        let served = result.output.split(separator: "\n").first { $0.contains("serves the clinic day's refill worklist (") }
            .flatMap { line in line.split(separator: "(").last?.split(separator: " ").first.flatMap { Int($0) } }
        #expect((served ?? 0) >= 10, "the worklist lists the day's pumps: \(result.output)")
        #expect(result.output.split(separator: "\n").count < 60, "a screenful, not the compiler's 2,000 lines:\n\(result.output)")
        #expect(!result.output.contains("Compiling Something File1999"), "\(result.output)")
        #expect(try String(contentsOfFile: directory.path + "/demo/build.log", encoding: .utf8).contains("Compiling Something File1999"))
    }

    @Test("a failed build shows its errors and where the whole log is")
    func failedBuildShowsErrors() async throws {
        let directory = try ScratchDirectory("demo-build-fail")
        defer { directory.remove() }
        let fake = try Self.fakeSwift(in: directory.path, buildFails: true)
        let result = try await blocking { try Self.runDemo(directory.path, fakeBin: fake, environment: [:]) }
        #expect(result.status == 1, "\(result.output)")
        #expect(result.output.contains("error: cannot find thing in scope"), "\(result.output)")
        #expect(result.output.contains(directory.path + "/demo/build.log"), "\(result.output)")
    }
}
