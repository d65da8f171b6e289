import Foundation
import ITBClient
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Who may use the API, against the daemon as a real process started with `--socket-group` and
/// `--socket-mode 0660`: a user outside the group is refused by the kernel (EACCES at connect),
/// a user in the group is served. `EndToEndTests` checks the mode and group of the socket file,
/// `SystemdSocketRaceTests` that they are right from the first instant, `ClientCommandTests`
/// itbctl's exit 4 on a socket of mode 0 made by the test; none of them connects to the daemon
/// as another user.
@Suite("Faults: socket permissions")
struct PermissionTests {
    /// A group for the socket that `nobody` is not in: `daemon` (1) on Debian, by number.
    static let socketGroup: gid_t = 1

    /// `setpriv`, to run a command as `nobody` (root ignores socket file modes).
    static let setpriv: String? = ["/usr/bin/setpriv", "/bin/setpriv"].first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test("a user outside the socket's group cannot connect (EACCES, itbctl exit 4), a user in the group is served",
          .enabled(if: getuid() == 0 && setpriv != nil, "needs root and setpriv to run clients as nobody (root ignores socket modes)"))
    func socketGroupDecidesWhoConnects() async throws {
        let started = ContinuousClock.now
        let directory = try ScratchDirectory("perm")
        defer { directory.remove() }
        let socketPath = directory.path + "/api.sock"
        let daemon = try DaemonProcess(arguments: ["--no-discovery", "--socket", socketPath, "--socket-group", String(Self.socketGroup),
                                                   "--socket-mode", "0660", "--state-dir", directory.path + "/state", "--log-level", "warning"],
                                       socketPath: socketPath, log: directory.path + "/daemon.log")
        defer { daemon.terminate() }
        try await daemon.waitReady()
        var st = stat()
        #expect(stat(socketPath, &st) == 0 && st.st_mode & 0o777 == 0o660 && st.st_gid == Self.socketGroup,
                "socket mode \(String(st.st_mode & 0o777, radix: 8)), group \(st.st_gid)")

        let setpriv = try #require(Self.setpriv)
        let nobody = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
        let member = [setpriv, "--reuid=nobody", "--regid=nogroup", "--groups=\(Self.socketGroup)", "--"]
        let itbctl = try TestExecutables.url(of: TestExecutables.itbctl).path
        let python = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") ? "/usr/bin/python3" : (which("python3") ?? "python3")
        // The errno of a bare connect(), as the process sees it.
        let probe = "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect(sys.argv[1]); print('connected')\nexcept OSError as e:\n    print('errno', e.errno)\n"

        func run(_ prefix: [String], _ command: [String]) async throws -> (status: Int32, output: String) {
            try await blocking { try runCommand(prefix[0], Array(prefix.dropFirst()) + command, currentDirectory: "/") }
        }

        // Outside the group: the kernel refuses the connect.
        let deniedConnect = try await run(nobody, [python, "-c", probe, socketPath])
        #expect(deniedConnect.output.trimmingCharacters(in: .whitespacesAndNewlines) == "errno \(EACCES)",
                "connect as nobody without the group: \(deniedConnect.output)")
        let deniedCommand = try await run(nobody, [itbctl, "devices", "--socket", socketPath])
        #expect(deniedCommand.status == 4, "itbctl devices as nobody: exit \(deniedCommand.status): \(deniedCommand.output)")
        #expect(deniedCommand.output.contains("permission denied on \(socketPath)"), "\(deniedCommand.output)")

        // In the group (a supplementary group, as `usermod -aG` gives): served.
        let memberConnect = try await run(member, [python, "-c", probe, socketPath])
        #expect(memberConnect.output.trimmingCharacters(in: .whitespacesAndNewlines) == "connected",
                "connect as nobody in group \(Self.socketGroup): \(memberConnect.output)")
        let memberCommand = try await run(member, [itbctl, "devices", "--json", "--socket", socketPath])
        #expect(memberCommand.status == 0, "itbctl devices --json in the group: exit \(memberCommand.status): \(memberCommand.output)")
        #expect(memberCommand.output.contains("\"devices\""), "\(memberCommand.output)")
        #expect(daemon.process.isRunning)

        ProofScale.figure("fault.permissions", [
            "socket_mode": "0660", "socket_group": Self.socketGroup,
            "outside_group_connect": deniedConnect.output.contains("errno \(EACCES)") ? "EACCES" : deniedConnect.output.trimmingCharacters(in: .whitespacesAndNewlines),
            "outside_group_itbctl_exit": deniedCommand.status,
            "in_group_connect": memberConnect.output.contains("connected") ? "ok" : "refused",
            "in_group_itbctl_exit": memberCommand.status,
            "seconds": oneDecimal(milliseconds(ContinuousClock.now - started) / 1000),
        ])
    }
}
