import Foundation
import XCTest

/// Lines appended to files while the agent runs: order, exactly-once, watch modes, many files.
final class TailLiveTests: AgentTestCase {
    /// Lines written before the start and appended live (interleaved over three files) all arrive,
    /// in order per file, exactly once, with the documented record shape; an excluded file is not read.
    func testLiveAppendsArriveInOrderExactlyOnce() throws {
        let names = ["file-a", "file-b", "file-c"]
        for n in names { appendText(sandbox.path("logs/\(n).log"), joinedLines(logLines(n, 0..<20))) }
        // Excluded by name: never shipped.
        appendText(sandbox.path("logs/skip-me.log"), joinedLines(logLines("skip", 0..<20)))
        var opts = TailOptions()
        opts.exclude = ["skip-*"]
        try writeConfig(agentConfig([("in", opts)]))
        let agent = try startAgent()
        waitForRecordCount(60)

        var next = 20
        for _ in 0..<10 {
            for n in names { appendText(sandbox.path("logs/\(n).log"), joinedLines(logLines(n, next..<(next + 15)))) }
            next += 15
            usleep(30_000)  // pacing the writer, not a wait for the agent
        }
        let expected = names.flatMap { logLines($0, 0..<next) }
        waitForMessages(expected)
        stopAgent(agent)
        output.refresh()

        assertWellFormed()
        assertExactlyOnce(output.records, expected)
        assertInOrderPerPrefix(output.records)
        for r in output.records {
            guard let m = r.message, let (p, i) = parseLogLine(m) else { continue }
            XCTAssertEqual(r.path, sandbox.path("logs/\(p).log"), "log.file.path of \(m)")
            XCTAssertEqual(r.offset, Int64(i * lineLength(p)), "log.offset of \(m)")
            XCTAssertNil(r.stream, "raw records have no stream")
            XCTAssertFalse(r.truncated)
        }
        // One identity per file: the first 16 hex digits of event.id are the same for all its lines.
        for n in names {
            let ids = Set(output.records.filter { $0.message?.hasPrefix(n) == true }.map { $0.eventID.prefix(16) })
            XCTAssertEqual(ids.count, 1, "\(n): source part of event.id should be constant, got \(ids)")
        }
        XCTAssertTrue(agent.stderr.contains("anduin stopped"), "the stop is logged")
    }

    func testInotifyModeDeliversAppendedLinesAndNewFiles() throws {
        try runWatchMode("inotify")
    }

    func testPollModeDeliversAppendedLinesAndNewFiles() throws {
        try runWatchMode("poll")
    }

    /// `watch: MODE`: lines appended to an existing file, and a file created after the start, arrive.
    private func runWatchMode(_ mode: String) throws {
        appendText(sandbox.path("logs/old.log"), joinedLines(logLines("old", 0..<10)))
        var opts = TailOptions()
        opts.watch = mode
        try writeConfig(agentConfig([("in", opts)]))
        let agent = try startAgent()
        waitForMessages(logLines("old", 0..<10))

        for k in 0..<5 {
            appendText(sandbox.path("logs/old.log"), joinedLines(logLines("old", (10 + k * 10)..<(20 + k * 10))))
            usleep(50_000)
        }
        waitForMessages(logLines("old", 0..<60))
        // A file created later, written in several appends.
        for k in 0..<3 {
            appendText(sandbox.path("logs/new.log"), joinedLines(logLines("new", (k * 10)..<(k * 10 + 10))))
            usleep(50_000)
        }
        let expected = logLines("old", 0..<60) + logLines("new", 0..<30)
        waitForMessages(expected)
        stopAgent(agent)

        assertWellFormed()
        assertExactlyOnce(output.refresh(), expected)
        assertInOrderPerPrefix(output.records)
        XCTAssertFalse(agent.stderr.contains("inotify is unavailable"), "inotify should be available here")
        if mode == "poll" {
            XCTAssertFalse(agent.stderr.contains("inotify"), "poll mode should not touch inotify")
        }
    }

    /// 200 files at once, 25 lines each before the start and 25 appended after: 10,000 lines,
    /// each exactly once.
    func testTwoHundredFilesAtOnce() throws {
        let names = (0..<200).map { "many-\($0)" }
        for n in names { appendText(sandbox.path("logs/\(n).log"), joinedLines(logLines(n, 0..<25))) }
        try writeConfig(agentConfig([("in", TailOptions())]))
        let agent = try startAgent()
        waitForRecordCount(200 * 25, timeout: 90)
        for n in names { appendText(sandbox.path("logs/\(n).log"), joinedLines(logLines(n, 25..<50))) }
        let expected = names.flatMap { logLines($0, 0..<50) }
        waitForMessages(expected, timeout: 90)
        stopAgent(agent)

        assertWellFormed()
        XCTAssertEqual(output.refresh().count, 10_000)
        assertExactlyOnce(output.records, expected)
        assertInOrderPerPrefix(output.records)
    }
}
