import AnduinCore
import Foundation
import Synchronization
import XCTest

@testable import filter_multiline
@testable import Multiline

/// A clock the test moves by hand.
final class TestClock: Sendable {
    private let now = Mutex<Double>(1000)
    func read() -> Double { now.withLock { $0 } }
    func advance(_ s: Double) { now.withLock { $0 += s } }
}

/// Collects what a stateful filter emits, holding each token the way an output would (kept on
/// hand-over, let go on "delivery").
final class EmitCollector {
    var batches: [(batch: RecordBatch, token: AckToken)] = []
    func emit(_ b: RecordBatch, _ t: AckToken) {
        batches.append((b, t))
    }
    var records: [(message: String, offset: Int64, stream: LogStream, flags: RecordFlags, source: SourceInfo)] {
        batches.flatMap { (b, _) in
            b.records.map { r in
                (String(decoding: b.bytes[r.message], as: UTF8.self), r.offset, r.stream, r.flags, b.source)
            }
        }
    }
    var messages: [String] { records.map(\.message) }
    /// "Delivers" everything emitted so far.
    func deliverAll() {
        batches = []
    }
}

/// Whether an input batch's token completed.
final class TrackedToken: Sendable {
    final class Flag: Sendable {
        let done = Atomic<Bool>(false)
    }
    let flag = Flag()
    /// A new token reporting to this tracker; the caller lets go of it like an input does.
    func makeToken() -> AckToken {
        let f = flag
        return AckToken { f.done.store(true, ordering: .releasing) }
    }
    var isComplete: Bool { flag.done.load(ordering: .acquiring) }
}

final class MultilineTests: XCTestCase {
    let clock = TestClock()

    func makeFilter(_ settings: MultilineSettings, stats: ComponentStats? = nil) -> MultilineFilter {
        makeFilter(MultilineConfig(settings), stats: stats)
    }

    func makeFilter(_ config: MultilineConfig, stats: ComponentStats? = nil) -> MultilineFilter {
        let stats = stats ?? ComponentStats(component: "ml", kind: .filter)
        let ctx = ComponentContext(name: "ml", kind: .filter, dataDirectory: "/tmp", logger: .init(label: "test"), stats: stats)
        let clock = self.clock
        return MultilineFilter(config: config, context: ctx, clock: { clock.read() })
    }

    /// One file's identity, shared by its batches as the tail input does.
    static let defaultSource = SourceInfo(path: "/logs/app.log", sourceID: 1)

    func batch(_ lines: [(String, LogStream)], source: SourceInfo? = nil, firstOffset: Int64 = 0) -> RecordBatch {
        var b = RecordBatch(source: source ?? Self.defaultSource, inputName: "in")
        var offset = firstOffset
        for (i, (text, stream)) in lines.enumerated() {
            let range = Array(text.utf8).withUnsafeBytes { b.append(bytes: $0) }
            b.records.append(Record(timestamp: 1_700_000_000_000_000_000 + Int64(i), offset: offset, message: range, stream: stream))
            offset += Int64(text.utf8.count + 1)
        }
        return b
    }

    func batch(_ text: String, stream: LogStream = .stdout, source: SourceInfo? = nil, firstOffset: Int64 = 0) -> RecordBatch {
        batch(text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { (String($0), stream) },
              source: source, firstOffset: firstOffset)
    }

    /// Runs a batch through the filter as the pipeline does: the caller's reference is released after.
    func feed(_ f: MultilineFilter, _ b: RecordBatch, _ out: EmitCollector) -> TrackedToken {
        let t = TrackedToken()
        f.process(b, ack: t.makeToken(), emit: out.emit)
        return t
    }

    static let javaTrace = """
        2024-05-01 10:00:00.123 ERROR [main] c.e.OrderService - order 42 failed
        org.springframework.dao.DataAccessResourceFailureException: could not execute query
        \tat org.springframework.orm.jpa.vendor.HibernateJpaDialect.convertHibernateAccessException(HibernateJpaDialect.java:255)
        \tat com.example.OrderService.place(OrderService.java:88)
        \tat java.base/java.lang.Thread.run(Thread.java:833)
        Caused by: org.hibernate.exception.JDBCConnectionException: could not execute query
        \tat org.hibernate.exception.internal.SQLStateConversionDelegate.convert(SQLStateConversionDelegate.java:112)
        \t... 12 more
        Caused by: java.net.ConnectException: Connection refused
        \tat java.base/sun.nio.ch.Net.pollConnect(Native Method)
        \t... 12 more
        """

    static let pythonTrace = """
        Traceback (most recent call last):
          File "/app/worker.py", line 12, in handle
            result = compute(item)
          File "/app/worker.py", line 30, in compute
            return 1 / item.count
        ZeroDivisionError: division by zero

        During handling of the above exception, another exception occurred:

        Traceback (most recent call last):
          File "/app/worker.py", line 14, in handle
            raise ValueError("bad item") from None
        ValueError: bad item
        """

    static let goPanic = """
        panic: runtime error: index out of range [5] with length 3

        goroutine 1 [running]:
        main.process({0xc000012345, 0x3, 0x3})
        \t/app/main.go:27 +0x1d
        main.main()
        \t/app/main.go:12 +0x65

        goroutine 18 [chan receive]:
        net/http.(*conn).serve(0xc0001a2000, {0x7a5e40, 0xc0000b4000})
        \t/usr/local/go/src/net/http/server.go:2009 +0x5f4
        created by net/http.(*Server).Serve in goroutine 1
        \t/usr/local/go/src/net/http/server.go:3086 +0x5cb
        exit status 2
        """

    // MARK: modes

    func testJavaTraceWithNestedCausesIsOneRecord() {
        let f = makeFilter(MultilineSettings(mode: .java))
        let out = EmitCollector()
        _ = feed(f, batch("before\n" + Self.javaTrace + "\nafter 1\nafter 2\n"), out)
        XCTAssertEqual(out.messages, ["before", Self.javaTrace, "after 1"])
        XCTAssertEqual(out.records[1].offset, Int64("before\n".utf8.count), "the merged record keeps its first line's offset")
        f.flushAll(emit: out.emit)
        XCTAssertEqual(out.messages.last, "after 2")
    }

    func testJavaRecognisesExceptionHeadersAndIndentedFrames() {
        let r = MultilineRules(mode: .java, start: nil, cont: nil)
        func cont(_ s: String) -> Bool { Array(s.utf8).withUnsafeBytes { r.continues($0, after: .open) != nil } }
        XCTAssertTrue(cont("java.lang.IllegalStateException: boom"))
        XCTAssertTrue(cont("Exception in thread \"main\" java.lang.RuntimeException"))
        XCTAssertTrue(cont("Error: something"))
        XCTAssertTrue(cont("com.x.Outer$Inner$BadThingError"))
        XCTAssertTrue(cont("    at Object.<anonymous> (/app/index.js:3:9)"))
        XCTAssertTrue(cont("\tSuppressed: java.io.IOException: close failed"))
        XCTAssertTrue(cont("\t... 12 more"))
        XCTAssertFalse(cont("2024-05-01 INFO started"))
        XCTAssertFalse(cont("ErrorController started"))
        XCTAssertFalse(cont("Exceptional day"))
        XCTAssertFalse(cont("    indented prose"))
    }

    func testPythonTracebackWithChainedException() {
        let f = makeFilter(MultilineSettings(mode: .python))
        let out = EmitCollector()
        _ = feed(f, batch("INFO start\n" + Self.pythonTrace + "\n\nINFO next\n"), out)
        // Plain lines cannot be continued in python mode: shipped at once, nothing held after them.
        XCTAssertEqual(out.messages, ["INFO start", Self.pythonTrace, "INFO next"], "trailing blank line dropped")
        f.flushAll(emit: out.emit)
        XCTAssertEqual(out.messages.count, 3)
    }

    func testGoPanicWithSeveralGoroutines() {
        let f = makeFilter(MultilineSettings(mode: .go))
        let out = EmitCollector()
        _ = feed(f, batch("2024/05/01 10:00:00 listening on :8080\n" + Self.goPanic + "\n2024/05/01 10:00:05 restarted\n"), out)
        XCTAssertEqual(out.messages, ["2024/05/01 10:00:00 listening on :8080", Self.goPanic, "2024/05/01 10:00:05 restarted"])
    }

    func testCustomPatterns() throws {
        // start_pattern only: every other line continues.
        var f = makeFilter(MultilineSettings(mode: .custom, start: try ValuePattern(#"^\d{4}-\d\d-\d\d "#)))
        var out = EmitCollector()
        _ = feed(f, batch("2024-01-01 a\n  more\nstill more\n2024-01-02 b\n"), out)
        f.flushAll(emit: out.emit)
        XCTAssertEqual(out.messages, ["2024-01-01 a\n  more\nstill more", "2024-01-02 b"])

        // continue_pattern only.
        f = makeFilter(MultilineSettings(mode: .custom, continuation: try ValuePattern(#"^\s"#), separator: " | "))
        out = EmitCollector()
        _ = feed(f, batch("a\n  1\n  2\nb\nc\n  3\n"), out)
        f.flushAll(emit: out.emit)
        XCTAssertEqual(out.messages, ["a |   1 |   2", "b", "c |   3"])

        // Both: continuation lines join only records begun by a start line.
        f = makeFilter(MultilineSettings(mode: .custom, start: try ValuePattern("^BEGIN"), continuation: try ValuePattern("^\\+")))
        out = EmitCollector()
        _ = feed(f, batch("x\n+orphan\nBEGIN 1\n+a\n+b\ny\n"), out)
        f.flushAll(emit: out.emit)
        XCTAssertEqual(out.messages, ["x", "+orphan", "BEGIN 1\n+a\n+b", "y"])
    }

    func testStdoutAndStderrArePendingSeparately() {
        let f = makeFilter(MultilineSettings(mode: .java))
        let out = EmitCollector()
        let lines: [(String, LogStream)] = [
            ("ERROR request failed", .stderr),
            ("GET /a 200", .stdout),
            ("java.lang.IllegalStateException: boom", .stderr),
            ("GET /b 200", .stdout),
            ("\tat com.x.Y.z(Y.java:1)", .stderr),
            ("GET /c 200", .stdout),
            ("INFO recovered", .stderr),
        ]
        _ = feed(f, batch(lines), out)
        f.flushAll(emit: out.emit)
        let err = out.records.filter { $0.stream == .stderr }.map(\.message)
        let std = out.records.filter { $0.stream == .stdout }.map(\.message)
        XCTAssertEqual(err, ["ERROR request failed\njava.lang.IllegalStateException: boom\n\tat com.x.Y.z(Y.java:1)", "INFO recovered"])
        XCTAssertEqual(std, ["GET /a 200", "GET /b 200", "GET /c 200"])
    }

    // MARK: across batches, tokens, timeouts

    func testTraceAcrossBatchesHoldsTheFirstBatchTokenUntilDelivered() {
        let f = makeFilter(MultilineSettings(mode: .java))
        let out = EmitCollector()
        let t1 = feed(f, batch("one\nERROR failed\njava.lang.IllegalStateException: boom\n"), out)
        XCTAssertEqual(out.messages, ["one"])
        out.deliverAll()
        XCTAssertFalse(t1.isComplete, "a pending line's batch must not complete")

        let t2 = feed(f, batch("\tat a.b.C.d(C.java:1)\nnext\n", firstOffset: 100), out)
        XCTAssertEqual(out.messages, ["ERROR failed\njava.lang.IllegalStateException: boom\n\tat a.b.C.d(C.java:1)"])
        XCTAssertEqual(out.records[0].offset, 4)
        XCTAssertFalse(t1.isComplete, "emitted but not delivered yet")
        out.deliverAll()
        XCTAssertTrue(t1.isComplete, "the merged record was delivered")
        XCTAssertFalse(t2.isComplete, "`next` is still pending")

        f.flushAll(emit: out.emit)
        XCTAssertEqual(out.messages, ["next"])
        out.deliverAll()
        XCTAssertTrue(t2.isComplete)
    }

    func testFlushTimeoutShipsAfterSilence() {
        let f = makeFilter(MultilineSettings(mode: .java, flushTimeout: 1))
        let out = EmitCollector()
        let t = feed(f, batch("ERROR x\n\tat a.b(C.java:1)\n"), out)
        f.tick(now: clock.read(), emit: out.emit)
        XCTAssertTrue(out.messages.isEmpty)
        clock.advance(0.5)
        // A new line restarts the silence.
        _ = feed(f, batch("\tat a.c(C.java:2)\n", firstOffset: 50), out)
        clock.advance(0.7)
        f.tick(now: clock.read(), emit: out.emit)
        XCTAssertTrue(out.messages.isEmpty, "0.7 s since the last line")
        clock.advance(0.4)
        f.tick(now: clock.read(), emit: out.emit)
        XCTAssertEqual(out.messages, ["ERROR x\n\tat a.b(C.java:1)\n\tat a.c(C.java:2)"])
        XCTAssertFalse(t.isComplete)
        out.deliverAll()
        XCTAssertTrue(t.isComplete)
    }

    func testMaxBytesCutsFlagsAndDropsTheRest() {
        let stats = ComponentStats(component: "ml", kind: .filter)
        let f = makeFilter(MultilineSettings(mode: .java, maxBytes: 64), stats: stats)
        let out = EmitCollector()
        var text = "ERROR big\n"
        for i in 0..<20 { text += "\tat a.b.C.m\(i)(C.java:\(i))\n" }
        text += "INFO after\n"
        _ = feed(f, batch(text), out)
        f.flushAll(emit: out.emit)
        XCTAssertEqual(out.records.count, 2)
        XCTAssertEqual(out.records[0].message.utf8.count, 64)
        XCTAssertTrue(out.records[0].flags.contains(.truncated))
        XCTAssertEqual(out.records[1].message, "INFO after")
        XCTAssertEqual(stats.counters.first { $0.name == "records_truncated" }?.current, 1)
        // "ERROR big", two whole lines and the start of a third make the 64 bytes; the other 17 are dropped.
        XCTAssertEqual(stats.counters.first { $0.name == "records_merged" }?.current, 3)
        XCTAssertEqual(stats.counters.first { $0.name == "records_dropped" }?.current, 17)
    }

    func testMaxBytesCutsOnACharacterBoundary() {
        let f = makeFilter(MultilineSettings(mode: .custom, continuation: try? ValuePattern("^ "), maxBytes: 64))
        let out = EmitCollector()
        _ = feed(f, batch("start\n " + String(repeating: "é", count: 60) + "\n"), out)
        f.flushAll(emit: out.emit)
        let m = out.records[0].message
        XCTAssertLessThanOrEqual(m.utf8.count, 64)
        XCTAssertFalse(m.contains("\u{FFFD}"), "no split character")
    }

    func testLinesOfARotatedFileAndItsSuccessorAreNeverJoined() {
        let f = makeFilter(MultilineSettings(mode: .java))
        let out = EmitCollector()
        let old = SourceInfo(path: "/logs/app.log", sourceID: 0xA)
        let new = SourceInfo(path: "/logs/app.log", sourceID: 0xB)
        let t1 = feed(f, batch("ERROR x\njava.lang.IllegalStateException: boom\n", source: old, firstOffset: 500), out)
        let t2 = feed(f, batch("INFO fresh\nINFO after\n", source: new), out)
        XCTAssertEqual(out.messages, ["INFO fresh"], "the old file's trace is not closed by the new file's lines")
        XCTAssertFalse(t1.isComplete, "the old file's trace is still held")
        f.flushAll(emit: out.emit)
        XCTAssertEqual(Set(out.messages), ["INFO fresh", "ERROR x\njava.lang.IllegalStateException: boom", "INFO after"])
        let trace = out.records.first { $0.message.hasPrefix("ERROR x") }
        XCTAssertTrue(trace?.source === old)
        XCTAssertEqual(trace?.offset, 500)
        out.deliverAll()
        XCTAssertTrue(t1.isComplete)
        XCTAssertTrue(t2.isComplete)
    }

    /// A record open across a batch's end keeps that batch until the record is delivered (its input
    /// acknowledges in order, so it does not checkpoint past the record's first line meanwhile).
    func testAHeldRecordKeepsItsBatchesUntilItIsDelivered() {
        let f = makeFilter(MultilineSettings(mode: .java))
        let out = EmitCollector()
        // Batch 1: a line, then a trace that is still open at the batch's end (offset 9).
        let t1 = feed(f, batch("INFO one\nERROR x\njava.lang.IllegalStateException: boom\n"), out)
        XCTAssertEqual(out.messages, ["INFO one"])
        out.deliverAll()
        XCTAssertFalse(t1.isComplete, "the held trace keeps its first batch")
        // Batch 2: the trace goes on, then a new record starts (held again, at offset 100).
        let t2 = feed(f, batch("\tat a.b(C.java:1)\nINFO two\n", firstOffset: 80), out)
        XCTAssertEqual(out.messages, ["ERROR x\njava.lang.IllegalStateException: boom\n\tat a.b(C.java:1)"])
        XCTAssertFalse(t1.isComplete, "emitted, not yet delivered")
        out.deliverAll()
        XCTAssertTrue(t1.isComplete)
        XCTAssertFalse(t2.isComplete, "INFO two is held")
        f.flushAll(emit: out.emit)
        out.deliverAll()
        XCTAssertTrue(t2.isComplete)
    }

    func testDiscardAllAbandonsWhatIsHeld() {
        let f = makeFilter(MultilineSettings(mode: .java))
        let out = EmitCollector()
        let t1 = feed(f, batch("ERROR x\njava.lang.IllegalStateException: boom\n"), out)
        f.discardAll()
        XCTAssertFalse(t1.isComplete, "a record that was never delivered is never acknowledged")
        XCTAssertTrue(out.batches.isEmpty)
    }

    func testMergedRecordKeepsFieldsAndSharedFieldsStayValid() throws {
        let f = makeFilter(MultilineSettings(mode: .java))
        let out = EmitCollector()
        var b = batch("ERROR x\n\tat a.b(C.java:1)\n")
        b.sharedFields = Array(#""kubernetes":{"pod_name":"p"}"#.utf8)
        let fr = Array(#""level":"error""#.utf8).withUnsafeBytes { b.append(bytes: $0) }
        b.records[0].fields = fr
        _ = feed(f, b, out)
        f.flushAll(emit: out.emit)
        var enc: [UInt8] = []
        RecordEncoder.append(out.batches[0].batch, 0, to: &enc)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(enc)) as? [String: Any])
        XCTAssertEqual(obj["message"] as? String, "ERROR x\n\tat a.b(C.java:1)")
        XCTAssertEqual(obj["level"] as? String, "error")
        XCTAssertEqual((obj["kubernetes"] as? [String: Any])?["pod_name"] as? String, "p")
    }

    func testManyThreadsFeedingOneFilter() {
        let f = makeFilter(MultilineSettings(mode: .java))
        let count = Counter(name: "n", help: "")
        let clock = self.clock
        let batches: [[RecordBatch]] = (0..<8).map { n in
            let src = SourceInfo(path: "/logs/\(n).log", sourceID: UInt64(n))
            return (0..<50).map { k in batch("ERROR \(k)\n\tat a.b(C.java:\(k))\n", source: src, firstOffset: Int64(k * 100)) }
        }
        DispatchQueue.concurrentPerform(iterations: 8) { n in
            for b in batches[n] {
                f.process(b, ack: AckToken.none(), emit: { b, _ in count.add(b.count) })
                f.tick(now: clock.read(), emit: { b, _ in count.add(b.count) })
            }
        }
        f.flushAll(emit: { b, _ in count.add(b.count) })
        XCTAssertEqual(count.current, 8 * 50)
    }

    // MARK: config

    private func parse(_ yaml: String) -> (MultilineConfig?, [String]) {
        let diags = Diagnostics()
        guard let v = ConfigValue.parse(yaml: yaml, file: "t.yaml", environment: [:], diagnostics: diags) else { return (nil, ["yaml"]) }
        let reader = ConfigReader(v, context: "filter \"ml\" (multiline)", diagnostics: diags)
        guard case .filter(let parse) = MultilinePlugin.spec.configure else { return (nil, ["kind"]) }
        let c = parse(reader) as? MultilineConfig
        reader.finish()
        return (c, diags.items.map(\.message))
    }

    func testConfigDefaultsAndValidation() {
        let (c, errs) = parse("mode: python")
        XCTAssertEqual(errs, [])
        XCTAssertEqual(c?.settings.flushTimeout, 1)
        XCTAssertEqual(c?.settings.maxBytes, 1 << 20)
        XCTAssertEqual(c?.settings.separator, "\n")

        XCTAssertTrue(parse("mode: cobol").1.joined().contains("java | python | go | custom"))
        XCTAssertTrue(parse("flush_timeout: 1s").1.joined().contains("missing required key \"mode\""))
        XCTAssertTrue(parse("mode: custom").1.joined().contains("start_pattern"))
        XCTAssertTrue(parse("mode: java\nstart_pattern: x").1.joined().contains("only used with mode: custom"))
        XCTAssertTrue(parse("mode: custom\nstart_pattern: '(['").1.joined().contains("invalid regular expression"))
        XCTAssertTrue(parse("mode: go\nflush_timeout: 0s").1.joined().contains("too short (at least 1ms)"))
        let (cc, e2) = parse("mode: custom\nstart_pattern: '^\\d'\nmax_bytes: 64KiB\nseparator: ' '\nflush_timeout: 250ms")
        XCTAssertEqual(e2, [])
        XCTAssertEqual(cc?.settings.maxBytes, 65536)
        XCTAssertEqual(cc?.settings.separator, " ")
        XCTAssertEqual(cc?.settings.flushTimeout, 0.25)
    }
}
