@testable import AnduinCore
import XCTest

/// The bounded queue under `OutputQueue` and the tail's `TailEmitter`: capacity, order, who blocks and
/// who is woken. Waits have generous deadlines; what must not happen is checked after a short pause
/// (a slow machine can only make such a check pass, never fail).
final class BoundedQueueTests: XCTestCase {
    private func eventually(_ what: String, within seconds: Double = 30, _ condition: () -> Bool) {
        let deadline = monotonicSeconds() + seconds
        while !condition() {
            if monotonicSeconds() > deadline { return XCTFail("not within \(seconds) s: \(what)") }
            usleep(2_000)
        }
    }

    func testAnAppendWaitsWhileFullAndATakeMakesRoom() {
        let queue = BoundedQueue<Int>(capacity: 3)
        XCTAssertTrue(queue.append(1, weight: 2))
        XCTAssertTrue(queue.append(2, weight: 1))
        XCTAssertFalse(queue.hasRoom)
        let appender = appendOnAThread(queue, 3)
        usleep(50_000)
        XCTAssertNil(appender.result.current, "appended beyond the capacity")
        XCTAssertEqual(items(queue.take(limit: 2, maxWait: 0)), [1], "the first items up to the limit")
        eventually("the waiting append got its room") { appender.result.current == true }
        XCTAssertTrue(appender.thread.join(timeout: 30))
        XCTAssertEqual(items(queue.take(limit: 100, maxWait: 0)), [2, 3])
    }

    func testAnItemHeavierThanTheCapacityGoesIntoAnEmptyQueue() {
        let queue = BoundedQueue<Int>(capacity: 3)
        XCTAssertTrue(queue.hasRoom)
        let appender = startThread(name: "appender") { _ = queue.append(1, weight: 10) }
        XCTAssertTrue(appender.join(timeout: 30), "waited for room in an empty queue")
        XCTAssertEqual(queue.queuedWeight, 10)
        XCTAssertFalse(queue.hasRoom)
    }

    func testTheItemBoundCountsToo() {
        let queue = BoundedQueue<Int>(capacity: 1000, maxItems: 2)
        queue.append(1, weight: 1)
        XCTAssertTrue(queue.hasRoom)
        queue.append(2, weight: 1)
        XCTAssertFalse(queue.hasRoom)
        // `.exceed` appends anyway and never blocks: its caller checks `hasRoom` first.
        XCTAssertTrue(queue.append(3, weight: 1, whenFull: .exceed))
        XCTAssertEqual(items(queue.take(limit: .max, maxItems: 1, maxWait: 0)), [1])
        XCTAssertEqual(items(queue.take(limit: .max, maxWait: 0)), [2, 3])
    }

    func testHeldWeightCountsUntilReleased() {
        let queue = BoundedQueue<Int>(capacity: 2)
        queue.append(1, weight: 2)
        XCTAssertEqual(items(queue.take(limit: 10, holding: true, maxWait: 0)), [1])
        XCTAssertEqual(queue.heldWeight, 2)
        XCTAssertFalse(queue.hasRoom, "taken and held: still counted")
        let appender = startThread(name: "appender") { _ = queue.append(2, weight: 1) }
        usleep(50_000)
        XCTAssertEqual(queue.count, 0, "appended while the held weight filled the queue")
        queue.release(2)
        XCTAssertTrue(appender.join(timeout: 30), "the release did not let the append in")
        XCTAssertEqual(queue.heldWeight, 1)
    }

    /// One producer, one consumer, a small capacity: every item comes out once, in order.
    func testItemsComeOutInOrder() {
        let queue = BoundedQueue<Int>(capacity: 7)
        let producer = startThread(name: "producer") {
            for i in 0..<20_000 { queue.append(i, weight: 1 + i % 3) }
            queue.close()
        }
        var seen: [Int] = []
        // Each take wakes the waiting producer: without that it re-checks only every 0.5 s (minutes).
        let deadline = monotonicSeconds() + 60
        loop: while monotonicSeconds() < deadline {
            switch queue.take(limit: 5, maxWait: 30) {
            case .items(let items): seen += items
            case .idle: continue
            case .finished: break loop
            }
        }
        XCTAssertEqual(seen.count, 20_000, "not within 60 s")
        XCTAssertEqual(seen, Array(0..<seen.count))
        queue.abandon()  // releases a producer still waiting
        XCTAssertTrue(producer.join(timeout: 30))
    }

    func testCloseWakesAWaitingTakerAndDrainsFirst() {
        let queue = BoundedQueue<Int>(capacity: 10)
        queue.append(1, weight: 1)
        let start = monotonicSeconds()
        let result = Locked<[Int]?>(nil)
        let taker = startThread(name: "taker") {
            // Lingering for 600 s: only the close makes the item due.
            let first = items(queue.take(limit: 10, linger: 600, maxWait: 600))
            guard case .finished = queue.take(limit: 10, maxWait: 600) else { return }
            result.withLock { $0 = first }
        }
        usleep(20_000)
        queue.close()
        XCTAssertTrue(taker.join(timeout: 60), "the close did not wake the taker")
        XCTAssertLessThan(monotonicSeconds() - start, 300)
        XCTAssertEqual(result.current, [1], "what was queued comes out before the end")
        XCTAssertTrue(queue.append(2, weight: 1), "a closing queue still takes a producer's last items")
    }

    func testAbandonRefusesWaitingAppendersAndHandsBackWhatWasQueued() {
        let queue = BoundedQueue<Int>(capacity: 2)
        queue.append(1, weight: 1)
        queue.append(2, weight: 1)
        let appender = appendOnAThread(queue, 3)
        usleep(20_000)
        XCTAssertEqual(queue.abandon(), [1, 2])
        XCTAssertTrue(appender.thread.join(timeout: 30), "the waiting append did not end")
        XCTAssertEqual(appender.result.current, false, "refused")
        XCTAssertEqual(queue.heldWeight, 0, "what was handed back is no longer counted")
        XCTAssertFalse(queue.append(4, weight: 1))
        guard case .finished = queue.take(limit: 10, maxWait: 0) else { return XCTFail("an abandoned queue gave something") }
    }

    /// A waiting appender means nothing more can come: the lingering first item is due at once.
    func testAWaitingAppenderMakesTheFirstItemDue() {
        let queue = BoundedQueue<Int>(capacity: 2)
        queue.append(1, weight: 2)
        let appender = startThread(name: "appender") { _ = queue.append(2, weight: 1) }
        let start = monotonicSeconds()
        XCTAssertEqual(items(queue.take(limit: 100, linger: 600, maxWait: 600)), [1])
        XCTAssertLessThan(monotonicSeconds() - start, 300, "the first item waited for its linger")
        XCTAssertTrue(appender.join(timeout: 30))
    }

    /// `.later` appends wake no taker until `wakeTakers`: a run of appends wakes the taker once.
    func testDeferredAppendsWakeTheTakerAtWakeTakers() {
        let queue = BoundedQueue<Int>(capacity: 100)
        let taken = Locked<[Int]>([])
        let taker = startThread(name: "taker") {
            if let items = items(queue.take(limit: 100, maxWait: 600)) { taken.withLock { $0 = items } }
        }
        eventually("the taker waits") { queue.waitingTakers == 1 }
        for i in 0..<5 { queue.append(i, weight: 1, wakeTakers: .later) }
        usleep(50_000)
        XCTAssertEqual(taken.current, [], "a deferred append woke the taker")
        queue.wakeTakers()
        XCTAssertTrue(taker.join(timeout: 60))
        XCTAssertEqual(taken.current, [0, 1, 2, 3, 4])
    }

    func testABacklogWakesTheTakerWithoutWakeTakers() {
        let queue = BoundedQueue<Int>(capacity: 100)
        let taken = Locked<[Int]>([])
        let taker = startThread(name: "taker") {
            if let items = items(queue.take(limit: 100, maxWait: 600)) { taken.withLock { $0 = items } }
        }
        eventually("the taker waits") { queue.waitingTakers == 1 }
        queue.append(0, weight: 1, wakeTakers: .atBacklog(items: 2, weight: 100))
        usleep(50_000)
        XCTAssertEqual(taken.current, [])
        queue.append(1, weight: 1, wakeTakers: .atBacklog(items: 2, weight: 100))
        XCTAssertTrue(taker.join(timeout: 60), "the second append did not wake the taker")
        XCTAssertEqual(taken.current.first, 0)
    }

    func testWaitForRoomReturnsWhenATakeMakesRoom() {
        let queue = BoundedQueue<Int>(capacity: 1)
        queue.append(1, weight: 1, whenFull: .exceed)
        let start = monotonicSeconds()
        let taker = startThread(name: "taker") {
            usleep(20_000)
            _ = queue.take(limit: 10, maxWait: 0)
        }
        queue.waitForRoom(seconds: 60) { false }
        XCTAssertLessThan(monotonicSeconds() - start, 30, "the take did not wake the wait for room")
        XCTAssertTrue(queue.hasRoom)
        XCTAssertTrue(taker.join(timeout: 30))
        // Room already, or told to stop: no wait.
        queue.waitForRoom(seconds: 600) { false }
        queue.append(2, weight: 1)
        queue.waitForRoom(seconds: 600) { true }
        XCTAssertLessThan(monotonicSeconds() - start, 300)
    }
}

/// The items of a take; nil for `.idle` and `.finished`.
private func items(_ taken: BoundedQueue<Int>.Taken) -> [Int]? {
    if case .items(let items) = taken { return items }
    return nil
}

/// Appends `item` (weight 1) on a thread of its own, for a queue that is full: `result` is what
/// `append` returned, nil while it waits.
private func appendOnAThread(_ queue: BoundedQueue<Int>, _ item: Int) -> (thread: ThreadHandle, result: Locked<Bool?>) {
    let result = Locked<Bool?>(nil)
    let thread = startThread(name: "appender") {
        let appended = queue.append(item, weight: 1)
        result.withLock { $0 = appended }
    }
    return (thread, result)
}
