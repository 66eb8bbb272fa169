import Foundation
import XCTest
@testable import AnduinCore

/// Documents with each combination of the `metadata` fields: always valid JSON, holding exactly the
/// fields asked for (and `log.truncated` whenever a line was cut).
final class RecordEncoderTests: XCTestCase {
    private func batch(truncated: Bool) -> RecordBatch {
        var b = RecordBatch(source: SourceInfo(path: "/var/log/x \"q\".log", sourceID: 0xABCD), inputName: "in")
        let m = Array("hello".utf8).withUnsafeBytes { b.append(bytes: $0) }
        b.records.append(Record(timestamp: 1_700_000_000_123_456_789, offset: 42, message: m, stream: .stdout,
                                flags: truncated ? [.truncated] : []))
        return b
    }

    private func document(_ m: DocumentMetadata, truncated: Bool = false) throws -> [String: Any] {
        var out: [UInt8] = []
        RecordEncoder.append(batch(truncated: truncated), 0, metadata: m, to: &out)
        let any = try JSONSerialization.jsonObject(with: Data(out))
        return try XCTUnwrap(any as? [String: Any], String(decoding: out, as: UTF8.self))
    }

    func testEveryCombinationIsValidJSONWithTheFieldsAskedFor() throws {
        for bits in 0..<8 {
            for truncated in [false, true] {
                var m = DocumentMetadata()
                m.filePath = bits & 1 != 0
                m.offset = bits & 2 != 0
                m.eventID = bits & 4 != 0
                let d = try document(m, truncated: truncated)
                let what = "\(m) truncated=\(truncated)"
                XCTAssertEqual(d["message"] as? String, "hello", what)
                XCTAssertEqual(d["stream"] as? String, "stdout", what)
                let log = d["log"] as? [String: Any]
                XCTAssertEqual(log == nil, !(m.filePath || m.offset || truncated), what)
                XCTAssertEqual(logPath(d), m.filePath ? "/var/log/x \"q\".log" : nil, what)
                XCTAssertEqual((log?["offset"] as? NSNumber)?.int64Value, m.offset ? 42 : nil, what)
                XCTAssertEqual(log?["truncated"] as? Bool, truncated ? true : nil, what)
                let id = (d["event"] as? [String: Any])?["id"] as? String
                XCTAssertEqual(id, m.eventID ? "000000000000abcd000000000000002a" : nil, what)
            }
        }
    }

    /// By default documents carry `log.file.path` only, as Vector's file source does.
    func testDefaultIsThePathOnly() throws {
        var out: [UInt8] = []
        RecordEncoder.append(batch(truncated: false), 0, metadata: DocumentMetadata(), to: &out)
        XCTAssertEqual(String(decoding: out, as: UTF8.self),
                       #"{"@timestamp":"2023-11-14T22:13:20.123456789Z","stream":"stdout","message":"hello","log":{"file":{"path":"/var/log/x \"q\".log"}}}"#)
    }

    func testAllIsEveryField() throws {
        var out: [UInt8] = []
        RecordEncoder.append(batch(truncated: false), 0, to: &out)
        XCTAssertEqual(String(decoding: out, as: UTF8.self),
                       #"{"@timestamp":"2023-11-14T22:13:20.123456789Z","stream":"stdout","message":"hello","log":{"file":{"path":"/var/log/x \"q\".log"},"offset":42},"event":{"id":"000000000000abcd000000000000002a"}}"#)
    }

    private func logPath(_ d: [String: Any]) -> String? {
        ((d["log"] as? [String: Any])?["file"] as? [String: Any])?["path"] as? String
    }
}

/// `JSONWriter.appendEscaped` (8 bytes at a time) against a byte-by-byte reference, on random
/// strings full of the bytes it must stop at, at every length and alignment up to 40.
final class JSONEscapeTests: XCTestCase {
    private func reference(_ s: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < s.count {
            let c = s[i]
            if c >= 0x80 {
                let len = s.withUnsafeBufferPointer { JSONWriter.validUTF8Length($0.baseAddress!, i, s.count) }
                if len > 0 { out += s[i..<(i + len)]; i += len } else { out += [0xEF, 0xBF, 0xBD]; i += 1 }
                continue
            }
            switch c {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x0A: out += Array(#"\n"#.utf8)
            case 0x0D: out += Array(#"\r"#.utf8)
            case 0x09: out += Array(#"\t"#.utf8)
            case 0x08: out += Array(#"\b"#.utf8)
            case 0x0C: out += Array(#"\f"#.utf8)
            case 0..<0x20: out += Array(String(format: "\\u%04x", Int(c)).utf8)
            default: out.append(c)
            }
            i += 1
        }
        return out
    }

    func testMatchesTheByteByByteReference() {
        var rng = SystemRandomNumberGenerator()
        let interesting: [UInt8] = [0x00, 0x01, 0x08, 0x09, 0x0A, 0x1F, 0x20, 0x21, 0x22, 0x5B, 0x5C, 0x5D, 0x7E, 0x7F,
                                    0x80, 0xBF, 0xC2, 0xC3, 0xE2, 0x82, 0xAC, 0xED, 0xA0, 0xF0, 0x9F, 0x98, 0x80, 0xFF]
        for length in 0...40 {
            for _ in 0..<300 {
                let s: [UInt8] = (0..<length).map { _ in
                    Bool.random(using: &rng) ? UInt8(ascii: "a") + UInt8.random(in: 0..<26, using: &rng)
                                             : interesting.randomElement(using: &rng)! }
                for offset in [0, 3] {  // unaligned starts too
                    let padded = [UInt8](repeating: 0x41, count: offset) + s
                    var out: [UInt8] = []
                    padded.withUnsafeBytes { JSONWriter.appendEscaped(UnsafeRawBufferPointer(rebasing: $0[offset...]), to: &out) }
                    XCTAssertEqual(out, reference(s), "input \(s)")
                }
            }
        }
        var plain: [UInt8] = []
        Array("a plain ASCII log line, with no escapes at all".utf8).withUnsafeBytes { JSONWriter.appendEscaped($0, to: &plain) }
        XCTAssertEqual(String(decoding: plain, as: UTF8.self), "a plain ASCII log line, with no escapes at all")
    }
}
