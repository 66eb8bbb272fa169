import XCTest
import Logging
@testable import AnduinCore

/// Arithmetic on values from input, files and the clock never traps (issue 24, item 2): a record's
/// own time can be anything from Int64.min (year 0001 clamped) to Int64.max (year 9999 clamped).
final class SaturatingTests: XCTestCase {
    func testIntegerOperationsPinToTheBounds() {
        XCTAssertEqual(Int64.max.addingSaturating(1), .max)
        XCTAssertEqual(Int64.min.addingSaturating(-1), .min)
        XCTAssertEqual(Int64(5).addingSaturating(-7), -2)
        XCTAssertEqual(Int64.max.subtractingSaturating(Int64.min), .max)
        XCTAssertEqual(Int64.min.subtractingSaturating(Int64.max), .min)
        XCTAssertEqual(Int64(0).subtractingSaturating(Int64.min), .max)
        XCTAssertEqual(Int64(-3).subtractingSaturating(4), -7)
        XCTAssertEqual(UInt64.max.addingSaturating(2), .max)
        XCTAssertEqual(UInt64(1).subtractingSaturating(2), 0)
        XCTAssertEqual(Int64.max.multipliedSaturating(by: 2), .max)
        XCTAssertEqual(Int64.min.multipliedSaturating(by: 2), .min)
        XCTAssertEqual(Int64.min.multipliedSaturating(by: -1), .max)
        XCTAssertEqual(Int64(3).multipliedSaturating(by: -4), -12)
    }

    func testDoublesConvertWithoutTrapping() {
        XCTAssertEqual(Int(saturating: .nan), 0)
        XCTAssertEqual(Int(saturating: .infinity), .max)
        XCTAssertEqual(Int(saturating: -.infinity), .min)
        XCTAssertEqual(Int(saturating: 1e300), .max)
        XCTAssertEqual(Int(saturating: -1e300), .min)
        XCTAssertEqual(Int(saturating: 9.223372036854775e18), .max)
        XCTAssertEqual(Int(saturating: -2.9), -2)
        XCTAssertEqual(Int64(saturating: 1e19), .max)
        XCTAssertEqual(secondsBetween(Int64.min, Int64.max), Double(Int64.max) / 1e9)
        XCTAssertEqual(secondsBetween(Int64.max, Int64.min), Double(Int64.min) / 1e9)
        XCTAssertEqual(secondsBetween(1_000_000_000, 3_000_000_000), 2)
    }

    /// A count read from disk (records in a damaged buffer block numbered near the top) added to a
    /// counter: found by the FuzzRing target, Counter.add trapped on overflow.
    func testCountersAndGaugesSaturate() {
        let c = Counter(name: "c", help: "")
        c.add(5)
        c.add(Int.max)
        XCTAssertEqual(c.current, .max)
        c.add(1)
        XCTAssertEqual(c.current, .max)
        let g = Gauge(name: "g", help: "")
        g.add(-5)
        g.add(Int.min)
        XCTAssertEqual(g.current, .min)
        g.set(3)
        g.add(-1)
        XCTAssertEqual(g.current, 2)
    }

    /// The crash of issue 24 (2): a delivered record timestamped year 0001 (clamped to Int64.min) made
    /// `delivered` subtract it from the clock and trap. Also the far future, and a retry lane whose
    /// first failure (read from its journal) is anything.
    func testDeliveryProgressTakesAnyRecordTime() {
        let stats = ComponentStats(component: "p", kind: .output)
        let progress = DeliveryProgress(name: "p", stallAfter: 0, logger: Logger(label: "test"), stats: stats)
        for t in [Int64.min, Int64.min + 1, -1, 0, Int64.max - 1, Int64.max] {
            var b = EncodedBatch()
            Array("{}".utf8).withUnsafeBytes { b.append(document: $0, timestamp: t, sourceID: 1, offset: 0) }
            let work = DeliveryWork(b)
            progress.sending(slot: 0, work)
            _ = progress.oldestAgeSeconds(others: [t, nil])
            progress.delivered(work)
            _ = progress.notReadyReason(pending: 1, lane: (records: 1, firstFailure: t, oldestTimestamp: t, reason: "x"))
        }
        XCTAssertEqual(progress.recordsOut.current, 6)
        XCTAssertEqual(progress.oldestAgeSeconds(others: [Int64.min]), Int((Int64.max) / 1_000_000_000))
    }
}
