import Foundation
import ITBClient
import ITBSimulator
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("systemd: the API socket's mode and group are final from the first moment")
struct SystemdSocketRaceTests {
    /// What the watcher saw the first instant the socket path existed.
    struct FirstSight: Sendable {
        var found = false
        var isSocket = false
        var mode: UInt32 = 0
        var group: UInt32 = 0
        var connected = false
        var connectError = ""
        var polls = 0
    }

    /// A group to give the socket: gid 1 when we may (root, and the group exists), else our own.
    static var socketGroup: UInt32 {
        if geteuid() == 0, getgrgid(1) != nil { return 1 }
        return getegid()
    }

    @Test("a client polling the path from before start-up never sees the socket with another mode or group, and can connect at once",
          arguments: [1, 2, 3])
    func raceConnectsAgainstStartUp(round: Int) async throws {
        let directory = try ScratchDirectory("socket-race-\(round)")
        defer { directory.remove() }
        let socketPath = directory.path + "/api.sock"
        let group = Self.socketGroup
        let stop = StopFlag()
        let (started, startedContinuation) = AsyncStream.makeStream(of: Void.self)
        // The watcher: a tight loop of lstat() on the public path, from before the daemon starts.
        async let sight = blocking { () -> FirstSight in
            var sight = FirstSight()
            startedContinuation.yield()
            var st = stat()
            while !stop.isStopped {
                sight.polls += 1
                guard lstat(socketPath, &st) == 0 else { continue }
                sight.found = true
                sight.isSocket = (st.st_mode & S_IFMT) == S_IFSOCK
                sight.mode = UInt32(st.st_mode & 0o777)
                sight.group = st.st_gid
                (sight.connected, sight.connectError) = Self.connect(to: socketPath)
                break
            }
            return sight
        }
        var iterator = started.makeAsyncIterator()
        _ = await iterator.next()

        let daemon = try DaemonProcess(
            arguments: ["--no-discovery", "--socket", socketPath, "--socket-mode", "0640", "--socket-group", String(group),
                        "--state-dir", directory.path + "/state", "--log-level", "warning"],
            socketPath: socketPath, log: directory.path + "/daemon.log")
        defer { daemon.terminate() }
        let stopper = Task {
            try? await Task.sleep(for: .seconds(30))
            stop.stop()
        }
        let first = try await sight
        stopper.cancel()
        #expect(first.found, "the socket appeared within 30 s (\(first.polls) polls)")
        #expect(first.isSocket)
        #expect(first.mode == 0o640, "mode at first sight: \(String(first.mode, radix: 8)), wanted 640")
        #expect(first.group == group, "group at first sight: \(first.group), wanted \(group)")
        #expect(first.connected, "a connect at first sight succeeds: \(first.connectError)")
        try await daemon.waitReady()
    }

    /// A plain connect(), as the first client would do.
    static func connect(to path: String) -> (Bool, String) {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return (false, "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return result == 0 ? (true, "") : (false, String(cString: strerror(errno)))
    }
}
