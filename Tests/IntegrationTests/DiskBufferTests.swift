import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The disk buffer under faults made while the agent is not running (torn tail, garbage, a removed
/// buffer folder), unusable data dirs, a config the ring cannot work with, and a full disk.
final class DiskBufferTests: DGTestCase {
    private var bufferDir: String { sandbox.path("data/buffers/out") }

    /// With the receiver down, `n` lines go into the ring (uncompressed, 8 KiB segments, so the test
    /// can read the blocks) and are checkpointed; then the agent is SIGKILLed. Returns the receiver's
    /// port and the lines.
    private func fillRingWithReceiverDown(_ prefix: String, lines n: Int) throws -> (port: Int, lines: [String]) {
        let port = try DG.freePort()
        try writeConfig(DG.config([DGOutput(name: "out", uri: DG.url(port),
                                            buffer: "{type: disk, max_bytes: 64MiB, segment_bytes: 8KiB, compress: false}")]))
        let lines = logLines(prefix, 0..<n)
        appendText(sandbox.path("logs/\(prefix).log"), joinedLines(lines))
        let agent = try startAgent()
        let size = Int64(n * lineLength(prefix))
        waitFor("every line checkpointed (so in the ring)", timeout: 60) { checkpointTotal() == size }
        killAgent(agent)
        return (port, lines)
    }

    /// New lines after the restart, and waits for them and `expected` at `recv`.
    private func newLinesFlow(_ prefix: String, _ recv: ReceiverPeer, also expected: [String]) -> [String] {
        let fresh = logLines(prefix, 0..<100)
        appendText(sandbox.path("logs/\(prefix).log"), joinedLines(fresh))
        waitForReceived(expected + fresh, timeout: 60) { (try? recv.dgRecords()) ?? [] }
        return expected + fresh
    }

    /// The last segment is cut in the middle of its last block (a write torn by a crash). The agent
    /// starts, logs the truncation, and delivers every intact record, then new ones.
    func testTornTailIsTruncatedAndTheRestDelivered() throws {
        let (port, lines) = try fillRingWithReceiverDown("torn", lines: 600)
        let segments = DG.segmentFiles(bufferDir)
        XCTAssertGreaterThan(segments.count, 2, "several segments")
        let last = try XCTUnwrap(segments.last)
        let tail = try XCTUnwrap(DG.ringBlocks(last).last, "a block in \(last)")
        XCTAssertFalse(tail.compressed)
        XCTAssertEqual(tail.messages.count, tail.records, "the test's block parser read every record")
        XCTAssertEqual(truncate(last, off_t(tail.start + 36 + (tail.length - 36) / 2)), 0)
        // The torn block's records were checkpointed (the ring had accepted them), so they are gone;
        // in a real crash a torn block was never acknowledged and is read again from the file.
        let lost = Set(tail.messages)

        let recv = try receiver(port: port)
        let agent = try startAgent()
        waitForLog(agent, "truncated \(36 + (tail.length - 36) / 2) bytes at the end of")
        let expected = newLinesFlow("torn-new", recv, also: lines.filter { !lost.contains($0) })
        stopAgent(agent)
        let t = DG.tally(try recv.dgRecords(), expected: expected)
        print("torn tail: \(t); \(lost.count) records in the torn block")
        assertNoLossNoDuplicateAfterDedup(t)
        XCTAssertEqual(t.rawDuplicates, 0)
    }

    /// Issue 26: a kill -9 while the output is down, during the write of the ring's last block. That
    /// write never finished, so its batch was never acknowledged and the file's checkpoint is still
    /// before its lines (made here by cutting the last block and putting the checkpoint back at its
    /// first line). At the restart, with the output up, the ring delivers what it holds and the tail
    /// reads the torn block's lines again: every line arrives exactly once, and neither /status,
    /// /metrics nor `anduin status` counts those records as dropped (or the identity as off).
    func testTornTailWhoseLinesWereNotCheckpointedIsReadAgainNotCountedAsLost() throws {
        let (port, lines) = try fillRingWithReceiverDown("reread", lines: 600)
        let last = try XCTUnwrap(DG.segmentFiles(bufferDir).last)
        let tail = try XCTUnwrap(DG.ringBlocks(last).last, "a block in \(last)")
        XCTAssertEqual(tail.messages, Array(lines.suffix(tail.records)), "the last block holds the last lines")
        XCTAssertEqual(truncate(last, off_t(tail.start + 36 + (tail.length - 36) / 2)), 0)
        let firstTorn = try XCTUnwrap(tail.messages.first.flatMap(parseLogLine)?.index)
        try setCheckpoint(input: "in", file: "reread.log", offset: Int64(firstTorn * lineLength("reread")))

        let recv = try receiver(port: port)
        let agent = try startAgent()
        waitForLog(agent, "truncated \(36 + (tail.length - 36) / 2) bytes at the end of")
        waitForReceived(lines, timeout: 90) { (try? recv.dgRecords()) ?? [] }
        let api = try XCTUnwrap(apiAddress(dataDir: "data"))
        var a: [String: Any] = [:]
        func n(_ k: String) -> Int { (a[k] as? NSNumber)?.intValue ?? -1 }
        waitFor("nothing pending", timeout: 60) {
            a = accounting(api, "out") ?? [:]
            return n("pending") == 0 && n("delivered") == lines.count
        }
        let dropped = a["dropped"] as? [String: Any] ?? [:]
        XCTAssertEqual((dropped["corrupt"] as? NSNumber)?.intValue, 0, "the torn block's records are not dropped: \(a)")
        XCTAssertEqual(n("unaccounted"), 0, "identity: \(a)")
        XCTAssertEqual(n("torn"), tail.records, "the torn block's records, read again: \(a)")
        XCTAssertEqual(n("in") + n("recovered"), n("delivered"), "in + recovered = delivered: \(a)")
        XCTAssertEqual(outputCounter("buffer_corrupt_records"), 0)
        XCTAssertEqual(outputCounter("buffer_torn_records"), tail.records)
        let status = try statusText()
        XCTAssertTrue(status.contains("(holds)"), status)
        XCTAssertTrue(status.contains("\(tail.records) record(s) in a disk buffer block cut short"), status)
        stopAgent(agent)
        let t = DG.tally(try recv.dgRecords(), expected: lines)
        print("torn and read again: \(t); \(tail.records) records in the torn block")
        assertNoLossNoDuplicateAfterDedup(t)
        XCTAssertEqual(t.rawDuplicates, 0, "every line exactly once")
    }

    /// The ring's last block is whole but fails its checksum (damage, not a cut write): its records are
    /// lost and counted in buffer_corrupt_records at start. They were buffered by the previous run, so
    /// they are in `recovered` too, and the identity holds (it was off by them: they were counted
    /// dropped without being counted in).
    func testDamagedLastBlockIsCountedOnBothSidesOfTheIdentity() throws {
        let (port, lines) = try fillRingWithReceiverDown("rotten", lines: 600)
        let last = try XCTUnwrap(DG.segmentFiles(bufferDir).last)
        let tail = try XCTUnwrap(DG.ringBlocks(last).last, "a block in \(last)")
        XCTAssertEqual(tail.messages.count, tail.records)
        DG.overwrite(last, at: tail.start + 36 + (tail.length - 36) / 2, count: 8)
        let lost = Set(tail.messages)

        let recv = try receiver(port: port)
        let agent = try startAgent()
        waitForLog(agent, "record(s) in damaged blocks lost")
        waitForReceived(lines.filter { !lost.contains($0) }, timeout: 90) { (try? recv.dgRecords()) ?? [] }
        let api = try XCTUnwrap(apiAddress(dataDir: "data"))
        let a = assertAccounted(api, "out", delivered: lines.count - lost.count)
        XCTAssertEqual((a["dropped"] as? [String: Any])?["corrupt"] as? Int, lost.count, "\(a)")
        XCTAssertEqual(a["recovered"] as? Int, lines.count, "\(a)")
        XCTAssertEqual(a["torn"] as? Int, 0, "\(a)")
        stopAgent(agent)
        XCTAssertTrue(Set(try recv.dgRecords().map(\.message)).isDisjoint(with: lost))
    }

    /// Puts the checkpoint of `file` (a name under logs/) of `input` at `offset`, as a kill -9 before
    /// the records after it were acknowledged leaves it. The agent is not running.
    private func setCheckpoint(input: String, file: String, offset: Int64) throws {
        let path = sandbox.path("data/checkpoints/\(input).json")
        let data = try XCTUnwrap(FileManager.default.contents(atPath: path))
        var root = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        var files = try XCTUnwrap(root["files"] as? [[String: Any]])
        let i = try XCTUnwrap(files.firstIndex { ($0["path"] as? String)?.hasSuffix("/" + file) == true }, "\(files)")
        XCTAssertGreaterThan((files[i]["offset"] as? NSNumber)?.int64Value ?? 0, offset)
        files[i]["offset"] = NSNumber(value: offset)
        files[i]["delivered"] = nil
        root["files"] = files
        try JSONSerialization.data(withJSONObject: root).write(to: URL(fileURLWithPath: path))
    }

    /// `anduin status` of the running agent.
    private func statusText() throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: AnduinBinary.path!)
        p.arguments = ["status", "--config", sandbox.configPath]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    /// A sealed segment's block payload and the next segment's block header are overwritten with
    /// garbage, and so is the cursor. The agent starts anyway, skips and counts the damaged blocks
    /// (buffer_corrupt_blocks, buffer_corrupt_records in the stop line) and delivers the rest.
    func testGarbageInSegmentsIsSkippedAndCounted() throws {
        let (port, lines) = try fillRingWithReceiverDown("garbage", lines: 600)
        let segments = DG.segmentFiles(bufferDir)
        XCTAssertGreaterThan(segments.count, 3, "several segments")
        guard segments.count > 3 else { return }
        let b1 = try XCTUnwrap(DG.ringBlocks(segments[0]).first)
        let b2 = try XCTUnwrap(DG.ringBlocks(segments[1]).first)
        XCTAssertEqual(b1.messages.count, b1.records)
        XCTAssertEqual(b2.messages.count, b2.records)
        DG.overwrite(segments[0], at: b1.start + 36 + 16, count: 64)   // payload CRC fails; header trusted
        DG.overwrite(segments[1], at: b2.start, count: 36)             // header gone: scanned over
        DG.overwrite(bufferDir + "/cursor", at: 0, count: 128)     // both slots
        let lost = Set(b1.messages + b2.messages)

        let recv = try receiver(port: port)
        let agent = try startAgent()
        waitForLog(agent, "skipped damaged data", count: 2)
        XCTAssertTrue(agent.stderr.contains("cursor file"), "the damaged cursor is logged")
        let expected = newLinesFlow("garbage-new", recv, also: lines.filter { !lost.contains($0) })
        stopAgent(agent)
        let t = DG.tally(try recv.dgRecords(), expected: expected)
        let c = DG.stopCounters(agent.stderr, output: "out")
        print("garbage: \(t); damaged blocks held \(b1.records) + \(b2.records) records; counters \(c)")
        assertNoLossNoDuplicateAfterDedup(t)
        XCTAssertEqual(t.rawDuplicates, 0)
        XCTAssertEqual(c["buffer_corrupt_blocks"], 2, "stop line: \(c)")
        // The block without a header is counted too: the next block's record number tells how many.
        XCTAssertEqual(c["buffer_corrupt_records"], b1.records + b2.records, "stop line: \(c)")
    }

    /// data/buffers removed while the agent is down: it starts cleanly, recreates it, ships new lines.
    /// (The removed ring's records had been checkpointed: removing it deletes them, by design.)
    func testRemovedBufferFolderStartsCleanly() throws {
        let (port, _) = try fillRingWithReceiverDown("removed", lines: 300)
        try FileManager.default.removeItem(atPath: sandbox.path("data/buffers"))
        let recv = try receiver(port: port)
        let agent = try startAgent()
        waitForLog(agent, "anduin started")
        let expected = newLinesFlow("removed-new", recv, also: [])
        stopAgent(agent)
        XCTAssertFalse(agent.stderr.contains("cannot start"), agent.stderr)
        XCTAssertFalse(DG.segmentFiles(bufferDir).isEmpty, "the ring was recreated")
        let t = DG.tally(try recv.dgRecords().filter { $0.message.hasPrefix("removed-new ") }, expected: expected)
        assertNoLossNoDuplicateAfterDedup(t)
    }

    /// Lines `<prefix> <hex> line <i>` whose 60 random hex digits LZ4 cannot shrink: with compressible
    /// lines a segment holds so many records that short tests never delete one.
    private func incompressibleLines(_ prefix: String, _ range: Range<Int>) -> [String] {
        let hex = Array("0123456789abcdef")
        var rng = SystemRandomNumberGenerator()
        return range.map { i in "\(prefix) " + String((0..<60).map { _ in hex[Int(rng.next() % 16)] }) + " line \(i)" }
    }

    /// Issue 24 (5): the output healthy, a disk buffer with 1 MiB segments, two files written at about
    /// 600 lines/s each with incompressible lines: segments fill, are delivered and deleted while the
    /// delivery threads wait for data. The release build trapped at the first deletion (the reader
    /// waited for data while holding the ledger's state `inout`). Every line arrives, the agent lives.
    func testHealthyOutputWithSmallSegmentsAndIncompressibleLines() throws {
        let recv = try receiver()
        try writeConfig(DG.config([DGOutput(name: "out", uri: DG.url(recv.port),
                                            buffer: "{type: disk, max_bytes: 64MiB, segment_bytes: 1MiB}")]))
        let agent = try startAgent()
        waitForLog(agent, "anduin started")
        var expected: [String] = []
        for tick in 0..<60 {
            for f in ["inc-a", "inc-b"] {
                let lines = incompressibleLines(f, (tick * 150)..<(tick * 150 + 150))
                appendText(sandbox.path("logs/\(f).log"), joinedLines(lines))
                expected += lines
            }
            usleep(250_000)
            XCTAssertNil(agent.exit, "the agent died: \(agent.stderr.suffix(2000))")
            if agent.exit != nil { return }
        }
        waitForReceived(expected, timeout: 120) { (try? recv.dgRecords()) ?? [] }
        XCTAssertNil(agent.exit, "the agent died: \(agent.stderr.suffix(2000))")
        stopAgent(agent)
        XCTAssertEqual(agent.exit?.signalled, false)
        let t = DG.tally(try recv.dgRecords(), expected: expected)
        assertNoLossNoDuplicateAfterDedup(t)
        XCTAssertGreaterThan(expected.count * 150, 2 << 20, "the lines fill more than two segments")
    }

    /// Issue 24 (1): the output refused, 64 KiB segments, incompressible lines (the first reproduction:
    /// exit 132 within seconds); then the destination comes up and everything arrives.
    func testRefusedOutputWithSmallSegmentsThenDelivers() throws {
        let port = try DG.freePort()
        try writeConfig(DG.config([DGOutput(name: "out", uri: DG.url(port),
                                            buffer: "{type: disk, max_bytes: 64MiB, segment_bytes: 64KiB}")]))
        let lines = incompressibleLines("refused", 0..<6000)
        appendText(sandbox.path("logs/refused.log"), joinedLines(lines))
        let agent = try startAgent()
        let size = Int64(lines.reduce(0) { $0 + $1.utf8.count + 1 })
        waitFor("every line checkpointed (so in the ring)", timeout: 120) { checkpointTotal() == size || agent.exit != nil }
        XCTAssertNil(agent.exit, "the agent died: \(agent.stderr.suffix(2000))")
        let recv = try receiver(port: port)
        waitForReceived(lines, timeout: 120) { (try? recv.dgRecords()) ?? [] }
        XCTAssertNil(agent.exit, "the agent died: \(agent.stderr.suffix(2000))")
        stopAgent(agent)
        assertNoLossNoDuplicateAfterDedup(DG.tally(try recv.dgRecords(), expected: lines))
    }

    /// Issue 24 (6): `rm -rf` of the output's buffer folder while the destination is down. The agent
    /// recreates the folder and the segment it was writing (from its open file), counts the records of
    /// the deleted sealed segments as lost, keeps reading, and delivers every other line when the
    /// destination comes up: each line arrives or is counted, never both, never neither; the input
    /// does not pause for good; a restart adds nothing.
    func testBufferFolderDeletedWhileRunning() throws {
        let port = try DG.freePort()
        // Small batches, one thread: most records wait in sealed segments, not in a delivery thread.
        try writeConfig(DG.config([DGOutput(name: "out", uri: DG.url(port),
                                            buffer: "{type: disk, max_bytes: 64MiB, segment_bytes: 8KiB, compress: false}",
                                            batchRecords: 50, concurrency: 1)]))
        let before = logLines("rm-before", 0..<600)
        appendText(sandbox.path("logs/rm.log"), joinedLines(before))
        var agent = try startAgent()
        let size1 = Int64(600 * lineLength("rm-before"))
        waitFor("every line checkpointed (so in the ring)", timeout: 60) { checkpointTotal() == size1 }
        XCTAssertGreaterThan(DG.segmentFiles(bufferDir).count, 3, "several segments")
        try FileManager.default.removeItem(atPath: bufferDir)
        let after = logLines("rm-after", 0..<600)
        appendText(sandbox.path("logs/rm.log"), joinedLines(after))
        let size2 = size1 + Int64(600 * lineLength("rm-after"))
        waitFor("the lines after the deletion checkpointed (the input did not pause for good)", timeout: 60) { checkpointTotal() == size2 }
        waitForLog(agent, "was deleted while in use")
        XCTAssertFalse(DG.segmentFiles(bufferDir).isEmpty, "segments are made again")

        let recv = try receiver(port: port)
        waitForReceived(after, timeout: 60) { (try? recv.dgRecords()) ?? [] }
        let accounted = waitStable(quiet: 2, timeout: 30) { (try? recv.dgRecords().count) ?? 0 }
        XCTAssertNotNil(accounted)
        stopAgent(agent)
        let c = DG.stopCounters(agent.stderr, output: "out")
        let got = Set(try recv.dgRecords().map(\.message))
        let deliveredBefore = before.filter { got.contains($0) }.count
        XCTAssertGreaterThan(c["buffer_corrupt_records"] ?? 0, 0, "sealed segments were deleted; counters \(c)")
        XCTAssertEqual(deliveredBefore + (c["buffer_corrupt_records"] ?? 0), before.count,
                       "each line of before the deletion is delivered or counted as lost; counters \(c)")
        XCTAssertTrue(after.allSatisfy { got.contains($0) }, "every line written after the deletion arrives")
        let t = DG.tally(try recv.dgRecords(), expected: before + after)
        XCTAssertTrue(t.severalIDs.isEmpty && t.extra.isEmpty, "\(t)")

        // A restart delivers nothing again and loses nothing new.
        let count = try recv.dgRecords().count
        agent = try startAgent()
        waitForLog(agent, "anduin started")
        let fresh = logLines("rm-restart", 0..<50)
        appendText(sandbox.path("logs/rm.log"), joinedLines(fresh))
        waitForReceived(fresh, timeout: 60) { (try? recv.dgRecords()) ?? [] }
        stopAgent(agent)
        XCTAssertEqual(try recv.dgRecords().count, count + 50, "nothing delivered twice after the restart")
    }

    /// Starts the agent expecting a startup failure: exit status 1, a "cannot start" line with `texts`.
    /// `atValidation`: the config's check refuses it (FILE:LINE:COLUMN) before anything starts.
    private func expectStartFailure(_ texts: [String], atValidation: Bool = false,
                                    file: StaticString = #filePath, line: UInt = #line) throws {
        let agent = try startAgent()
        XCTAssertTrue(agent.waitExit(timeout: 30), "the agent exits", file: file, line: line)
        XCTAssertEqual(agent.exit?.signalled, false, file: file, line: line)
        XCTAssertEqual(agent.exit?.status, 1, "exit status; stderr: \(agent.stderr)", file: file, line: line)
        let err = agent.stderr
        XCTAssertFalse(err.contains("NSCocoaErrorDomain"), err, file: file, line: line)
        for t in [atValidation ? sandbox.configPath + ":1:" : "cannot start"] + texts {
            XCTAssertTrue(err.contains(t), "stderr should mention \"\(t)\": \(err)", file: file, line: line)
        }
    }

    /// A data_dir that cannot be used is a clear error at start and exit status 1: under a regular
    /// file (ENOTDIR) and read-only, refused by the config check in words; a buffer folder that
    /// cannot be made, at start.
    func testUnusableDataDirIsAClearStartupError() throws {
        appendText(sandbox.path("logs/x.log"), "x line 000000\n")
        let out = [DGOutput(name: "out", uri: DG.url(9))]

        try sandbox.write("plain-file", "not a directory\n")
        try writeConfig(DG.config(out, dataDir: sandbox.path("plain-file/data")))
        try expectStartFailure(["data_dir", sandbox.path("plain-file/data"), "not a directory: " + sandbox.path("plain-file")], atValidation: true)

        try sandbox.mkdir("data2")
        try sandbox.write("data2/buffers", "not a directory\n")
        try writeConfig(DG.config(out, dataDir: "./data2"))
        try expectStartFailure(["disk buffer", "buffers/out"])

        // Read-only: permissions do not apply to root, so as root the data_dir is a read-only tmpfs
        // (EROFS). Skipped only when neither is possible (root without CAP_SYS_ADMIN).
        let ro = sandbox.path("readonly")
        try sandbox.mkdir("readonly")
        if getuid() == 0 {
            let (rc, text) = DG.tool("mount", ["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", ro])
            guard rc == 0 else {
                print("read-only data_dir part skipped: running as root and mount failed (\(text)); chmod does not bind root")
                return
            }
            addTeardownBlock { _ = DG.tool("umount", ["-l", ro]) }
        } else {
            XCTAssertEqual(chmod(ro, 0o555), 0)
            addTeardownBlock { chmod(ro, 0o755) }
        }
        try writeConfig(DG.config(out, dataDir: ro))
        try expectStartFailure(["data_dir", ro, getuid() == 0 ? "read-only file system" : "not writable"], atValidation: true)
    }

    /// max_bytes below segment_bytes: `validate` (and `run`) print FILE:LINE:COLUMN at segment_bytes's
    /// value and exit 1.
    func testMaxBytesBelowSegmentBytesIsAValidationError() throws {
        let yaml = """
            data_dir: ./data
            inputs:
              in: {type: tail, paths: ["./logs/*.log"]}
            outputs:
              out:
                type: http
                from: [in]
                uri: "http://127.0.0.1:9/ingest"
                buffer:
                  type: disk
                  max_bytes: 64KiB
                  segment_bytes: 1MiB

            """
        try writeConfig(yaml)
        let lines = yaml.components(separatedBy: "\n")
        let row = try XCTUnwrap(lines.firstIndex { $0.contains("segment_bytes:") })
        let column = lines[row].distance(from: lines[row].startIndex, to: lines[row].range(of: "1MiB")!.lowerBound) + 1
        let prefix = "\(sandbox.configPath):\(row + 1):\(column): "

        let (status, err) = try runAnduin(["validate", "--config", sandbox.configPath])
        XCTAssertEqual(status, 1, err)
        XCTAssertTrue(err.split(separator: "\n").contains { $0.hasPrefix(prefix) && $0.contains("max_bytes") },
                      "expected a line starting with \(prefix) about max_bytes; stderr:\n\(err)")

        let agent = try startAgent()
        XCTAssertTrue(agent.waitExit(timeout: 30))
        XCTAssertEqual(agent.exit?.status, 1, "run refuses it too")
        XCTAssertTrue(agent.stderr.contains(prefix), agent.stderr)
    }

    private func runAnduin(_ args: [String]) throws -> (Int32, String) {
        let errPath = sandbox.path("cli-\(UUID().uuidString.prefix(6)).stderr")
        let p = try AgentProcess(binary: AnduinBinary.path!, arguments: args, stderrPath: errPath,
                                 workingDirectory: NSTemporaryDirectory())
        XCTAssertTrue(p.waitExit(timeout: 30), "anduin \(args) exits")
        return (p.exit?.status ?? -1, p.stderr)
    }

    /// ENOSPC: data_dir on a 4 MiB tmpfs filled up. The ring's writes fail: the agent logs it, the
    /// shared input pauses (B, with a memory buffer, stops getting records), nothing is dropped; once
    /// space is freed it resumes, and both outputs get every line once.
    func testDiskFullPausesTheInputAndResumesWithoutLoss() throws {
        let dataDir = sandbox.path("data")
        try sandbox.mkdir("data")
        let (rc, text) = DG.tool("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", dataDir])
        // CI runs as root and can mount it; elsewhere this fails loudly rather than hiding the missing
        // setup (the ring's ENOSPC handling is also covered without a mount, through its storage seam:
        // DiskRingTests.testWriteErrorsFromTheStorageSeamAreRetriedExactly).
        guard rc == 0 else {
            return XCTFail("cannot mount a tmpfs to fill (\(text.trimmingCharacters(in: .whitespacesAndNewlines))): run as root or with CAP_SYS_ADMIN")
        }
        addTeardownBlock { _ = DG.tool("umount", ["-l", dataDir]) }

        let portA = try DG.freePort()
        let b = try receiver()
        try writeConfig(DG.config([
            DGOutput(name: "a", uri: DG.url(portA)),
            DGOutput(name: "b", uri: b.url, buffer: "{type: memory, max_records: 2000}"),
        ]))
        let agent = try startAgent()
        waitForLog(agent, "anduin started")

        // Leave about 40 KiB free.
        var vfs = statvfs()
        XCTAssertEqual(statvfs(dataDir, &vfs), 0)
        let free = Int(vfs.f_bavail) * Int(vfs.f_frsize)
        let filler = dataDir + "/filler"
        let wrote = DG.fill(filler, bytes: free - 40 * 1024)
        XCTAssertGreaterThan(wrote, 0)

        // Eight files of 3000 lines, each read as one batch: the pause (a 10000 record hand-off queue,
        // one batch in the ring writer) comes well before the end.
        let (files, n) = ((0..<8).map { "full-\($0)" }, 3000)
        for f in files { appendText(sandbox.path("logs/\(f).log"), joinedLines(logLines(f, 0..<n))) }
        let all = files.flatMap { logLines($0, 0..<n) }
        let totalBytes = Int64(all.count * lineLength("full-0"))

        waitForLog(agent, "No space left on device", timeout: 60)
        let paused = waitStable(quiet: 2.5, timeout: 60) { (try? b.dgRecords().count) ?? -1 }
        XCTAssertNotNil(paused, "B kept getting records: the input did not pause")
        if let paused {
            print("disk full: input paused with B at \(paused) of \(all.count)")
            XCTAssertLessThan(paused, all.count, "the shared input pauses while A's ring cannot be written")
        }
        XCTAssertTrue(agent.isRunning)

        XCTAssertEqual(unlink(filler), 0)
        waitForLog(agent, "works again", timeout: 60)
        waitForReceived(all, timeout: 90, what: "B after space was freed") { (try? b.dgRecords()) ?? [] }
        waitFor("checkpoints at the end of the files") { checkpointTotal() == totalBytes }
        let a = try receiver(port: portA)
        waitForReceived(all, timeout: 120, what: "A after it came back") { (try? a.dgRecords()) ?? [] }
        stopAgent(agent)

        let ta = DG.tally(try a.dgRecords(), expected: all)
        let tb = DG.tally(try b.dgRecords(), expected: all)
        let c = DG.stopCounters(agent.stderr, output: "a")
        print("disk full: A \(ta); B \(tb); counters of a: \(c)")
        assertNoLossNoDuplicateAfterDedup(ta, label: "A")
        assertNoLossNoDuplicateAfterDedup(tb, label: "B")
        XCTAssertGreaterThan(c["buffer_write_errors"] ?? 0, 0, "stop line: \(c)")
        XCTAssertNil(c["buffer_records_dropped"], "nothing dropped")
    }
}

/// One block of a ring segment, as the tests read it (format in Sources/AnduinCore/Buffer/DiskRing.swift).
struct DGBlock {
    let start: Int
    /// Header + stored payload.
    let length: Int
    let records: Int
    let compressed: Bool
    /// The `message` of each record (uncompressed blocks only).
    let messages: [String]
}

extension DG {
    /// The intact blocks at the start of a segment file.
    static func ringBlocks(_ path: String) -> [DGBlock] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let b = [UInt8](data)
        func u32(_ i: Int) -> Int { Int(b[i]) | Int(b[i + 1]) << 8 | Int(b[i + 2]) << 16 | Int(b[i + 3]) << 24 }
        var out: [DGBlock] = []
        var p = 0
        while p + 36 <= b.count, b[p..<(p + 4)].elementsEqual([0xAD, 0x55, 0x49, 0x4E]) {
            let count = u32(p + 8), stored = u32(p + 16), compressed = b[p + 5] & 1 != 0
            guard p + 36 + stored <= b.count else { break }
            var messages: [String] = []
            if !compressed {
                var q = p + 36
                let end = q + stored
                while q + 8 <= end {
                    let len = u32(q)
                    guard len >= 24, q + 8 + len <= end else { break }
                    if let obj = try? JSONSerialization.jsonObject(with: Data(b[(q + 32)..<(q + 8 + len)])) as? [String: Any],
                       let m = obj["message"] as? String {
                        messages.append(m)
                    }
                    q += 8 + len
                }
            }
            out.append(DGBlock(start: p, length: 36 + stored, records: count, compressed: compressed, messages: messages))
            p += 36 + stored
        }
        return out
    }

    /// Overwrites `count` bytes at `offset` with a fixed garbage pattern (creating the file if needed).
    static func overwrite(_ path: String, at offset: Int, count: Int) {
        let garbage = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 0x5B) }
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        precondition(fd >= 0, "open \(path)")
        _ = garbage.withUnsafeBytes { pwrite(fd, $0.baseAddress, count, off_t(offset)) }
        close(fd)
    }

    /// Writes up to `bytes` zero bytes (really allocated, not sparse); returns how many were written.
    static func fill(_ path: String, bytes: Int) -> Int {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var done = 0
        while done < bytes {
            let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, min(chunk.count, bytes - done)) }
            if n <= 0 { break }
            done += n
        }
        return done
    }

    /// Runs a system tool (mount, umount); (status, combined output).
    static func tool(_ name: String, _ args: [String]) -> (Int32, String) {
        guard let exe = ["/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/"].map({ $0 + name })
            .first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { return (127, "\(name) not found") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return (127, "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
