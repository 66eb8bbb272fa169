import AnduinCore
import Foundation
import XCTest

@testable import filter_parse

/// `time_key` / `time_format` / `time_zone` / `max_future` of the parse filter, and the time parsers.
final class ParseTimeTests: XCTestCase {
    /// Nanoseconds of an RFC 3339 text (test helper).
    func ns(_ s: String) -> Int64 {
        Array(s.utf8).withUnsafeBytes { Timestamp.parseRFC3339($0) } ?? -1
    }

    func parse(_ s: String, _ format: TimeFormat, zone: TimeZoneRule = .utc, isNumber: Bool = false,
               reference: String = "2026-12-06T12:00:00Z") -> Int64? {
        Array(s.utf8).withUnsafeBytes {
            TimeParse.parse($0, format: format, isNumber: isNumber, zone: zone, reference: ns(reference))
        }
    }

    func zone(_ name: String) throws -> TimeZoneRule { try XCTUnwrap(TimeZoneRule.parse(name), name) }

    func testRFC3339WithAndWithoutZone() throws {
        XCTAssertEqual(parse("2026-12-06T12:00:00.25+01:00", .rfc3339), ns("2026-12-06T11:00:00.25Z"))
        XCTAssertEqual(parse("2026-12-06T12:00:00", .rfc3339), ns("2026-12-06T12:00:00Z"))
        XCTAssertEqual(parse("2026-12-06 12:00:00,5", .rfc3339, zone: try zone("+02:00")), ns("2026-12-06T10:00:00.5Z"))
        XCTAssertEqual(parse("2026-12-06T12:00:00", .rfc3339, zone: try zone("-0530")), ns("2026-12-06T17:30:00Z"))
        XCTAssertNil(parse("2026-13-06T12:00:00", .rfc3339))
        XCTAssertNil(parse("2026-02-29T12:00:00", .rfc3339))
        XCTAssertNil(parse("yesterday", .rfc3339))
        XCTAssertNil(TimeZoneRule.parse("Mars/Olympus"))
        XCTAssertNil(TimeZoneRule.parse("+25:00"))
    }

    func testNamedZoneAndDaylightSaving() throws {
        let berlin = try zone("Europe/Berlin")
        XCTAssertEqual(parse("2026-01-15T12:00:00", .rfc3339, zone: berlin), ns("2026-01-15T11:00:00Z"))
        XCTAssertEqual(parse("2026-07-15T12:00:00", .rfc3339, zone: berlin), ns("2026-07-15T10:00:00Z"))
        // Spring forward (2026-03-29 02:00 CET -> 03:00 CEST): either side of the change, and the
        // skipped 02:30 read with the offset before the change.
        XCTAssertEqual(parse("2026-03-29T01:59:59", .rfc3339, zone: berlin), ns("2026-03-29T00:59:59Z"))
        XCTAssertEqual(parse("2026-03-29T03:00:00", .rfc3339, zone: berlin), ns("2026-03-29T01:00:00Z"))
        XCTAssertEqual(parse("2026-03-29T02:30:00", .rfc3339, zone: berlin), ns("2026-03-29T01:30:00Z"))
        // Fall back (2026-10-25 03:00 CEST -> 02:00 CET): 02:30 happens twice, the first pass is taken.
        XCTAssertEqual(parse("2026-10-25T02:30:00", .rfc3339, zone: berlin), ns("2026-10-25T00:30:00Z"))
        XCTAssertEqual(parse("2026-10-25T03:00:00", .rfc3339, zone: berlin), ns("2026-10-25T02:00:00Z"))
        XCTAssertEqual(parse("2026-10-25T01:59:59", .rfc3339, zone: berlin), ns("2026-10-24T23:59:59Z"))
        // The southern hemisphere: daylight saving in January.
        let sydney = try zone("Australia/Sydney")
        XCTAssertEqual(parse("2026-01-15T12:00:00", .rfc3339, zone: sydney), ns("2026-01-15T01:00:00Z"))
        XCTAssertEqual(parse("2026-07-15T12:00:00", .rfc3339, zone: sydney), ns("2026-07-15T02:00:00Z"))
        // Years far outside the table keep the nearest known offset and never trap.
        XCTAssertNotNil(parse("0001-01-01T00:00:00", .rfc3339, zone: berlin))
        XCTAssertNotNil(parse("9999-12-31T23:59:59", .rfc3339, zone: berlin))
    }

    func testEpochs() {
        XCTAssertEqual(parse("1733486400", .epochSeconds), 1_733_486_400_000_000_000)
        XCTAssertEqual(parse("1733486400.5", .epochSeconds), 1_733_486_400_500_000_000)
        XCTAssertEqual(parse("1733486400123", .epochMillis), 1_733_486_400_123_000_000)
        XCTAssertEqual(parse("1733486400123456", .epochMicros), 1_733_486_400_123_456_000)
        XCTAssertEqual(parse("1733486400123456789", .epochNanos), 1_733_486_400_123_456_789)
        XCTAssertEqual(parse("-1", .epochSeconds), -1_000_000_000)
        // auto: the unit by the number's size.
        XCTAssertEqual(parse("1733486400", .auto, isNumber: true), 1_733_486_400_000_000_000)
        XCTAssertEqual(parse("1733486400123", .auto, isNumber: true), 1_733_486_400_123_000_000)
        XCTAssertEqual(parse("1733486400123456", .auto, isNumber: true), 1_733_486_400_123_456_000)
        XCTAssertEqual(parse("1733486400123456789", .auto, isNumber: true), 1_733_486_400_123_456_789)
        // Huge numbers saturate rather than trap.
        XCTAssertEqual(parse("99999999999999999999999999", .epochSeconds), Int64.max)
        XCTAssertEqual(parse("-99999999999999999999999999", .epochSeconds), Int64.min)
        XCTAssertNil(parse("12a", .epochSeconds))
        XCTAssertNil(parse("", .epochSeconds))
        XCTAssertNil(parse("1.", .epochSeconds))
    }

    func testNginxTime() {
        XCTAssertEqual(parse("06/Dec/2026:12:00:00 +0000", .nginx), ns("2026-12-06T12:00:00Z"))
        XCTAssertEqual(parse("06/Dec/2026:12:00:00 +0530", .nginx), ns("2026-12-06T06:30:00Z"))
        XCTAssertEqual(parse("29/Feb/2024:23:59:59 -0800", .nginx), ns("2024-03-01T07:59:59Z"))
        XCTAssertNil(parse("29/Feb/2026:23:59:59 -0800", .nginx))
        XCTAssertNil(parse("06/Dez/2026:12:00:00 +0000", .nginx))
        XCTAssertNil(parse("06/Dec/2026:12:00:00", .nginx))
    }

    func testKlogYearlessAroundNewYear() throws {
        // Just after midnight on New Year's Day: a line from New Year's Eve is last year's.
        XCTAssertEqual(parse("1231 23:59:59.500000", .klog, reference: "2027-01-01T00:00:30Z"), ns("2026-12-31T23:59:59.5Z"))
        XCTAssertEqual(parse("0101 00:00:10.000001", .klog, reference: "2027-01-01T00:00:30Z"), ns("2027-01-01T00:00:10.000001Z"))
        // The runtime's clock a little behind the component's: a time just past midnight is next year's.
        XCTAssertEqual(parse("0101 00:00:30.000000", .klog, reference: "2026-12-31T23:59:50Z"), ns("2027-01-01T00:00:30Z"))
        // Far ahead (more than max_future): last year.
        XCTAssertEqual(parse("1206 13:30:00.000000", .klog, reference: "2026-12-06T12:00:00Z"), ns("2025-12-06T13:30:00Z"))
        // Feb 29 goes back to the last leap year.
        XCTAssertEqual(parse("0229 10:00:00.000000", .klog, reference: "2027-03-01T00:00:00Z"), ns("2024-02-29T10:00:00Z"))
        // In a zone.
        XCTAssertEqual(parse("1206 12:00:00.000000", .klog, zone: try zone("Europe/Berlin"), reference: "2026-12-06T12:00:00Z"),
                       ns("2026-12-06T11:00:00Z"))
        XCTAssertNil(parse("1306 12:00:00.000000", .klog))
        XCTAssertNil(parse("1206 12:00:00.", .klog))
        // Syslog's year-less time resolves the same way.
        XCTAssertEqual(parse("Dec 31 23:59:59", .syslog, reference: "2027-01-01T00:00:30Z"), ns("2026-12-31T23:59:59Z"))
        XCTAssertEqual(parse("Jan  1 00:00:10", .syslog, reference: "2027-01-01T00:00:30Z"), ns("2027-01-01T00:00:10Z"))
        XCTAssertEqual(parse("Jan 01 00:00:10", .syslog, reference: "2027-01-01T00:00:30Z"), ns("2027-01-01T00:00:10Z"))
        // References at the ends of the range never trap.
        _ = Array("1231 23:59:59.5".utf8).withUnsafeBytes { TimeParse.parse($0, format: .klog, reference: .min) }
        _ = Array("0101 00:00:00.0".utf8).withUnsafeBytes { TimeParse.parse($0, format: .klog, reference: .max, maxFuture: .max) }
    }

    func testPatterns() throws {
        let p = try TimeFormat.parse("%Y/%m/%d %H:%M:%S.%f %z").get()
        XCTAssertEqual(parse("2026/12/06 12:00:00.123 +01:00", p), ns("2026-12-06T11:00:00.123Z"))
        let noZone = try TimeFormat.parse("%d.%m.%Y %T").get()
        XCTAssertEqual(parse("06.12.2026 12:00:00", noZone, zone: try zone("Europe/Berlin")), ns("2026-12-06T11:00:00Z"))
        let yearless = try TimeFormat.parse("%b %e %T").get()
        XCTAssertEqual(parse("Dec  6 11:00:00", yearless), ns("2026-12-06T11:00:00Z"))
        let epoch = try TimeFormat.parse("@%s").get()
        XCTAssertEqual(parse("@1733486400", epoch), 1_733_486_400_000_000_000)
        XCTAssertEqual(parse("100%", try TimeFormat.parse("%%").get()), nil)
        if case .failure(let e) = TimeFormat.parse("%Q") { XCTAssertTrue(e.message.contains("%Q")) } else { XCTFail() }
        if case .failure = TimeFormat.parse("%") {} else { XCTFail() }
        if case .failure = TimeFormat.parse("iso") {} else { XCTFail() }
    }

    func testExtremeYears() {
        XCTAssertEqual(parse("0001-01-01T00:00:00Z", .rfc3339), Int64.min)
        XCTAssertEqual(parse("9999-12-31T23:59:59.999999999Z", .rfc3339), Int64.max)
        XCTAssertEqual(parse("0001-01-01T00:00:00", .rfc3339), Int64.min)
        XCTAssertEqual(parse("9999-12-31T23:59:59", .rfc3339, zone: .utc), Int64.max)
        XCTAssertEqual(parse("01/Jan/0001:00:00:00 +2300", .nginx), Int64.min)
        XCTAssertEqual(parse("31/Dec/9999:23:59:59 -2300", .nginx), Int64.max)
        XCTAssertEqual(parse("9999/12/31", try! TimeFormat.parse("%Y/%m/%d").get()), Int64.max)
    }

    // MARK: the filter

    func makeFilter(_ config: ParseConfig, _ stats: ComponentStats) throws -> ParseFilter {
        let context = ComponentContext(name: "parse", kind: .filter, dataDirectory: "/tmp",
                                       logger: .init(label: "test"), stats: stats)
        return try XCTUnwrap(try config.build(context) as? ParseFilter)
    }

    func run(_ config: ParseConfig, _ lines: [String], runtime: String = "2026-12-06T12:00:00Z") throws -> (RecordBatch, ComponentStats) {
        let stats = ComponentStats(component: "parse", kind: .filter)
        let filter = try makeFilter(config, stats)
        var b = RecordBatch(source: SourceInfo(path: "/var/log/containers/a.log", sourceID: 7), inputName: "test")
        for (i, m) in lines.enumerated() {
            let range = Array(m.utf8).withUnsafeBytes { b.append(bytes: $0) }
            b.records.append(Record(timestamp: ns(runtime), offset: Int64(i * 100), message: range, stream: .stdout))
        }
        filter.process(&b)
        return (b, stats)
    }

    func count(_ stats: ComponentStats, _ name: String) -> Int { stats.counters.first { $0.name == name }?.current ?? -1 }

    func testParsedTimeBecomesTheRecordTime() throws {
        let config = ParseConfig(formats: [.json, .logfmt], time: ParseTime(key: "ts"))
        let (b, stats) = try run(config, [
            #"{"ts":"2026-12-06T11:00:00.5Z","msg":"a"}"#,
            #"{"ts":1733486400,"msg":"b"}"#,
            "ts=2026-12-06T10:00:00+01:00 msg=c",
            #"{"ts":"not a time","msg":"d"}"#,
            #"{"msg":"no time"}"#,
            #"{"ts":"2026-12-06T13:00:01Z","msg":"too far ahead"}"#,
            #"{"ts":"2026-12-06T12:59:59Z","msg":"just within max_future"}"#,
            "plain text",
        ])
        let runtime = ns("2026-12-06T12:00:00Z")
        XCTAssertEqual(b.records.map(\.timestamp), [
            ns("2026-12-06T11:00:00.5Z"), 1_733_486_400_000_000_000, ns("2026-12-06T09:00:00Z"),
            runtime, runtime, runtime, ns("2026-12-06T12:59:59Z"), runtime,
        ])
        XCTAssertEqual(count(stats, "time_parsed"), 4)
        XCTAssertEqual(count(stats, "time_unparsable"), 1)
        XCTAssertEqual(count(stats, "time_missing"), 1)
        XCTAssertEqual(count(stats, "time_too_far_ahead"), 1)
        // `@timestamp` is written from the record time; the field stays.
        var out: [UInt8] = []
        RecordEncoder.appendNDJSON(b, to: &out)
        let first = String(decoding: out.split(separator: UInt8(ascii: "\n"))[0], as: UTF8.self)
        XCTAssertTrue(first.contains(#""@timestamp":"2026-12-06T11:00:00.500000000Z""#), first)
        XCTAssertTrue(first.contains(#""ts":"2026-12-06T11:00:00.5Z""#), first)
    }

    func testNestedTargetAndZone() throws {
        let config = ParseConfig(formats: [.logfmt], target: .field("app"),
                                 time: ParseTime(key: "at", format: try TimeFormat.parse("%Y-%m-%d %H:%M:%S").get(),
                                                 zone: try zone("America/New_York")))
        let (b, _) = try run(config, [#"at="2026-07-04 08:00:00" msg=x"#])
        XCTAssertEqual(b.records[0].timestamp, ns("2026-07-04T12:00:00Z"))
    }

    func testExtremeTimesNeverTrapDownstream() throws {
        let config = ParseConfig(formats: [.json], time: ParseTime(key: "t"))
        let (b, stats) = try run(config, [
            #"{"t":"0001-01-01T00:00:00Z"}"#,
            #"{"t":"9999-12-31T23:59:59Z"}"#,
            #"{"t":-99999999999999999999}"#,
            #"{"t":99999999999999999999}"#,
        ])
        XCTAssertEqual(b.records[0].timestamp, Int64.min)
        XCTAssertEqual(b.records[1].timestamp, ns("2026-12-06T12:00:00Z"))
        XCTAssertEqual(b.records[2].timestamp, Int64.min)
        XCTAssertEqual(count(stats, "time_too_far_ahead"), 2)
        // Encoding (the `@timestamp` text) and the lag arithmetic take these times.
        var out: [UInt8] = []
        RecordEncoder.appendNDJSON(b, to: &out)
        XCTAssertTrue(String(decoding: out, as: UTF8.self).contains("1677-09-21T00:12:43"))
        XCTAssertGreaterThan(secondsBetween(b.records[0].timestamp, Int64.max), 0)
    }

    // MARK: config

    func configure(_ yaml: String) throws -> (ParseConfig?, [String]) {
        let diags = Diagnostics()
        let value = try XCTUnwrap(ConfigValue.parse(yaml: yaml, file: "test.yaml", environment: [:], diagnostics: diags))
        let reader = ConfigReader(value, context: "filter \"parse\" (parse)", diagnostics: diags, options: ParsePlugin.options)
        guard case .filter(let parse) = ParsePlugin.spec.configure else { XCTFail("not a filter"); return (nil, []) }
        let config = parse(reader) as? ParseConfig
        return (config, diags.items.map(\.description))
    }

    func testTimeConfig() throws {
        let (c, e) = try configure("time_key: ts\ntime_format: \"%d/%b/%Y:%H:%M:%S %z\"\ntime_zone: Europe/Berlin\nmax_future: 5m\n")
        XCTAssertEqual(e, [])
        XCTAssertEqual(c?.time?.key, "ts")
        XCTAssertEqual(c?.time?.maxFutureNanos, 300_000_000_000)
        let (_, e2) = try configure("time_key: ts\ntime_format: iso\ntime_zone: Mars/Base\n")
        XCTAssertEqual(e2.count, 2, "\(e2)")
        XCTAssertTrue(e2[0].hasPrefix("test.yaml:2:14: "), e2[0])
        XCTAssertTrue(e2[1].hasPrefix("test.yaml:3:12: "), e2[1])
        let (_, e3) = try configure("time_format: klog\n")
        XCTAssertEqual(e3.count, 1)
        XCTAssertTrue(e3[0].contains("without time_key"), "\(e3)")
    }
}
