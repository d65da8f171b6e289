import CITBShims
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A dedicated OS thread for a loop that blocks in `poll()` (a serial port, the udev monitor),
/// so that blocking never happens on Swift's cooperative thread pool. Joined on ``join()``.
final class BlockingThread: @unchecked Sendable {
    // @unchecked: `handle` is written once before the thread starts and read only by join(),
    // which the owner calls once (checked: a second join stops the process).
    private var handle: pthread_t = pthread_t()
    private let name: String
    private let joined = Atomic(false)

    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Starts `body` on a new thread named `name` (at most 15 characters are shown by the kernel).
    init(name: String, _ body: @escaping @Sendable () -> Void) {
        self.name = name
        let threadName = String(name.prefix(15))
        let box = Unmanaged.passRetained(Body {
            itb_thread_set_name(threadName)
            body()
        }).toOpaque()
        let rc = pthread_create(&handle, nil, { raw in
            let body = Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue()
            body.run()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
    }

    /// Waits for the thread to finish.
    func join() {
        precondition(!joined.exchange(true, ordering: .acquiringAndReleasing), "BlockingThread \(name) joined twice")
        pthread_join(handle, nil)
    }
}

/// An eventfd used to wake a thread blocked in `poll()`.
struct WakeEvent: Sendable {
    let fd: Int32

    init() {
        fd = itb_eventfd_create()
        precondition(fd >= 0, "eventfd failed: \(errno)")
    }

    func signal() {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    func drain() {
        var value: UInt64 = 0
        _ = read(fd, &value, 8)
    }

    func close() { _ = Glibc.close(fd) }

    /// Waits up to `timeout` for a signal; true if signalled (and drains it).
    func wait(timeout: Duration) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = SerialPort.milliseconds(until: ContinuousClock.now + timeout)
        let ready = poll(&p, 1, ms)
        if ready > 0 {
            drain()
            return true
        }
        return false
    }
}
