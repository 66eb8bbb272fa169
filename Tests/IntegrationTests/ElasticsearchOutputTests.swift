import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The `elasticsearch` output against osmem-server (an in-memory OpenSearch-compatible server):
/// exactly one document per line, `_id` = event.id, dead letters for mapping conflicts, no
/// duplicates across kill -9 replays, index patterns, `id: none`, both buffer types.
final class ElasticsearchOutputTests: AgentTestCase {
    var os: OsmemPeer!
    private var nginx: NginxPeer?

    override func setUpWithError() throws {
        try super.setUpWithError()
        os = try OsmemPeer()
    }

    override func tearDown() {
        super.tearDown()  // kills agents first
        nginx?.stop()
        nginx = nil
        os?.stop()
        os = nil
    }

    private func es(_ name: String = "es", index: String, _ extra: [String] = []) -> NetOutput {
        NetOutput.elasticsearch(name, url: os.url, index: index, extra)
    }

    /// `_count` of `index`, or 0 when it does not exist yet.
    private func count(_ index: String) -> Int { max(0, (try? os.count(index)) ?? 0) }

    /// Waits until `_count` of `index` is `n`.
    @discardableResult
    private func waitForCount(_ index: String, _ n: Int, timeout: Double = 90,
                              file: StaticString = #filePath, line: UInt = #line) -> Bool {
        var last = 0
        return waitFor("\(n) documents in \(index) (have \(last))", timeout: timeout, file: file, line: line) {
            last = count(index)
            return last >= n
        }
    }

    // MARK: 1

    /// 3 files (docker json-file, CRI, raw; auto-detected) × 2,000 lines, half written before the
    /// start and half while the agent runs, through the parse filter: `_count` equals the line
    /// count, every line is exactly one document whose `_id` is its event.id, with @timestamp,
    /// message (or the lifted fields), stream, log.file.path and log.offset as written.
    func testCorpusArrivesAsExactlyOneDocumentPerLine() throws {
        struct Expected { let path: String; let offset: Int64; let stream: String?; let time: String?; let lifted: Bool }
        var expected: [String: Expected] = [:]  // message or msg -> what the document must hold
        var files: [(path: String, lines: [String])] = []
        let perFile = 2000

        let dockerPath = sandbox.path("logs/docker.log"), criPath = sandbox.path("logs/cri.log"), rawPath = sandbox.path("logs/raw.log")
        var lines: [String] = [], offset: Int64 = 0
        for i in 0..<perFile {
            let stream = i % 3 == 0 ? "stderr" : "stdout"
            let time = String(format: "2026-11-21T10:%02ld:%02ld.%09ldZ", i / 60 % 60, i % 60, i * 1001)
            let key: String, log: String
            if i % 10 == 5 {
                key = logLine("docker json", i)
                log = #"{"msg":"\#(key)","seq":\#(i)}"#
            } else {
                key = logLine("docker", i)
                log = key
            }
            let obj = try JSONSerialization.data(withJSONObject: ["log": log + "\n", "stream": stream, "time": time], options: [.sortedKeys])
            let line = String(decoding: obj, as: UTF8.self)
            expected[key] = Expected(path: dockerPath, offset: offset, stream: stream, time: time, lifted: i % 10 == 5)
            lines.append(line)
            offset += Int64(line.utf8.count + 1)
        }
        files.append((dockerPath, lines))
        lines = []; offset = 0
        for i in 0..<perFile {
            let stream = i % 4 == 0 ? "stderr" : "stdout"
            let time = String(format: "2026-11-21T11:%02ld:%02ld.%09ldZ", i / 60 % 60, i % 60, i)
            let key: String, msg: String
            if i % 10 == 7 {
                key = logLine("cri logfmt", i)
                msg = "level=info msg=\"\(key)\" n=\(i)"
            } else {
                key = logLine("cri", i)
                msg = key
            }
            let line = "\(time) \(stream) F \(msg)"
            expected[key] = Expected(path: criPath, offset: offset, stream: stream, time: time, lifted: i % 10 == 7)
            lines.append(line)
            offset += Int64(line.utf8.count + 1)
        }
        files.append((criPath, lines))
        lines = []; offset = 0
        for i in 0..<perFile {
            let line = logLine("raw", i)
            expected[line] = Expected(path: rawPath, offset: offset, stream: nil, time: nil, lifted: false)
            lines.append(line)
            offset += Int64(line.utf8.count + 1)
        }
        files.append((rawPath, lines))

        var tail = TailOptions()
        tail.format = "auto"
        try writeConfig(deliveryConfig(tail, parse: true, outputs: [es(index: "corpus")]))
        for f in files { appendText(f.path, joinedLines(Array(f.lines[0..<(perFile / 2)]))) }
        let agent = try startAgent()
        waitFor("the first documents") { count("corpus") > 0 }
        for c in stride(from: perFile / 2, to: perFile, by: 100) {
            for f in files { appendText(f.path, joinedLines(Array(f.lines[c..<(c + 100)]))) }
            usleep(20_000)
        }
        waitForCount("corpus", 3 * perFile)
        stopAgent(agent)
        XCTAssertEqual(count("corpus"), 3 * perFile, "_count after the stop")

        let docs = try os.search("corpus", size: 10_000)
        XCTAssertEqual(docs.count, 3 * perFile, "documents returned by _search")
        var seen: [String: Int] = [:]
        var problems: [String] = []
        for (id, src) in docs {
            guard let key = (src["message"] as? String) ?? (src["msg"] as? String) else {
                problems.append("\(id): neither message nor msg in \(src)")
                continue
            }
            seen[key, default: 0] += 1
            guard let want = expected[key] else { problems.append("unexpected document \(key)"); continue }
            let eid = eventID(src) ?? ""
            if id != eid { problems.append("\(key): _id \(id) != event.id \(eid)") }
            if eid.count != 32 || UInt64(eid.suffix(16), radix: 16) != UInt64(want.offset) {
                problems.append("\(key): event.id \(eid) does not end with the offset \(want.offset)")
            }
            if logPath(src) != want.path { problems.append("\(key): log.file.path \(logPath(src) ?? "nil")") }
            if logOffset(src) != want.offset { problems.append("\(key): log.offset \(logOffset(src) ?? -1) != \(want.offset)") }
            let ts = src["@timestamp"] as? String ?? ""
            if let t = want.time {
                // Runtime times come back normalised to 9 fractional digits.
                if ts != t { problems.append("\(key): @timestamp \(ts) != \(t)") }
            } else if !OutputReader.isRFC3339Nano(ts) {
                problems.append("\(key): @timestamp \(ts)")
            }
            if src["stream"] as? String != want.stream { problems.append("\(key): stream \(src["stream"] ?? "nil") != \(want.stream ?? "nil")") }
            if want.lifted {
                if src["message"] != nil { problems.append("\(key): lifted, but message kept") }
                if want.path == dockerPath, (src["seq"] as? NSNumber)?.intValue != parseLogLine(key)?.index {
                    problems.append("\(key): seq \(src["seq"] ?? "nil")")
                }
                if want.path == criPath, src["level"] as? String != "info" { problems.append("\(key): level \(src["level"] ?? "nil")") }
            }
        }
        let missing = expected.keys.filter { seen[$0] == nil }.sorted()
        let dups = seen.filter { $0.value > 1 }
        XCTAssertTrue(missing.isEmpty, "\(missing.count) lines without a document, e.g. \(missing.prefix(5))")
        XCTAssertTrue(dups.isEmpty, "\(dups.count) lines with several documents, e.g. \(dups.prefix(5))")
        XCTAssertTrue(problems.isEmpty, "\(problems.count) problems, e.g. \(problems.prefix(8))")
    }

    // MARK: 2

    /// A field mapped `long` up front (PUT index) and a field whose dynamic mapping became numeric:
    /// the line with a string there is dead-lettered (status 400, error type and reason, the
    /// record), the rest is indexed.
    func testMappingConflictsGoToTheDeadLetterFile() throws {
        _ = try os.put("/conflict", ["mappings": ["properties": ["n": ["type": "long"]]]])
        let path = sandbox.path("logs/app.log")
        func line(_ i: Int, n: String? = nil, d: String? = nil) -> String {
            #"{"msg":"\#(logLine("conflict", i))","n":\#(n ?? String(i)),"d":\#(d ?? String(i))}"#
        }
        appendText(path, joinedLines((0..<300).map { $0 == 100 ? line($0, n: #""not-a-number""#) : line($0) }))
        try writeConfig(deliveryConfig(parse: true, outputs: [es(index: "conflict")]))
        let agent = try startAgent()
        waitForCount("conflict", 299)
        waitFor("one dead letter") { deadLetters(sandbox, "es").count >= 1 }
        // `d` is now mapped as a number (dynamic mapping): a string there is refused too.
        appendText(path, joinedLines((300..<400).map { $0 == 350 ? line($0, d: #""text-350""#) : line($0) }))
        waitForCount("conflict", 398)
        waitFor("two dead letters") { deadLetters(sandbox, "es").count >= 2 }
        stopAgent(agent)

        XCTAssertEqual(count("conflict"), 398)
        let dead = deadLetters(sandbox, "es")
        XCTAssertEqual(dead.count, 2, "dead letters: \(dead)")
        let byMsg = Dictionary(dead.map { (($0["record"] as? [String: Any])?["msg"] as? String ?? "?", $0) }, uniquingKeysWith: { a, _ in a })
        for (i, field) in [(100, "n"), (350, "d")] {
            guard let d = byMsg[logLine("conflict", i)] else {
                XCTFail("line \(i) is not in the dead-letter file: \(dead)")
                continue
            }
            XCTAssertEqual(d["status"] as? Int, 400)
            XCTAssertEqual(d["output"] as? String, "es")
            XCTAssertTrue(OutputReader.isRFC3339Nano(d["time"] as? String ?? ""), "time: \(d["time"] ?? "nil")")
            let reason = d["reason"] as? String ?? ""
            XCTAssertTrue(reason.contains("mapper_parsing_exception"), "reason has the error type: \(reason)")
            XCTAssertTrue(reason.contains("[\(field)]"), "reason names the field: \(reason)")
            let rec = d["record"] as? [String: Any] ?? [:]
            XCTAssertNotNil(eventID(rec), "the dead letter carries the whole record")
            XCTAssertEqual(logOffset(rec).map { $0 >= 0 }, true)
        }
        let indexed = Set(try os.search("conflict").compactMap { $0.source["msg"] as? String })
        XCTAssertFalse(indexed.contains(logLine("conflict", 100)))
        XCTAssertFalse(indexed.contains(logLine("conflict", 350)))
        XCTAssertEqual(indexed.count, 398)
    }

    /// Issue 24 (7): lines whose lifted fields would repeat a key (a reserved-key rename next to the
    /// same name with `_`, a `modify set` of a key the line lifts too, keys repeated in the input at
    /// any depth, as zap writes them) are indexed, none dead-lettered: osmem-server, like
    /// Elasticsearch, refuses a document with a key twice.
    func testDocumentsNeverCarryAKeyTwice() throws {
        let kinds: [(String) -> String] = [
            { #"{"msg":"\#($0)","log":"x","_log":"y"}"# },
            { #"{"msg":"\#($0)","env":"from-log"}"# },
            { #"{"msg":"\#($0)","level":"info","level":"warn","ctx":{"a":1,"b":[{"c":1,"c":2}],"a":2}}"# },
            { #"{"msg":"\#($0)","stream":"s","_stream":"t","@timestamp":"t0","event":1,"_event":2,"__event":3}"# },
            { "msg=\"\($0)\" stream=s1 _stream=s2 env=lf" },
            { #"{"msg":"\#($0)"}"# },
        ]
        let perKind = 20
        var lines: [String] = []
        for i in 0..<perKind { for (k, make) in kinds.enumerated() { lines.append(make(logLine("dup\(k)", i))) } }
        appendText(sandbox.path("logs/app.log"), joinedLines(lines))
        try writeConfig("""
            data_dir: ./data
            shutdown_timeout: 30s
            inputs:
              in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms}
            filters:
              mod: {type: modify, from: [in], set: {env: prod}}
              parse: {type: parse, from: [mod], formats: [json, logfmt]}
            outputs:
              es: {type: elasticsearch, from: [parse], hosts: ["\(os.url)"], index: dupkeys}
            """)
        let agent = try startAgent()
        waitForCount("dupkeys", lines.count)
        stopAgent(agent)
        XCTAssertEqual(count("dupkeys"), lines.count)
        XCTAssertEqual(deadLetters(sandbox, "es").count, 0, "dead letters: \(deadLetters(sandbox, "es").prefix(3))")
        let docs = Dictionary(try os.search("dupkeys").map { ($0.source["msg"] as? String ?? "?", $0.source) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(docs.count, lines.count)
        for i in 0..<perKind {
            let d = (0..<kinds.count).map { docs[logLine("dup\($0)", i)] ?? [:] }
            XCTAssertEqual(d[0]["_log"] as? String, "y")
            XCTAssertEqual(d[0]["__log"] as? String, "x")
            XCTAssertEqual(d[0]["env"] as? String, "prod")
            XCTAssertEqual(d[1]["env"] as? String, "from-log", "the lift is the last writer")
            XCTAssertEqual(d[2]["level"] as? String, "warn")
            XCTAssertEqual((d[2]["ctx"] as? [String: Any])?["a"] as? Int, 2)
            XCTAssertEqual(((d[2]["ctx"] as? [String: Any])?["b"] as? [[String: Any]])?.first?["c"] as? Int, 2)
            XCTAssertEqual(d[3]["_stream"] as? String, "t")
            XCTAssertEqual(d[3]["__stream"] as? String, "s")
            XCTAssertEqual(d[3]["_@timestamp"] as? String, "t0")
            XCTAssertEqual(d[3]["___event"] as? Int, 1)
            XCTAssertEqual(d[4]["__stream"] as? String, "s1")
            XCTAssertEqual(d[4]["env"] as? String, "lf")
            XCTAssertEqual(d[5]["env"] as? String, "prod")
        }
    }

    // MARK: 3

    /// Lines written continuously to two files; the agent is SIGKILLed three times mid-stream
    /// (once also losing data_dir/checkpoints, so everything is re-read and re-sent), then stopped
    /// with SIGTERM: `_count` equals the number of distinct lines, every line once.
    func testReplayAfterKillDashNineMakesNoDuplicateDocuments() throws {
        let files = ["kill-a", "kill-b"]
        let paths = files.map { sandbox.path("logs/\($0).log") }
        try writeConfig(deliveryConfig(outputs: [es(index: "replay")]))
        var agent = try startAgent()
        let state = SharedState()
        let job = BackgroundJob("writer") {
            var next = 0
            while !state.stopRequested {
                for (f, p) in zip(files, paths) {
                    appendText(p, joinedLines(logLines(f, next..<(next + 2))))
                    state.add(f, 2)
                }
                next += 2
                usleep(20_000)
            }
        }
        var removedCheckpoints = false
        for k in 0..<3 {
            let before = count("replay")
            waitForCount("replay", before + 300)
            usleep(UInt32.random(in: 50_000...300_000))
            killAgent(agent)
            if k == 1 {
                let cp = sandbox.path("data/checkpoints")
                XCTAssertTrue(FileManager.default.fileExists(atPath: cp), "checkpoints exist before removal")
                try FileManager.default.removeItem(atPath: cp)
                removedCheckpoints = true
            }
            agent = try startAgent()
        }
        waitForCount("replay", count("replay") + 300)
        state.requestStop()
        XCTAssertTrue(job.join(), "writer stopped")
        let written = state.counts
        let total = files.reduce(0) { $0 + (written[$1] ?? 0) }
        waitForCount("replay", total)
        stopAgent(agent)
        XCTAssertTrue(removedCheckpoints)

        XCTAssertEqual(count("replay"), total, "documents vs distinct lines written")
        let docs = try os.search("replay", size: 10_000)
        var seen: [String: Int] = [:]
        for d in docs { seen[d.source["message"] as? String ?? "?", default: 0] += 1 }
        let expected = zip(files, paths).flatMap { f, _ in logLines(f, 0..<(written[f] ?? 0)) }
        let missing = expected.filter { seen[$0] == nil }
        XCTAssertTrue(missing.isEmpty, "\(missing.count) lines lost, e.g. \(missing.prefix(5))")
        XCTAssertEqual(seen.filter { $0.value > 1 }.count, 0, "duplicate documents")
        XCTAssertTrue(docs.allSatisfy { $0.id == eventID($0.source) }, "_id = event.id")
        print("es kill -9 test: \(total) lines, \(docs.count) documents")
    }

    // MARK: 4

    /// `index: logs-{stream}-%Y.%m.%d` routes by the record's stream and (runtime) time, with
    /// `unknown` for records without a stream; `id: none` lets the server pick ids.
    func testIndexPatternsAndServerGeneratedIDs() throws {
        let docker = sandbox.path("logs/docker.log"), cri = sandbox.path("logs/cri.log"), raw = sandbox.path("logs/raw.log")
        var dockerLines: [String] = []
        for i in 0..<60 {
            let stream = i % 3 == 0 ? "stderr" : "stdout"
            dockerLines.append(#"{"log":"\#(logLine("docker", i))\n","stream":"\#(stream)","time":"2024-05-01T23:59:59.\#(String(format: "%09ld", i))Z"}"#)
        }
        let criLines = (0..<40).map { "2024-05-02T00:00:00.\(String(format: "%09ld", $0))Z stdout F \(logLine("cri", $0))" }
        let rawLines = logLines("raw", 0..<30)
        appendText(docker, joinedLines(dockerLines))
        appendText(cri, joinedLines(criLines))
        appendText(raw, joinedLines(rawLines))

        func utcDay(_ format: String) -> String {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone(identifier: "UTC")
            f.dateFormat = format
            return f.string(from: Date())
        }
        let dayBefore = utcDay("yyyy.MM.dd"), yearBefore = utcDay("yyyy")
        var tail = TailOptions()
        tail.format = "auto"
        try writeConfig(deliveryConfig(tail, outputs: [
            es("pattern", index: "logs-{stream}-%Y.%m.%d"),
            es("noid", index: "noid-%Y", ["id: none"]),
        ]))
        let agent = try startAgent()
        waitForCount("logs-*", 130)
        waitForCount("noid-*", 130)
        stopAgent(agent)
        let dayAfter = utcDay("yyyy.MM.dd"), yearAfter = utcDay("yyyy")

        let indices = Set(try httpJSON("GET", "\(os.url)/_aliases", body: nil).keys)
        let logs = indices.filter { $0.hasPrefix("logs-") }
        XCTAssertEqual(count("logs-stdout-2024.05.01"), 40, "docker stdout lines of 2024-05-01; indices: \(logs.sorted())")
        XCTAssertEqual(count("logs-stderr-2024.05.01"), 20, "docker stderr lines")
        XCTAssertEqual(count("logs-stdout-2024.05.02"), 40, "CRI lines (next day)")
        let rawIndex = logs.first { $0.hasPrefix("logs-unknown-") }
        XCTAssertTrue(rawIndex == "logs-unknown-\(dayBefore)" || rawIndex == "logs-unknown-\(dayAfter)",
                      "raw lines (no stream, read time): \(rawIndex ?? "none")")
        if let rawIndex { XCTAssertEqual(count(rawIndex), 30) }
        XCTAssertEqual(logs.count, 4, "indices: \(logs.sorted())")
        XCTAssertEqual(count("logs-*"), 130)

        XCTAssertEqual(count("noid-2024"), 100)
        XCTAssertTrue(count("noid-\(yearBefore)") == 30 || count("noid-\(yearAfter)") == 30)
        let noid = try os.search("noid-*")
        XCTAssertEqual(noid.count, 130)
        XCTAssertEqual(Set(noid.map(\.id)).count, 130, "distinct server ids")
        XCTAssertTrue(noid.allSatisfy { !$0.id.isEmpty && $0.id != eventID($0.source) }, "ids are the server's, not event.id")
        XCTAssertEqual(Set(noid.compactMap { $0.source["message"] as? String }).count, 130)
        let withIDs = try os.search("logs-*")
        XCTAssertTrue(withIDs.allSatisfy { $0.id == eventID($0.source) })
    }

    // MARK: 5

    /// The memory buffer (smaller than the corpus: the input waits for room) and the disk buffer,
    /// fed by the same input, each deliver every line exactly once.
    func testMemoryAndDiskBuffersDeliverEverything() throws {
        let path = sandbox.path("logs/buf.log")
        let lines = logLines("buf", 0..<5000)
        appendText(path, joinedLines(Array(lines[0..<2500])))
        try writeConfig(deliveryConfig(outputs: [
            es("mem", index: "buf-memory", ["buffer: {type: memory, max_records: 1000}", "batch: {max_records: 200, timeout: 100ms}"]),
            es("disk", index: "buf-disk", ["buffer: {type: disk, max_bytes: 16MiB, segment_bytes: 1MiB}",
                                           "batch: {max_records: 200, timeout: 100ms}"]),
        ]))
        let agent = try startAgent()
        appendInChunks(path, Array(lines[2500...]), chunk: 250)
        waitForCount("buf-memory", 5000)
        waitForCount("buf-disk", 5000)
        stopAgent(agent)
        for index in ["buf-memory", "buf-disk"] {
            XCTAssertEqual(count(index), 5000, index)
            let msgs = try os.search(index).compactMap { $0.source["message"] as? String }
            XCTAssertEqual(msgs.count, 5000, index)
            XCTAssertEqual(Set(msgs), Set(lines), index)
        }
        var isDir: ObjCBool = false
        XCTAssertTrue(FileManager.default.fileExists(atPath: sandbox.path("data/buffers/disk"), isDirectory: &isDir) && isDir.boolValue,
                      "the disk buffer lives in data_dir/buffers/<output>")
        XCTAssertFalse(FileManager.default.fileExists(atPath: sandbox.path("data/buffers/mem")), "no disk ring for the memory buffer")
    }

    // MARK: metadata off

    /// `metadata: {file_path: false, offset: false, event_id: false}` leaves `log` and `event` out
    /// of the documents, for both buffer types, while `_id` still comes from the source position: a
    /// replay of everything (checkpoints removed after kill -9) adds no document.
    func testMetadataOffKeepsPositionIDs() throws {
        let path = sandbox.path("logs/meta.log")
        let lines = logLines("meta", 0..<400)
        appendText(path, joinedLines(lines))
        let off = "metadata: {file_path: false, offset: false, event_id: false}"
        try writeConfig(deliveryConfig(outputs: [
            es("mem", index: "meta-memory", ["buffer: {type: memory}", off]),
            es("disk", index: "meta-disk", [off]),
        ]))
        var agent = try startAgent()
        waitForCount("meta-memory", 400)
        waitForCount("meta-disk", 400)
        var ids: [String: Set<String>] = [:]
        for index in ["meta-memory", "meta-disk"] {
            let docs = try os.search(index)
            XCTAssertEqual(Set(docs.compactMap { $0.source["message"] as? String }), Set(lines), index)
            XCTAssertTrue(docs.allSatisfy { $0.source["log"] == nil && $0.source["event"] == nil }, "\(index): no log/event object")
            XCTAssertTrue(docs.allSatisfy { $0.id.count == 32 && $0.id.allSatisfy(\.isHexDigit) }, "\(index): position ids")
            ids[index] = Set(docs.map(\.id))
        }
        XCTAssertEqual(ids["meta-memory"], ids["meta-disk"], "the same line has the same _id in both")
        killAgent(agent)
        // kill -9 may come before the first checkpoint write; then there is nothing to remove.
        if FileManager.default.fileExists(atPath: sandbox.path("data/checkpoints")) {
            try FileManager.default.removeItem(atPath: sandbox.path("data/checkpoints"))
        }
        agent = try startAgent()
        let more = logLines("meta-after", 0..<10)
        appendText(path, joinedLines(more))
        waitForCount("meta-memory", 410)
        waitForCount("meta-disk", 410)
        stopAgent(agent)
        for index in ["meta-memory", "meta-disk"] {
            XCTAssertEqual(count(index), 410, "\(index): the replay of 400 lines added nothing")
        }
    }

    // MARK: 413

    /// Through nginx with `client_max_body_size 32k`: a whole-request 413 splits the batch until the
    /// halves fit (everything indexed once, `batch_splits` counted); a single record larger than
    /// the limit is dead-lettered with status 413.
    func testRequestTooLargeSplitsTheBatch() throws {
        try sandbox.mkdir("nginx")
        let ngx = try NginxPeer(dir: sandbox.path("nginx"), upstream: os.url, maxBodySize: "32k")
        nginx = ngx
        let path = sandbox.path("logs/app.log")
        let lines = logLines("big", 0..<1500)
        let huge = "huge " + String(repeating: "x", count: 40_000)
        appendText(path, joinedLines(Array(lines[0..<700]) + [huge] + Array(lines[700...])))
        try writeConfig(deliveryConfig(outputs: [
            es(index: "split", ["hosts: [\"\(ngx.url)\"]", "compression: none", "batch: {max_records: 5000, timeout: 100ms}"]),
        ]))
        let agent = try startAgent()
        waitForCount("split", 1500)
        waitFor("the oversized record dead-lettered") { !deadLetters(sandbox, "es").isEmpty }
        stopAgent(agent)
        XCTAssertEqual(count("split"), 1500)
        XCTAssertEqual(Set(try os.search("split").compactMap { $0.source["message"] as? String }), Set(lines))
        let dead = deadLetters(sandbox, "es")
        XCTAssertEqual(dead.count, 1, "only the oversized record: \(dead.map { $0["reason"] ?? "" })")
        XCTAssertEqual(dead.first?["status"] as? Int, 413)
        XCTAssertEqual((dead.first?["record"] as? [String: Any])?["message"] as? String, huge)
        let stop = agent.stderr.split(separator: "\n").last { $0.contains("anduin stopped:") } ?? ""
        XCTAssertTrue(stop.contains("batch_splits="), "splits counted: \(stop)")
        XCTAssertFalse(stop.contains("batch_splits=0"), "splits counted: \(stop)")
    }
}
