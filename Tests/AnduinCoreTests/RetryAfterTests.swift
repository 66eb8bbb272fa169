import Foundation
import XCTest
@testable import AnduinCore

/// Issue 24 (8): reading `Retry-After` from an untrusted server (delay-seconds and HTTP-dates,
/// extreme and broken values).
final class RetryAfterTests: XCTestCase {
    /// 2026-12-06T07:00:00Z.
    let now: Int64 = 1_796_540_400

    func seconds(_ v: String, max: Double = 30) -> Double? { RetryAfter.seconds(v, nowSeconds: now, max: max) }

    func testDelaySeconds() {
        XCTAssertEqual(seconds("5"), 5)
        XCTAssertEqual(seconds("0"), 0)
        XCTAssertEqual(seconds(" 12 "), 12)
        XCTAssertEqual(seconds("007"), 7)
        // Capped at the retry maximum; huge values saturate instead of overflowing.
        XCTAssertEqual(seconds("31"), 30)
        XCTAssertEqual(seconds("9223372036854775807"), 30)
        XCTAssertEqual(seconds("9223372036854775808"), 30)
        XCTAssertEqual(seconds(String(repeating: "9", count: 60)), 30)
        XCTAssertEqual(seconds("5", max: 0), 0)
        XCTAssertEqual(seconds("5", max: -1), 0)
        XCTAssertEqual(seconds("5", max: .nan), 0)
        XCTAssertEqual(seconds("5", max: .infinity), 0, "no finite bound: no wait rather than forever")
    }

    func testGarbageIsIgnored() {
        for v in ["", " ", "-5", "+5", "5.5", "1e3", "0x10", "five", "5 s", "NaN", "inf", "-0",
                  String(repeating: "9", count: 65), "\u{0}", "Mon, 32 Dec 2026 00:00:00 GMT x y",
                  "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 06 Nov 1994 08:61:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
                  "Sun, 00 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 19945 08:49:37 GMT", "Sun, 06 Nov 1994 8:49:37 GMT",
                  "Sun, 06 Nov 1994", "06 Nov 1994 08:49:37 08:49:37", "Sun, 06 Nov Nov 1994 08:49:37 GMT",
                  "1994 1994 1994 08:49:37", "ünïcödé", "Sun, 06 Nov 1994 08:49:37 GMT\r\nX-Evil: 1"] {
            XCTAssertNil(seconds(v), "\(v.debugDescription) was taken for a Retry-After")
        }
    }

    func testHTTPDates() {
        XCTAssertEqual(RetryAfter.httpDate(Array("Sun, 06 Nov 1994 08:49:37 GMT".utf8)), 784_111_777)
        XCTAssertEqual(RetryAfter.httpDate(Array("Sunday, 06-Nov-94 08:49:37 GMT".utf8)), 784_111_777)
        XCTAssertEqual(RetryAfter.httpDate(Array("Sun Nov  6 08:49:37 1994".utf8)), 784_111_777)
        // Relative to now: 10 s ahead, 10 min ahead (capped), in the past (0).
        XCTAssertEqual(seconds("Sun, 06 Dec 2026 07:00:10 GMT"), 10)
        XCTAssertEqual(seconds("sun, 06 dec 2026 07:00:10 gmt"), 10, "names are case-insensitive")
        XCTAssertEqual(seconds("Sun, 06 Dec 2026 07:10:00 GMT"), 30)
        XCTAssertEqual(seconds("Sun, 06 Dec 2026 06:59:59 GMT"), 0)
        // Far past and far future.
        XCTAssertEqual(seconds("Mon, 01 Jan 0001 00:00:00 GMT"), 0)
        XCTAssertEqual(seconds("Fri, 31 Dec 9999 23:59:59 GMT"), 30)
        XCTAssertEqual(seconds("Thu, 01 Jan 1970 00:00:00 GMT"), 0)
        // A clock at the ends of Int64 does not trap either.
        XCTAssertEqual(RetryAfter.seconds("Fri, 31 Dec 9999 23:59:59 GMT", nowSeconds: .min, max: 30), 30)
        XCTAssertEqual(RetryAfter.seconds("Mon, 01 Jan 0001 00:00:00 GMT", nowSeconds: .max, max: 30), 0)
        XCTAssertEqual(RetryAfter.seconds("Mon, 01 Jan 0001 00:00:00 GMT", nowSeconds: .min, max: 30), 30)
    }

    /// Random bytes never trap, and any answer is within 0...max.
    func testRandomInputStaysInBounds() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789 ,-:GMTSunNovDec\t+.e".utf8)
        for _ in 0..<20_000 {
            let n = Int.random(in: 0...40, using: &rng)
            let bytes = (0..<n).map { _ in Bool.random(using: &rng) ? alphabet.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng) }
            let v = String(decoding: bytes, as: UTF8.self)
            if let s = RetryAfter.seconds(v, nowSeconds: Int64.random(in: .min ... .max, using: &rng), max: 30) {
                XCTAssertTrue(s >= 0 && s <= 30, "\(v.debugDescription): \(s)")
            }
        }
    }
}
