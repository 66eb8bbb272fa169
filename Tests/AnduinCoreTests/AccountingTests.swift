import XCTest
@testable import AnduinCore

/// The accounting identity counts records handed back to the inputs (a stop or reload with a disk
/// buffer they had not entered yet): they are received again when read again, so without the
/// `records_returned` term a reload left them unaccounted (torture seed 61207 run 27: 380 records).
final class AccountingTests: XCTestCase {
    func testReturnedRecordsAreAccountedFor() {
        let s = ComponentStats(component: "o", kind: .output)
        s.counter("records_in", "").add(100)
        s.counter("records_out", "").add(70)
        s.counter("records_returned", "").add(30)
        let a = Accounting(output: s)
        XCTAssertEqual(a.returned, 30)
        XCTAssertEqual(a.unaccounted, 0)
        s.counter("records_in", "").add(30)  // read again
        s.counter("records_out", "").add(30)
        XCTAssertEqual(Accounting(output: s).unaccounted, 0)
    }

    /// `append(_:handled:)` says how many records are in the ring when a shutdown stops it halfway.
    func testAppendSaysWhatIsInTheRing() throws {
        let io = FaultyRingStorage()
        let ring = try DiskRing(storage: io, options: DiskRingOptions(maxBytes: 1 << 20, segmentBytes: 1024, whenFull: .block,
                                                                      fsync: .never, compress: false),
                                stats: ComponentStats(component: "r", kind: .output), log: { _ in })
        var b = EncodedBatch()
        for i in 0..<20 {
            Array("{\"i\":\(i),\"pad\":\"\(String(repeating: "x", count: 200))\"}".utf8).withUnsafeBytes {
                b.append(document: $0, timestamp: 0, sourceID: 1, offset: Int64(i))
            }
        }
        var handled = -1
        XCTAssertTrue(ring.append(b, handled: &handled))
        XCTAssertEqual(handled, 20)
        ring.shutdown()
        XCTAssertFalse(ring.append(b, handled: &handled))
        XCTAssertEqual(handled, 0)
    }

    /// A damaged buffer's record count (read from disk) can be Int.max: the identity saturates.
    func testHugeCountsDoNotTrap() {
        let s = ComponentStats(component: "h", kind: .output)
        s.counter("records_in", "").add(5)
        s.counter("records_recovered", "").add(Int.max)
        s.counter("records_out", "").add(Int.max)
        s.counter("records_returned", "").add(Int.max)
        XCTAssertEqual(Accounting(output: s).unaccounted, Int.max.addingSaturating(5).subtractingSaturating(Int.max))
    }
}
