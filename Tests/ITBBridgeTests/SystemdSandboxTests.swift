import Foundation
import ITBClient
import ITBSimulator
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs a command with the kernel's "memory-deny-write-execute" in force (`PR_SET_MDWE` with
/// `PR_MDWE_REFUSE_EXEC_GAIN`, Linux 6.3 and later): no mapping may be writable and executable,
/// or become executable later, which is what the unit's `MemoryDenyWriteExecute=yes` enforces
/// (with seccomp in systemd 252). The setting survives `execve`, so the daemon runs under it.
/// Exit 77: the kernel has no PR_SET_MDWE; 78: it did not stick.
private let mdweLauncher = """
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        sys.exit(77)
    if libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) != PR_MDWE_REFUSE_EXEC_GAIN:
        sys.exit(78)
    os.execv(sys.argv[1], sys.argv[1:])
    """

/// Whether this kernel has PR_SET_MDWE (asked without changing anything: PR_GET_MDWE).
private let kernelHasMDWE: Bool = {
    guard let python = which("python3") else { return false }
    let check = "import ctypes, sys; sys.exit(0 if ctypes.CDLL(None).prctl(66, 0, 0, 0, 0) >= 0 else 1)"
    return (try? runCommand(python, ["-c", check]).status) == 0
}()

@Suite("systemd: the sandbox holds for the daemon")
struct SystemdSandboxTests {
    @Test("MemoryDenyWriteExecute holds: the daemon starts, serves the API and follows a programmer with W^X enforced by the kernel",
          .enabled(if: kernelHasMDWE, "needs python3 and a kernel with PR_SET_MDWE (Linux 6.3 or later)"))
    func memoryDenyWriteExecute() async throws {
        let directory = try ScratchDirectory("mdwe")
        defer { directory.remove() }
        let launcher = directory.path + "/mdwe.py"
        try mdweLauncher.write(toFile: launcher, atomically: true, encoding: .utf8)
        let python = try #require(which("python3"))
        let socketPath = directory.path + "/api.sock"
        let programmer = try ProgrammerEndpoint(info: testProgrammer, initialRetransmitDelay: .milliseconds(200),
                                                maximumRetransmitDelay: .seconds(1))
        defer { programmer.pty.close() }
        let daemon = try DaemonProcess(
            arguments: ["--no-discovery", "--device", programmer.pty.slavePath, "--socket", socketPath,
                        "--state-dir", directory.path + "/state", "--log-level", "warning"],
            socketPath: socketPath, log: directory.path + "/daemon.log", wrapper: [python, launcher])
        defer { daemon.terminate() }
        do {
            try await daemon.waitReady()
        } catch {
            let log = (try? String(contentsOfFile: directory.path + "/daemon.log", encoding: .utf8)) ?? ""
            Issue.record("the daemon did not become ready under MDWE (exit \(daemon.process.isRunning ? "none" : "\(daemon.process.terminationStatus)")): \(log)")
            return
        }
        // Real work under W^X: a programmer identifies itself, the journal is written, JSON served.
        let stop = StopFlag()
        async let servicing: Void = blocking {
            while !stop.isStopped { _ = try? programmer.service(timeout: .milliseconds(20)) }
        }
        let client = UnixHTTPClient(socketPath: socketPath, timeout: .seconds(5))
        let connected = try await blocking { () -> Bool in
            let deadline = ContinuousClock.now + .seconds(15)
            while ContinuousClock.now < deadline {
                if let response = try? client.get("/v1/devices/\(testProgrammer.programmerSerial)"), response.status == 200,
                   let object = try? JSONObject.parse(response.body), object["link_state"] as? String == "connected" {
                    return true
                }
                Thread.sleep(forTimeInterval: 0.05)
            }
            return false
        }
        stop.stop()
        try await servicing
        #expect(connected, "the programmer is followed with W^X in force")
        #expect(daemon.process.isRunning, "and the daemon is still running")
    }
}
