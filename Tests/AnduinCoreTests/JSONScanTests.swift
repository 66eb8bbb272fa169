import XCTest
import Foundation
import AnduinCore

final class JSONScanTests: XCTestCase {
    /// Lifts `src`, returning the members as a String (nil on failure) and checking `out` is restored.
    private func lift(_ src: String, rename: Set<String> = []) -> String? {
        let prefix: [UInt8] = Array("PRE".utf8)
        var out = prefix
        let bytes = Array(src.utf8)
        let n = bytes.withUnsafeBytes { b in
            JSONScan.liftObject(b, into: &out) { key in rename.contains(String(decoding: key, as: UTF8.self)) }
        }
        guard let n else {
            XCTAssertEqual(out, prefix, "out changed on failure for \(src)")
            return nil
        }
        XCTAssertEqual(Array(out.prefix(3)), prefix)
        let body = Array(out.dropFirst(3))
        if n == 0 { XCTAssertTrue(body.isEmpty) }
        // Whatever was lifted must be valid JSON once wrapped in braces.
        let wrapped = Data([0x7B] + body + [0x7D])
        XCTAssertNoThrow(try JSONSerialization.jsonObject(with: wrapped), "invalid JSON: \(String(decoding: body, as: UTF8.self))")
        return String(decoding: body, as: UTF8.self)
    }

    private func liftBytes(_ src: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        let n = src.withUnsafeBytes { JSONScan.liftObject($0, into: &out) { _ in false } }
        return n == nil ? nil : out
    }

    func testLiftBasic() {
        XCTAssertEqual(lift(#"{"a":1,"b":"x"}"#), #""a":1,"b":"x""#)
        XCTAssertEqual(lift("  {  \"a\" : 1 ,\n \"b\" :\t{ \"c\" : [ true , null , false ] } }  \n"),
                       #""a":1,"b":{"c":[true,null,false]}"#)
        XCTAssertEqual(lift("{}"), "")
        XCTAssertEqual(lift(" { } "), "")
        XCTAssertEqual(lift(#"{"a":[],"b":{},"c":[[1,[2]],{"d":"e"}]}"#), #""a":[],"b":{},"c":[[1,[2]],{"d":"e"}]"#)
    }

    func testLiftCount() {
        var out: [UInt8] = []
        let src = Array(#"{"a":1,"b":{"x":1,"y":2},"c":[1,2,3]}"#.utf8)
        let n = src.withUnsafeBytes { JSONScan.liftObject($0, into: &out) { _ in false } }
        XCTAssertEqual(n, 3)
        var out2: [UInt8] = []
        let e = Array("{}".utf8)
        XCTAssertEqual(e.withUnsafeBytes { JSONScan.liftObject($0, into: &out2) { _ in false } }, 0)
        XCTAssertTrue(out2.isEmpty)
    }

    func testLiftNumbers() {
        for ok in ["0", "-0", "1", "-12", "1.5", "0.25", "1e5", "1E+5", "1e-5", "-1.25e10", "123456789012345678901234567890"] {
            XCTAssertEqual(lift("{\"n\":\(ok)}"), "\"n\":\(ok)", ok)
            XCTAssertEqual(lift("{\"n\":[\(ok)]}"), "\"n\":[\(ok)]", ok)
        }
        for bad in ["01", "1.", "-", ".5", "+1", "1e", "1e+", "0x10", "--1", "1.e5", "NaN", "Infinity", "-01", "1.5.2"] {
            XCTAssertNil(lift("{\"n\":\(bad)}"), bad)
            XCTAssertNil(lift("{\"n\":[\(bad)]}"), bad)
        }
    }

    func testLiftLiteralsAndGarbage() {
        for bad in ["", " ", "{", "}", "[]", "[1]", "1", "\"a\"", "null", "{\"a\"}", "{\"a\":}", "{\"a\" 1}",
                    "{\"a\":1,}", "{,\"a\":1}", "{\"a\":1}}", "{\"a\":1} x", "{\"a\":1}{}", "{a:1}",
                    "{\"a\":tru}", "{\"a\":nul}", "{\"a\":True}", "{\"a\":[1,]}", "{\"a\":[,1]}", "{\"a\":[1 2]}",
                    "{\"a\":{\"b\"}}", "{\"a\":\"x}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12G4\"}", "{\"a\":\"\\u12\"}",
                    "{\"a\":1 \"b\":2}", "{'a':1}", "{\"a\":[}", "{\"a\":{]}"] {
            XCTAssertNil(lift(bad), bad)
        }
    }

    func testLiftTruncatedPrefixesNeverSucceedOrCrash() {
        let full = Array(#"{"a":"x\"y\u00e9\ud83d\ude00","b":[1,2.5e3,{"c":null}],"d":true}"#.utf8)
        XCTAssertNotNil(liftBytes(full))
        for cut in 0..<full.count {
            XCTAssertNil(liftBytes(Array(full[..<cut])), "prefix \(cut)")
        }
    }

    func testLiftRandomGarbage() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("{}[]\",:\\u0123456789abcdefnulltrue -+.eE \t\n".utf8) + [0x80, 0xC3, 0xFF, 0x00]
        for _ in 0..<3000 {
            let len = Int.random(in: 0...40, using: &rng)
            let src = (0..<len).map { _ in alphabet.randomElement(using: &rng) ?? 0 }
            var out: [UInt8] = [1, 2]
            let n = src.withUnsafeBytes { JSONScan.liftObject($0, into: &out) { _ in true } }
            if n == nil {
                XCTAssertEqual(out, [1, 2])
            } else {
                XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data([0x7B] + out.dropFirst(2) + [0x7D])))
            }
            var i = 0
            _ = src.withUnsafeBytes { JSONScan.skipValue($0, from: &i) }
            _ = src.withUnsafeBytes { JSONScan.lookup($0, path: [Array("a".utf8), Array("b".utf8)]) }
        }
    }

    func testLiftStrings() {
        // Escapes are decoded then re-escaped canonically.
        XCTAssertEqual(lift(#"{"a":"q\"b\\s\/n\nr\rt\tb\bf\f"}"#), #""a":"q\"b\\s/n\nr\rt\tb\bf\f""#)
        XCTAssertEqual(lift(#"{"a":"\u0041\u00e9\u20ac"}"#), "\"a\":\"Aé€\"")
        XCTAssertEqual(lift(#"{"a":"\u0000\u001f\u0022\u005c"}"#), #""a":"\u0000\u001f\"\\""#)
        // Surrogate pair, lone high, lone low, high followed by non-low.
        XCTAssertEqual(lift(#"{"a":"\ud83d\ude00"}"#), "\"a\":\"😀\"")
        XCTAssertEqual(lift(#"{"a":"x\ud83dy"}"#), "\"a\":\"x\u{FFFD}y\"")
        XCTAssertEqual(lift(#"{"a":"\ude00"}"#), "\"a\":\"\u{FFFD}\"")
        XCTAssertEqual(lift(#"{"a":"\ud83d\u0041"}"#), "\"a\":\"\u{FFFD}A\"")
        XCTAssertEqual(lift(#"{"a":"\ud83d"}"#), "\"a\":\"\u{FFFD}\"")
        // Escaped keys.
        XCTAssertEqual(lift(#"{"k\u0065y":1}"#), #""key":1"#)
        // Raw control characters (lenient) come out escaped.
        XCTAssertEqual(lift("{\"a\":\"x\ty\u{01}\"}"), #""a":"x\ty\u0001""#)
    }

    func testLiftInvalidUTF8() {
        let src: [UInt8] = Array(#"{"a":""#.utf8) + [0x61, 0xFF, 0x62, 0xC3] + Array(#"\n","#.utf8)
            + [0x22, 0xE2, 0x82, 0x22] + Array(#":1}"#.utf8)
        let out = liftBytes(src)
        XCTAssertNotNil(out)
        XCTAssertEqual(out.map { String(decoding: $0, as: UTF8.self) },
                       "\"a\":\"a\u{FFFD}b\u{FFFD}\\n\",\"\u{FFFD}\u{FFFD}\":1")
        // Valid multi-byte UTF-8 passes unchanged.
        XCTAssertEqual(lift("{\"é\":\"日本😀\"}"), "\"é\":\"日本😀\"")
    }

    func testLiftRename() {
        XCTAssertEqual(lift(#"{"message":"m","a":1,"@timestamp":2}"#, rename: ["message", "@timestamp"]),
                       #""_message":"m","a":1,"_@timestamp":2"#)
        // The decoded key is what the predicate sees.
        XCTAssertEqual(lift(#"{"mess\u0061ge":"m"}"#, rename: ["message"]), #""_message":"m""#)
        // Nested keys are not renamed.
        XCTAssertEqual(lift(#"{"a":{"message":1}}"#, rename: ["message"]), #""a":{"message":1}"#)
    }

    func testLiftDepth() {
        func nested(_ depth: Int) -> String {
            // depth counts the outer object.
            String(repeating: "{\"a\":", count: depth - 1) + "{}" + String(repeating: "}", count: depth - 1)
        }
        XCTAssertNotNil(lift(nested(64)))
        XCTAssertNil(lift(nested(65)))
        let arrays = "{\"a\":" + String(repeating: "[", count: 63) + String(repeating: "]", count: 63) + "}"
        XCTAssertNotNil(lift(arrays))
        let deep = "{\"a\":" + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}"
        XCTAssertNil(lift(deep))
    }

    func testLiftAppendsAfterExisting() {
        var out = Array(#""x":0"#.utf8)
        let src = Array(#"{"a":1}"#.utf8)
        let n = src.withUnsafeBytes { JSONScan.liftObject($0, into: &out) { _ in false } }
        XCTAssertEqual(n, 1)
        XCTAssertEqual(String(decoding: out, as: UTF8.self), #""x":0"a":1"#)
    }

    // MARK: unescape

    private func unescape(_ body: [UInt8]) -> (ok: Bool, out: [UInt8], end: Int) {
        var out: [UInt8] = []
        var i = 0
        let ok = body.withUnsafeBytes { JSONScan.appendUnescapedString($0, from: &i, to: &out) }
        return (ok, out, i)
    }

    func testUnescape() {
        let r = unescape(Array(#"a\"b\\c\/d\be\ff\ng\rh\ti\u00e9\ud83d\ude00j" rest"#.utf8))
        XCTAssertTrue(r.ok)
        XCTAssertEqual(r.out, Array("a\"b\\c/d\u{8}e\u{C}f\ng\rh\tié😀j".utf8))
        XCTAssertEqual(r.end, Array(#"a\"b\\c\/d\be\ff\ng\rh\ti\u00e9\ud83d\ude00j""#.utf8).count)

        XCTAssertEqual(unescape(Array(#"\ud800x""#.utf8)).out, Array("\u{FFFD}x".utf8))
        XCTAssertEqual(unescape(Array(#"\udc00""#.utf8)).out, Array("\u{FFFD}".utf8))
        XCTAssertEqual(unescape(Array(#"\u0000""#.utf8)).out, [0])
        XCTAssertEqual(unescape(Array("\"".utf8)).out, [])
        XCTAssertEqual(unescape(Array("\"".utf8)).end, 1)
        // Raw bytes, invalid UTF-8 included, are kept as they are.
        XCTAssertEqual(unescape([0xFF, 0x01, 0x22]).out, [0xFF, 0x01])

        for bad in [#"abc"#, #"abc\"#, #"\x""#, #"\u12""#, #"\u12g4""#, "", #"\"#] {
            XCTAssertFalse(unescape(Array(bad.utf8)).ok, bad)
        }
        // Long runs cross the 8-byte scanning steps at every alignment.
        for len in 0..<40 {
            for pos in 0...len {
                var body = Array(repeating: UInt8(ascii: "x"), count: len)
                body.insert(UInt8(ascii: "\""), at: pos)
                let r = unescape(body)
                XCTAssertTrue(r.ok)
                XCTAssertEqual(r.out.count, pos)
                XCTAssertEqual(r.end, pos + 1)
            }
        }
    }

    func testUnescapeOffsets() {
        var out: [UInt8] = []
        let src = Array(#"{"k":"v\n"}"#.utf8)
        var i = 6
        XCTAssertTrue(src.withUnsafeBytes { JSONScan.appendUnescapedString($0, from: &i, to: &out) })
        XCTAssertEqual(out, Array("v\n".utf8))
        XCTAssertEqual(i, 10)
        var bad = 99
        XCTAssertFalse(src.withUnsafeBytes { JSONScan.appendUnescapedString($0, from: &bad, to: &out) })
        bad = -1
        XCTAssertFalse(src.withUnsafeBytes { JSONScan.appendUnescapedString($0, from: &bad, to: &out) })
    }

    // MARK: lookup

    private func lookup(_ members: String, _ path: String) -> String? {
        let m = Array(members.utf8)
        let p = path.split(separator: ".", omittingEmptySubsequences: false).map { Array($0.utf8) }
        return m.withUnsafeBytes { b in
            JSONScan.lookup(b, path: p).map { String(decoding: b[$0], as: UTF8.self) }
        }
    }

    func testLookup() {
        let m = #""a":1,"b":{"c":[true,{"x":"]"}],"d":{"e":"v\"}"}},"s":"str","n":null,"e":{}"#
        XCTAssertEqual(lookup(m, "a"), "1")
        XCTAssertEqual(lookup(m, "b"), #"{"c":[true,{"x":"]"}],"d":{"e":"v\"}"}}"#)
        XCTAssertEqual(lookup(m, "b.c"), #"[true,{"x":"]"}]"#)
        XCTAssertEqual(lookup(m, "b.d.e"), #""v\"}""#)
        XCTAssertEqual(lookup(m, "s"), #""str""#)
        XCTAssertEqual(lookup(m, "n"), "null")
        XCTAssertEqual(lookup(m, "e"), "{}")
        XCTAssertNil(lookup(m, "e.x"))
        XCTAssertNil(lookup(m, "z"))
        XCTAssertNil(lookup(m, "a.b"))
        XCTAssertNil(lookup(m, "b.x"))
        XCTAssertNil(lookup(m, "b.c.x"))
        XCTAssertNil(lookup(m, "c"))  // only keys match, not values
        XCTAssertNil(lookup("", "a"))
        XCTAssertNil(lookup(#""a":"#, "a"))
        XCTAssertEqual(lookup(#""a\u0062":5"#, "ab"), "5")
        XCTAssertEqual(lookup(#""a":1,"a":2"#, "a"), "1")
        XCTAssertEqual(lookup(#" "a" : { "b" : 2 } "#, "a.b"), "2")
        let empty: [[UInt8]] = []
        XCTAssertNil(Array(m.utf8).withUnsafeBytes { JSONScan.lookup($0, path: empty) })
    }

    func testLookupOnLiftedOutput() {
        var out: [UInt8] = []
        let src = Array(#"{ "level" : "info", "http": { "status": 200, "req": {"path": "/x"} } }"#.utf8)
        _ = src.withUnsafeBytes { JSONScan.liftObject($0, into: &out) { _ in false } }
        let r = out.withUnsafeBytes { JSONScan.lookup($0, path: [Array("http".utf8), Array("req".utf8), Array("path".utf8)]) }
        XCTAssertEqual(r.map { String(decoding: out[$0], as: UTF8.self) }, #""/x""#)
    }

    // MARK: skip

    func testSkipValue() {
        func skip(_ s: String) -> Int? {
            var i = 0
            let b = Array(s.utf8)
            return b.withUnsafeBytes { JSONScan.skipValue($0, from: &i) } ? i : nil
        }
        XCTAssertEqual(skip(#""a\"b",x"#), 6)
        XCTAssertEqual(skip(#"{"a":["}",1]},x"#), 13)
        XCTAssertEqual(skip("123 ,"), 3)
        XCTAssertEqual(skip("true]"), 4)
        XCTAssertNil(skip(#"{"a":1"#))
        XCTAssertNil(skip(#""abc"#))
        XCTAssertNil(skip(""))
        XCTAssertNil(skip(","))
        XCTAssertEqual(Array("  \t\nx".utf8).withUnsafeBytes { JSONScan.skipWhitespace($0, 0) }, 4)
        XCTAssertEqual(JSONScan.skipWhitespace(UnsafeRawBufferPointer(start: nil, count: 0), 0), 0)
    }
}

final class TimestampTests: XCTestCase {
    private func parse(_ s: String) -> Int64? {
        Array(s.utf8).withUnsafeBytes { Timestamp.parseRFC3339($0) }
    }

    private func format(_ ns: Int64) -> String {
        var out: [UInt8] = []
        Timestamp.appendRFC3339Nano(ns, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    func testParseKnownValues() {
        XCTAssertEqual(parse("1970-01-01T00:00:00Z"), 0)
        XCTAssertEqual(parse("1970-01-01T00:00:01Z"), 1_000_000_000)
        XCTAssertEqual(parse("2024-01-02T03:04:05Z"), 1_704_164_645_000_000_000)
        XCTAssertEqual(parse("2024-01-02T03:04:05.123456789Z"), 1_704_164_645_123_456_789)
        XCTAssertEqual(parse("2024-01-02t03:04:05.123456789z"), 1_704_164_645_123_456_789)
        XCTAssertEqual(parse("2024-01-02 03:04:05.123456789Z"), 1_704_164_645_123_456_789)
        XCTAssertEqual(parse("1969-12-31T23:59:59.5Z"), -500_000_000)
        XCTAssertEqual(parse("2000-02-29T12:00:00Z"), 951_825_600_000_000_000)
    }

    func testParseFractions() {
        let base: Int64 = 1_704_164_645_000_000_000
        XCTAssertEqual(parse("2024-01-02T03:04:05.1Z"), base + 100_000_000)
        XCTAssertEqual(parse("2024-01-02T03:04:05.12Z"), base + 120_000_000)
        XCTAssertEqual(parse("2024-01-02T03:04:05.123Z"), base + 123_000_000)
        XCTAssertEqual(parse("2024-01-02T03:04:05.000001Z"), base + 1_000)
        XCTAssertEqual(parse("2024-01-02T03:04:05.12345678Z"), base + 123_456_780)
        XCTAssertEqual(parse("2024-01-02T03:04:05.123456789Z"), base + 123_456_789)
        XCTAssertEqual(parse("2024-01-02T03:04:05.1234567891234Z"), base + 123_456_789)
        XCTAssertEqual(parse("2024-01-02T03:04:05.999999999999Z"), base + 999_999_999)
    }

    func testParseOffsets() {
        let utc = parse("2024-01-02T03:04:05.5Z")
        XCTAssertEqual(parse("2024-01-02T04:04:05.5+01:00"), utc)
        XCTAssertEqual(parse("2024-01-01T21:34:05.5-05:30"), utc)
        XCTAssertEqual(parse("2024-01-02T03:04:05.5+00:00"), utc)
        XCTAssertEqual(parse("2024-01-02T03:04:05.5-00:00"), utc)
        XCTAssertEqual(parse("2024-01-03T02:04:05.5+23:00"), utc)
    }

    func testParseInvalid() {
        for bad in ["", "2024", "2024-01-02", "2024-01-02T03:04:05", "2024-01-02T03:04:05.Z", "2024-01-02T03:04:05.123",
                    "2024-13-02T03:04:05Z", "2024-00-02T03:04:05Z", "2024-01-00T03:04:05Z", "2024-01-32T03:04:05Z",
                    "2023-02-29T03:04:05Z", "2100-02-29T03:04:05Z", "2024-04-31T03:04:05Z",
                    "2024-01-02T24:04:05Z", "2024-01-02T03:60:05Z", "2024-01-02T03:04:61Z",
                    "2024-01-02X03:04:05Z", "2024/01/02T03:04:05Z", "2024-01-02T03-04-05Z", "2024-1-02T03:04:05Z",
                    "2024-01-02T03:04:05ZZ", "2024-01-02T03:04:05Z ", " 2024-01-02T03:04:05Z",
                    "2024-01-02T03:04:05+01", "2024-01-02T03:04:05+0100", "2024-01-02T03:04:05+01:00x",
                    "2024-01-02T03:04:05+24:00", "2024-01-02T03:04:05+01:60", "2024-01-02T03:04:05+a1:00",
                    "2024-01-02T03:04:05.12a4Z", "+024-01-02T03:04:05Z", "2024-01-02T03:04:05.-1Z",
                    "2024-01-02T03:04:05\u{0}Z"] {
            XCTAssertNil(parse(bad), bad)
        }
        XCTAssertNil(Timestamp.parseRFC3339(UnsafeRawBufferPointer(start: nil, count: 0)))
    }

    /// Issue 13: valid years outside Int64 nanoseconds (1677-2262) parse, clamped to the limits.
    func testYearsOutsideInt64NanosecondsAreClamped() {
        for early in ["0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "1000-06-15T12:00:00.5+01:00",
                      "1677-09-21T00:12:43.145224191Z"] {
            XCTAssertEqual(parse(early), Int64.min, early)
        }
        for late in ["2262-04-11T23:47:16.854775808Z", "2999-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
                     "9999-12-31T23:59:60-23:59"] {
            XCTAssertEqual(parse(late), Int64.max, late)
        }
        XCTAssertEqual(parse("1677-09-21T00:12:43.145224192Z"), Int64.min)
        XCTAssertEqual(parse("2262-04-11T23:47:16.854775807Z"), Int64.max)
        XCTAssertEqual(parse("2262-04-11T23:47:16.854775806Z"), Int64.max - 1)
        XCTAssertEqual(format(Int64.max), "2262-04-11T23:47:16.854775807Z")
        XCTAssertEqual(format(Int64.min), "1677-09-21T00:12:43.145224192Z")
    }

    func testLeapSecondAccepted() {
        XCTAssertEqual(parse("2016-12-31T23:59:60Z"), parse("2017-01-01T00:00:00Z"))
    }

    func testParseEveryPrefixFailsWithoutCrash() {
        let s = Array("2024-01-02T03:04:05.123456789+01:00".utf8)
        for cut in 0..<s.count {
            XCTAssertNil(Array(s[..<cut]).withUnsafeBytes { Timestamp.parseRFC3339($0) })
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var b = s
            b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            _ = b.withUnsafeBytes { Timestamp.parseRFC3339($0) }
        }
    }

    func testFormatKnownValues() {
        XCTAssertEqual(format(0), "1970-01-01T00:00:00.000000000Z")
        XCTAssertEqual(format(1_704_164_645_123_456_789), "2024-01-02T03:04:05.123456789Z")
        XCTAssertEqual(format(-1), "1969-12-31T23:59:59.999999999Z")
        XCTAssertEqual(format(951_825_600_000_000_001), "2000-02-29T12:00:00.000000001Z")
    }

    func testRoundTrip() {
        var rng = SystemRandomNumberGenerator()
        let samples: [Int64] = [0, 1, -1, 999_999_999, 1_000_000_000, 1_704_164_645_123_456_789,
                                Int64.max - 1_000_000_000, Int64.min + 1_000_000_000]
        for ns in samples + (0..<2000).map({ _ in Int64.random(in: -6_000_000_000_000_000_000...9_000_000_000_000_000_000, using: &rng) }) {
            let s = format(ns)
            XCTAssertEqual(parse(s), ns, s)
        }
    }
}
