import XCTest
import Foundation
@testable import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

/// The disk ring driven step by step, mostly through its storage seam (`FaultyRingStorage`): exact
/// counts for full and drop_oldest events, write errors, crashes and power failures, commits inside a
/// block, and the conversion of format 1 segments.
final class DiskRingSeamTests: XCTestCase, RingTestHelpers {
    private var dirs: [String] = []

    override func tearDown() {
        for d in dirs { try? FileManager.default.removeItem(atPath: d) }
        dirs = []
    }

    private func tempDir() -> String {
        let d = NSTemporaryDirectory() + "anduin-ring-\(UUID().uuidString)"
        dirs.append(d)
        return d
    }

    private func openRing(_ dir: String, _ options: DiskRingOptions) throws -> (DiskRing, ComponentStats, RingLog) {
        let stats = ComponentStats(component: "test", kind: .output)
        let log = RingLog()
        return (try DiskRing(directory: dir, options: options, stats: stats, log: log.sink), stats, log)
    }

    /// drop_oldest driven step by step: 290-byte blocks, 3 per 1 KiB segment, 2 KiB cap. Exact counts.
    /// Records a delivery thread holds are counted when their segment goes, like unread ones: a
    /// kill -9 before their delivery loses them, and no count is kept after it.
    func testDropOldestExactCountsHeldRecordsIncluded() throws {
        let dir = tempDir()
        let (ring, stats, _) = try openRing(dir, smallOptions(whenFull: .drop_oldest, maxBytes: 2048))
        for i in 0..<6 { XCTAssertTrue(ring.append(batch("b\(i)", 2))) }  // segments 1 and 2 full: 1740 bytes
        XCTAssertEqual(counter(stats, "buffer_full_events"), 0)
        let inFlight = try XCTUnwrap(ring.read(maxRecords: 2, maxBytes: 1 << 20, timeout: 0))  // b0, not committed
        XCTAssertEqual(tags(inFlight.batch), expected("b0", 2))
        XCTAssertTrue(ring.append(batch("b6", 2)))  // segment 3: 2030 bytes, fits
        XCTAssertEqual(counter(stats, "buffer_full_events"), 0)
        XCTAssertTrue(ring.append(batch("b7", 2)))  // 2320 > 2048: segment 1 goes: b0 (held), b1, b2
        XCTAssertEqual(counter(stats, "buffer_full_events"), 1)
        XCTAssertEqual(counter(stats, "buffer_records_dropped"), 6)
        XCTAssertEqual(ring.bufferedRecords, 10, "b3..b7")
        // Delivered after all; its segment is gone: the commit moves nothing and says b0 was deleted
        // while held.
        XCTAssertEqual(ring.commit(inFlight.end, takes: [(inFlight.end, 2)]), 2)
        XCTAssertEqual(ring.bufferedRecords, 10)
        let held = try XCTUnwrap(ring.read(maxRecords: 2, maxBytes: 1 << 20, timeout: 0))  // b3, not committed
        XCTAssertEqual(tags(held.batch), expected("b3", 2))
        XCTAssertTrue(ring.append(batch("b8", 2)))  // 1740: fits (segment 3 full)
        XCTAssertTrue(ring.append(batch("b9", 2)))  // segment 4: 2030, fits
        XCTAssertEqual(counter(stats, "buffer_full_events"), 1)
        XCTAssertTrue(ring.append(batch("b10", 2)))  // 2320: segment 2 goes: b3 (held), b4, b5
        XCTAssertEqual(counter(stats, "buffer_full_events"), 2)
        XCTAssertEqual(counter(stats, "buffer_records_dropped"), 12)
        XCTAssertEqual(ring.bufferedRecords, 10, "b6..b10")
        let rest = readAll(ring)
        XCTAssertEqual(rest.tags, ["b6", "b7", "b8", "b9", "b10"].flatMap { expected($0, 2) })
        let restEnd = try XCTUnwrap(rest.end)
        XCTAssertEqual(ring.commit(restEnd, takes: [(held.end, 2), (restEnd, 10)]), 2, "b3 was deleted while held")
        XCTAssertEqual(ring.bufferedRecords, 0)
        ring.shutdown()
        // The cursor moved past the dropped segments before they went: a restart counts nothing again.
        let (again, againStats, _) = try openRing(dir, smallOptions(whenFull: .drop_oldest, maxBytes: 2048))
        XCTAssertEqual(again.bufferedRecords, 0)
        XCTAssertNil(again.read(maxRecords: 10, maxBytes: 1 << 20, timeout: 0))
        XCTAssertEqual(counter(againStats, "buffer_corrupt_records"), 0)
        again.shutdown()
    }

    /// .block driven step by step: each append that finds the ring full counts one event, however long
    /// it waits; it proceeds when a commit frees a segment.
    func testFullEventsAreCountedOncePerWaitingAppend() throws {
        let dir = tempDir()
        let (ring, stats, _) = try openRing(dir, smallOptions(maxBytes: 2048))
        for i in 0..<7 { XCTAssertTrue(ring.append(batch("b\(i)", 2))) }  // 2030 bytes: the next block does not fit
        XCTAssertEqual(counter(stats, "buffer_full_events"), 0)
        let done = Locked<Bool?>(nil)
        let late = batch("late", 2)
        let t = startThread(name: "appender") {
            let ok = ring.append(late)
            done.withLock { $0 = ok }
        }
        waitUntil("the appender found the ring full") { self.counter(stats, "buffer_full_events") == 1 }
        XCTAssertNil(done.current, "still waiting")
        let first = try XCTUnwrap(ring.read(maxRecords: 6, maxBytes: 1 << 20, timeout: 0))
        XCTAssertEqual(tags(first.batch), ["b0", "b1", "b2"].flatMap { expected($0, 2) })
        ring.commit(first.end)  // segment 1 is deleted: room for one block
        XCTAssertTrue(t.join(timeout: 30))
        XCTAssertEqual(done.current, true)
        XCTAssertEqual(counter(stats, "buffer_full_events"), 1)
        XCTAssertEqual(ring.bufferedRecords, 10)
        XCTAssertEqual(readAll(ring).tags, ["b3", "b4", "b5", "b6", "late"].flatMap { expected($0, 2) })
        ring.shutdown()
    }

    /// ENOSPC and EIO through the storage seam: the append waits and retries (counted exactly, one
    /// retry per failure), never leaves half a block, and everything is read back once.
    func testWriteErrorsFromTheStorageSeamAreRetriedExactly() throws {
        let io = FaultyRingStorage()
        let stats = ComponentStats(component: "test", kind: .output)
        let log = RingLog()
        let opts = DiskRingOptions(maxBytes: 1 << 20, segmentBytes: 4096, fsync: .always, compress: false)
        let ring = try DiskRing(storage: io, options: opts, stats: stats, log: log.sink)
        XCTAssertTrue(ring.append(batch("a", 2)))
        io.inject(.write, ENOSPC, count: 2)
        io.inject(.sync, EIO, count: 1)
        XCTAssertTrue(ring.append(batch("b", 2)))
        XCTAssertEqual(counter(stats, "buffer_write_errors"), 3)
        XCTAssertEqual(io.failures, 3)
        XCTAssertTrue(log.contains("No space left on device"), "\(log.lines.current)")
        XCTAssertTrue(log.contains("works again after 3 failed attempts"), "\(log.lines.current)")
        // A full disk that cuts a write in the middle: the partial block is cut back before the retry.
        let used = io.names().reduce(0) { $0 + (io.contents($1)?.count ?? 0) }
        io.setCapacity(used + 100)
        let done = Locked<Bool?>(nil)
        let c = batch("c", 2)
        let t = startThread(name: "appender") {
            let ok = ring.append(c)
            done.withLock { $0 = ok }
        }
        waitUntil("the append hit the full disk") { self.counter(stats, "buffer_write_errors") >= 4 }
        XCTAssertNil(done.current)
        io.setCapacity(.max)
        XCTAssertTrue(t.join(timeout: 30))
        XCTAssertEqual(done.current, true)
        XCTAssertEqual(readAll(ring).tags, ["a", "b", "c"].flatMap { expected($0, 2) })
        ring.crashForTesting()
        io.crash(powerLoss: true)
        let again = try DiskRing(storage: io, options: opts, stats: ComponentStats(component: "t2", kind: .output), log: { _ in })
        XCTAssertEqual(again.bufferedRecords, 6, "every block was whole and synced before append returned")
        XCTAssertEqual(readAll(again).tags, ["a", "b", "c"].flatMap { expected($0, 2) })
        again.shutdown()
    }

    /// A stop (`takeWhatIsQueued`): an append waiting for room in a full block-mode ring is written
    /// past max_bytes at once; one retrying a failed write (a full disk) gives up at once, its records
    /// left to be read again. Neither holds the stop up.
    func testAStopWritesPastTheCapAndGivesUpOnAFullDisk() throws {
        let io = FaultyRingStorage()
        let stats = ComponentStats(component: "test", kind: .output)
        let log = RingLog()
        let opts = DiskRingOptions(maxBytes: 2048, segmentBytes: 1024, whenFull: .block, fsync: .never, compress: false)
        let ring = try DiskRing(storage: io, options: opts, stats: stats, log: log.sink)
        for i in 0..<6 { XCTAssertTrue(ring.append(batch("b\(i)", 2))) }  // 1740 bytes of 2048
        let done = Locked<Bool?>(nil)
        let b6 = batch("b6", 2), b7 = batch("b7", 2)
        let waiting = startThread(name: "appender") {
            let ok = ring.append(b6) && ring.append(b7)
            done.withLock { $0 = ok }
        }
        waitUntil("the append waits for room") { self.counter(stats, "buffer_full_events") == 1 }
        XCTAssertNil(done.current)
        ring.takeWhatIsQueued()
        XCTAssertTrue(waiting.join(timeout: 30))
        XCTAssertEqual(done.current, true, "written past the cap")
        XCTAssertGreaterThan(ring.bufferedBytes, 2048)

        let used = io.names().reduce(0) { $0 + (io.contents($1)?.count ?? 0) }
        io.setCapacity(used + 100)
        let start = monotonicSeconds()
        XCTAssertFalse(ring.append(batch("b8", 2)), "a full disk at a stop: given up")
        XCTAssertLessThan(monotonicSeconds() - start, 5)
        XCTAssertTrue(log.contains("stopping: what is not written is read again"), "\(log.lines.current)")
        XCTAssertEqual(readAll(ring).tags, (0..<8).flatMap { expected("b\($0)", 2) }, "b8 not in the ring")
        ring.shutdown()
    }

    /// A format 1 block (28-byte header, no record number) made from a format 2 one.
    private func legacyBlock(_ b: EncodedBatch) -> [UInt8] {
        let v2 = BlockCodec.encode(b, 0..<b.count, compress: false)
        var v1 = Array(v2[0..<24]) + [0, 0, 0, 0] + Array(v2[BlockHeader.size...])
        v1[4] = 1
        let crc = v1.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<24])) }
        withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { v1[24 + i] = $0[i] } }
        return v1
    }

    /// Segments and cursor written by an earlier version are converted at start-up: what was delivered
    /// stays delivered, everything else is read, damaged format 1 blocks are counted.
    func testFormatOneSegmentsAreConverted() throws {
        let dir = tempDir()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let blocks = ["a", "b", "c"].map { legacyBlock(batch($0, 3)) }
        var seg1 = blocks[0] + blocks[1]
        seg1[blocks[0].count + 28 + 10] ^= 0xFF  // b's payload is damaged
        try Data(seg1).write(to: URL(fileURLWithPath: dir + "/" + SegmentName.make(1)))
        try Data(blocks[2]).write(to: URL(fileURLWithPath: dir + "/" + SegmentName.make(2)))
        // A format 1 cursor: a was delivered.
        var cursor = [UInt8](repeating: 0, count: 28)
        cursor.withUnsafeMutableBytes { out in
            out.storeBytes(of: CursorFile.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
            out.storeBytes(of: UInt32(1).littleEndian, toByteOffset: 4, as: UInt32.self)
            out.storeBytes(of: UInt64(1).littleEndian, toByteOffset: 8, as: UInt64.self)
            out.storeBytes(of: Int64(blocks[0].count).littleEndian, toByteOffset: 16, as: Int64.self)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: out[0..<24]))
            out.storeBytes(of: crc.littleEndian, toByteOffset: 24, as: UInt32.self)
        }
        try Data(cursor).write(to: URL(fileURLWithPath: dir + "/cursor"))

        let (ring, stats, log) = try openRing(dir, smallOptions())
        XCTAssertTrue(log.contains("converted"), "\(log.lines.current)")
        XCTAssertEqual(counter(stats, "buffer_corrupt_records"), 3, "b's records")
        XCTAssertEqual(ring.lostAtStart, 3, "b's records, buffered by the earlier run")
        XCTAssertEqual(ring.bufferedRecords, 3)
        let all = readAll(ring)
        XCTAssertEqual(all.tags, expected("c", 3))
        ring.commit(try XCTUnwrap(all.end))
        XCTAssertTrue(ring.append(batch("d", 1)))
        ring.shutdown()
        let (again, _, _) = try openRing(dir, smallOptions())
        XCTAssertEqual(readAll(again).tags, ["d-0"])
        again.shutdown()
    }

    /// A format 1 segment that cannot be converted is set aside and its records counted as lost; the
    /// others are converted and delivered, and new segments never reuse its name.
    func testUnconvertibleSegmentIsSetAsideAndCounted() throws {
        let io = FaultyRingStorage()
        for (id, tag) in [(UInt64(1), "a"), (2, "b")] {
            let f = try io.open(SegmentName.make(id), create: true)
            try io.write(f, bytes: legacyBlock(batch(tag, 3)), at: 0)
            io.close(f)
        }
        io.inject(.rename, EIO, prefix: SegmentName.make(2))
        let opts = smallOptions()
        let log = RingLog()
        let stats = ComponentStats(component: "t", kind: .output)
        let ring = try DiskRing(storage: io, options: opts, stats: stats, log: log.sink)
        XCTAssertTrue(log.contains("cannot convert"), "\(log.lines.current)")
        XCTAssertEqual(counter(stats, "buffer_corrupt_records"), 3)
        XCTAssertEqual(ring.lostAtStart, 3)
        XCTAssertEqual(ring.bufferedRecords, 3)
        XCTAssertTrue(ring.append(batch("c", 1)))
        XCTAssertEqual(readAll(ring).tags, expected("a", 3) + ["c-0"])
        XCTAssertTrue(io.names().contains(SegmentName.make(2) + ".format1"), "\(io.names())")
        XCTAssertFalse(io.names().contains(SegmentName.make(2)), "a new segment does not take its name")
        ring.shutdown()
    }

    /// An input batch is one block; an output batch may be smaller: reads stop inside the block, commits
    /// name the record, and a crash resumes exactly after the last committed record.
    func testCommitsInsideABlockResumeExactlyAfterACrash() throws {
        let io = FaultyRingStorage()
        let opts = DiskRingOptions(maxBytes: 1 << 20, segmentBytes: 64 * 1024, fsync: .always, compress: true)
        let ring = try DiskRing(storage: io, options: opts, stats: ComponentStats(component: "t", kind: .output), log: { _ in })
        XCTAssertTrue(ring.append(batch("big", 10)))
        XCTAssertTrue(ring.append(batch("next", 2)))
        var got: [[String]] = []
        for _ in 0..<3 {
            let r = try XCTUnwrap(ring.read(maxRecords: 3, maxBytes: 1 << 20, timeout: 0))
            got.append(tags(r.batch))
            ring.commit(r.end)
        }
        XCTAssertEqual(got, [["big-0", "big-1", "big-2"], ["big-3", "big-4", "big-5"], ["big-6", "big-7", "big-8"]])
        XCTAssertEqual(ring.bufferedRecords, 3)
        _ = ring.read(maxRecords: 3, maxBytes: 1 << 20, timeout: 0)  // big-9 and next: read, not committed
        ring.crashForTesting()
        io.crash(powerLoss: true)
        let again = try DiskRing(storage: io, options: opts, stats: ComponentStats(component: "t", kind: .output), log: { _ in })
        XCTAssertEqual(again.bufferedRecords, 3)
        XCTAssertEqual(readAll(again).tags, ["big-9"] + expected("next", 2))
        again.shutdown()
    }

    /// kill -9 after commits: the cursor was written at every commit, so only the uncommitted read
    /// comes back; with a power failure under `.always`, the same.
    func testCommitsSurviveCrashAndPowerLoss() throws {
        for powerLoss in [false, true] {
            let io = FaultyRingStorage()
            let opts = DiskRingOptions(maxBytes: 1 << 20, segmentBytes: 1024, fsync: powerLoss ? .always : .never, compress: true)
            let ring = try DiskRing(storage: io, options: opts, stats: ComponentStats(component: "t", kind: .output), log: { _ in })
            for i in 0..<10 { XCTAssertTrue(ring.append(batch("b\(i)", 2))) }
            for _ in 0..<4 { ring.commit(try XCTUnwrap(ring.read(maxRecords: 2, maxBytes: 1 << 20, timeout: 0)).end) }
            _ = ring.read(maxRecords: 2, maxBytes: 1 << 20, timeout: 0)  // b4: read, not committed
            ring.crashForTesting()
            io.crash(powerLoss: powerLoss)
            let again = try DiskRing(storage: io, options: opts, stats: ComponentStats(component: "t", kind: .output), log: { _ in })
            XCTAssertEqual(again.bufferedRecords, 12)
            XCTAssertEqual(readAll(again).tags, (4..<10).flatMap { expected("b\($0)", 2) }, "power loss: \(powerLoss)")
            again.shutdown()
        }
    }

    private func waitUntil(_ what: String, timeout: Double = 30, _ condition: () -> Bool) {
        let deadline = monotonicSeconds() + timeout
        while !condition() {
            if monotonicSeconds() > deadline { return XCTFail("timed out waiting until \(what)") }
            usleep(1000)
        }
    }
}

final class DiskRingCursorFileTests: XCTestCase {
    /// Every commit writes the cursor file in place (no shutdown, no flusher needed).
    func testEveryCommitWritesTheCursorFile() throws {
        for fsync in [FsyncPolicy.never, .interval(60), .always] {
            let dir = NSTemporaryDirectory() + "anduin-ring-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let ring = try DiskRing(directory: dir, options: DiskRingOptions(maxBytes: 1 << 20, segmentBytes: 4096, fsync: fsync),
                                    stats: ComponentStats(component: "t", kind: .output), log: { _ in })
            var b = EncodedBatch()
            Array("{}".utf8).withUnsafeBytes { b.append(document: $0, timestamp: 0, sourceID: 0, offset: 0) }
            for _ in 0..<3 { XCTAssertTrue(ring.append(b)) }
            let r = try XCTUnwrap(ring.read(maxRecords: 1, maxBytes: 1 << 20, timeout: 0))
            ring.commit(r.end)
            let bytes = try XCTUnwrap(FileManager.default.contents(atPath: dir + "/cursor"), "\(fsync)")
            XCTAssertEqual(try CursorFile.decode(Array(bytes)).get().position, r.end)
            XCTAssertEqual(try CursorFile.decode(Array(bytes)).get().seq, 2)
            ring.crashForTesting()
        }
    }
}
