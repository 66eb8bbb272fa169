import XCTest
import Foundation
@testable import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

/// The disk ring outside the shapes of the other tests (issue 24): several appenders and delivery
/// threads at once on the real filesystem, incompressible records of random sizes up to several
/// segments, the smallest segment size, segments deleted under a reader that waits for data, and the
/// buffer directory deleted while running.
final class DiskRingStressTests: XCTestCase {
    private var dirs: [String] = []

    override func tearDown() {
        for d in dirs { try? FileManager.default.removeItem(atPath: d) }
        dirs = []
    }

    private func tempDir() -> String {
        let d = NSTemporaryDirectory() + "anduin-ring-stress-\(UUID().uuidString)"
        dirs.append(d)
        return d
    }

    /// `{"i":N,"pad":"<hex>"}` with `pad` random hex (LZ4 cannot shrink it), `size` bytes of it.
    static func document(_ i: Int, padding size: Int, _ rng: inout XorShift) -> [UInt8] {
        let hex = Array("0123456789abcdef".utf8)
        var doc = Array("{\"i\":\(i),\"pad\":\"".utf8)
        doc.reserveCapacity(doc.count + size + 2)
        for _ in 0..<size { doc.append(hex[Int(rng.next() & 15)]) }
        doc.append(contentsOf: Array("\"}".utf8))
        return doc
    }

    /// Appenders and readers run at once; the readers commit in take order (as delivery threads do,
    /// `RingCommitOrder`) while the writer rolls and the cursor deletes segments under readers that
    /// wait for data. Every record comes out exactly once, in order per appender, and the ring ends
    /// empty. With the lock-held wait the reader used to do (issue 24, item 5), a release build read a
    /// segment array shortened by a deletion during the wait and trapped.
    func testConcurrentAppendersAndReadersWithSmallSegments() throws {
        for (segment, compress) in [(DiskRingOptions.minimumSegmentBytes, true), (4096, false), (64 * 1024, true)] {
            try runConcurrent(segmentBytes: segment, compress: compress, appenders: 2, readers: 2, recordsEach: 1500)
        }
    }

    private func runConcurrent(segmentBytes: Int, compress: Bool, appenders: Int, readers: Int, recordsEach: Int) throws {
        let dir = tempDir()
        let stats = ComponentStats(component: "stress", kind: .output)
        let options = DiskRingOptions(maxBytes: 8 << 20, segmentBytes: segmentBytes, whenFull: .block,
                                      fsync: .interval(0.05), compress: compress)
        let ring = try DiskRing(directory: dir, options: options, stats: stats, log: { _ in })
        let total = appenders * recordsEach
        let seen = Locked<[Int: Int]>([:])
        let order = Locked(RingCommitOrder())
        let failures = Locked<[String]>([])
        let group = DispatchGroup()

        for a in 0..<appenders {
            group.enter()
            Thread.detachNewThread {
                var rng = XorShift(state: 0x9E37_79B9 &+ UInt64(a) &* 7919)
                var i = 0
                while i < recordsEach {
                    var batch = EncodedBatch()
                    let n = 1 + Int(rng.next() % 20)
                    for _ in 0..<min(n, recordsEach - i) {
                        // Mostly small; now and then larger than a segment.
                        let r = rng.next() % 100
                        let size = r < 80 ? Int(rng.next() % 200) : r < 97 ? Int(rng.next() % UInt64(segmentBytes)) : segmentBytes + Int(rng.next() % UInt64(2 * segmentBytes))
                        let doc = Self.document(a * recordsEach + i, padding: size, &rng)
                        doc.withUnsafeBytes { batch.append(document: $0, timestamp: Int64(i), sourceID: UInt64(a), offset: Int64(i)) }
                        i += 1
                    }
                    if !ring.append(batch) { failures.withLock { $0.append("append refused") }; break }
                }
                group.leave()
            }
        }
        for _ in 0..<readers {
            group.enter()
            Thread.detachNewThread {
                var rng = XorShift(state: 0xC0FFEE)
                while seen.withLock({ $0.count }) < total {
                    // `read` and `begin` together, as a delivery thread takes from the ring in order.
                    let take: (batch: EncodedBatch, end: RingPosition, seq: Int)? = order.withLock { o in
                        guard let r = ring.read(maxRecords: 1 + Int(rng.next() % 300), maxBytes: 256 * 1024, timeout: 0.05) else { return nil }
                        return (r.batch, r.end, o.begin())
                    }
                    guard let take else { continue }
                    seen.withLock { s in
                        for k in 0..<take.batch.count {
                            let i = take.batch.withDocument(k) { DiskRingStressTests.index(of: $0) }
                            s[i, default: 0] += 1
                        }
                    }
                    if rng.next() % 4 == 0 { usleep(UInt32(rng.next() % 2000)) }  // requests finish out of order
                    if let p = order.withLock({ $0.finish(take.seq, end: take.end).last?.end }) { ring.commit(p) }
                }
                group.leave()
            }
        }
        let finished = group.wait(timeout: .now() + 240)
        XCTAssertEqual(finished, .success, "segment \(segmentBytes): threads did not finish")
        guard finished == .success else { ring.shutdown(); return }
        XCTAssertEqual(failures.current, [])
        let counts = seen.current
        XCTAssertEqual(counts.count, total, "segment \(segmentBytes): every record came out")
        XCTAssertEqual(counts.values.filter { $0 != 1 }.count, 0, "segment \(segmentBytes): no record twice")
        XCTAssertEqual(ring.bufferedRecords, 0, "segment \(segmentBytes): all committed")
        ring.shutdown()
    }

    /// The N of a `{"i":N,…}` document (the model test's reader).
    static func index(of doc: UnsafeRawBufferPointer) -> Int { RingModel.index(of: doc) }

    // MARK: the directory deleted while running

    private func batch(_ range: Range<Int>, padding: Int = 100) -> EncodedBatch { Self.batch(range, padding: padding) }

    private static func batch(_ range: Range<Int>, padding: Int) -> EncodedBatch {
        var rng = XorShift(state: UInt64(range.lowerBound + 1))
        var b = EncodedBatch()
        for i in range {
            let doc = Self.document(i, padding: padding, &rng)
            doc.withUnsafeBytes { b.append(document: $0, timestamp: 0, sourceID: 1, offset: Int64(i)) }
        }
        return b
    }

    private func drain(_ ring: DiskRing) -> [Int] {
        var out: [Int] = []
        while let r = ring.read(maxRecords: 1000, maxBytes: 1 << 20, timeout: 0.2) {
            for k in 0..<r.batch.count { out.append(r.batch.withDocument(k) { Self.index(of: $0) }) }
            ring.commit(r.end)
        }
        return out
    }

    /// `rm -rf` of the buffer directory while running: the records of the active segment survive (the
    /// writer recreates it from its open handle), those of sealed segments are counted as lost, new
    /// segments can be created again, the cursor is written again, and a restart finds all of it.
    func testDirectoryDeletedWhileRunning() throws {
        let dir = tempDir()
        let stats = ComponentStats(component: "rm", kind: .output)
        let log = RingLog()
        let options = DiskRingOptions(maxBytes: 1 << 20, segmentBytes: 4096, whenFull: .block, fsync: .never, compress: false)
        var ring: DiskRing? = try DiskRing(directory: dir, options: options, stats: stats, log: log.sink)
        // 0..<60 spread over sealed segments; the first 20 delivered and committed.
        for k in 0..<6 { XCTAssertTrue(ring!.append(batch((k * 10)..<(k * 10 + 10)))) }
        let first = ring!.read(maxRecords: 20, maxBytes: 1 << 20, timeout: 1)
        XCTAssertEqual(first?.batch.count, 20)
        ring!.commit(first!.end)

        try FileManager.default.removeItem(atPath: dir)

        // The append after the deletion recreates the active segment (with what it held) and the
        // directory; the ones after it roll into new segments.
        for k in 6..<12 { XCTAssertTrue(ring!.append(batch((k * 10)..<(k * 10 + 10)))) }
        XCTAssertTrue(log.contains("was deleted while in use"), log.lines.current.joined(separator: "\n"))
        let got = drain(ring!)
        let corrupt = stats.counters.first { $0.name == "buffer_corrupt_records" }?.current ?? -1
        // Every record after the first 20 is delivered or counted as lost, never both, never neither.
        XCTAssertEqual(got, got.sorted(), "order kept")
        XCTAssertEqual(Set(got).count, got.count, "none twice")
        XCTAssertEqual(got.count + corrupt, 100, "delivered \(got.count), counted lost \(corrupt)")
        XCTAssertTrue(got.contains(119), "the newest records are delivered")
        XCTAssertEqual(ring!.bufferedRecords, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/cursor"), "the cursor file is written again")

        // More after the drain, then a restart: the cursor is where the drain left it.
        XCTAssertTrue(ring!.append(batch(120..<130)))
        ring!.shutdown()
        ring = nil
        let again = try DiskRing(directory: dir, options: options, stats: ComponentStats(component: "rm2", kind: .output), log: { _ in })
        XCTAssertEqual(drain(again), Array(120..<130), "a restart delivers only what was not delivered")
        again.shutdown()
    }

    /// The same on the fake storage, with the reader waiting on an empty ring when the directory goes:
    /// without an append, the reader asks the writer to recreate the active segment.
    func testDirectoryDeletedUnderAnIdleWriter() throws {
        let io = FaultyRingStorage()
        let stats = ComponentStats(component: "rm-idle", kind: .output)
        let log = RingLog()
        let options = DiskRingOptions(maxBytes: 1 << 20, segmentBytes: 1 << 16, whenFull: .block, fsync: .always, compress: true)
        let ring = try DiskRing(storage: io, options: options, stats: stats, log: log.sink)
        XCTAssertTrue(ring.append(batch(0..<10)))
        io.removeAll()
        XCTAssertEqual(drain(ring), Array(0..<10), "the active segment's records survive")
        XCTAssertTrue(io.names().contains(SegmentName.make(1)), "recreated under its name: \(io.names())")
        XCTAssertTrue(ring.append(batch(10..<20)))
        XCTAssertEqual(drain(ring), Array(10..<20))
        XCTAssertTrue(io.names().contains("cursor"), "\(io.names())")
        ring.shutdown()
    }

    // MARK: numbers read from disk

    /// A segment whose (checksummed) block numbers are near the top of UInt64: recovery, reads, counts
    /// and commits saturate instead of trapping.
    func testBlockNumberedNearTheTopOfUInt64() throws {
        let io = FaultyRingStorage()
        let options = DiskRingOptions(maxBytes: 1 << 20, segmentBytes: 1 << 16, whenFull: .block, fsync: .always, compress: false)
        var block = BlockCodec.encode(batch(0..<5), 0..<5, compress: false)
        block.withUnsafeMutableBytes { BlockHeader.setFirstSeq(UInt64.max - 2, in: $0) }
        let f = try io.open(SegmentName.make(1), create: true)
        try io.write(f, bytes: block, at: 0)
        io.close(f)
        let stats = ComponentStats(component: "top", kind: .output)
        let ring = try DiskRing(storage: io, options: options, stats: stats, log: { _ in })
        _ = ring.bufferedRecords
        let got = drain(ring)
        XCTAssertLessThanOrEqual(got.count, 5)
        XCTAssertTrue(ring.append(batch(5..<8)))
        _ = drain(ring)
        _ = ring.bufferedRecords
        ring.shutdown()
    }

    /// Segment files named with the largest ids: no trap. A cursor naming the largest id needs a
    /// segment after it: a clear error. Segment numbers used up while running: logged and retried.
    func testSegmentsNamedWithTheLargestIDs() throws {
        let options = DiskRingOptions(maxBytes: 1 << 20, segmentBytes: 1 << 16, whenFull: .block, fsync: .always, compress: false)
        let io = FaultyRingStorage()
        let f = try io.open(SegmentName.make(UInt64.max), create: true)
        io.close(f)
        let log = RingLog()
        let ring = try DiskRing(storage: io, options: options, stats: ComponentStats(component: "max", kind: .output), log: log.sink)
        XCTAssertTrue(ring.append(batch(0..<3)))
        XCTAssertEqual(drain(ring), [0, 1, 2])
        // A block that needs a new segment: the writer cannot number one and retries until shutdown.
        let done = Locked(false)
        Thread.detachNewThread {
            _ = ring.append(Self.batch(3..<400, padding: 300))
            done.withLock { $0 = true }
        }
        XCTAssertTrue(poll(timeout: 30) { log.contains("used up") }, log.lines.current.joined(separator: "\n"))
        ring.shutdown()
        XCTAssertTrue(poll(timeout: 30) { done.current }, "the append returns at shutdown")

        let io2 = FaultyRingStorage()
        let c = try io2.open(RingCursor.fileName, create: true)
        try io2.write(c, bytes: CursorFile.encodeSlot(CursorRecord(position: RingPosition(segment: UInt64.max, offset: 0), seq: 1, generation: 1)), at: 64)
        io2.close(c)
        XCTAssertThrowsError(try DiskRing(storage: io2, options: options, stats: ComponentStats(component: "max2", kind: .output), log: { _ in })) {
            XCTAssertTrue("\($0)".contains("used up"), "\($0)")
        }
    }

    private func poll(timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }
}
