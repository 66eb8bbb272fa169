import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The disk buffer's promises with the real binary: damage costs only the damaged records, each counted
/// exactly (issue 12), and a kill -9 replays at most the batches that were in flight (issue 11).
final class BufferCorruptionTests: DGTestCase {
    private var bufferDir: String { sandbox.path("data/buffers/out") }

    private func config(port: Int, buffer: String, batchRecords: Int = 500, concurrency: Int = 2) -> String {
        DG.config([DGOutput(name: "out", uri: DG.url(port), buffer: buffer, batchRecords: batchRecords, concurrency: concurrency)])
    }

    /// With the receiver down, `n` lines go into the ring and are checkpointed; then the agent is
    /// SIGKILLed. The ring now holds every line and the input will never read them again.
    private func fillRing(_ prefix: String, lines n: Int, port: Int, buffer: String,
                          batchRecords: Int = 500, concurrency: Int = 2) throws -> [String] {
        try writeConfig(config(port: port, buffer: buffer, batchRecords: batchRecords, concurrency: concurrency))
        let lines = logLines(prefix, 0..<n)
        appendText(sandbox.path("logs/\(prefix).log"), joinedLines(lines))
        let agent = try startAgent()
        let size = Int64(n * lineLength(prefix))
        waitFor("every line checkpointed (so in the ring)", timeout: 90) { checkpointTotal() == size }
        killAgent(agent)
        return lines
    }

    /// Flipped bytes (two places in one segment, the first header of another), a zeroed 4 KiB page and
    /// a truncation in the middle of sealed segments, and a torn last block: after a restart with the
    /// receiver up, every line is delivered or counted (buffer_corrupt_records, or buffer_torn_records for
    /// the torn block), never both, never neither: the lines lost are exactly those of the damaged blocks,
    /// and their number is the counters'.
    func testDamageAtSeveralOffsetsIsDeliveredOrCountedExactly() throws {
        let port = try DG.freePort()
        let lines = try fillRing("dmg", lines: 4000, port: port,
                                 buffer: "{type: disk, max_bytes: 64MiB, segment_bytes: 64KiB, compress: false}")
        let segments = DG.segmentFiles(bufferDir)
        XCTAssertGreaterThanOrEqual(segments.count, 8, "several segments")
        guard segments.count >= 8 else { return }
        let blocks = segments.map { DG.ringBlocks($0) }
        for (s, b) in zip(segments, blocks) {
            XCTAssertEqual(b.reduce(0) { $0 + $1.length }, DG.fileSize(s), "\(s) parses as whole blocks")
            XCTAssertTrue(b.allSatisfy { $0.messages.count == $0.records }, "the test's parser read every record of \(s)")
        }

        // What each damage destroys: the blocks overlapping the damaged bytes (or past a cut).
        var lost = Set<String>()
        func damage(_ i: Int, _ range: Range<Int>, _ apply: () -> Void) {
            for b in blocks[i] where b.start < range.upperBound && b.start + b.length > range.lowerBound {
                lost.formUnion(b.messages)
            }
            apply()
        }
        func flip(_ i: Int, at offset: Int) {
            damage(i, offset..<(offset + 16)) { DG.overwrite(segments[i], at: offset, count: 16) }
        }
        let size = { (i: Int) in DG.fileSize(segments[i]) }
        flip(1, at: size(1) / 4)
        flip(1, at: size(1) * 3 / 4)
        flip(2, at: 0)  // the first block's header: found again by scanning, its records counted by number
        let page = 8192
        damage(4, page..<(page + 4096)) { DG.zero(segments[4], at: page, count: 4096) }
        let cut = size(6) / 2
        damage(6, cut..<Int.max) { XCTAssertEqual(truncate(segments[6], off_t(cut)), 0) }
        XCTAssertGreaterThan(lost.count, 0)
        // The last segment's last block cut after its header: counted when the agent starts, as torn
        // (buffer_torn_records), not as corrupt: a cut block is a write a crash interrupted, whose lines
        // are read again. Here its lines had been checkpointed (as a power failure can leave a write
        // acknowledged under fsync: interval), so they are missing at the receiver.
        let last = segments.count - 1
        let tail = try XCTUnwrap(blocks[last].last)
        XCTAssertEqual(truncate(segments[last], off_t(tail.start + 40)), 0)
        let torn = Set(tail.messages)

        let recv = try receiver(port: port)
        let agent = try startAgent()
        let expected = lines.filter { !lost.contains($0) && !torn.contains($0) }
        waitForReceived(expected, timeout: 120) { (try? recv.dgRecords()) ?? [] }
        var counted: Int?
        waitFor("buffer_corrupt_records settles at the damaged records", timeout: 60) {
            counted = self.outputCounter("buffer_corrupt_records")
            return counted == lost.count
        }
        XCTAssertEqual(outputCounter("buffer_torn_records"), torn.count)
        stopAgent(agent)
        let received = Set(try recv.dgRecords().map(\.message))
        let delivered = Set(lines).intersection(received)
        print("damage: \(lines.count) written, \(delivered.count) delivered, \(counted ?? -1) counted as corrupt, "
              + "\(lost.count) in damaged blocks, \(torn.count) in the torn last block")
        XCTAssertEqual(delivered.count + (counted ?? -1) + torn.count, lines.count, "delivered + counted + torn == written")
        XCTAssertTrue(delivered.isDisjoint(with: lost.union(torn)), "never both: no damaged record delivered")
        XCTAssertEqual(Set(lines).subtracting(delivered), lost.union(torn), "never neither: exactly the damaged records are missing")
        let c = DG.stopCounters(agent.stderr, output: "out")
        XCTAssertEqual(c["buffer_corrupt_records"], lost.count)
        XCTAssertEqual(c["buffer_torn_records"], torn.count)
    }

    /// kill -9 while the output drains a backlog: the cursor is written at every commit, so each kill
    /// replays at most the batches in flight (`concurrency` requests, plus one being gathered).
    func testKillDashNineReplaysAtMostTheBatchesInFlight() throws {
        let port = try DG.freePort()
        let (batch, concurrency, kills) = (100, 2, 5)
        let lines = try fillRing("replay", lines: 20_000, port: port,
                                 buffer: "{type: disk, max_bytes: 64MiB, segment_bytes: 1MiB}",
                                 batchRecords: batch, concurrency: concurrency)
        let recv = try receiver(port: port)
        var agent = try startAgent()
        for k in 1...kills {
            let target = lines.count * k / (kills + 2)
            waitFor("\(target) records received before kill \(k)", timeout: 120) { ((try? recv.snapshot().records.count) ?? 0) >= target }
            killAgent(agent)
            agent = try startAgent()
        }
        waitForReceived(lines, timeout: 180) { (try? recv.dgRecords()) ?? [] }
        stopAgent(agent)
        let t = DG.tally(try recv.dgRecords(), expected: lines)
        let bound = kills * (concurrency + 1) * batch
        print("replay after \(kills) kill -9: \(t.rawDuplicates) records sent twice for \(lines.count) "
              + "(bound \(bound): \(kills) x (concurrency \(concurrency) + 1) x batch \(batch))")
        assertNoLossNoDuplicateAfterDedup(t)
        XCTAssertLessThanOrEqual(t.rawDuplicates, bound)
    }
}

extension DG {
    /// Overwrites `count` bytes at `offset` with zeros.
    static func zero(_ path: String, at offset: Int, count: Int) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        precondition(fd >= 0, "open \(path)")
        let zeros = [UInt8](repeating: 0, count: count)
        _ = zeros.withUnsafeBytes { pwrite(fd, $0.baseAddress, count, off_t(offset)) }
        close(fd)
    }
}
