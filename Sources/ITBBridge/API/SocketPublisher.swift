import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Puts the API socket in place with its final mode and group from the first moment a client
/// can reach it: the server binds a temporary name in the same directory, the mode and group are
/// set on that name, and `rename()` moves it onto the public path in one atomic step.
public struct SocketPublisher: Sendable {
    /// The public path clients connect to.
    public let path: String
    /// The temporary name the server binds.
    public let temporaryPath: String
    /// File mode of the socket.
    public let mode: UInt32
    /// Group id to give it, if any.
    public let groupID: UInt32?

    /// Problems preparing or publishing the socket.
    public enum Failure: Error, CustomStringConvertible, Sendable {
        case alreadyServing(String)
        case unknownGroup(String)
        case directory(String, String)
        case publish(String, String)

        public var description: String {
            switch self {
            case .alreadyServing(let path): "another itb-bridged is already serving \(path); stop it first"
            case .unknownGroup(let group): "socket group \(group) does not exist"
            case .directory(let path, let why): "cannot use the socket directory \(path): \(why)"
            case .publish(let path, let why): "cannot publish the API socket at \(path): \(why)"
            }
        }
    }

    /// Resolves the group and checks that no live daemon owns `path`; removes a stale temporary.
    public init(path: String, mode: UInt32, group: String?) throws(Failure) {
        self.path = path
        self.mode = mode
        let directory = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        temporaryPath = (directory.isEmpty ? "." : directory) + "/.\(name).\(getpid()).tmp"
        if let group {
            if let number = UInt32(group) {
                groupID = number
            } else if let entry = getgrnam(group) {
                groupID = entry.pointee.gr_gid
            } else {
                throw .unknownGroup(group)
            }
        } else {
            groupID = nil
        }
        do {
            try FileManager.default.createDirectory(atPath: directory.isEmpty ? "." : directory, withIntermediateDirectories: true)
        } catch {
            throw .directory(directory, error.localizedDescription)
        }
        if Self.somebodyListens(at: path) { throw .alreadyServing(path) }
        unlink(temporaryPath)
    }

    /// Called once the server listens on ``temporaryPath``: set mode and group, then rename.
    public func publish() throws(Failure) {
        if chmod(temporaryPath, mode_t(mode)) != 0 {
            throw .publish(path, "chmod: \(String(cString: strerror(errno)))")
        }
        if let groupID, chown(temporaryPath, uid_t.max, groupID) != 0 {
            throw .publish(path, "chown to group \(groupID): \(String(cString: strerror(errno)))")
        }
        if rename(temporaryPath, path) != 0 {
            throw .publish(path, "rename: \(String(cString: strerror(errno)))")
        }
    }

    /// Removes the public socket file (on shutdown).
    public func remove() {
        unlink(path)
        unlink(temporaryPath)
    }

    /// True when a process accepts connections on the Unix socket at `path`.
    static func somebodyListens(at path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return result == 0
    }
}
