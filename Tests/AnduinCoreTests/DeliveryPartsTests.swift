import Foundation
import XCTest
@testable import AnduinCore

/// The parts of delivery that do not need a network: backoff, the retry budget, the retry lane's
/// journal, the dead-letter store's bound and its reader.
final class DeliveryPartsTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "anduin-delivery-parts-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func batch(_ n: Int, from: Int = 0) -> EncodedBatch {
        var b = EncodedBatch()
        for i in from..<(from + n) {
            Array(#"{"message":"record \#(i)"}"#.utf8).withUnsafeBytes {
                b.append(document: $0, timestamp: 1_700_000_000_000_000_000 + Int64(i), sourceID: 0xABCD, offset: Int64(i * 100))
            }
        }
        return b
    }

    func testBackoffDoublesCapsAndJitters() {
        XCTAssertEqual((1...6).map { Backoff.nominal(attempt: $0, initial: 0.1, max: 1) }, [0.1, 0.2, 0.4, 0.8, 1, 1])
        XCTAssertEqual(Backoff.nominal(attempt: 10_000, initial: 1, max: 30), 30)
        var b = Backoff(initial: 1, max: 8, jitter: .equal)
        for attempt in 1...10 {
            let d = b.next()
            let nominal = Backoff.nominal(attempt: attempt, initial: 1, max: 8)
            XCTAssertTrue(d >= nominal / 2 && d <= nominal, "attempt \(attempt): \(d) outside [\(nominal / 2), \(nominal)]")
        }
        b.reset()
        XCTAssertEqual(b.attempt, 0)
        XCTAssertEqual(Backoff(initial: 0.5, max: 4, jitter: .none).delay(attempt: 3), 2)
    }

    /// A wait lasts until its deadline although the condition is broadcast meanwhile.
    func testWaitUntilResumesAfterUnrelatedWakeUps() {
        let stop = Locked(false)
        let waker = startThread(name: "waker") {
            for _ in 0..<30 {
                usleep(5_000)
                stop.broadcast()
            }
        }
        let started = monotonicSeconds()
        let stopped = stop.withLock(waitingUntil: started + 0.3) { $0 ? true : nil } ?? false
        XCTAssertFalse(stopped)
        XCTAssertGreaterThanOrEqual(monotonicSeconds() - started, 0.3, "the broadcasts cut the wait short")
        waker.join()
    }

    /// A stop signal ends a sleep at once, and every later sleep returns at once.
    func testStopSignalEndsSleep() {
        let signal = StopSignal()
        XCTAssertFalse(signal.sleep(seconds: 0.01))
        let setter = startThread(name: "setter") {
            usleep(20_000)
            signal.set()
        }
        let started = monotonicSeconds()
        XCTAssertTrue(signal.sleep(seconds: 600))
        XCTAssertLessThan(monotonicSeconds() - started, 300, "the sleep ran to its end")
        XCTAssertTrue(signal.sleep(seconds: 600))
        XCTAssertTrue(signal.isSet)
        setter.join()
    }

    /// A memory buffer smaller than about three batches: an input waiting for room makes the queued
    /// records due at once instead of after the batch timeout (it was one timeout per batch: P2 with
    /// `max_records: 5000` took 58 s instead of 8).
    func testBlockedInputMakesPartialBatchDue() {
        let queue = OutputQueue(capacity: 10, batchTimeout: 120, immediate: false,
                                 stats: ComponentStats(component: "q", kind: .output))
        let source = SourceInfo(path: "/x.log", sourceID: 1)
        func records(_ n: Int) -> RecordBatch {
            var b = RecordBatch(source: source, inputName: "in")
            for i in 0..<n { b.records.append(Record(timestamp: 0, offset: Int64(i), message: 0..<0, stream: .stdout)) }
            return b
        }
        XCTAssertTrue(queue.enqueue(records(6), AckToken {}))
        let more = records(6)
        let second = startThread(name: "blocked-input") { _ = queue.enqueue(more, AckToken {}) }  // 6 + 6 > 10: waits
        let start = monotonicSeconds()
        guard case .batches(let items) = queue.take(limitRecords: 100, maxWait: 60, countInflight: true) else {
            return XCTFail("nothing was taken")
        }
        // Without the rule the take returns only at the batch timeout (120 s).
        XCTAssertLessThan(monotonicSeconds() - start, 60, "the partial batch waited for its timeout")
        XCTAssertEqual(items.map(\.batch.count), [6], "the queued records, without the blocked batch")
        queue.done(6)
        XCTAssertTrue(second.join(timeout: 30))
        XCTAssertEqual(queue.queuedRecords, 6, "the waiting input got its room")
    }

    /// A taken batch must not stay referenced by the queue: the memory buffer's queue with a moving
    /// head kept up to 64 sent batches alive (15 MB at P2's peak).
    func testTakenBatchIsReleasedByTheQueue() {
        let queue = OutputQueue(capacity: 1000, batchTimeout: 0, immediate: true,
                                 stats: ComponentStats(component: "q", kind: .output))
        weak var firstSource: SourceInfo?
        do {
            for n in 0..<3 {
                let source = SourceInfo(path: "/x\(n).log", sourceID: UInt64(n))
                if n == 0 { firstSource = source }
                var b = RecordBatch(source: source, inputName: "in")
                b.records.append(Record(timestamp: 0, offset: 0, message: 0..<0, stream: .stdout))
                XCTAssertTrue(queue.enqueue(b, AckToken {}))
            }
            guard case .batches(let items) = queue.take(limitRecords: 1, maxWait: 1, countInflight: true) else {
                return XCTFail("nothing was taken")
            }
            XCTAssertEqual(items.count, 1)
            queue.done(1)
        }
        XCTAssertNil(firstSource, "the queue still holds a batch it handed out")
        XCTAssertEqual(queue.queuedRecords, 2)
    }

    /// An abandon hands the queued records back to the inputs: they are no longer counted as queued
    /// (they stayed in `queued_records` and `pending_records` after being counted returned).
    func testAbandonedRecordsAreNoLongerQueued() {
        let stats = ComponentStats(component: "q", kind: .output)
        let queue = OutputQueue(capacity: 1000, batchTimeout: 0, immediate: true, stats: stats)
        var acks: [AckToken] = []
        for n in 0..<2 {
            var b = RecordBatch(source: SourceInfo(path: "/x.log", sourceID: 1), inputName: "in")
            for i in 0..<3 { b.records.append(Record(timestamp: 0, offset: Int64(n * 3 + i), message: 0..<0, stream: .stdout)) }
            acks.append(AckToken {})
            XCTAssertTrue(queue.enqueue(b, acks[n]))
        }
        XCTAssertEqual(queue.abandon(), 6)
        XCTAssertEqual(acks.filter(\.isAbandoned).count, 2, "every queued ack is abandoned")
        XCTAssertEqual(queue.queuedRecords, 0)
        XCTAssertEqual(queue.records, 0)
    }

    /// Batches enqueued in one run (`deferringWakeUps`, an input emitting a pass over its files)
    /// wake the taker once, at the end: it takes them together instead of one at each enqueue.
    func testARunOfEnqueuesWakesTheTakerOnce() {
        let queue = OutputQueue(capacity: 1000, batchTimeout: 0, immediate: true,
                                 stats: ComponentStats(component: "q", kind: .output))
        let source = SourceInfo(path: "/x.log", sourceID: 1)
        let taken = Locked<[Int]>([])
        let taker = startThread(name: "taker") {
            var total = 0
            while total < 10 {
                guard case .batches(let items) = queue.take(limitRecords: 100, maxWait: 30, countInflight: false) else { continue }
                total += items.count
                taken.withLock { $0.append(items.count) }
            }
        }
        usleep(20_000)  // the taker waits
        OutputQueue.deferringWakeUps {
            for i in 0..<10 {
                var b = RecordBatch(source: source, inputName: "in")
                b.records.append(Record(timestamp: 0, offset: Int64(i), message: 0..<0, stream: .stdout))
                XCTAssertTrue(queue.enqueue(b, AckToken {}))
                usleep(5_000)
            }
        }
        XCTAssertTrue(taker.join(timeout: 30))
        XCTAssertEqual(taken.current, [10], "the taker was woken before the run ended")
    }

    /// A full queue inside a run wakes its taker at once: the run must not wait on its own deferral.
    func testAFullQueueInARunWakesTheTaker() {
        let queue = OutputQueue(capacity: 2, batchTimeout: 0, immediate: true,
                                 stats: ComponentStats(component: "q", kind: .output))
        let source = SourceInfo(path: "/x.log", sourceID: 1)
        let taker = startThread(name: "taker") {
            var total = 0
            while total < 6 {
                guard case .batches(let items) = queue.take(limitRecords: 100, maxWait: 30, countInflight: false) else { continue }
                total += items.count
            }
        }
        let start = monotonicSeconds()
        OutputQueue.deferringWakeUps {
            for i in 0..<6 {
                var b = RecordBatch(source: source, inputName: "in")
                b.records.append(Record(timestamp: 0, offset: Int64(i), message: 0..<0, stream: .stdout))
                XCTAssertTrue(queue.enqueue(b, AckToken {}))
            }
        }
        XCTAssertTrue(taker.join(timeout: 30))
        XCTAssertLessThan(monotonicSeconds() - start, 10)
    }

    func testCompactKeepsRecordsAndGivesBackCapacity() {
        var b = RecordBatch(source: SourceInfo(path: "/x.log", sourceID: 1), inputName: "in",
                            recordCapacity: 1024, byteCapacity: 256 * 1024)
        for i in 0..<100 {
            let range = Array("line \(i)".utf8).withUnsafeBytes { b.append(bytes: $0) }
            b.records.append(Record(timestamp: Int64(i), offset: Int64(i * 10), message: range, stream: .stdout))
        }
        let before = b
        b.compact()
        XCTAssertLessThan(b.records.capacity, 200)
        XCTAssertLessThan(b.bytes.capacity, 2048)
        XCTAssertEqual(b.bytes, before.bytes)
        XCTAssertEqual(b.records.map(\.offset), before.records.map(\.offset))
        XCTAssertEqual(b.records.map(\.message), before.records.map(\.message))
    }

    /// The HTTP output sends a batch built by `append` as it is; anything else gets no NDJSON view.
    func testEncodedBatchIsItsOwnNDJSONBody() throws {
        let built = batch(3)
        let body = try XCTUnwrap(built.withNDJSON { Array($0) })
        var expected: [UInt8] = []
        for i in 0..<3 { built.withDocument(i) { expected += $0 }; expected.append(0x0A) }
        XCTAssertEqual(body, expected)
        XCTAssertEqual(body.split(separator: 0x0A).count, 3)
        // Subsets and splits are rebuilt by `append`: still contiguous.
        XCTAssertNotNil(built.subset([2, 0]).withNDJSON { $0.count })
        // Documents with other bytes between them (as read back from the disk ring) are not.
        var framed = built
        framed.documents.insert(0x20, at: 0)
        framed.records = framed.records.map { var r = $0; r.document = (r.document.lowerBound + 1)..<(r.document.upperBound + 1); return r }
        XCTAssertNil(framed.withNDJSON { $0.count })
        XCTAssertEqual(EncodedBatch().withNDJSON { $0.count }, 0, "an empty batch is an empty body")
    }

    func testRetryBudget() {
        let s = Int64(1_000_000_000)
        let budget = RetryBudget(maxAge: 3, maxAttempts: 5)
        XCTAssertFalse(budget.spent(attempts: 1, firstFailure: 10 * s, now: 12 * s))
        XCTAssertTrue(budget.spent(attempts: 1, firstFailure: 10 * s, now: 13 * s), "max_age")
        XCTAssertTrue(budget.spent(attempts: 5, firstFailure: 10 * s, now: 10 * s), "max_attempts")
        XCTAssertFalse(RetryBudget(maxAge: 0, maxAttempts: 0).spent(attempts: 1_000, firstFailure: 1, now: 1_000_000 * s), "0 = forever")
    }

    /// Groups added and removed are read back with their failure history; a torn or damaged tail
    /// costs only itself.
    func testLaneJournalRoundTripAndTornTail() throws {
        let path = dir + "/out.retry-lane"
        let j = LaneJournal(path: path, fsync: .never)
        var w1 = DeliveryWork(batch(3))
        w1.fail(1, status: 503, reason: "unavailable_shards_exception: [b][0] primary shard is not active", now: 42)
        w1.fail(1, status: 503, reason: "again", now: 99)
        XCTAssertTrue(j.add(1, w1))
        XCTAssertTrue(j.add(2, DeliveryWork(batch(2, from: 10))))
        XCTAssertTrue(j.add(3, DeliveryWork(batch(1, from: 20))))
        XCTAssertTrue(j.remove([2]))
        var loaded = LaneJournal(path: path, fsync: .never).load(log: { _ in })
        XCTAssertEqual(loaded.map(\.id), [1, 3])
        XCTAssertEqual(loaded[0].work.batch.documents, w1.batch.documents)
        XCTAssertEqual(loaded[0].work.batch.records, w1.batch.records)
        XCTAssertEqual(loaded[0].work.state(1), ItemState(attempts: 2, firstFailure: 42, status: 503, reason: "again"))
        XCTAssertEqual(loaded[0].work.state(0), ItemState())

        // A torn last entry (a crash mid-write) and garbage after it: the rest is kept.
        let h = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        h.seekToEndOfFile()
        h.write(Data([0x40, 0, 0, 0, 1, 2, 3, 4, 5, 6]))
        h.closeFile()
        var logged: [String] = []
        loaded = LaneJournal(path: path, fsync: .never).load(log: { logged.append($0) })
        XCTAssertEqual(loaded.map(\.id), [1, 3])
        XCTAssertEqual(logged.count, 1, "the damaged tail is reported")

        // Rewritten compactly: only the live groups remain.
        XCTAssertTrue(j.rewrite(loaded))
        XCTAssertEqual(LaneJournal(path: path, fsync: .never).load(log: { _ in }).map(\.id), [1, 3])
    }

    /// The store never passes max_bytes or max_files; what it drops is counted; what it holds reads
    /// back with the record's event.id and timestamp; replay marks persist.
    func testDeadLetterStoreBoundAndReader() throws {
        let stats = ComponentStats(component: "es", kind: .output)
        var options = DeadLetterOptions()
        options.maxBytes = 64 << 10
        options.maxFiles = 3
        let store = DeadLetterStore(dataDirectory: dir, output: "es", options: options, fsync: .never, stats: stats)
        var written = 0
        for k in 0..<40 {
            let b = batch(50, from: k * 50)
            XCTAssertTrue(store.write(b, (0..<50).map { DeadLetterStore.Entry(index: $0, status: 400, reason: "bad \($0)", attempts: 1) }))
            written += 50
            let files = DeadLetterStore.files(store.directory)
            XCTAssertLessThanOrEqual(files.count, 3)
            XCTAssertLessThanOrEqual(files.reduce(0) { $0 + $1.bytes }, 64 << 10)
        }
        let held = DeadLetterReplay.read(directory: store.directory)
        let dropped = stats.counters.first { $0.name == "dead_letter_dropped_records" }?.current ?? -1
        XCTAssertGreaterThan(dropped, 0)
        XCTAssertEqual(held.count + dropped, written)
        XCTAssertEqual(stats.counters.first { $0.name == "dead_lettered_records" }?.current, written)
        let last = try XCTUnwrap(held.last)
        XCTAssertEqual(last.eventID, "000000000000abcd" + String(format: "%016lx", (written - 1) * 100))
        XCTAssertEqual(last.timestampNanos, 1_700_000_000_000_000_000 + Int64(written - 1))
        XCTAssertEqual(String(decoding: last.document, as: UTF8.self), #"{"message":"record \#(written - 1)"}"#)
        XCTAssertEqual(last.status, 400)
        for f in DeadLetterStore.files(store.directory) {
            let mode = (try FileManager.default.attributesOfItem(atPath: f.path)[.posixPermissions] as? NSNumber)?.intValue
            XCTAssertEqual(mode, 0o600)
        }
        XCTAssertTrue(DeadLetterReplay.markReplayed(store.directory, Array(held.prefix(10))))
        let again = DeadLetterReplay.read(directory: store.directory)
        XCTAssertEqual(again.filter(\.replayed).count, 10)
        XCTAssertEqual(DeadLetterReplay.read(directory: store.directory, since: wallClockNanos() + 1_000_000_000).count, 0)
    }

    /// A write that fails part way (a full disk; here the file size limit) leaves none of its records
    /// in the store, in any of the files it wrote to: they are sent again, and one delivered later
    /// must not also be a dead letter (torture seed 80002 run 65). Nor is a torn line left.
    func testDeadLetterWriteThatFailsLeavesNothingOfIt() throws {
        let stats = ComponentStats(component: "web", kind: .output)
        var options = DeadLetterOptions()
        options.maxBytes = 256 << 10
        options.maxFiles = 4
        let store = DeadLetterStore(dataDirectory: dir, output: "web", options: options, fsync: .never, stats: stats)
        func docs(_ sizes: [Int], from: Int) -> EncodedBatch {
            var b = EncodedBatch()
            for (i, size) in sizes.enumerated() {
                let doc = Array(("{\"message\":\"record \(from + i) " + String(repeating: "x", count: size) + "\"}").utf8)
                doc.withUnsafeBytes { b.append(document: $0, timestamp: 1, sourceID: 1, offset: Int64(from + i)) }
            }
            return b
        }
        func held() -> [Int] {
            DeadLetterReplay.read(directory: store.directory).compactMap {
                Int(String(decoding: $0.document, as: UTF8.self).split(separator: " ")[1])
            }
        }
        func entries(_ n: Int) -> [DeadLetterStore.Entry] {
            (0..<n).map { DeadLetterStore.Entry(index: $0, status: 400, reason: "bad", attempts: 1) }
        }
        XCTAssertTrue(store.write(docs([100], from: 0), entries(1)))
        // 20 lines of 4 KiB fill one 64 KiB file and start the next; then a lone 150 KiB line needs a
        // file of its own, past the 100 KiB limit: that write fails after the others succeeded.
        let sizes = Array(repeating: 4000, count: 20) + [150_000]
        let oldHandler = signal(SIGXFSZ, SIG_IGN)
        var old = rlimit()
        getrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
        var low = old
        low.rlim_cur = 100_000
        setrlimit(Int32(RLIMIT_FSIZE.rawValue), &low)
        let failed = store.write(docs(sizes, from: 1), entries(sizes.count))
        setrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
        signal(SIGXFSZ, oldHandler)
        XCTAssertFalse(failed, "the write cannot succeed past the file size limit")
        XCTAssertEqual(held(), [0], "nothing of the failed write stays")
        let onDisk = DeadLetterStore.files(store.directory).reduce(0) { $0 + $1.bytes }
        XCTAssertLessThan(onDisk, 1000, "no torn or partial content left: \(onDisk) bytes")
        // Sent again with room, it is all there, once.
        XCTAssertTrue(store.write(docs(sizes, from: 1), entries(sizes.count)))
        XCTAssertEqual(held(), Array(0...sizes.count))
    }
}
