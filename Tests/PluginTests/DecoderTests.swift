import XCTest
import Foundation
import AnduinCore
@testable import in_tail

final class DecoderTests: XCTestCase {
    private let source = SourceInfo(path: "/var/log/containers/x.log", sourceID: 1)
    private let readTime: Int64 = 5_000_000_000

    private func newBatch() -> RecordBatch { RecordBatch(source: source, inputName: "tail") }

    /// Feeds `lines` (offsets computed as in a file with "\n" endings) and returns the batch.
    @discardableResult
    private func feed(_ d: inout LineDecoder, _ lines: [[UInt8]], batch: inout RecordBatch, startOffset: Int64 = 0,
                      truncated: Bool = false) -> Int64 {
        var off = startOffset
        for l in lines {
            l.withUnsafeBytes { d.decode(line: $0, offset: off, truncated: truncated, readTime: readTime, into: &batch) }
            off += Int64(l.count + 1)
        }
        return off
    }

    private func feed(_ d: inout LineDecoder, _ lines: [String], batch: inout RecordBatch) {
        feed(&d, lines.map { Array($0.utf8) }, batch: &batch)
    }

    private func message(_ b: RecordBatch, _ i: Int) -> [UInt8] { Array(b.bytes[b.records[i].message]) }
    private func text(_ b: RecordBatch, _ i: Int) -> String { String(decoding: message(b, i), as: UTF8.self) }

    private func docker(_ log: String, _ stream: String = "stdout", _ time: String = "2024-01-02T03:04:05.123456789Z") -> String {
        // `log` is given already JSON-escaped.
        #"{"log":""# + log + #"","stream":""# + stream + #"","time":""# + time + #""}"#
    }

    private let t0: Int64 = 1_704_164_645_123_456_789

    // MARK: docker

    func testDockerFullLine() {
        var d = LineDecoder(format: .docker, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&d, [docker(#"hello world\n"#), docker(#"err\r\n"#, "stderr", "2024-01-02T03:04:06Z")], batch: &b)
        XCTAssertEqual(b.count, 2)
        XCTAssertEqual(text(b, 0), "hello world")
        XCTAssertEqual(b.records[0].stream, .stdout)
        XCTAssertEqual(b.records[0].timestamp, t0)
        XCTAssertEqual(b.records[0].offset, 0)
        XCTAssertEqual(b.records[0].flags, [])
        XCTAssertEqual(text(b, 1), "err")
        XCTAssertEqual(b.records[1].stream, .stderr)
        XCTAssertEqual(b.records[1].timestamp, 1_704_164_646_000_000_000)
        XCTAssertEqual(b.records[1].offset, Int64(docker(#"hello world\n"#).utf8.count + 1))
        XCTAssertNil(d.pendingStart)
        let s = d.takeStats()
        XCTAssertEqual(s.lines, 2)
        XCTAssertEqual(s.decodeErrors, 0)
        XCTAssertEqual(d.takeStats().lines, 0)
    }

    func testDockerKeyOrderAndExtraKeys() {
        var d = LineDecoder(format: .docker, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&d, [#" { "time" : "2024-01-02T03:04:05.123456789Z", "attrs":{"a":[1,"}"]}, "stream":"stderr" , "log" : "x\n" } "#,
                  #"{"log":"no time\n","stream":"stdout"}"#], batch: &b)
        XCTAssertEqual(b.count, 2)
        XCTAssertEqual(text(b, 0), "x")
        XCTAssertEqual(b.records[0].stream, .stderr)
        XCTAssertEqual(b.records[0].timestamp, t0)
        XCTAssertEqual(text(b, 1), "no time")
        XCTAssertEqual(b.records[1].timestamp, readTime)
        XCTAssertEqual(d.takeStats().decodeErrors, 0)
    }

    func testDockerEscapedJSONInLog() {
        var d = LineDecoder(format: .docker, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&d, [#"{"log":"{\"level\":\"info\",\"msg\":\"a\\tb \u00e9 \ud83d\ude00\"}\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}"#],
             batch: &b)
        XCTAssertEqual(text(b, 0), #"{"level":"info","msg":"a\tb é 😀"}"#)
        var out: [UInt8] = []
        RecordEncoder.appendNDJSON(b, to: &out)
        let obj = try? JSONSerialization.jsonObject(with: Data(out.dropLast())) as? [String: Any]
        XCTAssertEqual(obj?["message"] as? String, #"{"level":"info","msg":"a\tb é 😀"}"#)
        XCTAssertEqual(obj?["stream"] as? String, "stdout")
        XCTAssertEqual(obj?["@timestamp"] as? String, "2024-01-02T03:04:05.123456789Z")
    }

    func testDockerPartialMerge() {
        var d = LineDecoder(format: .docker, maxRecordBytes: 1 << 20)
        var b = newBatch()
        let l1 = docker("part one ", "stdout", "2024-01-02T03:04:05.123456789Z")
        let l2 = docker("part two ", "stdout", "2024-01-02T03:04:06Z")
        let l3 = docker(#"end\n"#, "stdout", "2024-01-02T03:04:07Z")
        var off = feed(&d, [Array(l1.utf8)], batch: &b, startOffset: 100)
        XCTAssertEqual(b.count, 0)
        XCTAssertEqual(d.pendingStart, 100)
        XCTAssertNotNil(d.pendingSince)
        XCTAssertTrue(b.bytes.isEmpty, "partial parts must not stay in the arena")
        off = feed(&d, [Array(l2.utf8)], batch: &b, startOffset: off)
        XCTAssertEqual(b.count, 0)
        XCTAssertEqual(d.pendingStart, 100)
        feed(&d, [Array(l3.utf8)], batch: &b, startOffset: off)
        XCTAssertEqual(b.count, 1)
        XCTAssertEqual(text(b, 0), "part one part two end")
        XCTAssertEqual(b.records[0].offset, 100)
        XCTAssertEqual(b.records[0].timestamp, t0)
        XCTAssertEqual(b.records[0].stream, .stdout)
        XCTAssertNil(d.pendingStart)
        XCTAssertNil(d.pendingSince)
        let s = d.takeStats()
        XCTAssertEqual(s.lines, 3)
        XCTAssertEqual(s.partsMerged, 2)
    }

    func testDockerPartialsAcrossBatches() {
        var d = LineDecoder(format: .docker, maxRecordBytes: 1 << 20)
        var b1 = newBatch()
        feed(&d, [docker("a"), docker("b")], batch: &b1)
        XCTAssertEqual(b1.count, 0)
        var b2 = newBatch()
        b2.bytes = Array("existing".utf8)
        feed(&d, [docker(#"c\r\n"#)], batch: &b2)
        XCTAssertEqual(b2.count, 1)
        XCTAssertEqual(text(b2, 0), "abc")
        XCTAssertEqual(b2.records[0].message.lowerBound, 8)
        XCTAssertEqual(b2.records[0].offset, 0)
    }

    func testInterleavedStreams() {
        var d = LineDecoder(format: .docker, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&d, [docker("o1 ", "stdout"), docker("e1 ", "stderr"), docker(#"full out\n"#, "stdout"),
                  docker("e2 ", "stderr")], batch: &b)
        XCTAssertEqual(b.count, 1)
        XCTAssertEqual(text(b, 0), "o1 full out")
        XCTAssertEqual(b.records[0].stream, .stdout)
        XCTAssertEqual(b.records[0].offset, 0)
        let errStart = Int64(docker("o1 ", "stdout").utf8.count + 1)
        XCTAssertEqual(d.pendingStart, errStart)
        feed(&d, [docker(#"e3\n"#, "stderr")], batch: &b)
        XCTAssertEqual(b.count, 2)
        XCTAssertEqual(text(b, 1), "e1 e2 e3")
        XCTAssertEqual(b.records[1].stream, .stderr)
        XCTAssertEqual(b.records[1].offset, errStart)
        XCTAssertNil(d.pendingStart)
    }

    func testPendingStartIsMinOverStreams() {
        var d = LineDecoder(format: .cri, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&d, [Array("2024-01-02T03:04:05Z stderr P e1".utf8)], batch: &b, startOffset: 50)
        feed(&d, [Array("2024-01-02T03:04:05Z stdout P o1".utf8)], batch: &b, startOffset: 200)
        XCTAssertEqual(d.pendingStart, 50)
        feed(&d, [Array("2024-01-02T03:04:05Z stderr F e2".utf8)], batch: &b, startOffset: 300)
        XCTAssertEqual(d.pendingStart, 200)
        XCTAssertEqual(text(b, 0), "e1e2")
    }

    func testFlushPending() {
        var d = LineDecoder(format: .docker, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&d, [docker("out part", "stdout"), docker("err part", "stderr"), docker(" more", "stdout")], batch: &b)
        XCTAssertEqual(b.count, 0)
        d.flushPending(into: &b)
        XCTAssertEqual(b.count, 2)
        // Oldest first.
        XCTAssertEqual(text(b, 0), "out part more")
        XCTAssertEqual(b.records[0].offset, 0)
        XCTAssertEqual(text(b, 1), "err part")
        XCTAssertEqual(b.records[1].stream, .stderr)
        XCTAssertNil(d.pendingStart)
        XCTAssertNil(d.pendingSince)
        d.flushPending(into: &b)
        XCTAssertEqual(b.count, 2)
        // The stream starts afresh afterwards.
        feed(&d, [docker(#"next\n"#)], batch: &b)
        XCTAssertEqual(text(b, 2), "next")
    }

    func testReset() {
        var d = LineDecoder(format: .auto, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&d, [docker("partial")], batch: &b)
        XCTAssertEqual(d.resolvedFormat, .docker)
        XCTAssertNotNil(d.pendingStart)
        d.reset()
        XCTAssertNil(d.pendingStart)
        XCTAssertEqual(d.resolvedFormat, .auto)
        feed(&d, ["plain text"], batch: &b)
        XCTAssertEqual(d.resolvedFormat, .raw)
        XCTAssertEqual(b.count, 1)
        XCTAssertEqual(text(b, 0), "plain text")
    }

    // MARK: CRI

    func testCRIFull() {
        var d = LineDecoder(format: .cri, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&d, ["2024-01-02T03:04:05.123456789Z stdout F hello world",
                  "2024-01-02T04:04:05.123456789+01:00 stderr F x y  z ",
                  "2024-01-02T03:04:05.123456789Z stdout F:a:b flags",
                  "2024-01-02T03:04:05.123456789Z stdout F crlf\r"], batch: &b)
        XCTAssertEqual(b.count, 4)
        XCTAssertEqual(text(b, 0), "hello world")
        XCTAssertEqual(b.records[0].stream, .stdout)
        XCTAssertEqual(b.records[0].timestamp, t0)
        XCTAssertEqual(text(b, 1), "x y  z ")
        XCTAssertEqual(b.records[1].stream, .stderr)
        XCTAssertEqual(b.records[1].timestamp, t0)
        XCTAssertEqual(text(b, 2), "flags")
        XCTAssertEqual(text(b, 3), "crlf")
        XCTAssertEqual(d.takeStats().decodeErrors, 0)
    }

    func testCRIEmptyMessage() {
        var d = LineDecoder(format: .cri, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&d, ["2024-01-02T03:04:05Z stdout F", "2024-01-02T03:04:05Z stdout F "], batch: &b)
        XCTAssertEqual(b.count, 2)
        XCTAssertEqual(text(b, 0), "")
        XCTAssertEqual(text(b, 1), "")
        XCTAssertEqual(b.records[0].stream, .stdout)
        XCTAssertEqual(d.takeStats().decodeErrors, 0)
    }

    func testCRIPartialMerge() {
        var d = LineDecoder(format: .cri, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&d, ["2024-01-02T03:04:05.123456789Z stdout P aaa",
                  "2024-01-02T03:04:06Z stderr F err",
                  "2024-01-02T03:04:07Z stdout P bbb",
                  "2024-01-02T03:04:08Z stdout F ccc"], batch: &b)
        XCTAssertEqual(b.count, 2)
        XCTAssertEqual(text(b, 0), "err")
        XCTAssertEqual(b.records[0].stream, .stderr)
        XCTAssertEqual(text(b, 1), "aaabbbccc")
        XCTAssertEqual(b.records[1].offset, 0)
        XCTAssertEqual(b.records[1].timestamp, t0)
        XCTAssertEqual(b.records[1].stream, .stdout)
        XCTAssertEqual(d.takeStats().partsMerged, 2)
    }

    // MARK: cap and truncation

    func testCapOnMergedRecord() {
        var d = LineDecoder(format: .cri, maxRecordBytes: 10)
        var b = newBatch()
        feed(&d, ["2024-01-02T03:04:05Z stdout P 123456",
                  "2024-01-02T03:04:05Z stdout P 789abc",
                  "2024-01-02T03:04:05Z stdout P def",
                  "2024-01-02T03:04:05Z stdout F ghi",
                  "2024-01-02T03:04:05Z stdout F short"], batch: &b)
        XCTAssertEqual(b.count, 2)
        XCTAssertEqual(text(b, 0), "123456789a")
        XCTAssertTrue(b.records[0].flags.contains(.truncated))
        XCTAssertEqual(text(b, 1), "short")
        XCTAssertEqual(b.records[1].flags, [])
        XCTAssertEqual(d.takeStats().truncated, 1)
    }

    func testCapOnSingleRecordsAndUTF8Boundary() {
        var d = LineDecoder(format: .docker, maxRecordBytes: 5)
        var b = newBatch()
        // "abcdé": é is 2 bytes and would straddle the cap, so it goes whole.
        feed(&d, [docker(#"abcd\u00e9f\n"#), docker(#"abc\n"#)], batch: &b)
        XCTAssertEqual(text(b, 0), "abcd")
        XCTAssertTrue(b.records[0].flags.contains(.truncated))
        XCTAssertEqual(text(b, 1), "abc")
        XCTAssertEqual(b.records[1].flags, [])

        var r = LineDecoder(format: .raw, maxRecordBytes: 4)
        var rb = newBatch()
        feed(&r, ["0123456789", "ab€", "abcd"], batch: &rb)
        XCTAssertEqual(text(rb, 0), "0123")
        XCTAssertEqual(text(rb, 1), "ab")
        XCTAssertEqual(text(rb, 2), "abcd")
        XCTAssertEqual(rb.records[0].flags, .truncated)
        XCTAssertEqual(rb.records[2].flags, [])
    }

    func testTruncatedLineFlag() {
        var r = LineDecoder(format: .raw, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&r, [Array("cut here\r".utf8)], batch: &b, truncated: true)
        XCTAssertEqual(text(b, 0), "cut here\r")
        XCTAssertEqual(b.records[0].flags, .truncated)

        var c = LineDecoder(format: .cri, maxRecordBytes: 1 << 20)
        var cb = newBatch()
        feed(&c, [Array("2024-01-02T03:04:05Z stdout P aaa".utf8)], batch: &cb, truncated: true)
        feed(&c, [Array("2024-01-02T03:04:05Z stdout F bbb".utf8)], batch: &cb)
        XCTAssertEqual(text(cb, 0), "aaabbb")
        XCTAssertEqual(cb.records[0].flags, .truncated)
        XCTAssertEqual(c.takeStats().truncated, 1)

        var out: [UInt8] = []
        RecordEncoder.appendNDJSON(cb, to: &out)
        XCTAssertTrue(String(decoding: out, as: UTF8.self).contains(#""truncated":true"#))
    }

    // MARK: invalid input

    func testInvalidLinesBecomeRaw() {
        var d = LineDecoder(format: .docker, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&d, ["not json", #"{"log":"x\n","stream":"stdout","time":"yesterday"}"#, #"{"stream":"stdout"}"#,
                  #"{"log":"unterminated"#, #"{"log":"x\q\n"}"#, #"{"log":1}"#, #"{"log":"a\n"} trailing"#,
                  docker(#"ok\n"#)], batch: &b)
        XCTAssertEqual(b.count, 8)
        XCTAssertEqual(text(b, 0), "not json")
        XCTAssertEqual(b.records[0].stream, .none)
        XCTAssertEqual(b.records[0].timestamp, readTime)
        // An invalid time is not an invalid line (issue 13): message and stream kept, read time.
        XCTAssertEqual(text(b, 1), "x")
        XCTAssertEqual(b.records[1].stream, .stdout)
        XCTAssertEqual(b.records[1].timestamp, readTime)
        XCTAssertEqual(text(b, 3), #"{"log":"unterminated"#)
        XCTAssertEqual(text(b, 7), "ok")
        let s = d.takeStats()
        XCTAssertEqual(s.decodeErrors, 6)
        XCTAssertEqual(s.invalidTimes, 1)
        XCTAssertEqual(s.lines, 8)
        // Failed decodes leave nothing stray in the arena.
        let total = b.records.reduce(0) { $0 + $1.message.count }
        XCTAssertEqual(total, b.bytes.count)

        var c = LineDecoder(format: .cri, maxRecordBytes: 1 << 20)
        var cb = newBatch()
        feed(&c, ["2024-01-02T03:04:05Z stdout", "2024-01-02T03:04:05Z stdin F x", "2024-01-02T03:04:05Z stdout X x",
                  "bad-time stdout F x", "2024-01-02T03:04:05Z  stdout F x", "2024-01-02T03:04:05Z stdout  F x",
                  "2024-01-02T03:04:05Z stdout F ok"], batch: &cb)
        XCTAssertEqual(cb.count, 7)
        XCTAssertEqual(text(cb, 0), "2024-01-02T03:04:05Z stdout")
        XCTAssertEqual(cb.records[0].stream, .none)
        XCTAssertEqual(text(cb, 3), "x")
        XCTAssertEqual(cb.records[3].stream, .stdout)
        XCTAssertEqual(cb.records[3].timestamp, readTime)
        XCTAssertEqual(text(cb, 6), "ok")
        let cs = c.takeStats()
        XCTAssertEqual(cs.decodeErrors, 5)
        XCTAssertEqual(cs.invalidTimes, 1)
    }

    /// Issue 13: every valid RFC 3339 time decodes (clamped to Int64 nanoseconds); an invalid one
    /// keeps the message and stream with the read time, and never ships the envelope.
    func testTimesOutsideNanosecondRangeAndInvalidTimes() {
        var d = LineDecoder(format: .docker, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&d, [docker(#"first\n"#, "stdout", "0001-01-01T00:00:00Z"),
                  docker(#"far\n"#, "stderr", "9999-12-31T23:59:59.999999999Z"),
                  docker(#"mid\n"#, "stdout", "2999-06-01T00:00:00+02:00"),
                  docker(#"bad\n"#, "stderr", "2024-13-45T99:00:00Z"),
                  #"{"log":"num\n","stream":"stdout","time":1704164645}"#,
                  #"{"log":"esc\n","stream":"stdout","time":"2024-01-02T03:04:05\u005a"}"#,
                  #"{"log":"obj\n","time":{"a":[1,2]},"stream":"stderr"}"#,
                  #"{"log":"null\n","stream":"stdout","time":null}"#], batch: &b)
        XCTAssertEqual(b.count, 8)
        XCTAssertEqual((0..<8).map { text(b, $0) }, ["first", "far", "mid", "bad", "num", "esc", "obj", "null"])
        XCTAssertEqual(b.records.map(\.stream), [.stdout, .stderr, .stdout, .stderr, .stdout, .stdout, .stderr, .stdout])
        XCTAssertEqual(b.records[0].timestamp, Int64.min)
        XCTAssertEqual(b.records[1].timestamp, Int64.max)
        XCTAssertEqual(b.records[2].timestamp, Int64.max)
        for i in 3..<8 { XCTAssertEqual(b.records[i].timestamp, readTime, text(b, i)) }
        let s = d.takeStats()
        XCTAssertEqual(s.decodeErrors, 0)
        XCTAssertEqual(s.invalidTimes, 5)

        var c = LineDecoder(format: .cri, maxRecordBytes: 1 << 20)
        var cb = newBatch()
        feed(&c, ["0001-01-01T00:00:00Z stdout F first", "9999-12-31T23:59:59Z stderr F far",
                  "2024-02-30T00:00:00Z stdout F bad", "yesterday stderr P part-", "2024-01-02T03:04:05Z stderr F end"],
             batch: &cb)
        XCTAssertEqual((0..<cb.count).map { text(cb, $0) }, ["first", "far", "bad", "part-end"])
        XCTAssertEqual(cb.records.map(\.stream), [.stdout, .stderr, .stdout, .stderr])
        XCTAssertEqual(cb.records.map(\.timestamp), [Int64.min, Int64.max, readTime, readTime])
        let cs = c.takeStats()
        XCTAssertEqual(cs.decodeErrors, 0)
        XCTAssertEqual(cs.invalidTimes, 2)
        // Detection still needs a real time: a raw line that happens to look like a header stays raw.
        XCTAssertEqual(Array("yesterday stdout F x".utf8).withUnsafeBytes { LineDecoder.detect($0) }, .raw)
    }

    func testEmptyLines() {
        for f in [LogFormat.docker, .cri] {
            var d = LineDecoder(format: f, maxRecordBytes: 1 << 20)
            var b = newBatch()
            feed(&d, ["", "\r"], batch: &b)
            XCTAssertEqual(b.count, 0)
            let s = d.takeStats()
            XCTAssertEqual(s.lines, 0)
            XCTAssertEqual(s.decodeErrors, 0)
        }
        var r = LineDecoder(format: .raw, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&r, ["", "x\r", "\r"], batch: &b)
        XCTAssertEqual(b.count, 3)
        XCTAssertEqual(text(b, 0), "")
        XCTAssertEqual(text(b, 1), "x")
        XCTAssertEqual(text(b, 2), "")
        XCTAssertEqual(b.records[1].offset, 1)
    }

    func testInvalidUTF8InMessage() {
        var d = LineDecoder(format: .docker, maxRecordBytes: 1 << 20)
        var b = newBatch()
        let line: [UInt8] = Array(#"{"log":"a"#.utf8) + [0xFF, 0xC3] + Array(#"b\n","stream":"stdout"}"#.utf8)
        feed(&d, [line], batch: &b)
        var c = LineDecoder(format: .cri, maxRecordBytes: 1 << 20)
        feed(&c, [Array("2024-01-02T03:04:05Z stdout F x".utf8) + [0xE2, 0x82]], batch: &b)
        var r = LineDecoder(format: .raw, maxRecordBytes: 1 << 20)
        feed(&r, [[0x80, 0x41]], batch: &b)
        XCTAssertEqual(b.count, 3)
        XCTAssertEqual(message(b, 0), [0x61, 0xFF, 0xC3, 0x62])
        var out: [UInt8] = []
        RecordEncoder.appendNDJSON(b, to: &out)
        let lines = out.split(separator: 0x0A)
        XCTAssertEqual(lines.count, 3)
        let msgs = lines.map { (try? JSONSerialization.jsonObject(with: Data($0)) as? [String: Any])?["message"] as? String }
        XCTAssertEqual(msgs, ["a\u{FFFD}\u{FFFD}b", "x\u{FFFD}\u{FFFD}", "\u{FFFD}A"])
    }

    func testRandomGarbageNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array(#"{}[]":,\nu0123456789 PFstdoutlgeimr-T:Z."#.utf8) + [0x80, 0xFF, 0x0D]
        let seeds = [docker(#"x\n"#), docker("p"), "2024-01-02T03:04:05Z stdout P a", "2024-01-02T03:04:05Z stderr F b"]
        for f in LogFormat.allCases {
            var d = LineDecoder(format: f, maxRecordBytes: 64)
            var b = newBatch()
            for _ in 0..<3000 {
                var line = Array((seeds.randomElement(using: &rng) ?? "").utf8)
                for _ in 0..<Int.random(in: 0...4, using: &rng) {
                    let op = Int.random(in: 0..<3, using: &rng)
                    let c = alphabet.randomElement(using: &rng) ?? 0
                    if op == 0 || line.isEmpty { line.append(c) }
                    else if op == 1 { line[Int.random(in: 0..<line.count, using: &rng)] = c }
                    else { line.removeLast(Int.random(in: 0...line.count, using: &rng)) }
                }
                feed(&d, [line], batch: &b)
            }
            d.flushPending(into: &b)
            for r in b.records {
                XCTAssertLessThanOrEqual(r.message.count, 64)
                XCTAssertTrue(r.message.upperBound <= b.bytes.count)
            }
            var out: [UInt8] = []
            RecordEncoder.appendNDJSON(b, to: &out)
            for l in out.split(separator: 0x0A) {
                XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(l)))
            }
        }
    }

    // MARK: auto detection

    func testAutoDetection() {
        func detect(_ lines: [String]) -> (LogFormat, RecordBatch) {
            var d = LineDecoder(format: .auto, maxRecordBytes: 1 << 20)
            XCTAssertEqual(d.resolvedFormat, .auto)
            var b = newBatch()
            feed(&d, lines, batch: &b)
            return (d.resolvedFormat, b)
        }
        let (f1, b1) = detect(["", docker(#"hi\n"#)])
        XCTAssertEqual(f1, .docker)
        XCTAssertEqual(b1.count, 1)
        XCTAssertEqual(text(b1, 0), "hi")
        let (f2, b2) = detect(["2024-01-02T03:04:05.123456789Z stdout F hello"])
        XCTAssertEqual(f2, .cri)
        XCTAssertEqual(text(b2, 0), "hello")
        XCTAssertEqual(detect(["2024-01-02T03:04:05.123456789Z stdout F"]).0, .cri)
        XCTAssertEqual(detect(["2024-01-02T03:04:05.123456789Z stdout P part"]).0, .cri)
        let (f3, b3) = detect(["plain log line", docker(#"hi\n"#)])
        XCTAssertEqual(f3, .raw)
        XCTAssertEqual(b3.count, 2)
        XCTAssertEqual(text(b3, 1), docker(#"hi\n"#))
        XCTAssertEqual(detect(["2024-01-02 03:04:05 INFO started"]).0, .raw)
        XCTAssertEqual(detect(["2024-01-02T03:04:05Z stdin F x"]).0, .raw)
        // Once resolved the format stays: a later invalid line is an error, not a switch.
        var d = LineDecoder(format: .auto, maxRecordBytes: 1 << 20)
        var b = newBatch()
        feed(&d, [docker(#"a\n"#), "text"], batch: &b)
        XCTAssertEqual(d.resolvedFormat, .docker)
        XCTAssertEqual(d.takeStats().decodeErrors, 1)
    }

    // MARK: speed (a sanity bound, not a benchmark: debug builds are slow)

    func testDockerDecodeSpeed() {
        let line = Array(docker(#"2024-01-02 03:04:05.123 INFO  [main] c.e.s.OrderService - processed order id=12345 user=\"alice\" items=3 total=42.50 in 12ms\n"#).utf8)
        var d = LineDecoder(format: .docker, maxRecordBytes: 1 << 20)
        var b = RecordBatch(source: source, inputName: "t", recordCapacity: 1024, byteCapacity: 1 << 20)
        let n = 200_000
        let start = monotonicSeconds()
        line.withUnsafeBytes { l in
            for i in 0..<n {
                if i % 1024 == 0 {
                    b.records.removeAll(keepingCapacity: true)
                    b.bytes.removeAll(keepingCapacity: true)
                }
                d.decode(line: l, offset: Int64(i), truncated: false, readTime: 0, into: &b)
            }
        }
        let ns = (monotonicSeconds() - start) / Double(n) * 1e9
        print("docker decode: \(Int(ns)) ns/line (\(line.count) bytes)")
        XCTAssertEqual(d.takeStats().decodeErrors, 0)
    }
}
