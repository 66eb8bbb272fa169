import XCTest
import Foundation
@testable import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

/// Model test of the disk ring (issue 14): random appends, reads, commits, rewinds, restarts, crashes
/// (kill -9, and power failures that drop unsynced writes at the storage seam), injected write errors and
/// damage to segments, checked after every step against a simple model: the records the ring delivers
/// continue exactly where the model says (order kept, nothing that was not appended, nothing committed
/// delivered again, nothing uncommitted lost), `bufferedRecords` is exact, and with damage every record is
/// delivered or counted in buffer_corrupt_records, never both, never neither.
///
/// The default suite runs a fixed seed. `make test-model` runs long random runs:
/// ANDUIN_MODEL_SEED (a number, or `random`), ANDUIN_MODEL_STEPS (steps per configuration),
/// ANDUIN_MODEL_CONFIG (one configuration by name), ANDUIN_MODEL_LOG=1 (trace every step).
final class DiskRingModelTests: XCTestCase {
    struct Config {
        var name: String
        var fsync: FsyncPolicy
        var compress: Bool
        var powerLoss: Bool
        var damage: Bool
        var segmentBytes = 1024
        /// Random hex padding (LZ4 cannot shrink it) instead of repeated bytes.
        var incompressible = false
        /// Now and then a record larger than a segment.
        var bigRecords = false
    }

    static let configs = [
        Config(name: "always+power-loss", fsync: .always, compress: true, powerLoss: true, damage: false),
        Config(name: "interval+kill", fsync: .interval(0.02), compress: false, powerLoss: false, damage: false),
        Config(name: "never+kill+damage", fsync: .never, compress: false, powerLoss: false, damage: true),
        Config(name: "always+power-loss+damage", fsync: .always, compress: true, powerLoss: true, damage: true),
        Config(name: "min-segment+incompressible+big+kill", fsync: .never, compress: true, powerLoss: false, damage: false,
               segmentBytes: DiskRingOptions.minimumSegmentBytes, incompressible: true, bigRecords: true),
        Config(name: "4KiB+incompressible+big+power-loss+damage", fsync: .always, compress: true, powerLoss: true, damage: true,
               segmentBytes: 4096, incompressible: true, bigRecords: true),
    ]

    func testRandomOperationsMatchTheModel() throws {
        let env = ProcessInfo.processInfo.environment
        let seed: UInt64
        if let s = env["ANDUIN_MODEL_SEED"], s != "random", let n = UInt64(s) {
            seed = n
        } else if env["ANDUIN_MODEL_SEED"] == "random" {
            seed = UInt64.random(in: 1...UInt64.max)
        } else {
            seed = 0x5EED_2026
        }
        let steps = env["ANDUIN_MODEL_STEPS"].flatMap(Int.init) ?? 1500
        print("disk ring model: seed \(seed), \(steps) steps per configuration (ANDUIN_MODEL_SEED=\(seed) to repeat)")
        let only = env["ANDUIN_MODEL_CONFIG"]
        for (i, c) in Self.configs.enumerated() where only == nil || only == c.name {
            var model = RingModel(config: c, seed: seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15)
            try model.run(steps: steps)
            print("disk ring model \(c.name): \(model.summary)")
        }
    }
}

/// The model and the driver.
struct RingModel {
    let config: DiskRingModelTests.Config
    var rng: XorShift
    let io = FaultyRingStorage()
    var ring: DiskRing
    var stats: ComponentStats

    /// Record i is the i-th appended (documents are `{"i":N}`).
    var appended = 0
    /// Records before this index were committed.
    var committed = 0
    /// The next record the ring must return (reads since the last commit, rewind or restart).
    var readIndex = 0
    /// Ends of reads not yet committed, with the record index after each.
    var pending: [(end: RingPosition, index: Int)] = []
    /// The furthest position ever read (damage goes only after it).
    var maxReadSegment: UInt64 = 0
    var delivered = Set<Int>()
    var skipped = Set<Int>()
    /// In this ring instance: records before this were seen (read or counted) already.
    var instanceHigh = 0
    var damaged = Set<String>()
    var counts: [String: Int] = [:]

    var summary: String {
        "\(appended) appended, \(delivered.count) delivered, \(skipped.count) counted as damaged, ops \(counts.sorted { $0.key < $1.key })"
    }

    init(config: DiskRingModelTests.Config, seed: UInt64) {
        self.config = config
        rng = XorShift(state: seed | 1)
        (ring, stats) = Self.open(io, config)
    }

    /// ANDUIN_MODEL_LOG=1 prints every step with the ring's ledger, and the ring's log.
    static let verbose = ProcessInfo.processInfo.environment["ANDUIN_MODEL_LOG"] != nil

    static func options(_ c: DiskRingModelTests.Config) -> DiskRingOptions {
        DiskRingOptions(maxBytes: 64 << 20, segmentBytes: c.segmentBytes, whenFull: .block, fsync: c.fsync, compress: c.compress)
    }

    static func open(_ io: FaultyRingStorage, _ c: DiskRingModelTests.Config) -> (DiskRing, ComponentStats) {
        let stats = ComponentStats(component: "model", kind: .output)
        do {
            return (try DiskRing(storage: io, options: options(c), stats: stats, log: { if verbose { print($0) } }), stats)
        } catch {
            fatalError("reopening the ring failed: \(error)")
        }
    }

    mutating func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }

    func corruptCounter() -> Int { stats.counters.first { $0.name == "buffer_corrupt_records" }?.current ?? 0 }

    mutating func run(steps: Int) throws {
        for step in 0..<steps {
            let roll = pick(100)
            let op: String
            switch roll {
            case 0..<35: op = "append"
            case 35..<65: op = "read"
            case 65..<83: op = "commit"
            case 83..<86: op = "rewind"
            case 86..<89: op = "restart"
            case 89..<94: op = "crash"
            case 94..<95: op = "fault"  // rare: each costs the writer's retry delay (50 ms and up)
            default: op = config.damage ? "damage" : "read"
            }
            counts[op, default: 0] += 1
            if Self.verbose { print("model step \(step) \(op): \(ring.ledgerSummary)") }
            try perform(op, step: step)
            XCTAssertEqual(ring.bufferedRecords, appended - committed, "step \(step) \(op): bufferedRecords")
            if ring.bufferedRecords != appended - committed {
                let files = io.names().map { "\($0):\(io.contents($0)?.count ?? -1)" }
                let cursor = io.contents("cursor").map { CursorFile.decode($0) }
                throw ModelFailure("step \(step) after \(op): appended \(appended) committed \(committed) read \(readIndex); files \(files); cursor \(String(describing: cursor)); damaged \(damaged.sorted())")
            }
        }
        // Drain: everything after the read position comes out, in order.
        try drain(step: steps)
        for (end, _) in pending.suffix(1) { ring.commit(end) }
        committed = readIndex
        pending = []
        XCTAssertEqual(ring.bufferedRecords, 0)
        ring.shutdown()
        (ring, stats) = Self.open(io, config)
        XCTAssertEqual(ring.bufferedRecords, 0, "nothing left after a restart")
        XCTAssertNil(ring.read(maxRecords: 10, maxBytes: 1 << 20, timeout: 0))
        ring.shutdown()
        XCTAssertEqual(delivered.count + skipped.count, appended, "every record delivered or counted")
        XCTAssertTrue(delivered.isDisjoint(with: skipped), "never both")
        if !config.damage { XCTAssertEqual(skipped.count, 0) }
    }

    struct ModelFailure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    mutating func perform(_ op: String, step: Int) throws {
        switch op {
        case "append":
            var b = EncodedBatch()
            for _ in 0..<(pick(4) == 0 ? 1 + pick(12) : 1 + pick(4)) {
                let size = config.bigRecords && pick(20) == 0 ? config.segmentBytes + pick(2 * config.segmentBytes) : pick(120)
                let pad = config.incompressible ? String((0..<size).map { _ in Self.hex[pick(16)] }) : String(repeating: "x", count: size)
                let doc = Array("{\"i\":\(appended + b.count),\"pad\":\"\(pad)\"}".utf8)
                doc.withUnsafeBytes { b.append(document: $0, timestamp: Int64(step), sourceID: 1, offset: 0) }
            }
            XCTAssertTrue(ring.append(b), "append at step \(step)")
            appended += b.count
        case "read":
            try read(maxRecords: 1 + pick(8), step: step)
        case "commit":
            guard !pending.isEmpty else { return }
            let i = pick(pending.count)
            ring.commit(pending[i].end)
            committed = max(committed, pending[i].index)
            pending.removeFirst(i + 1)
        case "rewind":
            ring.rewind()
            readIndex = committed
            pending = []
        case "restart":
            ring.shutdown()
            reopen()
        case "crash":
            ring.crashForTesting()
            var r = rng
            io.crash(powerLoss: config.powerLoss) { n in Int(r.next() % UInt64(n + 1)) }
            rng = r
            reopen()
        case "fault":
            // The next write (or fsync) of a segment fails; append retries until it works.
            let codes = [ENOSPC, EIO]
            if config.fsync == .always && pick(2) == 0 {
                io.inject(.sync, codes[pick(2)], count: 1 + pick(2))
            } else {
                io.inject(.write, codes[pick(2)], count: 1 + pick(2))
            }
        case "damage":
            damage()
        default:
            break
        }
    }

    mutating func reopen() {
        (ring, stats) = Self.open(io, config)
        readIndex = committed
        pending = []
        instanceHigh = committed
    }

    mutating func read(maxRecords: Int, step: Int) throws {
        let before = corruptCounter()
        guard let r = ring.read(maxRecords: maxRecords, maxBytes: 1 << 20, timeout: 0) else {
            XCTAssertEqual(readIndex, appended, "step \(step): read returned nothing with records left")
            if readIndex != appended { throw ModelFailure("step \(step): read returned nothing at record \(readIndex) of \(appended)") }
            return
        }
        let got = (0..<r.batch.count).map { i in r.batch.withDocument(i) { Self.index(of: $0) } }
        XCTAssertLessThanOrEqual(got.count, maxRecords, "step \(step): read limit")
        // The ring has passed every record numbered below the end's sequence number (record i is
        // numbered i + 1): the ones in that range it did not return were in damaged bytes.
        let passed = Int(r.end.seq) - 1
        var next = readIndex
        var newlySkipped = 0
        for g in got + [passed] {
            guard g >= next else { throw ModelFailure("step \(step): got record \(g) where \(next) or later was expected (read \(got), passed \(passed))") }
            if g > next {
                guard config.damage else {
                    throw ModelFailure("step \(step): records \(next)..<\(g) missing without damage (read \(got))")
                }
                for j in next..<g {
                    skipped.insert(j)
                    if j >= instanceHigh { newlySkipped += 1 }
                }
            }
            if g < passed { delivered.insert(g) }
            next = g + 1
        }
        next = passed
        let highBefore = instanceHigh
        instanceHigh = max(instanceHigh, next)
        if config.damage {
            XCTAssertEqual(corruptCounter() - before, newlySkipped, "step \(step): records counted as damaged in this read \(got) passed \(passed) from \(readIndex) instanceHigh \(highBefore) end \(r.end)")
        }
        readIndex = next
        pending.append((r.end, next))
        maxReadSegment = max(maxReadSegment, r.end.segment)
    }

    /// Damages a sealed segment that nothing has read yet and that is followed by an undamaged sealed one:
    /// 16 flipped bytes, a zeroed 512-byte range, or a cut.
    mutating func damage() {
        let segments = io.names().compactMap(SegmentName.parse).sorted()
        guard segments.count >= 3 else { return }
        let candidates = segments.indices.filter { i in
            i + 2 < segments.count && segments[i] > maxReadSegment
                && !damaged.contains(SegmentName.make(segments[i])) && !damaged.contains(SegmentName.make(segments[i + 1]))
        }
        guard !candidates.isEmpty else { return }
        let name = SegmentName.make(segments[candidates[pick(candidates.count)]])
        damaged.insert(name)
        let kind = pick(3)
        var r = rng
        io.damage(name) { bytes in
            guard bytes.count > 40 else { return }
            let at = Int(r.next() % UInt64(bytes.count - 20))
            switch kind {
            case 0: for i in at..<min(bytes.count, at + 16) { bytes[i] ^= 0xA5 }
            case 1: for i in at..<min(bytes.count, at + 512) { bytes[i] = 0 }
            default: bytes.removeLast(bytes.count - at)
            }
        }
        rng = r
    }

    mutating func drain(step: Int) throws {
        var guardCount = 0
        while readIndex < appended || guardCount == 0 {
            guardCount += 1
            let before = readIndex
            try read(maxRecords: 1000, step: step)
            if readIndex == before { break }
        }
        XCTAssertEqual(readIndex, appended, "drained everything")
    }

    static let hex = Array("0123456789abcdef")

    static func index(of doc: UnsafeRawBufferPointer) -> Int {
        // {"i":N,...
        var n = 0
        var p = 5
        while p < doc.count, doc[p] >= 0x30, doc[p] <= 0x39 {
            n = n * 10 + Int(doc[p] - 0x30)
            p += 1
        }
        return n
    }
}
