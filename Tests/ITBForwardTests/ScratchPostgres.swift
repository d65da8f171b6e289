// A real PostgreSQL for itb-forward's tests: scripts/pg-scratch.sh (the fleet test's own) starts a
// throw-away cluster on a Unix socket in a scratch directory.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import ITBForward
import ITBTestSupport
import Logging
import PostgresNIO

/// A PostgreSQL cluster of the test's own, reached by its Unix socket as `postgres`.
///
/// `Sendable` for real: immutable; the cluster is driven by the script, one call at a time.
final class ScratchPostgres: Sendable {
    let directory: ScratchDirectory
    let socketDirectory: String

    /// The repository's root (this file is Tests/ITBForwardTests/ScratchPostgres.swift).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// Whether Debian's PostgreSQL is installed (scripts/test.sh installs it).
    static var isInstalled: Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).contains {
            FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/\($0)/bin/initdb")
        }
    }

    /// Starts a new cluster.
    init(name: String) async throws {
        directory = try ScratchDirectory("pg-\(name)")
        socketDirectory = directory.path + "/socket"
        try await script("start")
    }

    /// The URL itb-forward is given.
    var url: String { "postgresql://postgres@/postgres?host=\(socketDirectory)" }

    /// The location of ``url``.
    var location: PostgresLocation { get throws { try PostgresLocation(url: url) } }

    /// Crashes the server (immediate shutdown) and starts it again.
    func restart() async throws { try await script("restart") }

    /// Crashes the server and leaves it down.
    func crash() async throws { try await script("crash") }

    /// Starts the server again.
    func start() async throws { try await script("start") }

    /// Stops the server and removes its directory.
    func shutdown() async {
        try? await script("stop")
        directory.remove()
    }

    /// A connection of the test's own, to check what was written.
    func connect() async throws -> PostgresConnection {
        try await PostgresConnection.connect(
            configuration: .init(unixSocketPath: socketDirectory + "/.s.PGSQL.5432", username: "postgres", password: nil, database: "postgres"),
            id: 99, logger: Logger(label: "test-postgres"))
    }

    /// A writer for `bridgeID`, connected.
    func writer(bridgeID: String) async throws -> PostgresWriter {
        try await PostgresWriter.connect(try location, tls: .disable, caFile: nil, password: nil, bridgeID: bridgeID,
                                         logger: Logger(label: "test-writer"))
    }

    private func script(_ command: String) async throws {
        let path = directory.path
        let output = path + ".\(command).out"
        let line = "/bin/bash '\(Self.root)/scripts/pg-scratch.sh' \(command) '\(path)' >'\(output)' 2>&1"
        // system(3), not Foundation's Process: Process.waitUntilExit never saw this script end
        // (left a zombie) once the server it starts was running, in the test process on Linux.
        let status = try await blocking { () -> Int32 in
            let raw = system(line)
            return raw == -1 ? -1 : (raw >> 8) & 0xFF
        }
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: output)
        guard status == 0 else { throw HarnessError("pg-scratch.sh \(command) failed (\(status)): \(text)") }
    }
}

extension PostgresConnection {
    /// The first column of the first row of `sql`, as `T`.
    func scalar<T: PostgresDecodable & Sendable>(_ sql: String, as type: T.Type = T.self) async throws -> T? {
        for try await value in try await query(PostgresQuery(unsafeSQL: sql), logger: Logger(label: "test-postgres")).decode(T.self) {
            return value
        }
        return nil
    }
}

/// Runs `body` with a cluster of its own, stopped and removed afterwards whatever happens.
func withScratchPostgres<T: Sendable>(_ name: String, _ body: (ScratchPostgres) async throws -> T) async throws -> T {
    let postgres = try await ScratchPostgres(name: name)
    do {
        let result = try await body(postgres)
        await postgres.shutdown()
        return result
    } catch {
        await postgres.shutdown()
        throw error
    }
}

extension ScratchPostgres {
    /// Runs `body` with a connection of the test's own, closed afterwards whatever happens
    /// (PostgresNIO traps on a connection dropped unclosed).
    func withConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await connect()
        do {
            let result = try await body(connection)
            try? await connection.close()
            return result
        } catch {
            try? await connection.close()
            // PSQLError's description hides the server's message; a failing test must show it.
            if let error = error as? PSQLError { throw HarnessError(String(reflecting: error)) }
            throw error
        }
    }

    /// Runs `body` with a writer for `bridgeID`, closed afterwards whatever happens.
    func withWriter<T: Sendable>(bridgeID: String, _ body: (PostgresWriter) async throws -> T) async throws -> T {
        let writer = try await writer(bridgeID: bridgeID)
        do {
            let result = try await body(writer)
            await writer.close()
            return result
        } catch {
            await writer.close()
            throw error
        }
    }
}
