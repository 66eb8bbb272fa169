import Foundation
import XCTest
@testable import AnduinCore

/// The stop behaviour of `RetryWaiter` and `RequestAbort`, and the pause an overloaded destination asks for.
final class RetryWaiterTests: XCTestCase {
    /// Issue 24 (9): with a disk buffer a retry wait ends when the output closes (it ran to its
    /// deadline, up to retry.max); with a memory buffer it does not (the stop waits up to
    /// shutdown_timeout), and an abandon ends it.
    func testWaitEndsOnCloseWithADiskBufferOnly() {
        let disk = RetryWaiter(diskBuffered: true)
        let closer = startThread(name: "closer") {
            usleep(100_000)
            disk.close()
        }
        var started = monotonicSeconds()
        XCTAssertTrue(disk.wait(until: started + 30), "a closing disk-buffered output must stop waiting")
        XCTAssertLessThan(monotonicSeconds() - started, 10)
        closer.join()

        let memory = RetryWaiter(diskBuffered: false)
        memory.close()
        started = monotonicSeconds()
        XCTAssertFalse(memory.wait(until: started + 0.3))
        XCTAssertGreaterThanOrEqual(monotonicSeconds() - started, 0.3, "a memory buffer waits on through a close")
        let abandoner = startThread(name: "abandoner") {
            usleep(100_000)
            memory.abandon()
        }
        started = monotonicSeconds()
        XCTAssertTrue(memory.wait(until: started + 30))
        XCTAssertLessThan(monotonicSeconds() - started, 10)
        abandoner.join()
    }

    /// Issue 24 (8): an overloaded answer with Retry-After holds every request for that long, then
    /// lets one through per pause; an answer without overload reopens at once (and wakes a waiting
    /// thread); an overload answer older than the request does not count.
    func testOverloadPausesAndPacesRequests() {
        let w = RetryWaiter(diskBuffered: true, retryInitial: 0.01, retryMax: 30)
        XCTAssertTrue(w.beforeRequest(), "not overloaded: no wait")
        w.overloaded(retryAfter: 0.5)
        var started = monotonicSeconds()
        XCTAssertTrue(w.beforeRequest())
        XCTAssertGreaterThanOrEqual(monotonicSeconds() - started, 0.45, "Retry-After not honoured")
        // Still overloaded (no normal answer): the next request waits a pause again.
        started = monotonicSeconds()
        XCTAssertTrue(w.beforeRequest())
        XCTAssertGreaterThanOrEqual(monotonicSeconds() - started, 0.45, "requests not paced while overloaded")

        // A waiting thread is released by a normal answer to a request sent after the overload.
        let sentAt = monotonicSeconds()
        w.overloaded(retryAfter: 20)
        let stale = sentAt - 1
        w.answeredNormally(sentAt: stale)  // sent before the overload: ignored
        let opener = startThread(name: "opener") {
            usleep(200_000)
            w.answeredNormally(sentAt: monotonicSeconds())
        }
        started = monotonicSeconds()
        XCTAssertTrue(w.beforeRequest())
        let waited = monotonicSeconds() - started
        XCTAssertGreaterThanOrEqual(waited, 0.15, "a stale normal answer reopened the gate")
        XCTAssertLessThan(waited, 10, "the normal answer did not wake the waiting thread")
        opener.join()
        started = monotonicSeconds()
        XCTAssertTrue(w.beforeRequest())
        XCTAssertLessThan(monotonicSeconds() - started, 0.1, "reopened: no pacing")
    }

    /// Without Retry-After the pause grows with each overloaded answer in a row, capped at
    /// retry.max; an absurd Retry-After is capped there too.
    func testOverloadBackoffGrowsAndIsCapped() {
        let w = RetryWaiter(diskBuffered: true, retryInitial: 0.02, retryMax: 0.2)
        func pause() -> Double {
            _ = w.beforeRequest()  // the reservation of this request
            let t = monotonicSeconds()
            _ = w.beforeRequest()
            return monotonicSeconds() - t
        }
        w.overloaded(retryAfter: 0)
        let first = pause()
        XCTAssertLessThan(first, 0.09, "the first pause is about retry.initial: \(first)")
        for _ in 0..<6 { w.overloaded(retryAfter: 0) }
        let grown = pause()
        XCTAssertGreaterThanOrEqual(grown, 0.09, "after 7 overloaded answers the pause is near retry.max")
        XCTAssertLessThan(grown, 2)
        for _ in 0..<1000 { w.overloaded(retryAfter: 0) }
        w.overloaded(retryAfter: .greatestFiniteMagnitude)
        let capped = pause()
        XCTAssertLessThan(capped, 2, "the pause is capped at retry.max: \(capped)")
    }

    /// Issue 24 (9): a disk-buffered output that closes while paused stops at once.
    func testCloseEndsAnOverloadPauseWithADiskBuffer() {
        let w = RetryWaiter(diskBuffered: true, retryInitial: 0.1, retryMax: 60)
        w.overloaded(retryAfter: 60)
        let closer = startThread(name: "closer") {
            usleep(100_000)
            w.close()
        }
        let started = monotonicSeconds()
        XCTAssertFalse(w.beforeRequest())
        XCTAssertLessThan(monotonicSeconds() - started, 10)
        closer.join()
    }

    /// The runner's stop signal for requests: nothing before a stop; after `abort(after:)` a request
    /// is abandoned once it waited the grace (counted from the stop or from its start if later);
    /// after `abortNow` every request is.
    func testRequestAbort() {
        let a = RequestAbort()
        let now = monotonicSeconds()
        XCTAssertFalse(a.shouldAbort(startedAt: now - 1000))
        a.abort(after: 0.2)
        XCTAssertFalse(a.shouldAbort(startedAt: now - 1000), "within the grace after the stop")
        usleep(250_000)
        XCTAssertTrue(a.shouldAbort(startedAt: now - 1000))
        XCTAssertFalse(a.shouldAbort(startedAt: monotonicSeconds()), "a request sent after the stop gets the grace too")
        a.abortNow()
        XCTAssertTrue(a.shouldAbort(startedAt: monotonicSeconds()))
    }
}
