import AnduinCore
import Foundation
import XCTest

final class JSONValueTests: XCTestCase {
    func testParsesEveryKindAndKeepsMemberOrder() throws {
        let v = try JSONValue.parse(Array(#" {"b":[1,-2.5e3,true,false,null],"a":{"s":"x\"\u00e9\n"},"n":42} "#.utf8))
        XCTAssertEqual(v.members?.map(\.key), ["b", "a", "n"])
        XCTAssertEqual(v["b"]?.array, [.number("1"), .number("-2.5e3"), .bool(true), .bool(false), .null])
        XCTAssertEqual(v["a"]?["s"]?.string, "x\"é\n")
        XCTAssertEqual(v["n"]?.int, 42)
        XCTAssertNil(v["missing"])
        XCTAssertNil(v["b"]?["x"], "members of a non-object are nil")
    }

    func testRefusesGarbageWithAnOffsetAndNeverTraps() {
        for bad in ["", "{", "{\"a\"}", "[1,]", "tru", "{\"a\":1} x", "\"open", "01x", "-", "{\"a\":nul}",
                    String(repeating: "[", count: 10_000)] {
            XCTAssertThrowsError(try JSONValue.parse(Array(bad.utf8)), bad)
        }
        var rng = SystemRandomNumberGenerator()
        let seed = Array(#"{"type":"ADDED","object":{"metadata":{"name":"p","labels":{"a":"b"}},"code":410}}"#.utf8)
        for _ in 0..<5_000 {
            var b = seed
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            _ = try? JSONValue.parse(b.prefix(Int.random(in: 0...b.count, using: &rng)))
        }
    }
}
