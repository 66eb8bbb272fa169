import XCTest
import Foundation
@testable import AnduinCore

/// Helpers shared by the disk ring's test classes.
protocol RingTestHelpers {}

extension RingTestHelpers {
    /// Small segments so that a few batches roll over: a 2-record block of `batch("b0", 2)` is 290 bytes,
    /// so a 1024-byte segment holds 3 of them (870 bytes).
    func smallOptions(whenFull: WhenFull = .block, maxBytes: Int = 64 * 1024, compress: Bool = false) -> DiskRingOptions {
        DiskRingOptions(maxBytes: maxBytes, segmentBytes: 1024, whenFull: whenFull, fsync: .never, compress: compress)
    }

    func batch(_ tag: String, _ count: Int, pad: Int = 80) -> EncodedBatch {
        var b = EncodedBatch()
        for i in 0..<count {
            let doc = Array("{\"msg\":\"\(tag)-\(i) \(String(repeating: "x", count: pad))\"}".utf8)
            doc.withUnsafeBytes {
                b.append(document: $0, timestamp: 1_700_000_000_000_000_000 + Int64(i), sourceID: 0xABCD, offset: Int64(i) * 100)
            }
        }
        return b
    }

    func docs(_ b: EncodedBatch) -> [String] {
        (0..<b.count).map { i in b.withDocument(i) { String(decoding: $0, as: UTF8.self) } }
    }

    func tags(_ b: EncodedBatch) -> [String] {
        docs(b).map { d in String(d.dropFirst(8).prefix { $0 != " " }) }
    }

    /// Reads everything currently readable; returns the record tags and the last end position.

    func readAll(_ ring: DiskRing) -> (tags: [String], end: RingPosition?) {
        var out: [String] = []
        var end: RingPosition?
        while let r = ring.read(maxRecords: 1000, maxBytes: 1 << 20, timeout: 0) {
            out += tags(r.batch)
            end = r.end
        }
        return (out, end)
    }

    func counter(_ stats: ComponentStats, _ name: String) -> Int {
        stats.counters.first { $0.name == name }?.current ?? 0
    }

    func expected(_ tag: String, _ count: Int) -> [String] { (0..<count).map { "\(tag)-\($0)" } }
}
