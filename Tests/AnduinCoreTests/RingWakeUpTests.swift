import XCTest
import Foundation
@testable import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

/// A ring fed a small block at a time must not wake its other threads once a block: the interval
/// flusher sleeps its period, and a reader gathering a batch waits for the rest of it.
final class RingWakeUpTests: XCTestCase, RingTestHelpers {
    private var dirs: [String] = []

    override func tearDown() {
        for d in dirs { try? FileManager.default.removeItem(atPath: d) }
        dirs = []
    }

    private func tempDir() -> String {
        let d = NSTemporaryDirectory() + "anduin-ring-wake-\(UUID().uuidString)"
        dirs.append(d)
        return d
    }

    /// Voluntary context switches of this process's threads named `name`.
    private func wakeUps(of name: String) -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        var total = 0
        for t in tasks {
            guard let comm = try? String(contentsOfFile: "/proc/self/task/\(t)/comm", encoding: .utf8),
                  comm.trimmingCharacters(in: .whitespacesAndNewlines) == name,
                  let status = try? String(contentsOfFile: "/proc/self/task/\(t)/status", encoding: .utf8) else { continue }
            for line in status.split(separator: "\n") where line.hasPrefix("voluntary_ctxt_switches:") {
                total += Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
            }
        }
        return total
    }

    /// The flusher of `fsync: interval` slept on the ledger's condition, which every append
    /// broadcasts: it woke once a block (about 200 here) to find its period not over.
    func testIntervalFlusherSleepsThroughAppends() throws {
        let ring = try DiskRing(directory: tempDir(),
                                options: DiskRingOptions(maxBytes: 1 << 24, segmentBytes: 1 << 20, whenFull: .block,
                                                         fsync: .interval(3600), compress: false),
                                stats: ComponentStats(component: "o", kind: .output), log: { _ in })
        usleep(50_000)  // the flusher is asleep
        let before = wakeUps(of: "buffer-flush")
        for i in 0..<200 {
            XCTAssertTrue(ring.append(batch("a\(i)", 1)))
            usleep(1_000)
        }
        let woken = wakeUps(of: "buffer-flush") - before
        XCTAssertLessThan(woken, 20, "the flusher woke \(woken) times for 200 appends")
        ring.shutdown()
    }

    /// A reader filling a batch (`gather`) is woken once the rest of the batch is written, not at the
    /// first block: it gets the whole batch in one read.
    func testGatheringReadWaitsForTheRestOfTheBatch() throws {
        let ring = try DiskRing(directory: tempDir(), options: DiskRingOptions(maxBytes: 1 << 24, segmentBytes: 1 << 20,
                                                                           whenFull: .block, fsync: .never, compress: false),
                                stats: ComponentStats(component: "o", kind: .output), log: { _ in })
        let batches = (0..<60).map { batch("g\($0)", 1, pad: 10) }
        let writer = startThread(name: "ring-feed") {
            for b in batches {
                _ = ring.append(b)
                usleep(2_000)
            }
        }
        let r = ring.read(maxRecords: 40, maxBytes: 1 << 20, timeout: 30, gather: true)
        XCTAssertTrue(writer.join(timeout: 30))
        let got = r.map { tags($0.batch) } ?? []
        XCTAssertEqual(got.count, 40, "a gathering read returned before the batch was written")
        XCTAssertEqual(Array(got.prefix(3)), ["g0-0", "g1-0", "g2-0"])
        ring.shutdown()
    }

    /// Without enough records, a gathering read returns what came at its timeout; a plain read
    /// returns at the first block.
    func testGatheringReadReturnsWhatCameAtTheTimeout() throws {
        let ring = try DiskRing(directory: tempDir(), options: smallOptions(maxBytes: 1 << 24),
                                stats: ComponentStats(component: "o", kind: .output), log: { _ in })
        let batches = (0..<3).map { batch("t\($0)", 1, pad: 10) }
        let writer = startThread(name: "ring-feed") {
            for b in batches {
                usleep(20_000)
                _ = ring.append(b)
            }
        }
        let start = monotonicSeconds()
        let r = ring.read(maxRecords: 1000, maxBytes: 1 << 20, timeout: 0.5, gather: true)
        XCTAssertGreaterThanOrEqual(monotonicSeconds() - start, 0.4)
        XCTAssertTrue(writer.join(timeout: 30))
        XCTAssertEqual(r.map { tags($0.batch) }, ["t0-0", "t1-0", "t2-0"])
        let p = batch("p", 1, pad: 10)
        let plain = startThread(name: "ring-feed") {
            usleep(20_000)
            _ = ring.append(p)
        }
        let first = monotonicSeconds()
        XCTAssertEqual(ring.read(maxRecords: 1000, maxBytes: 1 << 20, timeout: 10).map { tags($0.batch) }, ["p-0"])
        XCTAssertLessThan(monotonicSeconds() - first, 5)
        XCTAssertTrue(plain.join(timeout: 30))
        ring.shutdown()
    }

    /// The byte bound wakes a gathering reader too: big records reach `maxBytes` before `maxRecords`.
    func testGatheringReadWakesWhenTheBytesAreThere() throws {
        let ring = try DiskRing(directory: tempDir(), options: DiskRingOptions(maxBytes: 1 << 24, segmentBytes: 1 << 20,
                                                                           whenFull: .block, fsync: .never, compress: false),
                                stats: ComponentStats(component: "o", kind: .output), log: { _ in })
        let batches = (0..<10).map { batch("b\($0)", 1, pad: 2000) }
        let writer = startThread(name: "ring-feed") {
            for b in batches {
                usleep(5_000)
                _ = ring.append(b)
            }
        }
        let start = monotonicSeconds()
        let r = ring.read(maxRecords: 1000, maxBytes: 6000, timeout: 20, gather: true)
        XCTAssertLessThan(monotonicSeconds() - start, 10, "waited for the timeout with the bytes there")
        XCTAssertTrue(writer.join(timeout: 30))
        XCTAssertGreaterThanOrEqual(r?.batch.count ?? 0, 2)
        ring.shutdown()
    }
}
