import AnduinCore
import Foundation
import XCTest

@testable import filter_throttle

final class ThrottleTests: XCTestCase {
    let clock = TestClock()

    func filter(_ config: ThrottleConfig, stats: ComponentStats? = nil) -> ThrottleFilter {
        let clock = self.clock
        return ThrottleFilter(config: config, context: FilterTestBatch.context("throttle", stats: stats), clock: { clock.read() })
    }

    func pods(_ names: [String]) -> RecordBatch {
        FilterTestBatch.make(names.enumerated().map { ("\($0.element) \($0.offset)", #""kubernetes":{"pod_name":"\#($0.element)"}"#) })
    }

    func testOneNoisyKeyIsLimitedAndAnotherLosesNothing() {
        let stats = ComponentStats(component: "throttle", kind: .filter)
        let f = filter(ThrottleConfig(key: FilterTestBatch.path("kubernetes.pod_name"), rate: 80, burst: 100), stats: stats)
        var quietKept = 0, quietSent = 0, noisyKept = 0, noisySent = 0
        // 5 seconds in steps of 1/16 s (exact in binary, so is the refill of 5 tokens a step): the noisy
        // pod writes 50 lines a step (800/s), the quiet one 4 (64/s).
        for _ in 0..<80 {
            var names = Array(repeating: "noisy", count: 50) + Array(repeating: "quiet", count: 4)
            names.shuffle()
            var b = pods(names)
            f.apply(&b)
            for m in FilterTestBatch.messages(b) {
                if m.hasPrefix("quiet") { quietKept += 1 } else { noisyKept += 1 }
            }
            quietSent += 4
            noisySent += 50
            clock.advance(0.0625)
        }
        XCTAssertEqual(quietKept, quietSent, "the quiet key must not lose a record")
        // Step 0 takes 50 of the burst of 100; step 1: 50 + 5 refilled, takes 50; step 2: 5 + 5;
        // then the 5 refilled at each of the 77 steps left.
        XCTAssertEqual(noisyKept, 50 + 50 + 10 + 77 * 5)
        let dropped = f.droppedCounts()
        XCTAssertEqual(dropped["noisy"], noisySent - noisyKept)
        XCTAssertNil(dropped["quiet"])
        XCTAssertEqual(stats.counters.first { $0.name == "records_dropped" }?.current, noisySent - noisyKept)
    }

    func testBurstThenRateAndMissingKeyBucket() {
        let f = filter(ThrottleConfig(key: FilterTestBatch.path("level"), rate: 10, burst: 5))
        var b = FilterTestBatch.make((0..<20).map { ("m\($0)", "") })
        f.apply(&b)
        XCTAssertEqual(b.count, 5, "records without the key share one bucket; burst 5")
        clock.advance(1)
        var c = FilterTestBatch.make((0..<20).map { ("m\($0)", "") })
        f.apply(&c)
        XCTAssertEqual(c.count, 5, "refilled to the burst, not beyond")
        clock.advance(0.35)
        var d = FilterTestBatch.make((0..<20).map { ("m\($0)", "") })
        f.apply(&d)
        XCTAssertEqual(d.count, 3)
        XCTAssertEqual(f.droppedCounts()[""], 15 + 15 + 17)
    }

    func testKeysAreBoundedIdleOnesEvictedFirst() {
        let f = filter(ThrottleConfig(key: FilterTestBatch.path("kubernetes.pod_name"), rate: 1, burst: 1, maxKeys: 100))
        for i in 0..<1000 {
            var b = pods(["pod-\(i)"])
            f.apply(&b)
            XCTAssertEqual(b.count, 1)
            clock.advance(0.01)
        }
        let n = f.state.withLock { $0.buckets.count }
        XCTAssertEqual(n, 100, "max_keys, the idle ones evicted")
        // A key still limited stays limited: it is recent, so not evicted.
        var again = pods(["pod-999"])
        f.apply(&again)
        XCTAssertEqual(again.count, 0)
    }

    func testStatefulFormEmitsWithTheSameToken() {
        let f = filter(ThrottleConfig(key: nil, rate: 1, burst: 2))
        let token = AckToken.none()
        var got: [(Int, AckToken)] = []
        f.process(pods(["a", "b", "c"]), ack: token) { b, t in got.append((b.count, t)) }
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got.first?.0, 2)
        XCTAssertTrue(got.first?.1 === token)
        f.process(pods(["d"]), ack: token) { b, t in got.append((b.count, t)) }
        XCTAssertEqual(got.count, 1, "an empty batch is not passed on; its token completes with the caller's release")
    }

    func testRateParsingAndConfig() {
        XCTAssertEqual(ThrottleConfig.parseRate("1000/s"), 1000)
        XCTAssertEqual(ThrottleConfig.parseRate("60/m"), 1)
        XCTAssertEqual(ThrottleConfig.parseRate("7200/h"), 2)
        XCTAssertEqual(ThrottleConfig.parseRate("250"), 250)
        XCTAssertNil(ThrottleConfig.parseRate("fast"))
        XCTAssertNil(ThrottleConfig.parseRate("10/d"))

        let (c, errs) = FilterTestBatch.parse(ThrottlePlugin.spec, "key: kubernetes.pod_name\nrate: 600/m")
        XCTAssertEqual(errs, [])
        let tc = c as? ThrottleConfig
        XCTAssertEqual(tc?.rate, 10)
        XCTAssertEqual(tc?.burst, 10, "burst defaults to the rate per second")
        XCTAssertEqual(FilterTestBatch.parse(ThrottlePlugin.spec, "rate: 1/h").0.flatMap { ($0 as? ThrottleConfig)?.burst }, 1)
        XCTAssertTrue(FilterTestBatch.parse(ThrottlePlugin.spec, "key: x").1.joined().contains("missing required key \"rate\""))
        XCTAssertTrue(FilterTestBatch.parse(ThrottlePlugin.spec, "rate: 0/s").1.joined().contains("invalid rate"))
        XCTAssertTrue(FilterTestBatch.parse(ThrottlePlugin.spec, "rate: 5/s\nburst: 0").1.joined().contains("out of range"))
    }
}
