import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// `POST /v1/backup`: a consistent copy of the journal, made while the daemon runs, sent as the
/// response body (`application/vnd.sqlite3`).
///
/// Why through the API: the journal's directory is 0700 and owned by the daemon's user, so no
/// client can read the database itself, and a file copy of a WAL database can be inconsistent.
/// The daemon makes the copy with SQLite's online backup (``Journal/backup(to:)``) into a private
/// file in the state directory (the only place the unit lets it write), opens it, removes its name
/// at once, and streams it: the client (`itbctl backup PATH`) writes it where it wants, as its own
/// user. Nothing of it stays on the daemon's disk.
enum JournalBackup {
    /// The media type of an SQLite database file.
    static let contentType = "application/vnd.sqlite3"

    static func response(core: BridgeQueries, uid: UInt32) async throws -> Response {
        let directory = core.configuration.stateDirectory
        let temporary = (directory.hasSuffix("/") ? directory : directory + "/") + ".backup-\(UUID().uuidString).sqlite"
        do {
            try await core.backupJournal(to: temporary)
        } catch {
            throw APIError(.serviceUnavailable, "journal_unavailable", "\(error)")
        }
        let fd = open(temporary, O_RDONLY | O_CLOEXEC)
        unlink(temporary)
        guard fd >= 0 else {
            throw APIError(.internalServerError, "internal_error", "the backup copy vanished before it could be sent")
        }
        var info = stat()
        let size = fstat(fd, &info) == 0 ? Int(info.st_size) : nil
        Logger(label: "itb-bridged.api").notice("journal backup sent", metadata: ["uid": "\(uid)", "bytes": "\(size ?? -1)"])
        var headers: HTTPFields = [.contentType: contentType, .cacheControl: "no-store"]
        if let size { headers[.contentLength] = String(size) }
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            defer { close(fd) }
            var chunk = [UInt8](repeating: 0, count: 256 << 10)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                try await writer.write(ByteBuffer(bytes: chunk[0..<n]))
            }
            try await writer.finish(nil)
        })
    }
}
