import CITBShims
public import Hummingbird
public import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The request context of the API: Hummingbird's core storage plus the connection's channel, so
/// a handler can ask the kernel who the peer is (`SO_PEERCRED`).
public struct BridgeRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The client connection.
    public let channel: any Channel
    /// Hummingbird's default bound for decoding request bodies; the routes that read a body bound
    /// it by the configured `max_request_body_bytes` (413 above it).
    public let maxUploadSize: Int

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
        maxUploadSize = 16 << 10
    }

    /// The peer's user id, from the kernel (`SO_PEERCRED` on the Unix socket); nil when the
    /// transport has no credentials.
    public func peerUID() async -> UInt32? {
        guard let provider = channel as? any SocketOptionProvider else { return nil }
        do {
            let credentials: itb_peer_credentials = try await provider.unsafeGetSocketOption(
                level: .socket, name: NIOBSDSocket.Option(rawValue: SO_PEERCRED)
            ).get()
            return credentials.uid
        } catch {
            return nil
        }
    }
}
