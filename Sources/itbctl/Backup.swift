import ArgumentParser
import ITBClient
#if canImport(Glibc)
import Glibc
#endif

/// `itbctl backup PATH`: a consistent copy of the daemon's journal, made while it runs.
struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy the daemon's journal (the alarm history) to a file, consistently, while it runs.",
        discussion: """
            Asks the running daemon for a copy (POST /v1/backup): it makes one with SQLite's online \
            backup, a single consistent snapshot taken without stopping the storing of alarms, and \
            sends it. The copy is written to PATH as your user, mode 0600 (it holds patients' alarm \
            history); PATH must not exist. Everything committed before the backup began is in it. \
            To restore: stop itb-bridged, put the copy in place of journal.sqlite in its state \
            directory (removing journal.sqlite-wal and journal.sqlite-shm), start it. A plain file \
            copy of a running journal can be inconsistent: use this instead.
            """)

    @OptionGroup var options: ClientOptions

    @Argument(help: ArgumentHelp("Where to write the copy (a new file).", valueName: "path"))
    var path: String

    func run() throws {
        try reportingFailures {
            var info = stat()
            if lstat(path, &info) == 0 {
                throw CommandFailure(exitCode: CommandFailure.failed, message: "\(path) exists; choose a new file name (nothing was written)")
            }
            let reply: (status: Int, body: [UInt8])
            do throws(ClientError) {
                // The daemon answers once the copy is made: allow a large journal its time.
                var client = options.api.client
                client.timeout = .seconds(600)
                let response = try client.request("POST", "/v1/backup")
                reply = (response.status, response.body)
            } catch {
                throw CommandFailure(error)
            }
            guard reply.status == 200 else {
                throw Reply(status: reply.status, text: String(decoding: reply.body, as: UTF8.self)).failure
            }
            guard reply.body.starts(with: Array("SQLite format 3\0".utf8)) else {
                throw CommandFailure(exitCode: CommandFailure.failed, message: "itb-bridged sent something that is not an SQLite database; nothing was written")
            }
            try Self.write(reply.body, to: path)
            printLine("Journal copied to \(path) (\(reply.body.count) bytes, mode 0600).")
        }
    }

    /// Writes `bytes` to a new file at `path` (0600) through a temporary name beside it, so that
    /// PATH never holds half a copy.
    static func write(_ bytes: [UInt8], to path: String) throws(CommandFailure) {
        let temporary = path + ".partial"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw CommandFailure(exitCode: CommandFailure.failed, message: "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                close(fd)
                unlink(temporary)
                throw CommandFailure(exitCode: CommandFailure.failed, message: "cannot write \(temporary): \(reason); nothing was kept")
            }
            written += n
        }
        let synced = fsync(fd) == 0
        close(fd)
        guard synced, link(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw CommandFailure(exitCode: CommandFailure.failed, message: "cannot create \(path): \(reason); nothing was kept")
        }
        unlink(temporary)
    }
}
