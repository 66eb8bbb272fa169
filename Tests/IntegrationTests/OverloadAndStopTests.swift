import Foundation
import XCTest
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Issue 24 (8) and (9): an overloaded destination (per-item 429 with `Retry-After`) is not hit
/// harder than a healthy one, and a stop with a disk buffer does not wait for a destination that
/// never answers. Both against receiver.py in bulk mode.
final class OverloadAndStopTests: DGTestCase {
    struct Bulk {
        /// (_id, message) of every stored document.
        var docs: [(id: String, message: String)]
        var requests: Int
        var overloadRequests: Int
        var overloadItems: Int
    }

    func bulk(_ r: ReceiverPeer) throws -> Bulk {
        let j = try httpJSON("GET", "http://127.0.0.1:\(r.port)/_control/bulk", body: nil)
        let docs = (j["docs"] as? [[String: Any]] ?? []).map { d -> (id: String, message: String) in
            (d["_id"] as? String ?? "", (d["doc"] as? [String: Any])?["message"] as? String ?? "")
        }
        let o = j["overload"] as? [String: Any] ?? [:]
        return Bulk(docs: docs, requests: j["requests"] as? Int ?? 0,
                    overloadRequests: (o["requests"] as? NSNumber)?.intValue ?? -1,
                    overloadItems: (o["items"] as? NSNumber)?.intValue ?? -1)
    }

    func lineCount(_ path: String) -> Int {
        ((try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data()).reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
    }

    func script(_ r: ReceiverPeer, _ body: [String: Any]) throws {
        _ = try httpJSON("POST", "http://127.0.0.1:\(r.port)/_control/script", body: body)
    }

    /// Every written line stored once: one document per line, one `_id` per document.
    func assertEachLineOnce(_ r: ReceiverPeer, _ expected: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let b = try bulk(r)
        XCTAssertEqual(b.docs.count, expected.count, "documents stored", file: file, line: line)
        XCTAssertEqual(Set(b.docs.map(\.id)).count, b.docs.count, "one document per _id", file: file, line: line)
        let got = Set(b.docs.map(\.message))
        XCTAssertEqual(got.count, b.docs.count, "a line stored twice under different _ids", file: file, line: line)
        let missing = Set(expected).subtracting(got)
        XCTAssertTrue(missing.isEmpty, "\(missing.count) lines missing: \(DG.ranges(Array(missing)))", file: file, line: line)
    }

    func esConfig(_ port: Int, buffer: String, shutdownTimeout: String = "30s", extra: [String]) -> String {
        var y = "data_dir: ./data\nshutdown_timeout: \(shutdownTimeout)\napi: {address: \"127.0.0.1:0\"}\ninputs:\n"
            + TailOptions().yaml(name: "in") + "outputs:\n"
        y += """
              es:
                type: elasticsearch
                from: [in]
                hosts: ["http://127.0.0.1:\(port)"]
                index: "logs"
                buffer: \(buffer)

            """
        for e in extra { y += "    \(e)\n" }
        return y
    }

    // MARK: (8) overload amplification

    /// 200 lines a second; for 15 s every bulk item is refused 429 es_rejected_execution_exception
    /// (with `retryAfter` as its Retry-After header, if given). The agent must send less while the
    /// destination says it is overloaded, not more: fewer item attempts than twice the lines written
    /// meanwhile (before the fix, each refused item was retried every few hundred ms: about 5x the
    /// input), and no more requests than in a healthy stretch of the same length (before: 284 in
    /// 15 s, about twice the healthy rate). Then every line arrives once. Returns the requests
    /// during the overload.
    @discardableResult
    func overloadRun(retryAfter: String?) throws -> Int {
        let r = try receiver()
        try writeConfig(esConfig(r.port, buffer: "{type: disk, max_bytes: 64MiB, segment_bytes: 1MiB}", extra: [
            "concurrency: 2", "batch: {max_records: 500, timeout: 100ms}", "retry: {initial: 100ms, max: 10s}",
        ]))
        let agent = try startAgent()
        let api = try XCTUnwrap(apiAddress())
        let writer = startWriter(["ovl"], linesPerTick: 2, tickMicros: 10_000)
        waitFor("the first documents, healthy") { ((try? bulk(r).docs.count) ?? 0) >= 200 }
        // The normal rate of this config on this box: requests in a healthy stretch.
        let window = 15.0, healthyStretch = 5.0
        let healthyBefore = try bulk(r).requests
        usleep(UInt32(healthyStretch * 1_000_000))
        let normal = Double(try bulk(r).requests - healthyBefore) / healthyStretch
        let path = sandbox.path("logs/ovl.log")
        let before = lineCount(path)
        var script: [String: Any] = ["responses": [String](), "then": "200", "overload_seconds": window]
        if let retryAfter { script["retry_after"] = retryAfter }
        try self.script(r, script)
        usleep(UInt32(window * 1_000_000))
        let during = try bulk(r)
        // Lines written during the window, as the writer managed on this box.
        let inWindow = lineCount(path) - before
        let writtenSoFar = DG.expectedLines(writer.stop())
        print(String(format: "overload (Retry-After %@): %d requests, %d item attempts in %.0f s for %d new lines; healthy: %.1f requests/s",
                     retryAfter ?? "none", during.overloadRequests, during.overloadItems, window, inWindow, normal))
        XCTAssertGreaterThan(during.overloadRequests, 0, "the overload window was hit")
        XCTAssertLessThanOrEqual(during.overloadItems, 2 * inWindow,
                                 "item attempts while overloaded: \(during.overloadItems) for \(inWindow) lines written")
        XCTAssertLessThanOrEqual(Double(during.overloadRequests), normal * window,
                                 "requests while overloaded: \(during.overloadRequests) in \(window) s, healthy \(normal)/s")
        waitForReceived(writtenSoFar, timeout: 120) { ((try? bulk(r).docs) ?? []).map { DGRecord(message: $0.message, eventID: $0.id, path: "", offset: 0) } }
        try assertEachLineOnce(r, writtenSoFar)
        assertAccounted(api, "es", delivered: writtenSoFar.count, deadLettered: 0)
        stopAgent(agent)
        XCTAssertTrue(deadLetters(sandbox, "es").isEmpty)
        r.stop()
        return during.overloadRequests
    }

    /// With `Retry-After: 5` the whole output waits it out: the two requests in flight when the
    /// overload began, then one per 5 s (before the fix: 284 requests in the 15 s).
    func testPerItem429WithRetryAfterIsNotAmplified() throws {
        let requests = try overloadRun(retryAfter: "5")
        XCTAssertLessThanOrEqual(requests, 15 / 5 + 3, "Retry-After: 5 not honoured")
    }

    /// Without Retry-After (Elasticsearch sends none with item 429s) the pause grows with each
    /// overloaded answer instead (before the fix: 288 requests, 13,292 item attempts for 2,844 lines).
    func testPerItem429WithoutRetryAfterIsNotAmplified() throws {
        try overloadRun(retryAfter: nil)
    }

    /// A whole request refused 429 with `Retry-After: 2` is not retried before those 2 s (the
    /// configured backoff alone would retry after 50-100 ms).
    func testWholeRequest429WaitsOutRetryAfter() throws {
        let r = try receiver()
        try script(r, ["responses": ["429", "429"], "then": "200", "retry_after": "2"])
        let lines = logLines("whole", 0..<50)
        appendText(sandbox.path("logs/app.log"), joinedLines(lines))
        try writeConfig(esConfig(r.port, buffer: "{type: memory, max_records: 1000}", extra: [
            "concurrency: 1", "batch: {max_records: 500, timeout: 100ms}", "retry: {initial: 100ms, max: 10s}",
        ]))
        let agent = try startAgent()
        waitFor("50 documents") { ((try? bulk(r).docs.count) ?? 0) >= 50 }
        let times = try r.snapshot().requestTimes
        let gaps = zip(times.dropFirst(), times).map { $0 - $1 }
        print("whole-request 429 with Retry-After 2: gaps \(gaps.map { String(format: "%.2f", $0) })")
        XCTAssertGreaterThanOrEqual(times.count, 3)
        XCTAssertTrue(gaps.prefix(2).allSatisfy { $0 >= 1.9 }, "retried before Retry-After: \(gaps)")
        try assertEachLineOnce(r, lines)
        stopAgent(agent)
    }

    // MARK: (9) a stop that outlives the grace period

    /// Disk buffer, a destination that accepts the connection and never answers: SIGTERM ends the
    /// agent within seconds (the kubelet's grace period is 30 s by default; before the fix it took
    /// shutdown_timeout, 30 s). The records in flight stay in the ring; after a restart against a
    /// healthy destination every line is stored once, and the stop said they were kept.
    func testStopWithDiskBufferDoesNotWaitForAHangingDestination() throws {
        let r = try receiver()
        try r.script([], then: "hang", hangSeconds: 120)
        let lines = logLines("hang", 0..<1000)
        appendText(sandbox.path("logs/app.log"), joinedLines(lines))
        try writeConfig(esConfig(r.port, buffer: "{type: disk, max_bytes: 64MiB, segment_bytes: 1MiB}", extra: [
            "concurrency: 2", "batch: {max_records: 200, timeout: 100ms}", "retry: {initial: 100ms, max: 10s}",
        ]))
        var agent = try startAgent()
        waitFor("two hanging requests") { ((try? r.snapshot().requests) ?? 0) >= 2 }
        waitFor("every line read") { checkpointTotal() >= Int64(lines.count * lineLength("hang")) }
        let start = Date()
        agent.terminate()
        XCTAssertTrue(agent.waitExit(timeout: 60), "no exit within 60 s of SIGTERM")
        let took = Date().timeIntervalSince(start)
        print(String(format: "stop with a hanging destination (disk buffer): exit after %.2f s", took))
        XCTAssertEqual(agent.exit?.signalled, false)
        XCTAssertEqual(agent.exit?.status, 0)
        // 5 s is the target; 8 s leaves room for a loaded 2-core box (the fix takes ~2.5 s).
        XCTAssertLessThan(took, 8, "SIGTERM took \(took) s with a disk buffer")
        let log = agent.stderr
        XCTAssertTrue(log.contains("kept in the disk buffer for the next start"), String(log.suffix(1500)))
        XCTAssertFalse(log.contains("not delivered within shutdown_timeout"), String(log.suffix(1500)))

        try r.script([], then: "200")
        agent = try startAgent()
        waitFor("1000 documents after the restart") { ((try? bulk(r).docs.count) ?? 0) >= lines.count }
        usleep(500_000)
        try assertEachLineOnce(r, lines)
        stopAgent(agent)
    }

    /// The same with a disk buffer that filled up while the destination did not answer: the writer
    /// waits for room in the ring and the input for room in the hand-off queue. A stop ends within
    /// seconds all the same (before: shutdown_timeout, 30 s); what the input had not handed over is
    /// read again, what the ring holds is delivered after the restart, every line once.
    func testStopWithAFullDiskBufferDoesNotWaitEither() throws {
        let r = try receiver()
        try r.script([], then: "hang", hangSeconds: 120)
        let lines = logLines("full", 0..<20_000)
        appendText(sandbox.path("logs/app.log"), joinedLines(lines))
        try writeConfig(esConfig(r.port, buffer: "{type: disk, max_bytes: 64KiB, segment_bytes: 16KiB}", extra: [
            "concurrency: 1", "batch: {max_records: 200, timeout: 100ms}", "retry: {initial: 100ms, max: 10s}",
        ]))
        var agent = try startAgent()
        waitFor("a hanging request") { ((try? r.snapshot().requests) ?? 0) >= 1 }
        // The ring is full and the input paused: its checkpoint stops short of the file's end.
        let paused = waitStable(quiet: 1.5, timeout: 60) { checkpointTotal() }
        let total = Int64(lines.count * lineLength("full"))
        XCTAssertNotNil(paused)
        XCTAssertLessThan(paused ?? total, total, "the 64 KiB ring did not fill up")
        let start = Date()
        agent.terminate()
        XCTAssertTrue(agent.waitExit(timeout: 60), "no exit within 60 s of SIGTERM")
        let took = Date().timeIntervalSince(start)
        print(String(format: "stop with a hanging destination and a full disk buffer: exit after %.2f s (checkpoint %lld of %lld bytes)",
                     took, paused ?? -1, total))
        XCTAssertEqual(agent.exit?.signalled, false)
        XCTAssertEqual(agent.exit?.status, 0)
        XCTAssertLessThan(took, 8, "SIGTERM took \(took) s with a full disk buffer")
        XCTAssertTrue(agent.stderr.contains("kept in the disk buffer for the next start"), String(agent.stderr.suffix(1500)))

        try r.script([], then: "200")
        agent = try startAgent()
        waitFor("\(lines.count) documents after the restart", timeout: 120) { ((try? bulk(r).docs.count) ?? 0) >= lines.count }
        usleep(500_000)
        try assertEachLineOnce(r, lines)
        stopAgent(agent)
    }

    /// Memory buffer: a stop still waits for delivery up to shutdown_timeout (the records are not
    /// kept anywhere else), and says that what was not delivered will be read again.
    func testStopWithMemoryBufferWaitsUpToShutdownTimeout() throws {
        let r = try receiver()
        try r.script([], then: "hang", hangSeconds: 120)
        appendText(sandbox.path("logs/app.log"), joinedLines(logLines("mem", 0..<100)))
        try writeConfig(esConfig(r.port, buffer: "{type: memory, max_records: 1000}", shutdownTimeout: "4s", extra: [
            "concurrency: 1", "batch: {max_records: 200, timeout: 100ms}",
        ]))
        let agent = try startAgent()
        waitFor("a hanging request") { ((try? r.snapshot().requests) ?? 0) >= 1 }
        let start = Date()
        agent.terminate()
        XCTAssertTrue(agent.waitExit(timeout: 60), "no exit within 60 s of SIGTERM")
        let took = Date().timeIntervalSince(start)
        print(String(format: "stop with a hanging destination (memory buffer, shutdown_timeout 4s): exit after %.2f s", took))
        XCTAssertEqual(agent.exit?.status, 0)
        XCTAssertGreaterThanOrEqual(took, 3.5, "the memory buffer did not wait for shutdown_timeout")
        XCTAssertTrue(agent.stderr.contains("not delivered within shutdown_timeout"), String(agent.stderr.suffix(1500)))
        XCTAssertEqual(checkpointTotal(), 0, "nothing delivered, nothing checkpointed")
    }
}
