import ITBSerial
import Testing

@Suite("Link state machine (no I/O)")
struct LinkStateMachineTests {
    @Test("start publishes searching and opens")
    func start() {
        var m = LinkStateMachine()
        #expect(m.start() == [.publish(.searching), .open])
    }

    @Test("a missing device is retried with capped exponential backoff from 100 ms to 5 s, publishing searching once")
    func backoffWhileMissing() {
        var m = LinkStateMachine()
        _ = m.start()
        var delays: [Duration] = []
        for attempt in 0..<10 {
            let actions = m.openFailed(.notFound(path: "/dev/ttyUSB0"))
            guard case .wait(let delay) = actions.last else {
                Issue.record("no wait after failure \(attempt)")
                return
            }
            #expect(!actions.contains(.publish(.searching)))
            delays.append(delay)
            #expect(m.retryDue() == [.open])
        }
        #expect(delays == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800),
                           .milliseconds(1600), .milliseconds(3200), .seconds(5), .seconds(5), .seconds(5), .seconds(5)])
    }

    @Test("connect resets the backoff; a disconnect is published with its cause and retried after 100 ms")
    func disconnectAndReconnect() {
        var m = LinkStateMachine()
        _ = m.start()
        _ = m.openFailed(.notFound(path: "p"))
        _ = m.retryDue()
        _ = m.openFailed(.notFound(path: "p"))
        _ = m.retryDue()
        #expect(m.openSucceeded() == [.publish(.connected)])
        #expect(m.disconnected(.hangUp) == [.publish(.disconnected(.hangUp)), .wait(.milliseconds(100))])
        #expect(m.retryDue() == [.open])
        // Still gone: keep showing the disconnect rather than flipping to searching.
        #expect(m.openFailed(.notFound(path: "p")) == [.wait(.milliseconds(200))])
        _ = m.retryDue()
        #expect(m.openSucceeded() == [.publish(.connected)])
    }

    @Test("busy is published with its holder, and again only when the holder changes")
    func busy() {
        var m = LinkStateMachine()
        _ = m.start()
        #expect(m.openFailed(.busy(path: "p", holder: "pid 7 (minicom)")).first == .publish(.busy(holder: "pid 7 (minicom)")))
        _ = m.retryDue()
        #expect(m.openFailed(.busy(path: "p", holder: "pid 7 (minicom)")).count == 1)
        _ = m.retryDue()
        #expect(m.openFailed(.busy(path: "p", holder: "pid 8 (screen)")).first == .publish(.busy(holder: "pid 8 (screen)")))
    }

    @Test("a udev add event cuts the wait short and resets the backoff")
    func deviceAppeared() {
        var m = LinkStateMachine()
        _ = m.start()
        for _ in 0..<5 {
            _ = m.openFailed(.notFound(path: "p"))
            _ = m.retryDue()
        }
        _ = m.openFailed(.notFound(path: "p"))
        #expect(m.deviceAppeared() == [.open])
        #expect(m.openFailed(.notFound(path: "p")).last == .wait(.milliseconds(100)))
        // Not waiting: an add event changes nothing.
        _ = m.retryDue()
        #expect(m.deviceAppeared() == [])
    }

    @Test("permission problems are published as unavailable with the operator's message")
    func unavailable() {
        var m = LinkStateMachine()
        _ = m.start()
        let actions = m.openFailed(.permissionDenied(path: "/dev/ttyUSB0"))
        guard case .publish(.unavailable(let reason)) = actions.first else {
            Issue.record("expected unavailable, got \(actions)")
            return
        }
        #expect(reason.contains("permission"))
    }
}
