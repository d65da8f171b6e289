// A simulated programmer driven by a thread of its own, so that a test can stream status, raise
// alarms and read ACKs while it does something else to the daemon (abuse its API, fill its disk,
// kill it), and the statuses such tests stream.

import Foundation
public import ITBProtocol
public import ITBSimulator
import ITBTestSupport
import Synchronization

/// A ``ProgrammerEndpoint`` serviced by a thread of its own: it answers the bridge (ACKs, host
/// heartbeats, retransmissions), optionally streams `PUMP_STATUS` at a steady rate, and runs what
/// the test hands it with ``perform(_:)`` between two services, so the endpoint is only ever used
/// from that one thread.
public final class ProgrammerDriver: Sendable {
    /// How the status stream is paced and what each status says (`index` counts from 0).
    public struct StatusStream: Sendable {
        /// Time between two statuses.
        public var interval: Duration
        /// The status number `index`.
        public var make: @Sendable (_ index: Int) -> PumpStatus

        /// A stream of `make(0)`, `make(1)`… every `interval`.
        public init(interval: Duration, make: @escaping @Sendable (_ index: Int) -> PumpStatus) {
            self.interval = interval
            self.make = make
        }
    }

    /// The programmer it services.
    public let programmer: ProgrammerEndpoint
    private let actions = Mutex<[@Sendable (ProgrammerEndpoint) -> Void]>([])
    private let stream = Mutex<StatusStream?>(nil)
    private let sentCount = Mutex(0)
    private let lineError = Mutex<String?>(nil)
    private let stopFlag = StopFlag()
    private let finished = DispatchSemaphore(value: 0)

    /// Starts servicing `programmer` (which must already be identified by the bridge, see
    /// ``waitUntilIdentified(_:client:timeout:)``: that services it from the caller's thread).
    public init(_ programmer: ProgrammerEndpoint) {
        self.programmer = programmer
        Thread { [self] in run() }.start()
    }

    /// Statuses sent so far.
    public var statusesSent: Int { sentCount.withLock { $0 } }

    /// The first error the line gave (the bridge closed the pty, …), if any.
    public var error: String? { lineError.withLock { $0 } }

    /// Starts, changes or (nil) stops the status stream.
    public func streamStatus(_ next: StatusStream?) { stream.withLock { $0 = next } }

    /// Runs `body` on the driver's thread, between two services of the line.
    public func perform<T: Sendable>(_ body: @escaping @Sendable (ProgrammerEndpoint) throws -> T) async throws -> T {
        let result: Result<T, any Error> = await withCheckedContinuation { continuation in
            actions.withLock { queue in
                queue.append { programmer in continuation.resume(returning: Result { try body(programmer) }) }
            }
        }
        return try result.get()
    }

    /// Stops the thread (what was handed to ``perform(_:)`` still runs) and waits for it.
    public func stop() async {
        stopFlag.stop()
        let finished = self.finished
        _ = try? await blocking { finished.wait() }
    }

    private func run() {
        var due = ContinuousClock.now
        var index = 0
        while !stopFlag.isStopped {
            runQueuedActions()
            var wait = Duration.milliseconds(20)
            if let current = stream.withLock({ $0 }) {
                let now = ContinuousClock.now
                if now >= due {
                    do {
                        try programmer.send(.pumpStatus(current.make(index)))
                        index += 1
                        sentCount.withLock { $0 += 1 }
                    } catch {
                        note(error)
                    }
                    // Keep the rate; after a stall, start again from now rather than bursting.
                    due = max(due + current.interval, now)
                }
                wait = min(wait, max(.zero, due - ContinuousClock.now))
            }
            do {
                try programmer.service(timeout: wait)
            } catch {
                note(error)
                usleep(20_000)
            }
        }
        runQueuedActions()
        finished.signal()
    }

    private func runQueuedActions() {
        let queued = actions.withLock { queue in
            defer { queue.removeAll() }
            return queue
        }
        for action in queued { action(programmer) }
    }

    private func note(_ error: any Error) {
        lineError.withLock { if $0 == nil { $0 = "\(error)" } }
    }
}

/// A `PUMP_STATUS` that differs from the previous one in `link_quality_pct` and
/// `active_alarm_mask`, so that each one becomes a `status` event (the bridge records a status
/// only when it changed, or once a minute).
public func distinctStatus(_ index: Int, dailyDoseUgX10: UInt32 = 4000) -> PumpStatus {
    PumpStatus(deviceTimeMs: nowMs(), dailyDoseUgX10: dailyDoseUgX10, concentrationUgPerML: 2000,
               activeAlarmMask: UInt32(truncatingIfNeeded: index) & 0xFF, pumpState: .infusing, dosingMode: .simpleContinuous,
               linkQualityPct: UInt8(index % 100))
}
