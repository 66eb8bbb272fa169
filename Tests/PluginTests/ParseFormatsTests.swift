import AnduinCore
import Foundation
import XCTest
import filter_parse
import in_tail
import out_blackhole

@testable import filter_parse

/// The parse filter's `regex:`, built-in text formats and `types:`, on real-shaped lines.
final class ParseFormatsTests: XCTestCase {
    func ns(_ s: String) -> Int64 { Array(s.utf8).withUnsafeBytes { Timestamp.parseRFC3339($0) } ?? -1 }

    func run(_ config: ParseConfig, _ lines: [String], runtime: String = "2026-12-06T12:30:00Z", raw: [[UInt8]]? = nil,
             file: StaticString = #filePath, line: UInt = #line) throws -> ([[String: Any]], RecordBatch, ComponentStats) {
        let stats = ComponentStats(component: "parse", kind: .filter)
        let context = ComponentContext(name: "parse", kind: .filter, dataDirectory: "/tmp", logger: .init(label: "test"), stats: stats)
        let filter = try XCTUnwrap(try config.build(context) as? ParseFilter)
        var b = RecordBatch(source: SourceInfo(path: "/var/log/containers/a.log", sourceID: 7), inputName: "test")
        for (i, m) in (raw ?? lines.map { Array($0.utf8) }).enumerated() {
            let range = m.withUnsafeBytes { b.append(bytes: $0) }
            b.records.append(Record(timestamp: ns(runtime), offset: Int64(i * 100), message: range, stream: .stdout))
        }
        filter.process(&b)
        var out: [UInt8] = []
        RecordEncoder.appendNDJSON(b, to: &out)
        var docs: [[String: Any]] = []
        for l in out.split(separator: UInt8(ascii: "\n")) {
            let obj = try JSONSerialization.jsonObject(with: Data(l))
            docs.append(try XCTUnwrap(obj as? [String: Any], String(decoding: l, as: UTF8.self), file: file, line: line))
        }
        return (docs, b, stats)
    }

    func count(_ stats: ComponentStats, _ name: String) -> Int { stats.counters.first { $0.name == name }?.current ?? -1 }

    /// The fields of `doc` named in `expected` (numbers compared as numbers).
    func assertFields(_ doc: [String: Any], _ expected: [String: Any], file: StaticString = #filePath, line: UInt = #line) {
        for (k, v) in expected {
            let got = Self.value(doc, k)
            switch v {
            case let s as String: XCTAssertEqual(got as? String, s, "\(k) in \(doc)", file: file, line: line)
            case let n as Int: XCTAssertEqual((got as? NSNumber)?.int64Value, Int64(n), "\(k) in \(doc)", file: file, line: line)
                XCTAssertFalse(got is String, "\(k) is a string in \(doc)", file: file, line: line)
            case let d as Double: XCTAssertEqual((got as? NSNumber)?.doubleValue ?? .nan, d, accuracy: 1e-9, "\(k) in \(doc)", file: file, line: line)
            case is NSNull: XCTAssertNil(got, "\(k) should be absent in \(doc)", file: file, line: line)
            default: XCTFail("bad expectation", file: file, line: line)
            }
        }
    }

    /// `doc[path]`: a dotted key as written, else the path through nested objects.
    static func value(_ doc: [String: Any], _ path: String) -> Any? {
        if let v = doc[path] { return v }
        var cur: Any? = doc
        for part in path.split(separator: ".") { cur = (cur as? [String: Any])?[String(part)] }
        return cur
    }

    func testFieldsNestExceptUnderTheAgentsOwnObjects() throws {
        let (docs, _, _) = try run(ParseConfig(formats: [.nginx, .klog]), [
            #"10.0.0.1 - - [06/Dec/2026:12:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-""#,
            "I1206 12:00:00.000000 1 a.go:1] hi",
        ])
        let http = try XCTUnwrap(docs[0]["http"] as? [String: Any], "\(docs[0])")
        XCTAssertEqual((http["response"] as? [String: Any])?["status_code"] as? Int, 200)
        XCTAssertEqual((http["request"] as? [String: Any])?["method"] as? String, "GET")
        XCTAssertNil(docs[0]["http.response.status_code"])
        // `log` is the agent's (log.file.path, log.offset): klog's log.* stay dotted beside it.
        XCTAssertEqual(docs[1]["log.level"] as? String, "info")
        XCTAssertEqual(docs[1]["log.origin.file.line"] as? Int, 1)
        XCTAssertNotNil((docs[1]["log"] as? [String: Any])?["offset"])
        XCTAssertEqual((docs[1]["process"] as? [String: Any]).flatMap { ($0["thread"] as? [String: Any])?["id"] as? Int }, 1)
        // Under a nested target nothing clashes: everything nests.
        let (nested, _, _) = try run(ParseConfig(formats: [.klog], target: .field("klog")), ["W1206 12:00:00.000000 1 a.go:1] hi"])
        XCTAssertEqual(Self.value(nested[0], "klog.log.level") as? String, "warning")
    }

    // MARK: regex

    func testRegexNamedCapturesTypesAndFallThrough() throws {
        let re = try CaptureRegex(#"^(?<level>[a-z]+) (?<duration_ms>\S+) (?<ok>\S+) (?<ratio>\S+)(?: (?<rest>.*))?$"#)
        let config = ParseConfig(formats: [.regex, .json], regex: CaptureFormat(regex: re, types: ["duration_ms": .int, "ok": .bool, "ratio": .float]))
        let (docs, _, stats) = try run(config, [
            "info 12 true 0.25 all good",
            "warn 1x false 2",
            #"{"level":"json"}"#,
            "nothing to see",
        ])
        assertFields(docs[0], ["level": "info", "duration_ms": 12, "ratio": 0.25, "rest": "all good", "message": NSNull()])
        XCTAssertEqual(docs[0]["ok"] as? Bool, true)
        // A failed conversion keeps the string and is counted; an unmatched optional group is absent.
        assertFields(docs[1], ["duration_ms": "1x", "ratio": 2, "rest": NSNull()])
        XCTAssertEqual(docs[1]["ok"] as? Bool, false)
        XCTAssertEqual(docs[2]["level"] as? String, "json")
        XCTAssertEqual(docs[3]["message"] as? String, "nothing to see")
        XCTAssertEqual(count(stats, "parsed_regex"), 2)
        XCTAssertEqual(count(stats, "parsed_json"), 1)
        XCTAssertEqual(count(stats, "not_parsed"), 1)
        XCTAssertEqual(count(stats, "type_errors"), 1)
    }

    func testRegexReservedNamesAndBytes() throws {
        let re = try CaptureRegex(#"^(?<stream>\S+) (?<message>.*)$"#)
        let (docs, _, _) = try run(ParseConfig(formats: [.regex], regex: CaptureFormat(regex: re, types: [:])),
                                   ["out caf\u{e9} \"quoted\" \\ back", "x \u{1}\u{7f}"])
        // `stream` is the agent's: renamed; `message` replaces the line.
        XCTAssertEqual(docs[0]["_stream"] as? String, "out")
        XCTAssertEqual(docs[0]["stream"] as? String, "stdout")
        XCTAssertEqual(docs[0]["message"] as? String, "caf\u{e9} \"quoted\" \\ back")
        XCTAssertEqual(docs[1]["message"] as? String, "\u{1}\u{7f}")
        // Invalid UTF-8 in a capture is written as valid JSON.
        let (d2, _, _) = try runBytes(ParseConfig(formats: [.regex], regex: CaptureFormat(regex: re, types: [:])), [[0x61, 0x20, 0xFF, 0xC3]])
        XCTAssertNotNil(d2[0]["message"] as? String)
    }

    func runBytes(_ config: ParseConfig, _ lines: [[UInt8]]) throws -> ([[String: Any]], RecordBatch, ComponentStats) {
        try run(config, lines.map { String(decoding: $0, as: UTF8.self) }, raw: lines)
    }

    func testPathologicalRegexIsBounded() throws {
        // Catastrophic backtracking: the match limit makes it a non-match, quickly.
        let re = try CaptureRegex(#"^(?<a>(x+x+)+y)$"#)
        let line = String(repeating: "x", count: 5000)
        let start = Date()
        let (docs, _, stats) = try run(ParseConfig(formats: [.regex], regex: CaptureFormat(regex: re, types: [:])), [line])
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        XCTAssertEqual(docs[0]["message"] as? String, line)
        XCTAssertEqual(count(stats, "not_parsed"), 1)
    }

    // MARK: validate

    let registry = PluginRegistry([TailPlugin.spec, ParsePlugin.spec, BlackholePlugin.spec])

    func problems(_ parse: String) -> [String] {
        let yaml = "data_dir: /tmp/anduin-x\ninputs:\n  in:\n    type: tail\n    paths: [\"/tmp/*.log\"]\nfilters:\n  p:\n    type: parse\n    from: [in]\n"
            + parse + "outputs:\n  o:\n    type: blackhole\n    from: [p]\n"
        switch AgentConfig.parse(yaml: yaml, file: "/etc/anduin/a.yaml", registry: registry, environment: [:]) {
        case .success: return []
        case .failure(let e): return e.items.map(\.description)
        }
    }

    func testRegexValidateErrorsHavePositions() {
        // Line 10, the pattern starts at column 12; PCRE2 reports the missing `)` at its end (byte 7).
        let p1 = problems("    regex: ^(?<a>x\n")
        XCTAssertEqual(p1.count, 1, "\(p1)")
        XCTAssertTrue(p1.first?.hasPrefix("/etc/anduin/a.yaml:10:19: filter \"p\" (parse): regex: invalid pattern: missing closing parenthesis") ?? false, "\(p1)")
        let p2 = problems("    regex: \"a(?<1x>b)\"\n")
        XCTAssertEqual(p2.count, 1, "\(p2)")
        // Quoted: one column further for the quote; byte 4 is the `1`.
        XCTAssertTrue(p2.first?.hasPrefix("/etc/anduin/a.yaml:10:17: ") ?? false, "\(p2)")
        XCTAssertTrue(p2.first?.contains("invalid pattern") ?? false, "\(p2)")
        let p3 = problems("    regex: \"^(\\\\S+) (.*)$\"\n")
        XCTAssertEqual(p3, ["/etc/anduin/a.yaml:10:12: filter \"p\" (parse): regex: the pattern has no named group (?<name>…); name the parts that become fields"])
        let p4 = problems("    formats: [json, regex]\n")
        XCTAssertEqual(p4.count, 1)
        XCTAssertTrue(p4.first?.contains("regex is listed but the regex: option is not set") ?? false, "\(p4)")
        let p5 = problems("    formats: [json]\n    regex: \"(?<a>x)\"\n")
        XCTAssertTrue(p5.first?.contains("formats does not list regex") ?? false, "\(p5)")
        let p6 = problems("    regex: \"(?<a>x)\"\n    types: {a: integer}\n")
        XCTAssertEqual(p6, ["/etc/anduin/a.yaml:11:16: filter \"p\" (parse): types: a: expected int, float, bool or string"])
        XCTAssertEqual(problems("    regex: \"(?<a>x)\"\n    types: {a: int}\n"), [])
        XCTAssertEqual(problems("    formats: [nginx, apache_combined, klog, syslog_rfc5424, syslog_rfc3164, json, logfmt]\n"), [])
    }

    // MARK: built-in formats

    func testIngressNginxAndNginxCombined() throws {
        let config = ParseConfig(formats: [.nginx], time: ParseTime(key: "time"))
        let (docs, b, stats) = try run(config, [
            #"192.168.49.1 - - [06/Dec/2026:12:00:00 +0000] "GET /api/v1/orders?page=2 HTTP/1.1" 200 612 "-" "curl/8.5.0" 87 0.002 [default-shop-80] [] 10.244.0.17:8080 612 0.002 200 5b7c0f5d6c7a2f1e9c5e1e0f2f4a3b2c"#,
            #"10.0.0.5 - alice [06/Dec/2026:13:00:01 +0100] "POST /login HTTP/2.0" 302 0 "https://shop.example.com/" "Mozilla/5.0 (X11; Linux x86_64)""#,
            #"10.0.0.6 - - [06/Dec/2026:12:00:02 +0000] "\x16\x03\x01\x02\x00\x01\x00\x01\xFC\x03\x03" 400 157 "-" "-""#,
            #"10.0.0.7 - - [06/Dec/2026:12:00:03 +0000] "GET / HTTP/1.1" 502 552 "-" "kube-probe/1.29" 120 5.001 [default-shop-80] [] 10.244.0.17:8080, 10.244.0.18:8080 0, 0 5.000, 0.001 502, 502 abc"#,
            "not an access log",
        ])
        assertFields(docs[0], [
            "source.address": "192.168.49.1", "user.name": NSNull(), "time": "06/Dec/2026:12:00:00 +0000",
            "http.request.method": "GET", "url.original": "/api/v1/orders?page=2", "http.version": "1.1",
            "http.response.status_code": 200, "http.response.body.bytes": 612, "http.request.referrer": NSNull(),
            "user_agent.original": "curl/8.5.0", "http.request.bytes": 87, "nginx.request_time": 0.002,
            "nginx.ingress_controller.upstream.name": "default-shop-80",
            "nginx.ingress_controller.upstream.alternative_name": NSNull(),
            "nginx.ingress_controller.upstream.address": "10.244.0.17:8080",
            "nginx.ingress_controller.upstream.response.length": "612",
            "nginx.ingress_controller.upstream.response.time": "0.002",
            "nginx.ingress_controller.upstream.response.status_code": "200",
            "http.request.id": "5b7c0f5d6c7a2f1e9c5e1e0f2f4a3b2c", "message": NSNull(),
        ])
        assertFields(docs[1], ["user.name": "alice", "http.request.method": "POST", "http.version": "2.0",
                               "http.response.status_code": 302, "http.response.body.bytes": 0,
                               "http.request.referrer": "https://shop.example.com/", "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64)",
                               "http.request.bytes": NSNull()])
        assertFields(docs[2], ["http.request.line": #"\x16\x03\x01\x02\x00\x01\x00\x01\xFC\x03\x03"#, "http.request.method": NSNull(),
                               "http.response.status_code": 400, "user_agent.original": NSNull()])
        assertFields(docs[3], ["nginx.ingress_controller.upstream.address": "10.244.0.17:8080, 10.244.0.18:8080",
                               "nginx.ingress_controller.upstream.response.status_code": "502, 502", "nginx.request_time": 5.001])
        XCTAssertEqual(docs[4]["message"] as? String, "not an access log")
        XCTAssertEqual(b.records[0].timestamp, ns("2026-12-06T12:00:00Z"))
        XCTAssertEqual(b.records[1].timestamp, ns("2026-12-06T12:00:01Z"))
        XCTAssertEqual(docs[1]["@timestamp"] as? String, "2026-12-06T12:00:01.000000000Z")
        XCTAssertEqual(count(stats, "parsed_nginx"), 4)
        XCTAssertEqual(count(stats, "time_parsed"), 4)
    }

    func testApacheCombined() throws {
        let config = ParseConfig(formats: [.apacheCombined], time: ParseTime(key: "time"))
        let (docs, b, _) = try run(config, [
            #"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#,
            #"10.1.2.3 - - [06/Dec/2026:12:00:00 +0000] "GET /q?x=\"y\" HTTP/1.1" 404 - "-" "agent \"quoted\"""#,
            #"10.1.2.4 ident - [06/Dec/2026:12:00:00 +0000] "HEAD / HTTP/1.1" 200 -"#,
        ])
        assertFields(docs[0], ["source.address": "127.0.0.1", "user.name": "frank", "http.request.method": "GET",
                               "url.original": "/apache_pb.gif", "http.version": "1.0", "http.response.status_code": 200,
                               "http.response.body.bytes": 2326, "http.request.referrer": "http://www.example.com/start.html",
                               "user_agent.original": "Mozilla/4.08 [en] (Win98; I ;Nav)", "apache.access.identity": NSNull()])
        XCTAssertEqual(b.records[0].timestamp, ns("2000-10-10T20:55:36Z"))
        assertFields(docs[1], ["url.original": #"/q?x=\"y\""#, "http.response.body.bytes": NSNull(), "user_agent.original": #"agent \"quoted\""#])
        assertFields(docs[2], ["apache.access.identity": "ident", "http.request.method": "HEAD", "user_agent.original": NSNull()])
    }

    func testKubeSchedulerKlog() throws {
        let config = ParseConfig(formats: [.klog], time: ParseTime(key: "time"))
        let (docs, b, _) = try run(config, [
            #"I1206 12:00:00.123456       1 schedule_one.go:286] "Successfully bound pod to node" pod="default/web-5d8f7c9b4-x2x7q" node="worker-1" evaluatedNodes=3 feasibleNodes=2"#,
            "W1206 11:59:58.000001       1 reflector.go:539] k8s.io/client-go/informers/factory.go:159: failed to list *v1.Pod: connection refused",
            "E1231 23:59:59.999999       1 leaderelection.go:332] error retrieving resource lock kube-system/kube-scheduler: context deadline exceeded\n\tgoroutine 1",
            "F1206 12:00:00.000000   42 server.go:1] fatal",
            #"I1206 12:00:00.000000 1 a.go:1] "quoted \"msg\"" err="x \"y\"" stream=s log=l"#,
            #"I1206 12:00:00.000000 1 a.go:1] "unterminated"#,
            #"I1206 12:00:00.000000 1 a.go:1] "not pairs" = 3"#,
            #"I1206 12:00:00.000000 1 a.go:1] "only a message""#,
        ], runtime: "2026-12-06T12:00:01Z")
        assertFields(docs[0], ["log.level": "info", "time": "1206 12:00:00.123456", "process.thread.id": 1,
                               "log.origin.file.name": "schedule_one.go", "log.origin.file.line": 286,
                               "message": "Successfully bound pod to node", "pod": "default/web-5d8f7c9b4-x2x7q", "node": "worker-1",
                               "evaluatedNodes": "3", "feasibleNodes": "2"])
        XCTAssertEqual(b.records[0].timestamp, ns("2026-12-06T12:00:00.123456Z"))
        assertFields(docs[1], ["log.level": "warning", "log.origin.file.name": "reflector.go", "log.origin.file.line": 539,
                               "message": "k8s.io/client-go/informers/factory.go:159: failed to list *v1.Pod: connection refused"])
        // A year-less time that would be 3 weeks ahead is last year's.
        assertFields(docs[2], ["log.level": "error", "message": "error retrieving resource lock kube-system/kube-scheduler: context deadline exceeded\n\tgoroutine 1"])
        XCTAssertEqual(b.records[2].timestamp, ns("2025-12-31T23:59:59.999999Z"))
        assertFields(docs[3], ["log.level": "fatal", "process.thread.id": 42])
        // Structured messages: Go escapes decoded; pair keys the agent owns are renamed.
        assertFields(docs[4], ["message": #"quoted "msg""#, "err": #"x "y""#, "_stream": "s", "_log": "l", "stream": "stdout"])
        assertFields(docs[5], ["message": #""unterminated"#])
        assertFields(docs[6], ["message": #""not pairs" = 3"#])
        assertFields(docs[7], ["message": "only a message"])
    }

    func testRsyslogRFC3164() throws {
        let config = ParseConfig(formats: [.syslogRFC3164], time: ParseTime(key: "time"))
        let (docs, b, _) = try run(config, [
            #"Dec  6 12:00:00 worker-1 kubelet[1234]: I1206 12:00:00.123456    1234 kubelet.go:2400] "SyncLoop ADD" source="api""#,
            "<30>Dec  6 12:00:01 worker-1 systemd[1]: Started Session 5 of user core.",
            #"2026-12-06T12:00:02.123456+00:00 worker-1 containerd[812]: time="2026-12-06T12:00:02Z" level=info msg="StartContainer""#,
            "Dec 16 12:00:03 worker-1 kernel: [12345.678] eth0: link up",
        ])
        assertFields(docs[0], ["log.syslog.hostname": "worker-1", "log.syslog.appname": "kubelet", "log.syslog.procid": "1234",
                               "message": #"I1206 12:00:00.123456    1234 kubelet.go:2400] "SyncLoop ADD" source="api""#,
                               "log.syslog.priority": NSNull()])
        XCTAssertEqual(b.records[0].timestamp, ns("2026-12-06T12:00:00Z"))
        assertFields(docs[1], ["log.syslog.priority": 30, "log.syslog.facility.code": 3, "log.syslog.severity.code": 6,
                               "log.level": "informational", "log.syslog.appname": "systemd", "message": "Started Session 5 of user core."])
        assertFields(docs[2], ["log.syslog.appname": "containerd", "log.syslog.procid": "812"])
        XCTAssertEqual(b.records[2].timestamp, ns("2026-12-06T12:00:02.123456Z"))
        assertFields(docs[3], ["log.syslog.appname": "kernel", "log.syslog.procid": NSNull(), "message": "[12345.678] eth0: link up"])
        // Dec 16 is ten days ahead of the runtime's Dec 6: last year's.
        XCTAssertEqual(b.records[3].timestamp, ns("2025-12-16T12:00:03Z"))
    }

    func testRsyslogRFC5424() throws {
        let config = ParseConfig(formats: [.syslogRFC5424, .syslogRFC3164], time: ParseTime(key: "time"))
        let (docs, b, stats) = try run(config, [
            #"<165>1 2026-12-06T12:00:00.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] \#u{FEFF}An application event log entry"#,
            "<34>1 2026-12-06T11:00:00+01:00 host su - - - 'su root' failed for lonvick on /dev/pts/8",
            #"<13>1 - - - - - [a@1 x="]\"y"][b@2]"#,
        ])
        assertFields(docs[0], ["log.syslog.priority": 165, "log.syslog.facility.code": 20, "log.syslog.severity.code": 5,
                               "log.level": "notice", "log.syslog.version": "1", "log.syslog.hostname": "mymachine.example.com",
                               "log.syslog.appname": "evntslog", "log.syslog.procid": NSNull(), "log.syslog.msgid": "ID47",
                               "syslog.structured_data": #"[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]"#,
                               "message": "An application event log entry"])
        XCTAssertEqual(b.records[0].timestamp, ns("2026-12-06T12:00:00.003Z"))
        assertFields(docs[1], ["log.syslog.priority": 34, "log.level": "critical", "log.syslog.appname": "su",
                               "message": "'su root' failed for lonvick on /dev/pts/8"])
        XCTAssertEqual(b.records[1].timestamp, ns("2026-12-06T10:00:00Z"))
        assertFields(docs[2], ["syslog.structured_data": #"[a@1 x="]\"y"][b@2]"#, "time": NSNull(), "message": NSNull()])
        XCTAssertEqual(count(stats, "parsed_syslog_rfc5424"), 3)
        XCTAssertEqual(count(stats, "time_missing"), 1)
    }

    func testFormatsInOrderAndLogfmtTypes() throws {
        let config = ParseConfig(formats: [.json, .nginx, .klog, .logfmt], types: ["duration_ms": .int, "ratio": .float, "ok": .bool])
        let (docs, _, stats) = try run(config, [
            #"{"a":1}"#,
            #"10.0.0.1 - - [06/Dec/2026:12:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-""#,
            "I1206 12:00:00.000000 1 a.go:1] hi",
            #"level=info duration_ms=12 ratio="0.5" ok=true bad=x"#,
            "duration_ms=12x ok=maybe",
        ])
        XCTAssertEqual(docs[0]["a"] as? Int, 1)
        XCTAssertEqual(Self.value(docs[1], "http.response.status_code") as? Int, 200)
        XCTAssertEqual(docs[2]["message"] as? String, "hi")
        assertFields(docs[3], ["level": "info", "duration_ms": 12, "ratio": 0.5, "bad": "x"])
        XCTAssertEqual(docs[3]["ok"] as? Bool, true)
        assertFields(docs[4], ["duration_ms": "12x", "ok": "maybe"])
        XCTAssertEqual(count(stats, "type_errors"), 2)
        XCTAssertEqual([count(stats, "parsed_json"), count(stats, "parsed_nginx"), count(stats, "parsed_klog"), count(stats, "parsed_logfmt")], [1, 1, 1, 2])
    }

    func testTypedValueEdges() {
        func typed(_ s: String, _ t: ValueType) -> (String, Bool) {
            var out: [UInt8] = []
            let ok = Array(s.utf8).withUnsafeBytes { Captures.writeTyped($0, t, to: &out) }
            return (String(decoding: out, as: UTF8.self), ok)
        }
        XCTAssertEqual(typed("9223372036854775807", .int).0, "9223372036854775807")
        XCTAssertEqual(typed("-9223372036854775808", .int).0, "-9223372036854775808")
        XCTAssertFalse(typed("9223372036854775808", .int).1)
        XCTAssertFalse(typed("-", .int).1)
        XCTAssertFalse(typed("", .int).1)
        XCTAssertEqual(typed("007", .int).0, "7")
        XCTAssertEqual(typed("1e3", .float).0, "1000")
        XCTAssertEqual(typed("1.5e-7", .float).0, "1.5e-07")
        XCTAssertFalse(typed("1e999", .float).1)
        XCTAssertFalse(typed("nan", .float).1)
        XCTAssertFalse(typed("0x10", .float).1)
        XCTAssertFalse(typed(String(repeating: "1", count: 80), .float).1)
        XCTAssertEqual(typed("0", .bool).0, "false")
        for s in ["1e3", "1.5e-7", "-0.25", "123456789012345678901234567890"] {
            let (text, ok) = typed(s, .float)
            XCTAssertTrue(ok)
            XCTAssertNotNil(try? JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed), text)
        }
    }

    /// The README's sample table: each line, parsed by its format with `time_key: time` at 12:30Z, gives
    /// the document shown (the agent's own fields aside).
    func testReadmeSamples() throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        let start = try XCTUnwrap(text.range(of: "Samples (`time_key: time`"))
        var rows = 0
        for row in text[start.upperBound...].split(separator: "\n").dropFirst(3) {
            guard row.hasPrefix("| `") else { break }
            let cells = row.dropFirst(2).dropLast(2).components(separatedBy: " | ")
            guard cells.count == 3 else { XCTFail(String(row)); continue }
            let name = String(cells[0].dropFirst().prefix { $0 != "`" })
            let format = try XCTUnwrap(ParseFormat(rawValue: name), name)
            let line = String(cells[1].dropFirst().dropLast())
            let expected = String(cells[2].dropFirst().dropLast())
            let (docs, _, _) = try run(ParseConfig(formats: [format], time: ParseTime(key: "time")), [line])
            var got = docs[0]
            for k in ["log", "event", "stream"] { got.removeValue(forKey: k) }
            let want = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(expected.utf8)) as? [String: Any], expected)
            XCTAssertEqual(NSDictionary(dictionary: got), NSDictionary(dictionary: want), name)
            rows += 1
        }
        XCTAssertEqual(rows, 5)
    }
}
