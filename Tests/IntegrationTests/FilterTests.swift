import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The multiline, grep, modify and throttle filters in the real agent: stack traces from real
/// runtimes, interleaved streams, rotation mid-trace, SIGTERM with a trace pending, checkpoints.
final class FilterTests: AgentTestCase {
    /// One `tail` input named `in`, the given filters, and the file output fed by `feed`.
    func config(_ tail: TailOptions, filters: String, feed: String) -> String {
        "data_dir: ./data\nshutdown_timeout: 30s\ninputs:\n" + tail.yaml(name: "in") + "filters:\n" + filters
            + "outputs:\n  local: {type: file, from: [\(feed)], path: ./out/records.ndjson, \(allMetadata)}\n"
    }

    func cri(_ second: Int, _ stream: String, _ text: String) -> String {
        "2024-05-01T10:00:\(second < 10 ? "0" : "")\(second).000000001Z \(stream) F \(text)\n"
    }

    static let javaTrace = [
        "2024-05-01 10:00:00.123 ERROR [main] c.e.OrderService - order 42 failed",
        "org.springframework.dao.DataAccessResourceFailureException: could not execute query",
        "\tat org.springframework.orm.jpa.vendor.HibernateJpaDialect.convertHibernateAccessException(HibernateJpaDialect.java:255)",
        "\tat com.example.OrderService.place(OrderService.java:88)",
        "Caused by: org.hibernate.exception.JDBCConnectionException: could not execute query",
        "\tat org.hibernate.exception.internal.SQLStateConversionDelegate.convert(SQLStateConversionDelegate.java:112)",
        "\t... 12 more",
        "Caused by: java.net.ConnectException: Connection refused",
        "\tat java.base/sun.nio.ch.Net.pollConnect(Native Method)",
        "\t... 12 more",
    ]

    static let pythonTrace = [
        "Traceback (most recent call last):",
        "  File \"/app/worker.py\", line 12, in handle",
        "    result = compute(item)",
        "  File \"/app/worker.py\", line 30, in compute",
        "    return 1 / item.count",
        "ZeroDivisionError: division by zero",
    ]

    static let goPanic = [
        "panic: runtime error: invalid memory address or nil pointer dereference",
        "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a1b2c]",
        "",
        "goroutine 1 [running]:",
        "main.(*Server).handle(0x0, {0x7a5e40, 0xc0000b4000})",
        "\t/app/server.go:42 +0x2c",
        "main.main()",
        "\t/app/main.go:12 +0x65",
        "",
        "goroutine 7 [select]:",
        "main.worker(0xc000020060)",
        "\t/app/worker.go:18 +0x9a",
        "created by main.main in goroutine 1",
        "\t/app/main.go:9 +0x3c",
    ]

    // MARK: tests

    /// A CRI container writes a Java exception on stderr while stdout keeps logging; the trace becomes
    /// one record with its first line's offset, time and stream, stdout lines stay separate, and
    /// grep and modify downstream of multiline see the merged records.
    func testJavaTraceOnStderrInterleavedWithStdout() throws {
        var tail = TailOptions()
        tail.format = "cri"
        try writeConfig(config(tail, filters: """
              ml: {type: multiline, from: [in], mode: java, flush_timeout: 500ms}
              quiet: {type: grep, from: [ml], exclude: {message: "^DEBUG"}}
              tag: {type: modify, from: [quiet], set: {env: test}}

            """, feed: "tag"))
        let path = sandbox.path("logs/app.log")
        var text = cri(0, "stdout", "GET /a 200")
        let traceOffset = text.utf8.count
        for (i, line) in Self.javaTrace.enumerated() {
            text += cri(1 + i, "stderr", line)
            if i % 3 == 0 { text += cri(1 + i, "stdout", "GET /b\(i) 200") }
            if i == 4 { text += cri(1 + i, "stdout", "DEBUG noisy") }
        }
        text += cri(30, "stderr", "INFO recovered")
        text += cri(31, "stdout", "GET /c 200")
        let agent = try startAgent()
        appendText(path, text)

        let trace = Self.javaTrace.joined(separator: "\n")
        let stdout = ["GET /a 200", "GET /b0 200", "GET /b3 200", "GET /b6 200", "GET /b9 200", "GET /c 200"]
        // The last line of each stream is shipped by the flush timeout, without a stop.
        waitForMessages([trace, "INFO recovered"] + stdout)
        stopAgent(agent)
        assertWellFormed()
        let records = output.refresh()
        XCTAssertEqual(records.count, 2 + stdout.count, "\(records.map { $0.message ?? "-" })")
        let merged = try XCTUnwrap(records.first { $0.message == trace })
        XCTAssertEqual(merged.stream, "stderr")
        XCTAssertEqual(merged.offset, Int64(traceOffset))
        XCTAssertEqual(merged.timestamp, "2024-05-01T10:00:01.000000001Z")
        XCTAssertEqual(merged.json["env"] as? String, "test")
        XCTAssertFalse(records.contains { $0.message == "DEBUG noisy" })
        XCTAssertEqual(records.filter { $0.stream == "stdout" }.compactMap(\.message), stdout, "stdout order kept")
        XCTAssertTrue(agent.stderr.contains("records_merged=9"), "stop log: \(agent.stderr.suffix(800))")
    }

    /// A Python traceback and a Go panic with several goroutines, in a raw log file.
    func testPythonTracebackAndGoPanic() throws {
        try writeConfig(config(TailOptions(), filters: """
              py: {type: multiline, from: [in], mode: python, flush_timeout: 500ms}
              go: {type: multiline, from: [py], mode: go, flush_timeout: 500ms}

            """, feed: "go"))
        let agent = try startAgent()
        let lines = ["INFO start"] + Self.pythonTrace + ["INFO between"] + Self.goPanic + ["", "INFO restarted"]
        appendText(sandbox.path("logs/app.log"), joinedLines(lines))
        let py = Self.pythonTrace.joined(separator: "\n")
        let go = Self.goPanic.joined(separator: "\n")
        waitForMessages(["INFO start", py, "INFO between", go, "INFO restarted"])
        stopAgent(agent)
        assertWellFormed()
        XCTAssertEqual(output.refresh().count, 5, "\(output.messages)")
    }

    /// The application's file is rotated (renamed away, a new one created at the same path) in the
    /// middle of a trace. Records are built per file, by its identity: the head of the trace ships
    /// with the old file's identity once its flush timeout passes, the lines in the new file are
    /// records of the new file. Lines of two files are never joined, even when both are read at once
    /// (a rotated file with a backlog is drained while its successor is read).
    func testTraceCutByRotationIsSplitAtTheFileBoundary() throws {
        try writeConfig(config(TailOptions(), filters: """
              ml: {type: multiline, from: [in], mode: java, flush_timeout: 1s}

            """, feed: "ml"))
        let app = sandbox.path("logs/app.log")
        let agent = try startAgent()
        let head = ["INFO before", "ERROR failed", "java.lang.IllegalStateException: boom", "\tat a.b.C.d(C.java:1)"]
        appendText(app, joinedLines(head))
        // `INFO before` ships when the next line starts a record: the head was read.
        waitForMessages(["INFO before"])
        XCTAssertEqual(rename(app, app + ".1"), 0)
        let tailLines = ["\tat a.b.C.e(C.java:2)", "\t... 3 more", "INFO after"]
        appendText(app, joinedLines(tailLines))
        let oldPart = head.dropFirst().joined(separator: "\n")
        let newPart = tailLines.dropLast().joined(separator: "\n")
        waitForMessages([oldPart, newPart, "INFO after"])
        stopAgent(agent)
        assertWellFormed()
        let records = output.refresh()
        XCTAssertEqual(records.count, 4, "\(records.map { $0.message ?? "-" })")
        let first = try XCTUnwrap(records.first { $0.message == oldPart })
        let second = try XCTUnwrap(records.first { $0.message == newPart })
        XCTAssertEqual(first.offset, Int64("INFO before\n".utf8.count))
        XCTAssertEqual(first.eventID.prefix(16), records[0].eventID.prefix(16), "the old file's identity")
        XCTAssertEqual(second.offset, 0)
        XCTAssertNotEqual(second.eventID.prefix(16), first.eventID.prefix(16), "the new file has its own")
    }

    /// SIGTERM while a trace waits for its next line (flush_timeout far away): it is shipped before
    /// the outputs close, and checkpointed.
    func testPendingTraceIsFlushedAtSIGTERM() throws {
        try writeConfig(config(TailOptions(), filters: """
              ml: {type: multiline, from: [in], mode: python, flush_timeout: 30s}

            """, feed: "ml"))
        let path = sandbox.path("logs/app.log")
        let agent = try startAgent()
        let text = joinedLines(["INFO before"] + Self.pythonTrace)
        appendText(path, text)
        waitForMessages(["INFO before"])
        stopAgent(agent)
        assertWellFormed()
        XCTAssertEqual(output.refresh().compactMap(\.message), ["INFO before", Self.pythonTrace.joined(separator: "\n")])
        XCTAssertEqual(sandbox.checkpoints("in")[path], Int64(text.utf8.count), "the flushed trace was checkpointed")

        // A restart reads nothing again.
        let again = try startAgent()
        waitForLog(again, "following ")
        appendText(path, "INFO restarted\n")
        waitForMessages(["INFO restarted"])
        stopAgent(again)
        XCTAssertEqual(output.refresh().count, 3)
    }

    /// While a trace is held, the file's checkpoint stays at (not past) its first line; once the
    /// trace is shipped and written, the checkpoint moves past it.
    func testCheckpointDoesNotPassAPendingTrace() throws {
        var tail = TailOptions()
        tail.refreshInterval = "200ms"  // scans count the input loop's turns below
        try writeConfig("api: {address: \"127.0.0.1:0\"}\n" + config(tail, filters: """
              ml: {type: multiline, from: [in], mode: python, flush_timeout: 30s}

            """, feed: "ml"))
        let path = sandbox.path("logs/app.log")
        let agent = try startAgent()
        let api = try XCTUnwrap(apiAddress(), "the agent wrote no data/api.address")
        let plain = joinedLines(["INFO one", "INFO two"])
        appendText(path, plain)
        waitForMessages(["INFO one", "INFO two"])
        let traceStart = Int64(plain.utf8.count)
        waitFor("checkpoint at the end of the plain lines") { sandbox.checkpoints("in")[path] == traceStart }

        // Precondition: the whole trace was read and the filter holds it (it waits for a next line).
        let trace = joinedLines(Self.pythonTrace)
        appendText(path, trace)
        var samples: [String: Double] = [:]
        waitFor("the trace read whole and held: \(samples.filter { $0.key.contains("bytes_read") || $0.key.contains("pending") })") {
            samples = scrapeMetrics(api) ?? [:]
            return samples["anduin_input_bytes_read_total{component=in,type=tail}"] == Double(plain.utf8.count + trace.utf8.count)
                && samples["anduin_filter_records_pending{component=ml,type=multiline}"] == 1
        }
        // Then several turns of the input's loop, each of which may write a checkpoint (scans and
        // checkpoints have the same interval here): this file's stays at the trace's first line.
        let scans = "anduin_input_scans_total{component=in,type=tail}"
        let scansAtStart = try XCTUnwrap(samples[scans], "no \(scans) in the metrics")
        waitFor("5 more scans of the input after \(scansAtStart) (now \(samples[scans] ?? -1))") {
            XCTAssertEqual(sandbox.checkpoints("in")[path], traceStart, "checkpoint moved off a pending trace's first line")
            samples = scrapeMetrics(api) ?? [:]
            return (samples[scans] ?? 0) >= scansAtStart + 5
        }
        XCTAssertEqual(sandbox.checkpoints("in")[path], traceStart, "checkpoint moved off a pending trace's first line")
        XCTAssertEqual(samples["anduin_filter_records_pending{component=ml,type=multiline}"], 1, "the trace is still held")
        XCTAssertEqual(output.refresh().compactMap(\.message), ["INFO one", "INFO two"], "the trace is still held")

        appendText(path, "INFO after\n")
        let total = Int64(plain.utf8.count + trace.utf8.count + "INFO after\n".utf8.count)
        waitForMessages([Self.pythonTrace.joined(separator: "\n"), "INFO after"])
        waitFor("checkpoint past the trace") { sandbox.checkpoints("in")[path] == total }
        stopAgent(agent)
        assertWellFormed()
        XCTAssertEqual(output.refresh().count, 4)
    }

    /// Checkpoints advance per file: a trace held in one file (flush_timeout far away) does not stop
    /// another file's checkpoint, which moves past every line it shipped.
    func testAHeldTraceDoesNotStallOtherFilesCheckpoints() throws {
        try writeConfig(config(TailOptions(), filters: """
              ml: {type: multiline, from: [in], mode: python, flush_timeout: 30s}

            """, feed: "ml"))
        let held = sandbox.path("logs/held.log"), other = sandbox.path("logs/other.log")
        let agent = try startAgent()
        appendText(held, joinedLines(["INFO first"] + Self.pythonTrace))
        waitForMessages(["INFO first"])
        var otherText = ""
        for i in 0..<5 {
            let line = "INFO other \(i)\n"
            otherText += line
            appendText(other, line)
            waitForMessages(["INFO other \(i)"])
        }
        waitFor("the other file checkpointed past its shipped lines while the trace is held") {
            // The last line of other.log is itself held (python mode: anything may follow it).
            (sandbox.checkpoints("in")[other] ?? 0) >= Int64(otherText.utf8.count - "INFO other 4\n".utf8.count)
        }
        XCTAssertLessThanOrEqual(sandbox.checkpoints("in")[held] ?? 0, Int64("INFO first\n".utf8.count),
                                 "the held trace's file does not pass its first line")
        stopAgent(agent)
    }

    /// One pod floods, the other keeps its rate: only the flood is cut, and the drops are logged per key.
    func testThrottlePerKey() throws {
        var tail = TailOptions()
        tail.paths = ["./logs/*.log"]
        try writeConfig(config(tail, filters: """
              limit: {type: throttle, from: [in], key: log.file.path, rate: 50/s, burst: 50, log_interval: 500ms}

            """, feed: "limit"))
        let agent = try startAgent()
        appendText(sandbox.path("logs/noisy.log"), joinedLines(logLines("noisy", 0..<2000)))
        appendText(sandbox.path("logs/quiet.log"), joinedLines(logLines("quiet", 0..<20)))
        waitForMessages(logLines("quiet", 0..<20))
        waitForLog(agent, "throttle: dropped")
        stopAgent(agent)
        let noisy = output.refresh().filter { $0.message?.hasPrefix("noisy") == true }.count
        // How many pass depends on the time the flood took to read (50/s after a burst of 50); that
        // every other one is counted as dropped does not.
        XCTAssertGreaterThanOrEqual(noisy, 50, "at least the burst")
        XCTAssertLessThan(noisy, 1000, "the flood was limited")
        XCTAssertEqual(output.records.count, noisy + 20, "the quiet file lost nothing")
        XCTAssertEqual(stopLineCounters(agent.stderr, component: "limit")["records_dropped"], 2000 - noisy, agent.stderr)
        XCTAssertTrue(agent.stderr.contains("noisy.log"), "the drop log names the key")
    }
}
