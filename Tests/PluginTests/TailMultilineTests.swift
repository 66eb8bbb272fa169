import AnduinCore
import Foundation
import XCTest
import out_blackhole

@testable import filter_multiline
@testable import in_tail
@testable import Multiline

private enum TestConfig {
    static func load(_ yaml: String) throws -> AgentConfig {
        try AgentConfig.parse(yaml: yaml, file: "/etc/anduin/a.yaml", registry: PluginRegistry([TailPlugin.spec, BlackholePlugin.spec]),
                              environment: [:]).get()
    }
}

/// `multiline:` on the tail: the joiner behind the decoder, and the position it lets a checkpoint take.
final class TailMultilineTests: XCTestCase {
    /// Decodes `lines` (CRI) from `offset` on through a decoder and `j`, as `LineReader` does.
    /// Returns the offset after the last line.
    @discardableResult
    func feed(_ d: inout LineDecoder, _ j: inout LineJoiner, _ lines: [String], from offset: Int64 = 0,
              into b: inout RecordBatch, now: Double = 100) -> Int64 {
        var off = offset
        for l in lines {
            let bytes = Array(l.utf8)
            let before = b.records.count
            bytes.withUnsafeBytes { d.decode(line: $0, offset: off, truncated: false, readTime: 1, into: &b) }
            j.join(&b, from: before, now: now)
            off += Int64(bytes.count + 1)
        }
        return off
    }

    func cri(_ stream: String, _ text: String, _ tag: String = "F") -> String {
        "2026-12-01T10:00:00.000000001Z \(stream) \(tag) \(text)"
    }

    func texts(_ b: RecordBatch) -> [String] { b.records.map { String(decoding: b.bytes[$0.message], as: UTF8.self) } }

    static let trace = ["ERROR order 42 failed", "java.lang.IllegalStateException: boom",
                        "\tat com.example.A.call(A.java:1)", "\tat com.example.B.call(B.java:2)"]

    func testJavaTraceIsJoinedPerStreamWithItsFirstLinesOffset() {
        var d = LineDecoder(format: .cri, maxRecordBytes: 1 << 20)
        var j = LineJoiner(MultilineSettings(mode: .java))
        var b = RecordBatch(source: SourceInfo(path: "/x", sourceID: 1), inputName: "in")
        let lines = [cri("stderr", Self.trace[0]), cri("stdout", "GET / 200"), cri("stderr", Self.trace[1]),
                     cri("stderr", Self.trace[2]), cri("stdout", "GET /b 200"), cri("stderr", Self.trace[3])]
        let end = feed(&d, &j, lines, into: &b)
        // Only the first stdout line is closed (by the second); the trace and the last stdout line are open.
        XCTAssertEqual(texts(b), ["GET / 200"])
        XCTAssertEqual(b.records[0].stream, .stdout)
        XCTAssertEqual(j.openStart, 0, "the trace's first line")
        // A line that does not continue the trace closes it, in the same batch, before that line.
        feed(&d, &j, [cri("stderr", "INFO next")], from: end, into: &b)
        XCTAssertEqual(texts(b), ["GET / 200", Self.trace.joined(separator: "\n")])
        XCTAssertEqual(b.records[1].offset, 0)
        XCTAssertEqual(b.records[1].stream, .stderr)
        XCTAssertEqual(j.openStart, Int64(lines[0...3].reduce(0) { $0 + $1.utf8.count + 1 }), "the open stdout line")
        XCTAssertEqual(j.takeStats().merged, 3)
    }

    func testCRIPartialLinesAreJoinedWholeAndTheRecordStartsAtThePartial() {
        var d = LineDecoder(format: .cri, maxRecordBytes: 1 << 20)
        var j = LineJoiner(MultilineSettings(mode: .java))
        var b = RecordBatch(source: SourceInfo(path: "/x", sourceID: 1), inputName: "in")
        let end = feed(&d, &j, [cri("stderr", "ERROR a ", "P"), cri("stderr", "long line"),
                                cri("stderr", "\tat x.Y.z(Y.java:1)")], into: &b)
        XCTAssertEqual(j.openStart, 0)
        feed(&d, &j, [cri("stderr", "next")], from: end, into: &b)
        XCTAssertEqual(texts(b), ["ERROR a long line\n\tat x.Y.z(Y.java:1)"])
        XCTAssertEqual(b.records[0].offset, 0)
    }

    func testPythonOrdinaryLinesShipAtOnceAndTracebacksWait() {
        var d = LineDecoder(format: .raw, maxRecordBytes: 1 << 20)
        var j = LineJoiner(MultilineSettings(mode: .python))
        var b = RecordBatch(source: SourceInfo(path: "/x", sourceID: 1), inputName: "in")
        feed(&d, &j, ["plain", "Traceback (most recent call last):", "  File \"a.py\", line 1, in f", "ValueError: bad", "after"], into: &b)
        XCTAssertEqual(texts(b), ["plain", "Traceback (most recent call last):\n  File \"a.py\", line 1, in f\nValueError: bad", "after"])
        XCTAssertNil(j.openStart, "an ordinary python line closes at once: nothing holds the checkpoint")
    }

    func testFlushTimeoutShipsOnlyRecordsWaitingLongEnough() {
        var d = LineDecoder(format: .cri, maxRecordBytes: 1 << 20)
        var j = LineJoiner(MultilineSettings(mode: .java, flushTimeout: 1))
        var b = RecordBatch(source: SourceInfo(path: "/x", sourceID: 1), inputName: "in")
        feed(&d, &j, [cri("stderr", Self.trace[0]), cri("stderr", Self.trace[1])], into: &b, now: 10)
        feed(&d, &j, [cri("stdout", "later")], from: 1000, into: &b, now: 10.5)
        j.flush(into: &b, now: 10.9)
        XCTAssertTrue(b.records.isEmpty)
        XCTAssertEqual(j.oldestLine, 10)
        j.flush(into: &b, now: 11.2)
        XCTAssertEqual(texts(b), [Self.trace[0...1].joined(separator: "\n")])
        XCTAssertEqual(j.openStart, 1000, "the younger stdout record stays open")
        j.flush(into: &b, now: 11.2, all: true)
        XCTAssertEqual(texts(b).last, "later")
        XCTAssertNil(j.openStart)
        XCTAssertNil(j.oldestLine)
    }

    /// A record whose flush_timeout passed waits while the other stream holds a record begun before
    /// its last line (or the decoder a partial line): flushed alone, the checkpoint would stay before
    /// it and a crash would replay it. They go out together.
    func testATimedOutRecordWaitsForAnOpenRecordBegunBeforeItsLastLine() {
        var d = LineDecoder(format: .cri, maxRecordBytes: 1 << 20)
        var j = LineJoiner(MultilineSettings(mode: .java, flushTimeout: 1))
        var b = RecordBatch(source: SourceInfo(path: "/x", sourceID: 1), inputName: "in")
        var off = feed(&d, &j, [cri("stderr", "ERROR a"), cri("stdout", "ERROR b"), cri("stderr", "\tat x.Y.z(Y.java:1)")], into: &b, now: 10)
        off = feed(&d, &j, [cri("stdout", "\tat p.Q.r(Q.java:2)")], from: off, into: &b, now: 10.8)
        j.flush(into: &b, now: 11.2)
        XCTAssertEqual(texts(b), [], "the stderr trace waits for the stdout one, begun inside it")
        XCTAssertEqual(j.openStart, 0)
        j.flush(into: &b, now: 11.9)
        XCTAssertEqual(texts(b), ["ERROR a\n\tat x.Y.z(Y.java:1)", "ERROR b\n\tat p.Q.r(Q.java:2)"])
        XCTAssertNil(j.openStart)

        // A partial line of the decoder begun before the record's last line holds it too.
        feed(&d, &j, [cri("stderr", "ERROR c"), cri("stderr", "\tat x.Y.z(Y.java:3)")], from: off, into: &b, now: 20)
        j.flush(into: &b, now: 22, pendingFrom: off)
        XCTAssertEqual(b.records.count, 2)
        j.flush(into: &b, now: 22, pendingFrom: nil)
        XCTAssertEqual(texts(b).last, "ERROR c\n\tat x.Y.z(Y.java:3)")
    }

    func testMaxBytesCutsTheRecordAndDropsTheRestOfItsLines() {
        var d = LineDecoder(format: .raw, maxRecordBytes: 1 << 20)
        var j = LineJoiner(MultilineSettings(mode: .java, maxBytes: 64))
        var b = RecordBatch(source: SourceInfo(path: "/x", sourceID: 1), inputName: "in")
        let frames = (0..<6).map { "\tat com.example.Frame.call\($0)(F.java:\($0))" }
        feed(&d, &j, ["ERROR boom"] + frames + ["next"], into: &b)
        XCTAssertEqual(b.records.count, 1)
        XCTAssertEqual(b.records[0].message.count, 64)
        XCTAssertTrue(b.records[0].flags.contains(.truncated))
        XCTAssertEqual(j.openStart.map { $0 > 0 }, true, "\"next\" is open, not a dropped frame")
        let s = j.takeStats()
        XCTAssertEqual(s.truncated, 1)
        XCTAssertEqual(s.dropped, 4)
    }

    /// A line taken into a record leaves the batch's arena: a batch holds each shipped byte once.
    func testJoinedLinesLeaveNoSecondCopyInTheBatch() {
        var d = LineDecoder(format: .raw, maxRecordBytes: 1 << 20)
        var j = LineJoiner(MultilineSettings(mode: .java))
        var b = RecordBatch(source: SourceInfo(path: "/x", sourceID: 1), inputName: "in")
        for round in 0..<3 {
            feed(&d, &j, Self.trace + ["INFO \(round)"], from: Int64(round * 1000), into: &b)
        }
        XCTAssertEqual(b.records.count, 5, "three traces and two INFO lines (the last one is open)")
        XCTAssertEqual(b.bytes.count, b.records.reduce(0) { $0 + $1.message.count })
    }

    func testBlankLinesInsideATraceStayAndTrailingOnesAreDropped() {
        var d = LineDecoder(format: .raw, maxRecordBytes: 1 << 20)
        var j = LineJoiner(MultilineSettings(mode: .go))
        var b = RecordBatch(source: SourceInfo(path: "/x", sourceID: 1), inputName: "in")
        feed(&d, &j, ["panic: boom", "", "goroutine 1 [running]:", "main.main()", "", "INFO after"], into: &b)
        XCTAssertEqual(texts(b), ["panic: boom\n\ngoroutine 1 [running]:\nmain.main()", "INFO after"])
    }

    /// The position a checkpoint may take never passes the first line of a record still open,
    /// whatever was read after it on either stream.
    func testTheCheckpointNeverPassesAnOpenRecord() throws {
        let path = NSTemporaryDirectory() + "anduin-tail-ml-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log"
        FileManager.default.createFile(atPath: path, contents: Data())
        defer { unlink(path) }
        let fd = open(path, O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let f = TailedFile(id: 0, key: FileKey(device: 0, inode: 0), path: path, realPath: path, fd: fd, offset: 0,
                           format: .cri, maxLineBytes: 1 << 20, multiline: MultilineSettings(mode: .java))
        var b = RecordBatch(source: SourceInfo(path: path, sourceID: 1), inputName: "in")
        let head = [cri("stdout", "GET / 200"), cri("stderr", Self.trace[0]), cri("stderr", Self.trace[1])]
        var off = feed(&f.decoder, &f.joiner!, head, into: &b)
        let traceStart = Int64(head[0].utf8.count + 1)
        for i in 0..<50 {
            // stdout keeps logging, each line closing the one before; the trace stays open.
            off = feed(&f.decoder, &f.joiner!, [cri("stdout", "GET /\(i) 200")], from: off, into: &b)
            f.readOffset = off
            XCTAssertEqual(f.position.resume, traceStart, "line \(i)")
            XCTAssertEqual(f.position.delivered, off)
        }
        off = feed(&f.decoder, &f.joiner!, [cri("stderr", Self.trace[2]), cri("stderr", "INFO done")], from: off, into: &b)
        f.readOffset = off
        XCTAssertGreaterThan(f.position.resume, traceStart, "closed: the checkpoint may pass it")
        XCTAssertTrue(texts(b).contains(Self.trace[0...2].joined(separator: "\n")))
    }

    func testOptionsAreReadFromTheTailsMultilineGroup() throws {
        let cfg = try TestConfig.load("""
            inputs:
              in: {type: tail, paths: ["/tmp/x*.log"], multiline: {mode: python, flush_timeout: 2s, max_bytes: 4KiB}}
            outputs:
              out: {type: blackhole, from: [in]}
            """)
        let tail = try XCTUnwrap(cfg.components.compactMap { c -> TailConfig? in
            if case .input(let i) = c.config { return i as? TailConfig } else { return nil }
        }.first)
        let ml = try XCTUnwrap(tail.multiline)
        XCTAssertEqual(ml.mode, .python)
        XCTAssertEqual(ml.flushTimeout, 2)
        XCTAssertEqual(ml.maxBytes, 4096)
        XCTAssertThrowsError(try TestConfig.load("""
            inputs:
              in: {type: tail, paths: ["/tmp/x*.log"], multiline: {mode: cobol}}
            outputs:
              out: {type: blackhole, from: [in]}
            """)) { e in XCTAssertTrue("\(e)".contains("unknown mode"), "\(e)") }
    }

    /// The decoder fuzz entry (decoder + joiner) over the fuzz seed corpora and random bytes: its
    /// preconditions hold (a failure traps).
    func testTheFuzzEntryHoldsOnTheSeedCorporaAndRandomBytes() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus")
        var inputs: [[UInt8]] = []
        for dir in ["FuzzCRI", "FuzzDocker"] {
            let d = root.appendingPathComponent(dir)
            for name in (try? FileManager.default.contentsOfDirectory(atPath: d.path)) ?? [] {
                if let data = FileManager.default.contents(atPath: d.appendingPathComponent(name).path) { inputs.append(Array(data)) }
            }
        }
        XCTAssertFalse(inputs.isEmpty, "no seed corpus under \(root.path)")
        var rng = JoinerRandom(seed: 7)
        let pieces = ["\n", "\tat x.Y(Z.java:1)", "panic: x", "Traceback (most recent call last):", "  y", "E: z", " ", "\u{FF}",
                      "2026-12-01T10:00:00Z stderr P ", "2026-12-01T10:00:00Z stdout F ", "{\"log\":\"a\\n\",\"stream\":\"stderr\"}"]
        for _ in 0..<300 {
            inputs.append(Array((0..<Int(rng.next() % 40)).map { _ in pieces[Int(rng.next() % UInt64(pieces.count))] }.joined().utf8))
        }
        for bytes in inputs {
            for format in LogFormat.allCases {
                bytes.withUnsafeBytes { FuzzLines.decode($0, format: format) }
            }
        }
    }

    /// The tail's joiner and the filter apply the same rules: random CRI files (traces, plain lines,
    /// blank lines, partial lines, on both streams; records cut at a small max_bytes) give the same
    /// records, in every mode.
    func testTheJoinerAgreesWithTheFilterOnRandomFiles() {
        var rng = JoinerRandom(seed: 0x5eed)
        let vocabulary: [String] = [
            "ERROR order failed", "java.lang.IllegalStateException: boom", "\tat com.example.A.call(A.java:1)",
            "\t... 12 more", "Caused by: java.io.IOException: gone", "INFO plain line", "", "   ",
            "Traceback (most recent call last):", "  File \"a.py\", line 1, in f", "ValueError: bad",
            "During handling of the above exception, another exception occurred:",
            "panic: runtime error", "goroutine 1 [running]:", "main.main()", "\t/app/main.go:12 +0x65",
            "level=info msg=ok", "é" + String(repeating: "ü", count: 40),
        ]
        for mode in [MultilineMode.java, .python, .go, .custom] {
            for round in 0..<40 {
                let settings = MultilineSettings(mode: mode, start: mode == .custom ? try? ValuePattern("^[A-Z]") : nil,
                                                 maxBytes: 64 + Int(rng.next() % 200))
                var lines: [String] = []
                for _ in 0..<(1 + Int(rng.next() % 60)) {
                    let stream = rng.next() % 2 == 0 ? "stdout" : "stderr"
                    let text = vocabulary[Int(rng.next() % UInt64(vocabulary.count))]
                    if rng.next() % 10 == 0 {
                        lines.append(cri(stream, "part ", "P"))
                    }
                    lines.append(cri(stream, text))
                }
                // The tail: decoder and joiner, then everything still open flushed.
                var d = LineDecoder(format: .cri, maxRecordBytes: 1 << 20)
                var j = LineJoiner(settings)
                var tail = RecordBatch(source: SourceInfo(path: "/x", sourceID: 1), inputName: "in")
                feed(&d, &j, lines, into: &tail)
                let before = tail.records.count
                d.flushPending(into: &tail)
                j.join(&tail, from: before, now: 100)
                j.flush(into: &tail, now: 100, all: true)
                // The filter: the same decoded lines in one batch.
                var plain = LineDecoder(format: .cri, maxRecordBytes: 1 << 20)
                var decoded = RecordBatch(source: SourceInfo(path: "/x", sourceID: 1), inputName: "in")
                var off: Int64 = 0
                for l in lines {
                    let bytes = Array(l.utf8)
                    bytes.withUnsafeBytes { plain.decode(line: $0, offset: off, truncated: false, readTime: 1, into: &decoded) }
                    off += Int64(bytes.count + 1)
                }
                plain.flushPending(into: &decoded)
                let stats = ComponentStats(component: "ml", kind: .filter)
                let ctx = ComponentContext(name: "ml", kind: .filter, dataDirectory: "/tmp", logger: .init(label: "test"), stats: stats)
                let filter = MultilineFilter(config: MultilineConfig(settings), context: ctx)
                var filtered: [(Int64, LogStream, String, Bool)] = []
                let collect: (RecordBatch, AckToken) -> Void = { b, _ in
                    for r in b.records {
                        filtered.append((r.offset, r.stream, String(decoding: b.bytes[r.message], as: UTF8.self), r.flags.contains(.truncated)))
                    }
                }
                filter.process(decoded, ack: .none(), emit: collect)
                filter.flushAll(emit: collect)
                let joined = tail.records.map { ($0.offset, $0.stream, String(decoding: tail.bytes[$0.message], as: UTF8.self),
                                                 $0.flags.contains(.truncated)) }
                func key(_ x: (Int64, LogStream, String, Bool)) -> String { "\(x.0) \(x.1) \(x.3) \(x.2.debugDescription)" }
                XCTAssertEqual(joined.map(key).sorted(), filtered.map(key).sorted(), "\(mode) round \(round):\n\(lines.joined(separator: "\n"))")
            }
        }
    }
}

/// A small seeded generator (SplitMix64), so a failing case is the same at every run.
private struct JoinerRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
