import XCTest
import Foundation
import Logging
@testable import AnduinCore

/// A sender that answers each request with the next scripted answer (the last one repeats) and keeps
/// the offsets of every request it got.
private final class ScriptSender: BatchSender {
    var answers: [(EncodedBatch) -> SendResult]
    var requests: [[Int64]] = []
    init(_ answers: [(EncodedBatch) -> SendResult]) { self.answers = answers }
    func send(_ batch: EncodedBatch) -> SendResult {
        requests.append(batch.records.map(\.offset))
        let next = answers.count > 1 ? answers.removeFirst() : answers[0]
        return next(batch)
    }
}

/// `RetryPolicy` alone, against scripted answers: what each record becomes (delivered, dead-lettered,
/// in the lane, retried in place), how requests split, and what `decided` reports.
final class RetryPolicyTests: XCTestCase {
    private var dirs: [String] = []

    override func tearDown() {
        for d in dirs { try? FileManager.default.removeItem(atPath: d) }
        dirs = []
    }

    private struct Parts {
        let policy: RetryPolicy
        let stats: ComponentStats
        let lane: RetryLane
        let waiter: RetryWaiter
        let dir: String
    }

    private func parts(_ sender: ScriptSender, configure: (inout DeliveryOptions) -> Void = { _ in }) throws -> Parts {
        let dir = NSTemporaryDirectory() + "anduin-retry-policy-\(UUID().uuidString)"
        dirs.append(dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var options = DeliveryOptions(buffer: .memory(maxRecords: 100))
        options.retry.initial = 0.001
        options.retry.max = 0.002
        configure(&options)
        let stats = ComponentStats(component: "o", kind: .output)
        var logger = Logger(label: "policy")
        logger.logLevel = .critical
        let lane = RetryLane(maxBytes: options.retry.laneMaxBytes, journalPath: nil, fsync: .never, stats: stats, log: { _ in })
        let waiter = RetryWaiter(diskBuffered: false, retryInitial: options.retry.initial, retryMax: options.retry.max)
        let policy = RetryPolicy(options: options, sender: sender,
                                 progress: DeliveryProgress(name: "o", stallAfter: 60, logger: logger, stats: stats),
                                 deadLetters: DeadLetterStore(dataDirectory: dir, output: "o", options: options.deadLetter,
                                                              fsync: .never, stats: stats),
                                 lane: lane, waiter: waiter, slot: 0)
        return Parts(policy: policy, stats: stats, lane: lane, waiter: waiter, dir: dir)
    }

    private func work(_ n: Int, docBytes: Int = 20) -> DeliveryWork {
        var b = EncodedBatch()
        for i in 0..<n {
            let doc = Array(("{\"i\":\(i),\"p\":\"" + String(repeating: "x", count: max(0, docBytes - 14)) + "\"}").utf8)
            doc.withUnsafeBytes { b.append(document: $0, timestamp: 1, sourceID: 1, offset: Int64(i)) }
        }
        return DeliveryWork(b)
    }

    private func counter(_ p: Parts, _ name: String) -> Int {
        p.stats.counters.first { $0.name == name }?.current ?? 0
    }

    /// 413 for anything over one record: halves until one record is alone, then that one is
    /// dead-lettered; every other record is delivered once.
    func testTooLargeSplitsThenDeadLettersTheLoneRecord() throws {
        let sender = ScriptSender([{ b in b.count > 1 || b.records[0].offset == 2 ? .tooLarge : .delivered }])
        let p = try parts(sender)
        var decided = 0
        XCTAssertTrue(p.policy.deliver(work(5), tickets: [], fromLane: false, decided: &decided))
        XCTAssertEqual(decided, 5)
        XCTAssertEqual(counter(p, "records_out"), 4)
        XCTAssertEqual(counter(p, "dead_lettered_records"), 1)
        XCTAssertEqual(counter(p, "batch_splits"), sender.requests.filter { $0.count > 1 }.count)
        // Each record is sent alone exactly once in the end.
        let alone = sender.requests.filter { $0.count == 1 }.map { $0[0] }.sorted()
        XCTAssertEqual(alone, [0, 1, 2, 3, 4])
    }

    /// A destination too slow for a whole batch (no answer within the request timeout) gets it in
    /// halves, in order, until the requests are small enough (torture seed 61210 run 27: 4,404-record
    /// requests with a 2 s timeout timed out for ever against a slow destination).
    func testTimedOutRequestsAreRetriedInHalves() throws {
        let sender = ScriptSender([{ b in b.count > 2 ? .timedOut("no complete response within 2 s") : .delivered }])
        let p = try parts(sender)
        var decided = 0
        XCTAssertTrue(p.policy.deliver(work(9), tickets: [], fromLane: false, decided: &decided))
        XCTAssertEqual(decided, 9)
        XCTAssertEqual(counter(p, "records_out"), 9)
        XCTAssertEqual(sender.requests.filter { $0.count <= 2 }.flatMap { $0 }, Array(0..<9), "every record once, in order")
        // Each timed-out request was split; so were requests larger than the cap it left.
        XCTAssertGreaterThanOrEqual(counter(p, "batch_splits"), sender.requests.filter { $0.count > 2 }.count)
    }

    /// A timeout caps the requests that follow, in later work too, so a destination still busy with
    /// a request it could not answer in time is not sent the whole size again; answers in time let
    /// the cap grow back until it is gone.
    func testATimeoutCapsLaterRequestsUntilAnswersComeInTime() throws {
        let slowAbove = Locked(2)
        let sender = ScriptSender([{ b in b.count > slowAbove.withLock { $0 } ? .timedOut("no complete response within 2 s") : .delivered }])
        let p = try parts(sender) { $0.batch.maxRecords = 64 }
        var decided = 0
        XCTAssertTrue(p.policy.deliver(work(9), tickets: [], fromLane: false, decided: &decided))
        let cap = try XCTUnwrap(p.waiter.requestCap, "a timeout leaves a cap")
        XCTAssertLessThanOrEqual(cap, 3)
        let before = sender.requests.count
        XCTAssertTrue(p.policy.deliver(work(9), tickets: [], fromLane: false, decided: &decided))
        XCTAssertLessThanOrEqual(sender.requests[before].count, 3, "later work starts at the cap, not at 9")
        XCTAssertEqual(decided, 18)
        // The destination is fast again: the cap grows back by a quarter per answer and goes.
        slowAbove.withLock { $0 = 1000 }
        for _ in 0..<40 where p.waiter.requestCap != nil {
            XCTAssertTrue(p.policy.deliver(work(64), tickets: [], fromLane: false, decided: &decided))
        }
        XCTAssertNil(p.waiter.requestCap, "answers in time remove the cap")
        let last = sender.requests.count
        XCTAssertTrue(p.policy.deliver(work(64), tickets: [], fromLane: false, decided: &decided))
        XCTAssertEqual(sender.requests[last].count, 64)
    }

    /// Per-item 429s go to the lane (the rest is delivered); the whole work is decided.
    func testPartialRefusalsGoToTheLane() throws {
        let sender = ScriptSender([{ b in .perRecord(b.records.map { $0.offset % 2 == 0 ? .delivered : .retry(status: 429, reason: "busy") }) }])
        let p = try parts(sender)
        var decided = 0
        XCTAssertTrue(p.policy.deliver(work(6), tickets: [], fromLane: false, decided: &decided))
        XCTAssertEqual(decided, 6)
        XCTAssertEqual(counter(p, "records_out"), 3)
        XCTAssertEqual(p.lane.records, 3)
        XCTAssertEqual(sender.requests.count, 1)
    }

    /// With the lane full, the refused records are retried in place until accepted; records already
    /// delivered are not sent again.
    func testFullLaneRetriesInPlaceWithoutResendingDelivered() throws {
        let sender = ScriptSender([
            { b in .perRecord(b.records.map { $0.offset < 2 ? .delivered : .retry(status: 503, reason: "later") }) },
            { _ in .retryAll(status: 503, reason: "later") },
            { _ in .delivered },
        ])
        let p = try parts(sender) { $0.retry.laneMaxBytes = 1 }
        // Something already waits in the lane, so a fresh refusal does not fit.
        XCTAssertTrue(p.lane.add(work(1, docBytes: 40), due: .infinity, tickets: [], force: true))
        var decided = 0
        XCTAssertTrue(p.policy.deliver(work(4), tickets: [], fromLane: false, decided: &decided))
        XCTAssertEqual(decided, 4)
        XCTAssertEqual(sender.requests, [[0, 1, 2, 3], [2, 3], [2, 3]])
        XCTAssertEqual(counter(p, "records_out"), 4)
    }

    /// A refusal repeated past `max_attempts` dead-letters the records with the budget in the reason.
    func testRetryBudgetDeadLettersAfterMaxAttempts() throws {
        let sender = ScriptSender([{ _ in .retryAll(status: 503, reason: "down") }])
        let p = try parts(sender) { $0.retry.maxAge = 0; $0.retry.maxAttempts = 3 }
        var decided = 0
        XCTAssertTrue(p.policy.deliver(work(2), tickets: [], fromLane: false, decided: &decided))
        XCTAssertEqual(decided, 2)
        XCTAssertEqual(sender.requests.count, 3)
        XCTAssertEqual(counter(p, "dead_lettered_records"), 2)
        let files = DeadLetterStore.files(DeadLetterStore.directory(dataDirectory: p.dir, output: "o"))
        let text = try files.map { try String(contentsOfFile: $0.path, encoding: .utf8) }.joined()
        XCTAssertTrue(text.contains("retry budget spent (3 attempts"), text)
    }

    /// An outage (no answer) is retried for as long as it lasts, whatever the budget; a stop with a
    /// disk buffer makes `deliver` give up, and `decided` says what it had decided by then.
    func testOutageIgnoresTheBudgetAndAStopReportsWhatWasDecided() throws {
        let sender = ScriptSender([
            { b in .perRecord(b.records.map { $0.offset == 0 ? .delivered : .retry(status: 503, reason: "x") }) },
            { _ in .unreachable("refused") },
        ])
        let p = try parts(sender) {
            $0.retry.maxAge = 0; $0.retry.maxAttempts = 2
            $0.retry.laneMaxBytes = 1
        }
        XCTAssertTrue(p.lane.add(work(1, docBytes: 40), due: .infinity, tickets: [], force: true))
        let stopper = DispatchQueue(label: "stop")
        let waiter = p.waiter
        stopper.asyncAfter(deadline: .now() + 0.3) { waiter.abandon() }
        var decided = 0
        XCTAssertFalse(p.policy.deliver(work(3), tickets: [], fromLane: false, decided: &decided))
        XCTAssertEqual(decided, 1, "record 0 was delivered before the stop")
        XCTAssertGreaterThan(sender.requests.count, 3, "the outage was retried past max_attempts")
        XCTAssertEqual(counter(p, "dead_lettered_records"), 0)
    }

    /// Takes finish out of order; positions are committed in take order, and the records of finished
    /// takes behind an unfinished one are counted until committed or abandoned.
    func testCommitOrder() {
        var order = RingCommitOrder()
        let seqs = (0..<4).map { _ in order.begin() }
        func pos(_ i: Int) -> RingPosition { RingPosition(segment: 1, offset: Int64(i * 100)) }
        XCTAssertTrue(order.finish(seqs[1], end: pos(1), records: 5).isEmpty)
        XCTAssertTrue(order.finish(seqs[3], end: pos(3), records: 7).isEmpty)
        XCTAssertEqual(order.decidedUncommitted, 12)
        let both = order.finish(seqs[0], end: pos(0), records: 2)
        XCTAssertEqual(both.map(\.end), [pos(0), pos(1)])
        XCTAssertEqual(both.map(\.records), [2, 5])
        XCTAssertEqual(order.decidedUncommitted, 7)
        let left = order.abandonUncommitted()
        XCTAssertEqual(left.map(\.end), [pos(3)])
        XCTAssertEqual(left.map(\.records), [7])
        XCTAssertEqual(order.decidedUncommitted, 0)
        // Take 3's finish was forgotten: take 2 commits itself only.
        XCTAssertEqual(order.finish(seqs[2], end: pos(2), records: 1).map(\.end), [pos(2)])
        XCTAssertEqual(order.decidedUncommitted, 0)
    }
}
