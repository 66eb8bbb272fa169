import XCTest
import Foundation
import Logging
import Synchronization
@testable import AnduinCore

/// A destination that answers from a seeded script: delivered, a per-item mix (delivered, 429/503 to
/// retry, 400 to dead-letter), the whole request refused (503), no answer, or too large; each answer
/// after a short random delay. It keeps every offset it accepted.
private final class ScriptedDestination: Sendable {
    private let state: Mutex<(rng: XorShift, accepted: [Int64: Int], requests: Int)>
    /// Once set, every request is delivered (the drain at the end of a run).
    let healthy = Atomic<Bool>(false)
    /// While set (and not healthy), every item is refused with 503.
    let refuseItems = Atomic<Bool>(false)

    init(seed: UInt64) { state = Mutex((XorShift(state: seed | 1), [:], 0)) }

    var accepted: [Int64: Int] { state.withLock { $0.accepted } }

    func answer(_ batch: EncodedBatch) -> SendResult {
        let (result, delay) = state.withLock { s -> (SendResult, UInt32) in
            s.requests += 1
            let roll = Int(s.rng.next() % 100)
            let delay = UInt32(s.rng.next() % 3_000)
            var result: SendResult
            if refuseItems.load(ordering: .relaxed) && !healthy.load(ordering: .relaxed) {
                result = .perRecord(batch.records.map { _ in .retry(status: 503, reason: "unavailable") })
            } else if healthy.load(ordering: .relaxed) || roll < 50 {
                result = .delivered
            } else if roll < 70 {
                result = .perRecord(batch.records.indices.map { _ in
                    switch s.rng.next() % 10 {
                    case 0...5: return .delivered
                    case 6, 7: return .retry(status: 429, reason: "overloaded")
                    case 8: return .retry(status: 503, reason: "unavailable")
                    default: return .deadLetter(status: 400, reason: "mapping")
                    }
                })
            } else if roll < 80 {
                result = .retryAll(status: 503, reason: "unavailable")
            } else if roll < 95 {
                result = .unreachable("connection refused")
            } else {
                result = .tooLarge
            }
            if case .delivered = result {
                for r in batch.records { s.accepted[r.offset, default: 0] += 1 }
            } else if case .perRecord(let outcomes) = result {
                for (r, o) in zip(batch.records, outcomes) where o == .delivered { s.accepted[r.offset, default: 0] += 1 }
            }
            return (result, delay)
        }
        usleep(delay)
        return result
    }
}

/// A destination that is down: every take stays in the ring.
private final class UnreachableSender: BatchSender {
    func send(_ batch: EncodedBatch) -> SendResult {
        usleep(2_000)
        return .unreachable("connection refused")
    }
}

private final class ScriptedSender: BatchSender {
    let destination: ScriptedDestination
    init(_ destination: ScriptedDestination) { self.destination = destination }
    func send(_ batch: EncodedBatch) -> SendResult { destination.answer(batch) }
}

/// A destination that is down for records with offsets below `down` and refuses the others item by
/// item for good (400), until `healthy`; then it accepts everything, counting what it got.
private final class SplitSender: BatchSender {
    let down: Int64
    let healthy = Atomic<Bool>(false)
    let accepted = Mutex<[Int64: Int]>([:])
    let triedDown = Atomic<Int>(0)
    init(down: Int64) { self.down = down }
    func send(_ batch: EncodedBatch) -> SendResult {
        if healthy.load(ordering: .relaxed) {
            accepted.withLock { a in for r in batch.records { a[r.offset, default: 0] += 1 } }
            return .delivered
        }
        if batch.records.contains(where: { $0.offset < down }) {
            triedDown.add(1, ordering: .relaxed)
            usleep(2_000)
            return .unreachable("connection refused")
        }
        return .perRecord(batch.records.map { _ in .deadLetter(status: 400, reason: "mapping") })
    }
}

/// Refuses records it has not seen item by item (429: to the lane); then dead-letters (400) the
/// whole first request of records it has seen (a retry from the lane) and is down for the later
/// ones, until `healthy`.
private final class LaneSplitSender: BatchSender {
    let healthy = Atomic<Bool>(false)
    let downAnswers = Atomic<Int>(0)
    private let state = Mutex<(seen: Set<Int64>, dead: Set<Int64>, accepted: [Int64: Int])>(([], [], [:]))
    var dead: Set<Int64> { state.withLock { $0.dead } }
    var accepted: [Int64: Int] { state.withLock { $0.accepted } }
    func send(_ batch: EncodedBatch) -> SendResult {
        let offsets = batch.records.map(\.offset)
        let result = state.withLock { s -> SendResult? in
            if healthy.load(ordering: .relaxed) {
                for o in offsets { s.accepted[o, default: 0] += 1 }
                return .delivered
            }
            if !s.seen.isSuperset(of: offsets) {
                s.seen.formUnion(offsets)
                return .perRecord(offsets.map { _ in .retry(status: 429, reason: "busy") })
            }
            if s.dead.isEmpty {
                s.dead = Set(offsets)
                return .perRecord(offsets.map { _ in .deadLetter(status: 400, reason: "mapping") })
            }
            return nil
        }
        if let result { return result }
        downAnswers.add(1, ordering: .relaxed)
        usleep(2_000)
        return .unreachable("connection refused")
    }
}

/// The delivery runner (buffer, threads, retry lane, dead letters, commit order) against a scripted
/// destination, stopped and restarted on the same counters (a reload) in the middle of failures. The
/// input side is modelled as the tail does it: a batch whose ack is abandoned is read again.
///
/// After a final drain, the accounting identity holds exactly (nothing unaccounted, nothing counted
/// twice), every record reached the destination or the dead-letter store, and every ack completed.
final class DeliveryRunnerModelTests: XCTestCase {
    private var dirs: [String] = []

    override func tearDown() {
        for d in dirs { try? FileManager.default.removeItem(atPath: d) }
        dirs = []
    }

    /// A temporary folder, removed after the test.
    private func makeDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "anduin-delivery-model-\(UUID().uuidString)"
        dirs.append(dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// The output's context, its log quiet.
    private func quietContext(_ dir: String, _ stats: ComponentStats) -> ComponentContext {
        var logger = Logger(label: "model")
        logger.logLevel = .critical
        return ComponentContext(name: "o", kind: .output, dataDirectory: dir, logger: logger, stats: stats)
    }

    /// A 1 MiB disk buffer and quick retries, for the tests of what a stop leaves.
    private func stopTestOptions(concurrency: Int, maxRecords: Int, maxBytes: Int, batchTimeout: Double) -> DeliveryOptions {
        var options = DeliveryOptions(buffer: .disk(DiskRingOptions(maxBytes: 1 << 20, segmentBytes: 4_096, whenFull: .block,
                                                                    fsync: .never, compress: false)))
        options.concurrency = concurrency
        options.batch.maxRecords = maxRecords
        options.batch.maxBytes = maxBytes
        options.batch.timeout = batchTimeout
        options.retry.initial = 0.01
        options.retry.max = 0.05
        options.ready.stallAfter = 3600
        return options
    }

    /// `dropOldestAt`: a disk buffer of that many bytes that drops its oldest segments when full.
    /// `stopTimeout`: how long a stop waits for the threads before abandoning them (shutdown_timeout).
    private func run(seed: UInt64, disk: Bool, concurrency: Int, segmentBytes: Int, reloads: Int,
                     dropOldestAt: Int? = nil, stopTimeout: Double = 5) throws {
        let dir = try makeDirectory()
        var options = DeliveryOptions(buffer: disk
            ? .disk(DiskRingOptions(maxBytes: dropOldestAt ?? 64 << 20, segmentBytes: segmentBytes,
                                    whenFull: dropOldestAt == nil ? .block : .drop_oldest, fsync: .never))
            : .memory(maxRecords: 200))
        options.concurrency = concurrency
        options.batch.maxRecords = 7
        options.batch.maxBytes = 2_000
        options.batch.timeout = 0.002
        options.retry.initial = 0.002
        options.retry.max = 0.01
        options.ready.stallAfter = 3600
        let stats = ComponentStats(component: "o", kind: .output)
        let context = quietContext(dir, stats)
        let destination = ScriptedDestination(seed: seed)
        let recordsIn = stats.counter("records_in", "")
        let source = SourceInfo(path: "/model.log", sourceID: 7)
        var rng = XorShift(state: seed &* 0x9E37_79B9_7F4A_7C15 | 1)

        // Batches not yet acknowledged, by first offset; an abandoned one is handed over again.
        let acked = Mutex<Set<Int64>>([])
        let total = 1_500
        var batches: [(first: Int64, batch: RecordBatch)] = []
        var offset: Int64 = 0
        while offset < total {
            let n = 1 + Int(rng.next() % 12)
            var b = RecordBatch(source: source, inputName: "in")
            for _ in 0..<n where offset < total {
                let text = Array("{\"m\":\"line \(offset)\"}".utf8)
                let range = text.withUnsafeBytes { b.append(bytes: $0) }
                b.records.append(Record(timestamp: 1, offset: offset, message: range, stream: .stdout))
                offset += 1
            }
            batches.append((b.records[0].offset, b))
        }

        func makeRunner() throws -> DeliveryRunner {
            let r = try DeliveryRunner(name: "o", options: options, context: context) { ScriptedSender(destination) }
            r.start()
            return r
        }
        /// The stop a reload or shutdown does (`Pipeline.stop`).
        func stop(_ r: DeliveryRunner) {
            r.inputsStopping()
            r.close()
            if !r.join(timeout: stopTimeout) {
                r.abandon()
                _ = r.join(timeout: 5)
            }
        }
        func handOver(_ r: DeliveryRunner, _ b: (first: Int64, batch: RecordBatch)) {
            recordsIn.add(b.batch.count)
            let first = b.first
            r.enqueue(b.batch, AckToken { acked.withLock { _ = $0.insert(first) } })
        }

        var runner = try makeRunner()
        let reloadAt = Set((1...max(1, reloads)).map { batches.count * $0 / (reloads + 1) })
        for (i, b) in batches.enumerated() {
            if reloads > 0 && reloadAt.contains(i) {
                stop(runner)
                runner = try makeRunner()
                // The input reads again what was not acknowledged before the stop.
                let done = acked.withLock { $0 }
                for earlier in batches[..<i] where !done.contains(earlier.first) { handOver(runner, earlier) }
            }
            handOver(runner, b)
        }
        // Heal the destination and let every record be decided.
        destination.healthy.store(true, ordering: .relaxed)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let a = Accounting(output: stats)
            if a.pending == 0 && acked.withLock({ $0.count }) == batches.count { break }
            usleep(20_000)
        }
        // A take delivered after drop_oldest deleted it is counted delivered a moment before its
        // commit counts it recovered: look again, as /status does, while the identity is off.
        var a = Accounting(output: stats)
        for _ in 0..<20 where a.unaccounted != 0 {
            usleep(50_000)
            a = Accounting(output: stats)
        }
        let context0 = "seed \(seed) disk \(disk) concurrency \(concurrency) segment \(segmentBytes) reloads \(reloads) "
            + "drop_oldest at \(dropOldestAt.map(String.init) ?? "-"): \(a)"
        XCTAssertEqual(a.pending, 0, context0)
        XCTAssertEqual(a.unaccounted, 0, context0)
        XCTAssertEqual(acked.withLock { $0.count }, batches.count, "every batch acknowledged: " + context0)
        let accepted = destination.accepted
        let deadLettered = a.deadLettered
        let missing = (0..<Int64(total)).filter { accepted[$0] == nil }
        // Records never accepted must be dead-lettered (400s) or dropped by drop_oldest: never more
        // missing than those.
        XCTAssertLessThanOrEqual(missing.count, deadLettered + a.droppedOldest, "records lost: " + context0)
        if dropOldestAt != nil { XCTAssertGreaterThan(a.droppedOldest, 0, "the buffer was full: " + context0) }
        stop(runner)
    }

    /// Records refused item by item, round after round, with requests of one record each: every lane
    /// group made from a retry held all the tickets of the groups retried together, repeats included,
    /// so the references multiplied each round (torture seed 61208 run 3: 3.7 GiB in 8 s).
    func testRetriedGroupsDoNotMultiplyTheirTickets() throws {
        let dir = try makeDirectory()
        var options = DeliveryOptions(buffer: .memory(maxRecords: 100))
        options.concurrency = 2
        options.batch.maxRecords = 50
        options.batch.maxBytes = 64  // one record per request
        options.batch.timeout = 0.002
        options.retry.initial = 0.001
        options.retry.max = 0.002
        let stats = ComponentStats(component: "o", kind: .output)
        let context = quietContext(dir, stats)
        let destination = ScriptedDestination(seed: 5)
        destination.refuseItems.store(true, ordering: .relaxed)
        let runner = try DeliveryRunner(name: "o", options: options, context: context) { ScriptedSender(destination) }
        runner.start()
        let source = SourceInfo(path: "/model.log", sourceID: 7)
        let acked = Atomic<Int>(0)
        for i in 0..<10 {
            var b = RecordBatch(source: source, inputName: "in")
            for j in 0..<5 {
                let text = Array("{\"m\":\"line \(i * 5 + j)\"}".utf8)
                let range = text.withUnsafeBytes { b.append(bytes: $0) }
                b.records.append(Record(timestamp: 1, offset: Int64(i * 5 + j), message: range, stream: .stdout))
            }
            runner.enqueue(b, AckToken { acked.add(1, ordering: .relaxed) })
        }
        // 50 records in at most 50 groups, 10 distinct tickets: at most 500 references.
        var most = 0
        let end = Date().addingTimeInterval(1.5)
        while Date() < end {
            most = max(most, runner.laneTicketReferences)
            if most > 500 { break }
            usleep(5_000)
        }
        destination.healthy.store(true, ordering: .relaxed)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && acked.load(ordering: .relaxed) < 10 { usleep(10_000) }
        XCTAssertLessThanOrEqual(most, 500, "ticket references in the lane")
        XCTAssertEqual(acked.load(ordering: .relaxed), 10)
        runner.close()
        XCTAssertTrue(runner.join(timeout: 10))
    }

    /// The batches of one take go to the disk buffer in one append: on a quiet node a take is a
    /// line or two from each of many files, and each batch was a block and a write of its own.
    func testATakeOfManyBatchesIsOneRingBlock() throws {
        let dir = try makeDirectory()
        let options = DeliveryOptions(buffer: .disk(DiskRingOptions(maxBytes: 64 << 20, segmentBytes: 1 << 20, fsync: .never,
                                                                    compress: false)))
        let context = quietContext(dir, ComponentStats(component: "o", kind: .output))
        let destination = ScriptedDestination(seed: 9)
        destination.healthy.store(true, ordering: .relaxed)
        let runner = try DeliveryRunner(name: "o", options: options, context: context) { ScriptedSender(destination) }
        let acked = Atomic<Int>(0)
        for i in 0..<10 {  // queued before the writer starts: its first take has all ten
            var b = RecordBatch(source: SourceInfo(path: "/f\(i).log", sourceID: UInt64(i + 1)), inputName: "in")
            let text = Array("{\"m\":\"line \(i)\"}".utf8)
            let range = text.withUnsafeBytes { b.append(bytes: $0) }
            b.records.append(Record(timestamp: 1, offset: Int64(i), message: range, stream: .stdout))
            runner.enqueue(b, AckToken { acked.add(1, ordering: .relaxed) })
        }
        runner.start()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && (acked.load(ordering: .relaxed) < 10 || destination.accepted.count < 10) { usleep(10_000) }
        XCTAssertEqual(acked.load(ordering: .relaxed), 10)
        XCTAssertEqual(destination.accepted.count, 10, "every record delivered")
        runner.close()
        XCTAssertTrue(runner.join(timeout: 10))
        let ringDir = dir + "/buffers/o"
        var blocks = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: ringDir) where name.hasSuffix(".ring") {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: ringDir + "/" + name)))
            if bytes.count >= 4 {
                for i in 0...(bytes.count - 4) where bytes[i] == 0xAD && bytes[i + 1] == 0x55 && bytes[i + 2] == 0x49 && bytes[i + 3] == 0x4E {
                    blocks += 1
                }
            }
        }
        XCTAssertEqual(blocks, 1, "blocks written for one take of ten batches")
    }

    /// A stop while the disk buffer is full (`when_full: block`, the destination down) and batches
    /// are still queued: they go into the ring past max_bytes and are acknowledged at once. Handed
    /// back instead, they were read again, and reached the input's other outputs twice (torture seed
    /// 97001 run 15: about 1,100 lines at an http output beside a full Elasticsearch buffer).
    func testAStopWithAFullDiskBufferKeepsWhatIsQueued() throws {
        let dir = try makeDirectory()
        let maxBytes = 8_192
        var options = DeliveryOptions(buffer: .disk(DiskRingOptions(maxBytes: maxBytes, segmentBytes: 2_048, whenFull: .block,
                                                                    fsync: .never, compress: false)))
        options.retry.initial = 0.01
        options.retry.max = 0.05
        options.ready.stallAfter = 3600
        let stats = ComponentStats(component: "o", kind: .output)
        let context = quietContext(dir, stats)
        let runner = try DeliveryRunner(name: "o", options: options, context: context) { UnreachableSender() }
        let counter = { (name: String) in stats.counters.first { $0.name == name }?.current ?? 0 }
        runner.start()
        let acked = Atomic<Int>(0)
        let batches = 200
        for i in 0..<batches {
            var b = RecordBatch(source: SourceInfo(path: "/f.log", sourceID: 1), inputName: "in")
            let text = Array("{\"m\":\"line \(i) \(String(repeating: "x", count: 200))\"}".utf8)
            let range = text.withUnsafeBytes { b.append(bytes: $0) }
            b.records.append(Record(timestamp: 1, offset: Int64(i), message: range, stream: .stdout))
            runner.enqueue(b, AckToken { acked.add(1, ordering: .relaxed) })  // not when abandoned
        }
        // The ring fills (about 35 records of 230 bytes) and the writer waits for room.
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && counter("buffer_full_events") == 0 { usleep(10_000) }
        XCTAssertEqual(counter("buffer_full_events"), 1)
        XCTAssertLessThan(acked.load(ordering: .relaxed), batches)

        let start = monotonicSeconds()
        runner.inputsStopping()
        runner.close()
        XCTAssertTrue(runner.join(timeout: 10), "the stop waits for no room")
        XCTAssertLessThan(monotonicSeconds() - start, 8)
        XCTAssertEqual(counter("records_returned"), 0, "nothing handed back to be read again")
        XCTAssertEqual(acked.load(ordering: .relaxed), batches, "every batch acknowledged")

        // The next start finds them all, in the ring (past max_bytes) or in the retry lane's journal
        // (the takes in flight at the stop), and delivers each once.
        let destination = ScriptedDestination(seed: 1)
        destination.healthy.store(true, ordering: .relaxed)
        let next = try DeliveryRunner(name: "o", options: options, context: context) { ScriptedSender(destination) }
        next.start()
        let drained = Date().addingTimeInterval(30)
        while Date() < drained && destination.accepted.count < batches { usleep(10_000) }
        usleep(100_000)
        next.close()
        XCTAssertTrue(next.join(timeout: 10))
        XCTAssertEqual(destination.accepted, Dictionary(uniqueKeysWithValues: (0..<Int64(batches)).map { ($0, 1) }),
                       "every record kept for the next start, delivered once")
    }

    /// A stop with a disk buffer while an earlier take is still retrying and a later one was
    /// dead-lettered: the later one was left in the ring behind the undecided one, and the next start
    /// sent it again, so its records were both dead-lettered and delivered (torture seed 99204 run 8:
    /// 374 lines). Now what is undecided goes to the lane's journal at the stop and both takes commit.
    func testAStopCommitsTakesDecidedBehindOneStillRetrying() throws {
        let dir = try makeDirectory()
        let options = stopTestOptions(concurrency: 2, maxRecords: 5, maxBytes: 5 << 20, batchTimeout: 0.002)
        let stats = ComponentStats(component: "o", kind: .output)
        let context = quietContext(dir, stats)
        let sender = SplitSender(down: 5)
        let recordsIn = stats.counter("records_in", "")
        func batch(_ offsets: Range<Int64>) -> RecordBatch {
            var b = RecordBatch(source: SourceInfo(path: "/f.log", sourceID: 1), inputName: "in")
            for o in offsets {
                let text = Array("{\"m\":\"line \(o)\"}".utf8)
                let range = text.withUnsafeBytes { b.append(bytes: $0) }
                b.records.append(Record(timestamp: 1, offset: o, message: range, stream: .stdout))
            }
            return b
        }
        func stop(_ r: DeliveryRunner) {
            r.inputsStopping()
            r.close()
            XCTAssertTrue(r.join(timeout: 10))
        }
        let first = try DeliveryRunner(name: "o", options: options, context: context) { sender }
        first.start()
        recordsIn.add(10)
        first.enqueue(batch(0..<5), AckToken {})
        var deadline = Date().addingTimeInterval(30)
        while Date() < deadline && sender.triedDown.load(ordering: .relaxed) < 2 { usleep(5_000) }
        first.enqueue(batch(5..<10), AckToken {})
        let dead = { Accounting(output: stats).deadLettered }
        deadline = Date().addingTimeInterval(30)
        while Date() < deadline && dead() < 5 { usleep(5_000) }
        XCTAssertEqual(dead(), 5, "the second take is dead-lettered while the first one retries")
        stop(first)

        sender.healthy.store(true, ordering: .relaxed)
        let second = try DeliveryRunner(name: "o", options: options, context: context) { sender }
        second.start()
        deadline = Date().addingTimeInterval(30)
        while Date() < deadline && sender.accepted.withLock({ $0.count }) < 5 { usleep(5_000) }
        usleep(200_000)  // anything sent again would arrive by now
        let accepted = sender.accepted.withLock { $0 }
        XCTAssertEqual(accepted, [0: 1, 1: 1, 2: 1, 3: 1, 4: 1], "the retried take once, the dead-lettered one never")
        stop(second)
        let a = Accounting(output: stats)
        XCTAssertEqual(a.unaccounted, 0, "\(a)")
        XCTAssertEqual(a.pending, 0, "\(a)")
    }

    /// The same for a retry of lane groups: its first request dead-lettered its records, its second
    /// was still failing at the stop, and the groups went back whole to the journal, so the next
    /// start sent the dead letters again and they were delivered (torture seed 99403 run 43). Now
    /// the groups are settled and what was not decided is a new group.
    func testAStopSettlesLaneGroupsPartlyDecided() throws {
        let dir = try makeDirectory()
        let options = stopTestOptions(concurrency: 1, maxRecords: 10, maxBytes: 125 /* a few records a request */, batchTimeout: 0.05)
        let stats = ComponentStats(component: "o", kind: .output)
        let context = quietContext(dir, stats)
        let sender = LaneSplitSender()
        var b = RecordBatch(source: SourceInfo(path: "/f.log", sourceID: 1), inputName: "in")
        for o in Int64(0)..<10 {
            let text = Array("{\"m\":\"line \(o) xxxxxx\"}".utf8)
            let range = text.withUnsafeBytes { b.append(bytes: $0) }
            b.records.append(Record(timestamp: 1, offset: o, message: range, stream: .stdout))
        }
        stats.counter("records_in", "").add(10)
        let first = try DeliveryRunner(name: "o", options: options, context: context) { sender }
        first.start()
        first.enqueue(b, AckToken {})
        var deadline = Date().addingTimeInterval(30)
        while Date() < deadline && sender.downAnswers.load(ordering: .relaxed) < 2 { usleep(5_000) }
        let dead = sender.dead
        XCTAssertFalse(dead.isEmpty)
        XCTAssertLessThan(dead.count, 10, "a lane retry of several requests: the first dead-lettered, the next failing")
        XCTAssertEqual(Accounting(output: stats).deadLettered, dead.count)
        first.inputsStopping()
        first.close()
        XCTAssertTrue(first.join(timeout: 10))

        sender.healthy.store(true, ordering: .relaxed)
        let second = try DeliveryRunner(name: "o", options: options, context: context) { sender }
        second.start()
        let rest = Set(Int64(0)..<10).subtracting(dead)
        deadline = Date().addingTimeInterval(30)
        while Date() < deadline && sender.accepted.count < rest.count { usleep(5_000) }
        usleep(200_000)  // anything sent again would arrive by now
        XCTAssertEqual(sender.accepted, Dictionary(uniqueKeysWithValues: rest.map { ($0, 1) }),
                       "the failing records once, the dead letters (\(dead.sorted())) never")
        second.close()
        XCTAssertTrue(second.join(timeout: 10))
    }

    func testDiskBufferAccountingAcrossReloads() throws {
        for (i, c) in [(1, 1_024), (2, 4_096), (4, 1_024), (3, 65_536)].enumerated() {
            try run(seed: UInt64(1_000 + i), disk: true, concurrency: c.0, segmentBytes: c.1, reloads: 3)
        }
    }

    func testDiskBufferAccountingWithoutReload() throws {
        try run(seed: 77, disk: true, concurrency: 4, segmentBytes: 4_096, reloads: 0)
    }

    /// One or two segments that fill while delivery threads hold their records: drop_oldest deletes
    /// records in a thread's hands, and a reload then abandons them. The ring no longer has them, so
    /// they are dropped, not left for the next reader (torture seed 92001 run 40: 40-145 records
    /// neither delivered nor counted).
    func testDropOldestAccountingAcrossReloads() throws {
        for (i, c) in [(1, 2_048, 2_048), (2, 2_048, 4_096), (4, 1_024, 2_048)].enumerated() {
            try run(seed: UInt64(3_000 + i), disk: true, concurrency: c.0, segmentBytes: c.1, reloads: 4, dropOldestAt: c.2)
        }
    }

    func testMemoryBufferAccountingAcrossReloads() throws {
        for c in [1, 4] {
            try run(seed: UInt64(2_000 + c), disk: false, concurrency: c, segmentBytes: 1_024, reloads: 2)
        }
    }

    /// Reloads that give up on the delivery threads at once (a shutdown_timeout shorter than the
    /// requests): a retry of lane groups stopped half-way put them back whole and the stop counted
    /// them returned, records it had decided included (torture seed 99201 run 14: 19 records
    /// counted twice); a refusal re-added to an abandoned memory lane counted as decided.
    func testMemoryBufferAccountingWhenReloadsGiveUp() throws {
        for seed in 0..<Int(ProcessInfo.processInfo.environment["DELIVERY_MODEL_SEEDS"] ?? "6")! {
            try run(seed: UInt64(4_000 + seed), disk: false, concurrency: 1 + seed % 4, segmentBytes: 1_024, reloads: 4, stopTimeout: 0.01)
        }
    }

    /// The same with a disk buffer (the ring and the lane's journal keep what a stop gives up).
    func testDiskBufferAccountingWhenReloadsGiveUp() throws {
        for seed in 0..<Int(ProcessInfo.processInfo.environment["DELIVERY_MODEL_SEEDS"] ?? "6")! {
            try run(seed: UInt64(5_000 + seed), disk: true, concurrency: 1 + seed % 4, segmentBytes: 1_024 << (seed % 3), reloads: 4,
                    stopTimeout: 0.01)
        }
    }
}
