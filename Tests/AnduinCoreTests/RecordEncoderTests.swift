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

    func testDefaultIsEveryField() throws {
        XCTAssertEqual(DocumentMetadata(), .all)
        var out: [UInt8] = []
        RecordEncoder.append(batch(truncated: false), 0, to: &out)
        XCTAssertEqual(String(decoding: out, as: UTF8.self),
                       #"{"@timestamp":"2023-11-14T22:13:20.123456789Z","stream":"stdout","message":"hello","log":{"file":{"path":"/var/log/x \"q\".log"},"offset":42},"event":{"id":"000000000000abcd000000000000002a"}}"#)
    }

    private func logPath(_ d: [String: Any]) -> String? {
        ((d["log"] as? [String: Any])?["file"] as? [String: Any])?["path"] as? String
    }
}
