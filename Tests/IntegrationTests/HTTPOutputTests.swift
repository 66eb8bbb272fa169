import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The `http` output against receiver.py (scripted answers, records what it accepted): retries
/// through 429/5xx and hangs, dead letters for 400, encodings, compression, headers and auth, and a
/// receiver that is down at start.
final class HTTPOutputTests: AgentTestCase {
    private var peers: [ReceiverPeer] = []
    private var nginx: NginxPeer?

    override func tearDown() {
        super.tearDown()  // kills agents first
        nginx?.stop()
        nginx = nil
        for p in peers { p.stop() }
        peers = []
    }

    private func receiver(port: Int = 0) throws -> ReceiverPeer {
        let r = try ReceiverPeer(port: port)
        peers.append(r)
        return r
    }

    private func key(_ rec: [String: Any]) -> String? { (rec["message"] as? String) ?? (rec["msg"] as? String) }

    /// Waits until `r` accepted every line of `expected` (by message or msg).
    @discardableResult
    private func waitForReceived(_ r: ReceiverPeer, _ expected: [String], timeout: Double = 60,
                                 file: StaticString = #filePath, line: UInt = #line) -> Bool {
        let want = Set(expected)
        var missing = want.count
        return waitFor("\(missing) of \(want.count) lines still missing at receiver :\(r.port)", timeout: timeout, file: file, line: line) {
            guard let s = try? r.snapshot() else { return false }
            missing = want.subtracting(s.records.compactMap(key)).count
            return missing == 0
        }
    }

    /// Every received record of one line carries the same event.id and the same content; returns
    /// how many records were duplicates (extra copies).
    private func checkDuplicates(_ records: [[String: Any]], file: StaticString = #filePath, line: UInt = #line) -> Int {
        var byID: [String: [String: Any]] = [:]
        var idOf: [String: String] = [:]
        var dups = 0
        var problems: [String] = []
        for r in records {
            guard let id = eventID(r), let k = key(r) else { problems.append("record without event.id/message: \(r)"); continue }
            if let prev = byID[id] {
                dups += 1
                if !NSDictionary(dictionary: prev).isEqual(to: r) { problems.append("\(id): copies differ") }
            }
            if let other = idOf[k], other != id { problems.append("\(k): two event.ids \(other) \(id)") }
            byID[id] = r
            idOf[k] = id
        }
        XCTAssertTrue(problems.isEmpty, "\(problems.prefix(5))", file: file, line: line)
        return dups
    }

    // MARK: 6

    /// Counters of `output` from the agent's stop line (`anduin stopped: ...; output web: a=1 b=2`).
    private func stopCounters(_ agent: AgentProcess, output: String) -> [String: Int] {
        guard let line = agent.stderr.split(separator: "\n").last(where: { $0.contains("anduin stopped:") }),
              let r = line.range(of: "output \(output): ") else { return [:] }
        let part = line[r.upperBound...].prefix { $0 != ";" }
        var out: [String: Int] = [:]
        for kv in part.split(separator: " ") {
            let p = kv.split(separator: "=")
            if p.count == 2, let v = Int(p[1]) { out[String(p[0])] = v }
        }
        return out
    }

    /// Bursts of 429 and 500 (and a 401 and a 403) are retried with backoff; every line arrives,
    /// copies (if any) share their event.id; the stop line counts exactly the refused requests.
    func testRetriesThrough429And500Bursts() throws {
        let r = try receiver()
        try r.script(["429", "500", "429", "500", "500", "401", "403"])
        let path = sandbox.path("logs/app.log")
        let lines = logLines("burst", 0..<3000)
        appendText(path, joinedLines(Array(lines[0..<1500])))
        try writeConfig(deliveryConfig(outputs: [.http("web", uri: r.url, ["batch: {max_records: 200, timeout: 100ms}"])]))
        let agent = try startAgent()
        appendInChunks(path, Array(lines[1500...]), chunk: 150)
        waitForReceived(r, lines)
        stopAgent(agent)

        let s = try r.snapshot()
        XCTAssertEqual(Set(s.records.compactMap(key)), Set(lines))
        // No crash: a refused request stores nothing, so each record arrives once.
        XCTAssertEqual(checkDuplicates(s.records), 0, "duplicates in a crash-free run")
        XCTAssertEqual(s.records.count, lines.count)
        XCTAssertEqual(s.requests, 7 + s.batches.count, "7 refused requests, then the accepted ones")
        let log = agent.stderr
        XCTAssertTrue(log.contains("delivery failed, retrying in"), "a retry is logged")
        XCTAssertTrue(log.contains("HTTP 429") || log.contains("HTTP 500"), "the status is logged")
        XCTAssertTrue(deadLetters(sandbox, "web").isEmpty, "retriable answers never dead-letter")
        let c = stopCounters(agent, output: "web")
        XCTAssertEqual(c["retries"], 7, "stop line counters: \(c)")
        XCTAssertEqual(c["request_failures"], 5, "429/500 answers: \(c)")
        XCTAssertEqual(c["auth_failures"], 2, "401/403 answers: \(c)")
        XCTAssertEqual(c["records_out"], 3000, "\(c)")
        print("http 429/500 test: \(lines.count) lines, \(s.records.count) records received, \(s.requests) requests, counters \(c)")
    }

    /// `batch.max_records` / `batch.max_bytes` bound each request, whatever the buffer type and
    /// however many lines the input read at once (here 2,000 lines present at start: one read).
    func testBatchLimitsBoundEachRequest() throws {
        let mem = try receiver(), disk = try receiver(), bytes = try receiver()
        let lines = logLines("cap", 0..<2000)
        appendText(sandbox.path("logs/app.log"), joinedLines(lines))
        try writeConfig(deliveryConfig(outputs: [
            .http("mem", uri: mem.url, ["buffer: {type: memory, max_records: 50000}", "batch: {max_records: 100, timeout: 100ms}"]),
            .http("disk", uri: disk.url, ["batch: {max_records: 100, timeout: 100ms}"]),
            .http("bytes", uri: bytes.url, ["batch: {max_records: 100000, max_bytes: 16KiB, timeout: 100ms}", "compression: none"]),
        ]))
        let agent = try startAgent()
        for r in [mem, disk, bytes] { waitForReceived(r, lines) }
        stopAgent(agent)
        let sm = try mem.snapshot(), sd = try disk.snapshot(), sb = try bytes.snapshot()
        // Each request within its bound, and every record once.
        for (name, s) in [("memory buffer", sm), ("disk buffer", sd), ("disk buffer, max_bytes", sb)] {
            XCTAssertEqual(s.batches.map(\.records).reduce(0, +), 2000, "\(name): \(s.batches)")
            XCTAssertEqual(s.requests, s.batches.count, "\(name): nothing refused, nothing retried")
        }
        XCTAssertEqual(sm.batches.map(\.records).max(), 100, "memory buffer: batch.max_records 100: \(sm.batches)")
        XCTAssertEqual(sd.batches.map(\.records).max(), 100, "disk buffer: batch.max_records 100: \(sd.batches)")
        // Each record is ~240 bytes of JSON: 16 KiB hold fewer than 100. max_bytes counts the records'
        // bytes, not the newline after each in the ndjson body.
        let recordBytes = sb.batches.map { $0.bytes - $0.records }
        XCTAssertLessThanOrEqual(recordBytes.max() ?? .max, 16 * 1024, "batch.max_bytes 16KiB: \(sb.batches)")
        XCTAssertGreaterThan(recordBytes.max() ?? 0, 15 * 1024, "batches filled up to max_bytes: \(sb.batches)")
        print("batch limits: requests mem=\(sm.requests) disk=\(sd.requests) bytes=\(sb.requests) for 2000 records")
    }

    // MARK: 7

    /// A request the server never answers is cut at `request_timeout` and retried: every line
    /// arrives long before the server would have given up on its own (30 s).
    func testHangingServerTimesOutAndIsRetried() throws {
        let r = try receiver()
        try r.script(["hang"], hangSeconds: 30)
        let lines = logLines("hang", 0..<300)
        appendText(sandbox.path("logs/app.log"), joinedLines(lines))
        try writeConfig(deliveryConfig(outputs: [.http("web", uri: r.url, ["request_timeout: 1s", "concurrency: 1"])]))
        let agent = try startAgent()
        waitForReceived(r, lines, timeout: 20)
        stopAgent(agent)
        let s = try r.snapshot()
        XCTAssertEqual(s.requests, 1 + s.batches.count, "the hung request, then the accepted ones: \(s.batches)")
        XCTAssertEqual(checkDuplicates(s.records), 0)
        XCTAssertTrue(agent.stderr.contains("no complete response"), "the timeout is logged")
    }

    // MARK: 8

    /// A 400 sends that batch's records to the dead-letter file (status 400 and the reason); the
    /// records after it still arrive. Each line is in exactly one of the two places.
    func testBadRequestDeadLettersTheBatchAndDeliveryContinues() throws {
        let r = try receiver()
        try r.script(["400"])
        let path = sandbox.path("logs/app.log")
        let lines = logLines("bad", 0..<200)
        appendText(path, joinedLines(Array(lines[0..<100])))
        try writeConfig(deliveryConfig(outputs: [.http("web", uri: r.url, ["concurrency: 1", "batch: {max_records: 100, timeout: 200ms}"])]))
        let agent = try startAgent()
        waitFor("a dead letter") { !deadLetters(sandbox, "web").isEmpty }
        waitFor("the first 100 lines dead-lettered or delivered") {
            let got = Set(((try? r.snapshot())?.records ?? []).compactMap(key) + deadLetters(sandbox, "web").compactMap { key($0["record"] as? [String: Any] ?? [:]) })
            return got.isSuperset(of: lines[0..<100])
        }
        appendText(path, joinedLines(Array(lines[100...])))
        waitForReceived(r, Array(lines[100...]))
        stopAgent(agent)

        let dead = deadLetters(sandbox, "web")
        let deadMsgs = dead.compactMap { key($0["record"] as? [String: Any] ?? [:]) }
        let got = try r.snapshot().records.compactMap(key)
        XCTAssertGreaterThan(dead.count, 0)
        XCTAssertEqual(Set(deadMsgs).count, deadMsgs.count, "each record dead-lettered once")
        XCTAssertTrue(Set(deadMsgs).isSubset(of: lines[0..<100]), "only the refused (first) batch is dead-lettered")
        XCTAssertTrue(Set(deadMsgs).isDisjoint(with: got), "a dead-lettered record was also delivered")
        XCTAssertEqual(Set(deadMsgs).union(got), Set(lines), "every line is delivered or dead-lettered")
        XCTAssertEqual(got.count, Set(got).count, "no duplicates")
        for d in dead {
            XCTAssertEqual(d["status"] as? Int, 400)
            XCTAssertEqual(d["output"] as? String, "web")
            XCTAssertTrue((d["reason"] as? String ?? "").contains("HTTP 400"), "reason: \(d["reason"] ?? "nil")")
            XCTAssertNotNil(eventID(d["record"] as? [String: Any] ?? [:]))
        }
        print("http 400 test: \(dead.count) dead-lettered, \(got.count) delivered")
    }

    // MARK: 9

    /// `log_level: debug` tells a file's life (following, checkpoint, rotated, closing) and every
    /// delivery decision with its reason, even those the warning lines fold together (three
    /// failures within 10 s: one warning, three debug lines), and the dead-letter decision.
    func testDebugLogTellsAFilesLifeAndEveryDeliveryDecision() throws {
        let r = try receiver()
        try r.script(["500", "503", "500", "400"])
        let path = sandbox.path("logs/app.log")
        appendText(path, joinedLines(logLines("dbg", 0..<10)))
        try writeConfig("log_level: debug\n" + deliveryConfig(outputs: [
            .http("web", uri: r.url, ["concurrency: 1", "retry: {initial: 50ms, max: 100ms}"])]))
        let agent = try startAgent()
        waitFor("a dead letter") { !deadLetters(sandbox, "web").isEmpty }
        rename(path, path + ".1")
        appendText(path, joinedLines(logLines("dbg", 10..<20)))
        waitForReceived(r, logLines("dbg", 10..<20))
        waitForLog(agent, "closing \(path)")
        stopAgent(agent)
        let log = agent.stderr
        XCTAssertTrue(log.contains("following \(path) from offset 0"), log)
        XCTAssertTrue(log.contains("checkpoint \(path): acknowledged up to offset"), log)
        XCTAssertTrue(log.contains("file \(path) was rotated or deleted"), log)
        let retries = log.split(separator: "\n").filter { $0.contains("output web: delivery failed, retrying in") }
        XCTAssertEqual(retries.count, 3, "each retry with its reason: \(retries)")
        XCTAssertTrue(retries.contains { $0.contains(" debug ") && $0.contains("HTTP 503") }, "\(retries)")
        XCTAssertTrue(log.contains("output web: 10 record(s) dead-lettered (HTTP 400"), log)
    }

    /// Bytes sent per output, as sent and before compression: with `compression: none` both equal
    /// the bodies the receiver got; with gzip the uncompressed count equals the gunzipped bodies and
    /// the sent count is smaller. Prometheus names anduin_output_bytes_sent{,_uncompressed}_total.
    func testBytesSentPerOutputCompressedAndUncompressed() throws {
        let gz = try receiver(), plain = try receiver()
        let keys = (0..<300).map { logLine("bytes", $0) }
        appendText(sandbox.path("logs/app.log"), joinedLines(keys))
        try writeConfig("api: {address: \"127.0.0.1:0\"}\n" + deliveryConfig(outputs: [
            .http("gz", uri: gz.url, ["compression: gzip"]),
            .http("plain", uri: plain.url, ["compression: none"]),
        ]))
        let agent = try startAgent()
        for r in [gz, plain] { waitForReceived(r, keys) }
        let api = try XCTUnwrap(apiAddress())
        func bodies(_ r: ReceiverPeer) throws -> Double { Double(try r.snapshot().batches.reduce(0) { $0 + $1.bytes }) }
        let plainBytes = try bodies(plain), gzBytes = try bodies(gz)
        var m: [String: Double] = [:]
        waitFor("bytes sent counted") {
            m = scrapeMetrics(api) ?? [:]
            return m["anduin_output_bytes_sent_uncompressed_total{component=gz,type=http}"] == gzBytes
                && m["anduin_output_bytes_sent_total{component=plain,type=http}"] == plainBytes
        }
        XCTAssertEqual(m["anduin_output_bytes_sent_uncompressed_total{component=plain,type=http}"], plainBytes)
        XCTAssertEqual(m["anduin_output_bytes_sent_uncompressed_total{component=gz,type=http}"], gzBytes)
        let gzSent = try XCTUnwrap(m["anduin_output_bytes_sent_total{component=gz,type=http}"])
        XCTAssertGreaterThan(gzSent, 0)
        XCTAssertLessThan(gzSent, gzBytes, "gzip bodies are smaller than the records")
        stopAgent(agent)
    }

    /// One agent, five outputs of the same records: gzip (level 9) and `compression: none` bodies
    /// decode to the same records; `encoding: json_array` + `method: PUT` + extra `headers` (through
    /// nginx, which copies the method and headers into the Authorization header the receiver
    /// records); `api_key` sends `ApiKey …`; `token_file` sends `Bearer …` and a rewritten token
    /// file is used by later requests.
    func testEncodingsCompressionHeadersAndAuth() throws {
        let gz = try receiver(), plain = try receiver(), arr = try receiver(), key = try receiver(), tok = try receiver()
        try sandbox.mkdir("nginx")
        let ngx = try NginxPeer(dir: sandbox.path("nginx"), upstream: "http://127.0.0.1:\(arr.port)",
                                locationExtra: #"proxy_set_header Authorization "method=$request_method tenant=$http_x_tenant env=$http_x_env";"#)
        nginx = ngx
        try sandbox.mkdir("secrets")
        let tokenPath = try sandbox.write("secrets/token", "token-one\n")

        func line(_ i: Int) -> String {
            i % 5 == 0 ? #"{"msg":"\#(logLine("feat", i))","n":\#(i),"nested":{"a":[1,2.5,"x"],"b":null},"u":"é ü \"q\" \\ /"}"#
                : logLine("feat", i)
        }
        let keys = (0..<500).map { logLine("feat", $0) }
        let path = sandbox.path("logs/app.log")
        appendText(path, joinedLines((0..<400).map(line)))
        try writeConfig(deliveryConfig(parse: true, outputs: [
            .http("gz", uri: gz.url, ["compression: gzip", "compression_level: 9"]),
            .http("plain", uri: plain.url, ["compression: none"]),
            .http("arr", uri: ngx.url + "/ingest", ["encoding: json_array", "method: PUT", "headers: {X-Tenant: acme, X-Env: test}"]),
            .http("key", uri: key.url, ["api_key: aWQ6c2VjcmV0", "compression: none"]),
            .http("tok", uri: tok.url, ["token_file: ./secrets/token", "concurrency: 1"]),
        ]))
        let agent = try startAgent()
        for r in [gz, plain, arr, key, tok] { waitForReceived(r, Array(keys[0..<400])) }
        // Rotate the token (a new file renamed over the old one, as Kubernetes does).
        try "token-two\n".write(toFile: tokenPath + ".new", atomically: false, encoding: .utf8)
        XCTAssertEqual(rename(tokenPath + ".new", tokenPath), 0)
        appendText(path, joinedLines((400..<500).map(line)))
        for r in [gz, plain, arr, key, tok] { waitForReceived(r, keys) }
        stopAgent(agent)

        let sp = try plain.snapshot()
        var reference: [String: [String: Any]] = [:]
        for r in sp.records { if let id = eventID(r) { reference[id] = r } }
        XCTAssertEqual(reference.count, 500)
        XCTAssertEqual(sp.gzipRequests, 0, "compression: none")
        XCTAssertTrue(sp.auth.allSatisfy(\.isEmpty), "no Authorization without auth options: \(Set(sp.auth))")
        for (name, r) in [("gz", gz), ("arr", arr), ("key", key), ("tok", tok)] {
            let s = try r.snapshot()
            XCTAssertEqual(checkDuplicates(s.records), 0, name)
            var differing: [String] = []
            for rec in s.records {
                guard let id = eventID(rec), let ref = reference[id] else { differing.append("unknown \(rec)"); continue }
                if !NSDictionary(dictionary: ref).isEqual(to: rec) { differing.append("\(ref) vs \(rec)") }
            }
            XCTAssertTrue(differing.isEmpty, "\(name): records differ from the plain output's: \(differing.prefix(2))")
        }
        let sg = try gz.snapshot()
        XCTAssertGreaterThan(sg.gzipRequests, 0)
        XCTAssertEqual(sg.gzipRequests, sg.requests, "every request gzipped")
        XCTAssertEqual(Set(sg.contentTypes), ["application/x-ndjson"])

        let sa = try arr.snapshot()
        XCTAssertEqual(Set(sa.contentTypes), ["application/json"], "json_array content type")
        XCTAssertEqual(Set(sa.auth), ["method=PUT tenant=acme env=test"], "method and extra headers as nginx saw them")

        let sk = try key.snapshot()
        XCTAssertEqual(Set(sk.auth), ["ApiKey aWQ6c2VjcmV0"])

        let st = try tok.snapshot()
        XCTAssertEqual(st.auth.first, "Bearer token-one")
        XCTAssertEqual(st.auth.last, "Bearer token-two", "the rewritten token file is picked up")
        XCTAssertEqual(Set(st.auth), ["Bearer token-one", "Bearer token-two"])
        if let firstTwo = st.auth.firstIndex(of: "Bearer token-two") {
            XCTAssertFalse(st.auth[firstTwo...].contains("Bearer token-one"), "the old token after the new one: \(st.auth)")
        }
        let log = agent.stderr
        for secret in ["aWQ6c2VjcmV0", "token-one", "token-two"] {
            XCTAssertFalse(log.contains(secret), "the agent logged a secret (\(secret))")
        }
    }

    // MARK: 10

    /// The receiver is down when the agent starts (its port closed): the agent keeps tailing into
    /// its disk buffer (checkpoints reach the end of the file) and logs the connection failure;
    /// once a receiver listens on that port again, every line arrives.
    func testReceiverDownAtStartThenBack() throws {
        let first = try receiver()
        let port = first.port
        first.stop()
        XCTAssertTrue(poll(timeout: 10) { !canConnect(port: port) }, "the receiver's port is closed")

        let path = sandbox.path("logs/app.log")
        let lines = logLines("down", 0..<700)
        appendText(path, joinedLines(Array(lines[0..<300])))
        try writeConfig(deliveryConfig(outputs: [.http("web", uri: "http://127.0.0.1:\(port)/ingest")]))
        let agent = try startAgent()
        appendInChunks(path, Array(lines[300..<600]), chunk: 50)
        waitForLog(agent, "cannot connect to")
        let size = Int64(600 * lineLength("down"))
        waitFor("the checkpoint reaching the end of the file while the receiver is down") {
            sandbox.checkpoints("in")[path] == size
        }
        XCTAssertTrue(agent.isRunning)

        var back: ReceiverPeer?
        poll(timeout: 20, interval: 0.25) {
            back = try? receiver(port: port)
            return back != nil
        }
        guard let r = back else { return XCTFail("could not start the receiver again on port \(port)") }
        waitForReceived(r, Array(lines[0..<600]))
        appendText(path, joinedLines(Array(lines[600...])))
        waitForReceived(r, lines)
        stopAgent(agent)
        let s = try r.snapshot()
        XCTAssertEqual(Set(s.records.compactMap(key)), Set(lines))
        let dups = checkDuplicates(s.records)
        XCTAssertEqual(dups, 0, "no duplicates without a crash")
        print("http receiver-down test: \(lines.count) lines, \(s.records.count) received, \(s.requests) requests")
    }
}
