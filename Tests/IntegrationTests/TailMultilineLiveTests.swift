import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `multiline:` on the tail input in the real agent: an open record holds its file's checkpoint at
/// its first line, through checkpoint writes and a kill -9, and is shipped whole once.
final class TailMultilineLiveTests: AgentTestCase {
    static let pythonTrace = [
        "Traceback (most recent call last):",
        "  File \"/app/worker.py\", line 12, in handle",
        "    result = compute(item)",
        "ZeroDivisionError: division by zero",
    ]

    func testTheCheckpointStaysAtAnOpenRecordsFirstLineThroughAKillDashNine() throws {
        var tail = TailOptions()
        tail.refreshInterval = "200ms"  // scans count the input loop's turns below
        try writeConfig("""
            data_dir: ./data
            shutdown_timeout: 30s
            api: {address: "127.0.0.1:0"}
            inputs:
            \(tail.yaml(name: "in"))    multiline: {mode: python, flush_timeout: 1h}
            outputs:
              local: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}

            """)
        let path = sandbox.path("logs/app.log")
        var agent = try startAgent()
        let api = try XCTUnwrap(apiAddress(), "the agent wrote no data/api.address")
        let plain = joinedLines(["INFO one", "INFO two"])
        appendText(path, plain)
        // python mode: an ordinary line cannot be continued, so it ships (and is checkpointed) at once.
        waitForMessages(["INFO one", "INFO two"])
        let traceStart = Int64(plain.utf8.count)
        waitFor("checkpoint at the end of the plain lines") { sandbox.checkpoints("in")[path] == traceStart }

        // The whole trace read; it stays open (its next line may continue it).
        let trace = joinedLines(Self.pythonTrace)
        appendText(path, trace)
        var samples: [String: Double] = [:]
        let bytesRead = "anduin_input_bytes_read_total{component=in,type=tail}"
        waitFor("the trace read whole (\(samples[bytesRead] ?? -1) bytes read)") {
            samples = scrapeMetrics(api) ?? [:]
            return samples[bytesRead] == Double(plain.utf8.count + trace.utf8.count)
        }
        // Several turns of the input's loop, each of which may write a checkpoint: it stays put.
        let scans = "anduin_input_scans_total{component=in,type=tail}"
        let scansAtStart = try XCTUnwrap(samples[scans], "no \(scans) in the metrics")
        waitFor("5 more scans of the input after \(scansAtStart) (now \(samples[scans] ?? -1))") {
            XCTAssertEqual(sandbox.checkpoints("in")[path], traceStart, "checkpoint moved off an open record's first line")
            samples = scrapeMetrics(api) ?? [:]
            return (samples[scans] ?? 0) >= scansAtStart + 5
        }
        XCTAssertEqual(output.refresh().compactMap(\.message), ["INFO one", "INFO two"], "the trace is still open")

        // Killed with the trace open: the next start reads it again from its first line.
        killAgent(agent)
        appendText(path, "INFO after\n")
        agent = try startAgent()
        waitForMessages([Self.pythonTrace.joined(separator: "\n")])
        let total = Int64(plain.utf8.count + trace.utf8.count)
        waitFor("checkpoint past the trace") { (sandbox.checkpoints("in")[path] ?? 0) >= total }
        stopAgent(agent)
        assertWellFormed()
        let messages = output.refresh().compactMap(\.message)
        XCTAssertEqual(messages, ["INFO one", "INFO two", Self.pythonTrace.joined(separator: "\n"), "INFO after"],
                       "each record once, the trace whole")
        let first = output.refresh().first { ($0.message ?? "").hasPrefix("Traceback") }
        XCTAssertEqual(first?.offset, traceStart, "the trace keeps its first line's offset")
    }

    /// `format: auto` decides on a file's first line. A restart that resumes at a line the detected
    /// format does not fit (a CRI line without its time, held open by multiline) decodes as the first
    /// run did: it does not detect `raw` from that line, join every line into one stream and drop the
    /// records it completes as already delivered (torture seed 80002 run 28: 2 lines lost).
    func testARestartResumingAtAnUndecodableLineKeepsTheDetectedFormat() throws {
        try restartAtAnUndecodableLine(olderCheckpoint: false)
    }

    /// The same from a checkpoint written before the detected format was kept in it: the format is
    /// detected from the file's first line, not from the line it resumes at.
    func testARestartFromAnOlderCheckpointDetectsTheFormatFromTheFilesFirstLine() throws {
        try restartAtAnUndecodableLine(olderCheckpoint: true)
    }

    private func restartAtAnUndecodableLine(olderCheckpoint: Bool) throws {
        var tail = TailOptions()
        tail.format = "auto"
        func config(_ flush: String) throws {
            try writeConfig("""
                data_dir: ./data
                shutdown_timeout: 30s
                inputs:
                \(tail.yaml(name: "in"))    multiline: {mode: java, flush_timeout: \(flush)}
                outputs:
                  local: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}

                """)
        }
        try config("1h")
        let path = sandbox.path("logs/app.log")
        let first = "2026-12-06T10:00:00.000000000Z stdout F INFO first\n"
        let broken = " stdout F ERROR broken\n"
        appendText(path, first + broken + "2026-12-06T10:00:01.000000000Z stdout F INFO second\n"
                   + "2026-12-06T10:00:02.000000000Z stdout F INFO third\n")
        var agent = try startAgent()
        // "first" is closed by "second"; the broken line (no stream) and "third" stay open.
        waitForMessages(["INFO first"])
        let brokenAt = Int64(first.utf8.count)
        waitFor("checkpoint at the open broken line") { sandbox.checkpoints("in")[path] == brokenAt }
        stopAgent(agent)
        if olderCheckpoint {
            let file = sandbox.path("data/checkpoints/in.json")
            let text = try String(contentsOfFile: file, encoding: .utf8)
            XCTAssertTrue(text.contains("\"format\":\"cri\""), "the detected format is kept: \(text)")
            try text.replacingOccurrences(of: ",\"format\":\"cri\"", with: "")
                .replacingOccurrences(of: "\"format\":\"cri\",", with: "")
                .write(toFile: file, atomically: true, encoding: .utf8)
        }
        try config("50ms")
        agent = try startAgent()
        waitForMessages(["INFO first", broken.dropLast() + "", "INFO second", "INFO third"])
        stopAgent(agent)
        assertWellFormed()
        XCTAssertEqual(output.refresh().compactMap(\.message).sorted(),
                       ["INFO first", "INFO second", "INFO third", String(broken.dropLast())].sorted(),
                       "every line once, decoded as CRI after the restart too")
    }

    /// A trace open when its file is rotated is shipped from the old file (by its timeout, or when the
    /// drained file closes), under the old file's identity; the new file's lines never join it.
    func testARotationMidTraceKeepsTheFilesApart() throws {
        try writeConfig("""
            data_dir: ./data
            shutdown_timeout: 30s
            inputs:
            \(TailOptions().yaml(name: "in"))    multiline: {mode: java, flush_timeout: 300ms}
            outputs:
              local: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}

            """)
        let path = sandbox.path("logs/app.log")
        let agent = try startAgent()
        appendText(path, joinedLines(["INFO first", "ERROR a", "java.lang.IllegalStateException: boom"]))
        waitForMessages(["INFO first"])
        XCTAssertEqual(rename(path, path + ".1"), 0)
        appendText(path, joinedLines(["\tat com.example.A.call(A.java:1)", "INFO second"]))
        waitForMessages(["INFO first", "ERROR a\njava.lang.IllegalStateException: boom", "\tat com.example.A.call(A.java:1)", "INFO second"])
        stopAgent(agent)
        assertWellFormed()
        let records = output.refresh()
        XCTAssertEqual(records.count, 4)
        let trace = records.first { ($0.message ?? "").hasPrefix("ERROR a") }
        XCTAssertEqual(trace?.offset, Int64("INFO first\n".utf8.count))
        XCTAssertNotEqual(trace?.eventID, records.last?.eventID)
    }

    /// `paths` matching the rotated names too (`*.log*`): a rotated file whose last trace is flushed
    /// as it closes has records in flight then; the next scan finds it, and it must not be taken for
    /// a new file and read again from 0 (torture seed 70003 run 11: 1,151 lines shipped twice).
    func testARotatedFileMatchedByTheGlobIsNotReadAgainWhenItCloses() throws {
        var tail = TailOptions()
        tail.paths = ["./logs/*.log*"]
        tail.rotateWait = "100ms"
        tail.globInterval = "20ms"
        tail.refreshInterval = "20ms"  // a scan finds each rotated file as it closes
        try writeConfig("""
            data_dir: ./data
            shutdown_timeout: 30s
            inputs:
            \(tail.yaml(name: "in"))    multiline: {mode: java, flush_timeout: 10s}
            outputs:
              local: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}

            """)
        let path = sandbox.path("logs/app.log")
        let agent = try startAgent()
        var expected: [String] = []
        for round in 0..<5 {
            let lines = (0..<20).map { logLine("r\(round)", $0) }
            // Ends with an open trace: the joiner holds it until the rotated file closes.
            appendText(path, joinedLines(lines + ["ERROR r\(round)", "java.lang.IllegalStateException: boom \(round)"]))
            expected += lines + ["ERROR r\(round)\njava.lang.IllegalStateException: boom \(round)"]
            waitForMessages(Array(lines.prefix(1)))
            XCTAssertEqual(rename(path, path + ".\(round)"), 0)
        }
        waitForMessages(expected)
        usleep(1_500_000)  // more scans: a rotated file read again would show now
        stopAgent(agent)
        assertWellFormed()
        let messages = output.refresh().compactMap(\.message)
        XCTAssertEqual(messages.count, expected.count, "each line once")
        XCTAssertEqual(Set(messages), Set(expected))
    }
}
