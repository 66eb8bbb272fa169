import XCTest
@testable import AnduinCore

/// Issue 24 (7), at the scanner: `liftObject` never writes a key twice in any object.
final class MemberKeysTests: XCTestCase {
    private func lift(_ json: String, rename: Set<String> = [], keys: inout MemberKeys) -> (Int?, String) {
        var out: [UInt8] = []
        let n = Array(json.utf8).withUnsafeBytes { b in
            JSONScan.liftObject(b, into: &out, keys: &keys) { rename.contains(String(decoding: $0, as: UTF8.self)) }
        }
        return (n, String(decoding: out, as: UTF8.self))
    }

    private func lift(_ json: String, rename: Set<String> = []) -> (Int?, String) {
        var keys = MemberKeys()
        return lift(json, rename: rename, keys: &keys)
    }

    func testDuplicatesCollapseToTheLastAtTheLastPlace() {
        XCTAssertEqual(lift(#"{"a":1,"b":2,"a":3}"#).1, #""b":2,"a":3"#)
        XCTAssertEqual(lift(#"{"a":1,"b":2,"a":3}"#).0, 2)
        XCTAssertEqual(lift(#"{"":1,"":2}"#).1, #""":2"#)
        XCTAssertEqual(lift(#"{"o":{"x":[{"k":1,"k":{"k":1,"k":2}}],"x":0}}"#).1, #""o":{"x":0}"#)
        XCTAssertEqual(lift(#"{"o":[{"k":1,"k":{"k":1,"k":2}}]}"#).1, #""o":[{"k":{"k":2}}]"#)
        // Escaped and plain spellings of one key are one key.
        XCTAssertEqual(lift(#"{"\u0061":1,"a":2,"\/":3,"/":4}"#).1, #""a":2,"/":4"#)
        // Invalid UTF-8 in keys becomes U+FFFD: two such keys are then the same key.
        var out: [UInt8] = []
        let bytes: [UInt8] = [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x2C, 0x22, 0xFE, 0x22, 0x3A, 0x32, 0x7D]
        let n = bytes.withUnsafeBytes {
            JSONScan.liftObject($0, into: &out) { _ in false }
        }
        XCTAssertEqual(n, 1)
        XCTAssertEqual(String(decoding: out, as: UTF8.self), "\"\u{FFFD}\":2")
    }

    func testRenamesTakeTheFewestFreeUnderscores() {
        XCTAssertEqual(lift(#"{"log":1}"#, rename: ["log"]).1, #""_log":1"#)
        XCTAssertEqual(lift(#"{"log":1,"_log":2}"#, rename: ["log"]).1, #""__log":1,"_log":2"#)
        XCTAssertEqual(lift(#"{"_log":2,"__log":3,"log":1}"#, rename: ["log"]).1, #""_log":2,"__log":3,"___log":1"#)
        XCTAssertEqual(lift(#"{"log":1,"_log":2,"log":3}"#, rename: ["log"]).1, #""_log":2,"__log":3"#)
        // Nested keys are never renamed, and a nested `_log` is no reason to rename further.
        XCTAssertEqual(lift(#"{"log":{"log":1,"_log":2},"x":{"_log":1}}"#, rename: ["log"]).1,
                       #""_log":{"log":1,"_log":2},"x":{"_log":1}"#)
    }

    func testOutsideNames() {
        var keys = MemberKeys()
        Array(#""_log":"own","env":"x","n":{"a":1}"#.utf8).withUnsafeBytes { XCTAssertTrue(keys.addOutsideNames(of: $0)) }
        let (n, text) = lift(#"{"log":1,"env":2,"a":3}"#, rename: ["log"], keys: &keys)
        XCTAssertEqual(n, 3)
        XCTAssertEqual(text, #""__log":1,"env":2,"a":3"#)
        XCTAssertEqual(keys.overridden.map { String(decoding: keys.outsideName($0), as: UTF8.self) }, ["env"])
        keys.removeOutsideNames(from: 0)
        XCTAssertEqual(lift(#"{"log":1,"env":2}"#, rename: ["log"], keys: &keys).1, #""_log":1,"env":2"#)
        XCTAssertFalse(keys.hasOverridden)
        // Not members: nothing added.
        Array(#""a":1,oops"#.utf8).withUnsafeBytes { XCTAssertFalse(keys.addOutsideNames(of: $0)) }
        XCTAssertEqual(keys.outsideNameCount, 0)
    }

    /// Many keys (the exact check by hash table): distinct ones all stay, repeated ones collapse.
    func testManyKeys() {
        let distinct = "{" + (0..<5000).map { #""k\#($0)":\#($0)"# }.joined(separator: ",") + "}"
        XCTAssertEqual(lift(distinct).0, 5000)
        let same = "{" + (0..<5000).map { #""k":\#($0)"# }.joined(separator: ",") + "}"
        XCTAssertEqual(lift(same).1, #""k":4999"#)
        let half = "{" + (0..<5000).map { #""k\#($0 % 2500)":\#($0)"# }.joined(separator: ",") + "}"
        let (n, text) = lift(half)
        XCTAssertEqual(n, 2500)
        XCTAssertTrue(text.hasPrefix(#""k0":2500,"k1":2501"#), String(text.prefix(40)))
    }

    /// The same working memory across lines, after failures and nested rewrites: no state leaks.
    func testReusedAcrossLines() {
        var keys = MemberKeys()
        XCTAssertNil(lift(#"{"a":{"b":1,"b":2},"c":"#, keys: &keys).0)
        XCTAssertEqual(lift(#"{"a":{"b":1,"b":2},"c":3}"#, keys: &keys).1, #""a":{"b":2},"c":3"#)
        XCTAssertEqual(lift(#"{"x":1}"#, keys: &keys).1, #""x":1"#)
        XCTAssertEqual(lift(#"{"a":1,"a":2}"#, keys: &keys).1, #""a":2"#)
    }

    /// The hash seed is the process's, taken once: a parse filter makes a `MemberKeys` for every
    /// batch, and a seed each cost a `getrandom` call (one a line on a quiet node).
    func testTheSeedIsTakenOncePerProcess() {
        XCTAssertEqual(MemberKeys().seed, MemberKeys().seed)
        XCTAssertNotEqual(MemberKeys().seed, 0)
    }
}
