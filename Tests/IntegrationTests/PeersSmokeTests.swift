import XCTest

/// The peers themselves work (so a failure elsewhere is the agent's, not the harness's).
final class PeersSmokeTests: XCTestCase {
    func testReceiverRecordsAndScripts() throws {
        let r = try ReceiverPeer()
        defer { r.stop() }
        try r.script(["500"])
        _ = try? httpJSON("POST", r.url, body: ["a": 1])
        _ = try httpJSON("POST", r.url, body: ["b": 2])
        let s = try r.snapshot()
        XCTAssertEqual(s.requests, 2)
        XCTAssertEqual(s.records.count, 1)
        XCTAssertEqual(s.records.first?["b"] as? Int, 2)
    }

    func testOsmemCounts() throws {
        let os = try OsmemPeer()
        defer { os.stop() }
        _ = try os.put("/t1/_doc/1", ["x": 1])
        XCTAssertEqual(try os.count("t1"), 1)
    }
}
