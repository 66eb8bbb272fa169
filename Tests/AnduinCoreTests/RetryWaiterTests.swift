import Foundation
import XCTest
@testable import AnduinCore

/// The stop behaviour of `RetryWaiter` and `RequestAbort`.
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
