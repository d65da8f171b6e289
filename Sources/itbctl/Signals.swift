import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Runs `handler` (on a background queue) when SIGINT or SIGTERM arrives, instead of dying, so a
/// long-running subcommand can stop cleanly. Keep the returned sources alive; cancel them after.
func onTerminationSignals(_ handler: @escaping @Sendable () -> Void) -> [any DispatchSourceSignal] {
    [SIGINT, SIGTERM].map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler(handler: handler)
        source.resume()
        return source
    }
}
