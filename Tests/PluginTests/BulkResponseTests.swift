import Foundation
import AnduinCore
import XCTest

@testable import out_es

/// The bulk response reader: a receipt only when it accounts for every action.
final class BulkResponseTests: XCTestCase {
    private func read(_ body: String, _ actions: Int, conflict: Bool = true) -> SendResult {
        BulkResponse.read(Array(body.utf8), actions: actions, conflictIsDelivered: conflict)
    }

    private func isRetryAll(_ r: SendResult, file: StaticString = #filePath, line: UInt = #line) {
        guard case .retryAll(let status, _) = r else { return XCTFail("expected a failed request, got \(r)", file: file, line: line) }
        XCTAssertEqual(status, 200, file: file, line: line)
    }

    /// Issue 24 (3): a per-item reason that quotes the request's credentials is scrubbed, also when
    /// it is longer than what is kept of it, and also when the JSON escapes the credential.
    func testItemReasonsAreScrubbedBeforeTheyAreCut() {
        let key = Data("id-1:very-secret-key-22".utf8).base64EncodedString()
        let s = CredentialScrubber(url: "http://h/_bulk", headers: [("Authorization", "ApiKey " + key)], basicAuth: nil)
        let pad = String(repeating: "x", count: 480)
        // The credential straddles byte 500 of the decoded reason; `\u0041`-style escapes hide it from a raw scan.
        let escapedKey = key.unicodeScalars.map { String(format: "\\u%04x", $0.value) }.joined()
        let body = #"{"errors":true,"items":[{"create":{"status":400,"error":{"type":"security_exception","reason":"request auth was ApiKey "# + key + #""}}},"#
            + #"{"create":{"status":400,"error":{"type":"x","reason":""# + pad + escapedKey + #""}}}]}"#
        let r = BulkResponse.read(Array(body.utf8), actions: 2, conflictIsDelivered: true, scrubber: s)
        guard case .perRecord(let o) = r, o.count == 2,
              case .deadLetter(400, let first) = o[0], case .deadLetter(400, let second) = o[1] else { return XCTFail("\(r)") }
        XCTAssertEqual(first, "security_exception: request auth was ***")
        XCTAssertFalse(second.contains(String(key.prefix(6))), second)
        // A body that is not a receipt: its start is shown, scrubbed.
        let bad = BulkResponse.read(Array(("<html>auth " + key + " was refused").utf8), actions: 1, conflictIsDelivered: true, scrubber: s)
        guard case .retryAll(_, let why) = bad else { return XCTFail("\(bad)") }
        XCTAssertFalse(why.contains(key), why)
        XCTAssertTrue(why.contains("***"), why)
    }

    func testCompleteReceiptsAreDelivered() {
        XCTAssertEqual(read(#"{"took":3,"errors":false,"items":[{"create":{"status":201}},{"create":{"status":201}}]}"#, 2), .delivered)
        // items before errors: read in full.
        XCTAssertEqual(read(#" {"items":[{"index":{"_id":"a","status":200}}],"errors":false} "#, 1), .delivered)
        XCTAssertEqual(read(#"{"errors":false,"items":[]}"#, 0), .delivered)
    }

    func testIncompleteOrMalformedAnswersAreFailedRequests() {
        isRetryAll(read(#"{"took":1,"errors":false}"#, 3))
        isRetryAll(read(#"{"took":1,"errors":false,"items":[]}"#, 3))
        isRetryAll(read(#"{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":201}}]}"#, 1))
        isRetryAll(read(#"{"errors":false,"items":[{"create":{"status":201}}"#, 1))
        isRetryAll(read("<html><body>Service Unavailable</body></html>", 1))
        isRetryAll(read("", 1))
        isRetryAll(read(#"{"errors":false,"items":[{"create":{"status":201}}]} trailing"#, 1))
        isRetryAll(read(#"{"errors":"no","items":[{"create":{"status":201}}]}"#, 1))
        isRetryAll(read(#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":500}}]}"#, 3))
        isRetryAll(read(#"[{"create":{"status":201}}]"#, 1))
    }

    func testItemsAreReadOneByOne() {
        let body = #"""
            {"took":5,"errors":true,"items":[
              {"create":{"_index":"a","_id":"1","status":201}},
              {"create":{"_index":"a","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
              {"create":{"_index":"b","_id":"3","status":503,"error":{"type":"unavailable_shards_exception","reason":"[b][0] primary shard is not active"}}},
              {"create":{"_index":"a","_id":"4","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n] \"x\""}}},
              {"create":{"_index":"a","_id":"5","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
              {"create":{"_index":"a","_id":"6"}}
            ]}
            """#
        XCTAssertEqual(read(body, 6), .perRecord([
            .delivered,
            .delivered,
            .retry(status: 503, reason: "unavailable_shards_exception: [b][0] primary shard is not active"),
            .deadLetter(status: 400, reason: "mapper_parsing_exception: failed to parse field [n] \"x\""),
            .retry(status: 429, reason: "es_rejected_execution_exception: queue full"),
            .retry(status: 0, reason: "bulk item without a status"),
        ]))
        // 409 is a replay only for op_type create with our own _id.
        XCTAssertEqual(read(#"{"errors":true,"items":[{"index":{"status":409}}]}"#, 1, conflict: false),
                       .perRecord([.deadLetter(status: 409, reason: "HTTP 409")]))
    }

    /// Arbitrary bytes never trap (a tiny fuzz run with a fixed seed).
    func testGarbageNeverTraps() {
        var rng = SplitMix(seed: 42)
        let seeds = [#"{"errors":false,"items":[{"create":{"status":201}}]}"#, #"{"errors":true,"items":[{"a":{"status":503,"error":{"type":"x","reason":"y"}}}]}"#]
        for _ in 0..<20_000 {
            var b = Array(seeds[Int(rng.next() % 2)].utf8)
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let i = Int(rng.next() % UInt64(b.count))
                switch rng.next() % 3 {
                case 0: b[i] = UInt8(truncatingIfNeeded: rng.next())
                case 1: b.remove(at: i)
                default: b.insert(UInt8(truncatingIfNeeded: rng.next()), at: i)
                }
                if b.isEmpty { break }
            }
            _ = BulkResponse.read(b, actions: 1, conflictIsDelivered: true)
        }
    }
}
