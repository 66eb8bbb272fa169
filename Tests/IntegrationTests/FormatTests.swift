import Foundation
import XCTest

/// Docker json-file and CRI end to end, with partial lines merged, through the parse filter.
final class FormatTests: AgentTestCase {
    func testDockerAndCRIWithPartialMergesAndParseFilter() throws {
        try sandbox.mkdir("docker")
        try sandbox.mkdir("cri")
        var docker = TailOptions()
        docker.paths = ["./docker/*.log"]
        docker.format = "docker"
        var cri = TailOptions()
        cri.paths = ["./cri/*.log"]
        cri.format = "cri"
        var auto = TailOptions()
        auto.paths = ["./auto/*.log"]
        auto.format = "auto"
        try sandbox.mkdir("auto")
        try writeConfig(agentConfig([("docker", docker), ("cri", cri), ("auto", auto)], parse: true))

        let dockerPath = sandbox.path("docker/app.log")
        let criPath = sandbox.path("cri/app.log")
        let d1 = #"{"log":"plain docker line\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}"# + "\n"
        let d2 = #"{"log":"first part, ","stream":"stderr","time":"2024-01-02T03:04:06Z"}"# + "\n"
        let d3 = #"{"log":"second part\n","stream":"stderr","time":"2024-01-02T03:04:07Z"}"# + "\n"
        let d4 = #"{"time":"2024-01-02T03:04:08Z","stream":"stdout","log":"{\"level\":\"info\",\"msg\":\"lifted from docker\",\"count\":3}\n"}"# + "\n"
        let c1 = "2024-01-02T03:04:05.123456789Z stdout F plain cri line\n"
        let c2 = "2024-01-02T03:04:06.5Z stdout P cri first part, \n"
        let c3 = "2024-01-02T03:04:06.6Z stdout F cri second part\n"
        let c4 = #"2024-01-02T03:04:07Z stderr F {"level":"warn","msg":"lifted from cri","ok":true}"# + "\n"
        let c5 = #"2024-01-02T03:04:08Z stdout F level=debug msg="logfmt from cri" user=alice"# + "\n"
        // Auto-detected formats: one docker file and one CRI file.
        appendText(sandbox.path("auto/d.log"), d1)
        appendText(sandbox.path("auto/c.log"), c1)

        let agent = try startAgent()
        // The first part of each split record is written (and read) before its end exists.
        appendText(dockerPath, d1 + d2)
        appendText(criPath, c1 + c2)
        waitFor("the lines before the partial parts") {
            output.refresh().filter { $0.message == "plain docker line" || $0.message == "plain cri line" }.count >= 4
        }
        appendText(dockerPath, d3 + d4)
        appendText(criPath, c3 + c4 + c5)
        waitForRecordCount(3 + 4 + 2)
        stopAgent(agent)
        assertWellFormed()
        let records = output.refresh()
        XCTAssertEqual(records.count, 9, "records: \(records.map { $0.message ?? "(lifted)" })")

        func find(_ path: String, offset: Int) -> OutRecord? {
            records.first { $0.path == path && $0.offset == Int64(offset) }
        }
        // Docker.
        let r1 = find(dockerPath, offset: 0)
        XCTAssertEqual(r1?.message, "plain docker line")
        XCTAssertEqual(r1?.stream, "stdout")
        XCTAssertEqual(r1?.timestamp, "2024-01-02T03:04:05.123456789Z")
        let r2 = find(dockerPath, offset: d1.utf8.count)
        XCTAssertEqual(r2?.message, "first part, second part", "docker partial parts merged")
        XCTAssertEqual(r2?.stream, "stderr")
        XCTAssertEqual(r2?.timestamp, "2024-01-02T03:04:06.000000000Z", "a merged record has its first part's time")
        XCTAssertNil(find(dockerPath, offset: d1.utf8.count + d2.utf8.count), "no record for the second part alone")
        let r4 = find(dockerPath, offset: d1.utf8.count + d2.utf8.count + d3.utf8.count)
        XCTAssertNil(r4?.json["message"], "JSON lifted: no message")
        XCTAssertEqual(r4?.json["level"] as? String, "info")
        XCTAssertEqual(r4?.json["msg"] as? String, "lifted from docker")
        XCTAssertEqual((r4?.json["count"] as? NSNumber)?.intValue, 3)
        XCTAssertEqual(r4?.stream, "stdout")
        XCTAssertEqual(r4?.timestamp, "2024-01-02T03:04:08.000000000Z")

        // CRI.
        let q1 = find(criPath, offset: 0)
        XCTAssertEqual(q1?.message, "plain cri line")
        XCTAssertEqual(q1?.stream, "stdout")
        XCTAssertEqual(q1?.timestamp, "2024-01-02T03:04:05.123456789Z")
        let q2 = find(criPath, offset: c1.utf8.count)
        XCTAssertEqual(q2?.message, "cri first part, cri second part", "CRI P + F merged")
        XCTAssertEqual(q2?.timestamp, "2024-01-02T03:04:06.500000000Z")
        let q4 = find(criPath, offset: c1.utf8.count + c2.utf8.count + c3.utf8.count)
        XCTAssertNil(q4?.json["message"])
        XCTAssertEqual(q4?.json["level"] as? String, "warn")
        XCTAssertEqual(q4?.json["msg"] as? String, "lifted from cri")
        XCTAssertEqual(q4?.json["ok"] as? Bool, true)
        XCTAssertEqual(q4?.stream, "stderr")
        let q5 = find(criPath, offset: c1.utf8.count + c2.utf8.count + c3.utf8.count + c4.utf8.count)
        XCTAssertNil(q5?.json["message"], "logfmt lifted: no message")
        XCTAssertEqual(q5?.json["level"] as? String, "debug")
        XCTAssertEqual(q5?.json["msg"] as? String, "logfmt from cri")
        XCTAssertEqual(q5?.json["user"] as? String, "alice")

        // format: auto (detected per file).
        let a1 = find(sandbox.path("auto/d.log"), offset: 0)
        XCTAssertEqual(a1?.message, "plain docker line")
        XCTAssertEqual(a1?.stream, "stdout")
        let a2 = find(sandbox.path("auto/c.log"), offset: 0)
        XCTAssertEqual(a2?.message, "plain cri line")
        XCTAssertEqual(a2?.timestamp, "2024-01-02T03:04:05.123456789Z")
    }

    /// A CRI record whose `P` part is read before a clean stop and whose `F` part is written after:
    /// the restart merges them into one record, and the complete records that followed the pending
    /// part on the other stream (stderr) are not shipped a second time (clean stop: no duplicates).
    func testPartialRecordPendingAtCleanStopIsMergedAfterRestartWithoutDuplicates() throws {
        try sandbox.mkdir("cri")
        var cri = TailOptions()
        cri.paths = ["./cri/*.log"]
        cri.format = "cri"
        try writeConfig(agentConfig([("cri", cri)]))
        let single = sandbox.path("cri/single.log"), mixed = sandbox.path("cri/mixed.log")
        appendText(single, "2024-01-02T03:04:05Z stdout F single before\n2024-01-02T03:04:06Z stdout P single part-a \n")
        appendText(mixed, "2024-01-02T03:04:05Z stdout P mixed part-a \n"
            + "2024-01-02T03:04:06Z stderr F mixed err 1\n2024-01-02T03:04:07Z stderr F mixed err 2\n")
        let agent = try startAgent()
        waitForMessages(["single before", "mixed err 1", "mixed err 2"])
        stopAgent(agent)

        let again = try startAgent()
        waitForLog(again, "following ", count: 2)
        appendText(single, "2024-01-02T03:04:08Z stdout F single part-b\n")
        appendText(mixed, "2024-01-02T03:04:08Z stdout F mixed part-b\n")
        let expected = ["single before", "single part-a single part-b", "mixed err 1", "mixed err 2", "mixed part-a mixed part-b"]
        waitForMessages(expected)
        stopAgent(again)
        assertWellFormed()
        let records = output.refresh()
        for m in expected {
            XCTAssertEqual(records.filter { $0.message == m }.count, 1, "\(m) should be shipped exactly once")
        }
        XCTAssertEqual(records.count, expected.count, "records: \(records.map { $0.message ?? "" })")
    }
}
