import Foundation
import XCTest

/// Issue 13: the API split by risk, /tap behind a token off loopback, and an API that can take
/// neither memory nor file descriptors from the pipeline.
final class APISafetyTests: AgentTestCase {
    private func address(_ file: String) -> String? {
        var a: String?
        poll(timeout: 30) {
            a = (try? String(contentsOfFile: sandbox.path("data/\(file)"), encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            return a?.isEmpty == false
        }
        return a
    }

    func testTapIsOffByDefaultAndNeedsTheTokenOffLoopback() throws {
        try sandbox.mkdir("logs")
        // Off loopback without a token: refused by validate.
        try writeConfig("""
            api: {address: "0.0.0.0:0", tap: true}
            inputs:
              in: {type: tail, paths: ["./logs/*.log"]}
            outputs:
              out: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}
            """)
        let v = try AgentProcess(binary: AnduinBinary.path!, arguments: ["validate", "--config", sandbox.configPath],
                                 stderrPath: sandbox.path("validate.stderr"), workingDirectory: NSTemporaryDirectory())
        XCTAssertTrue(v.waitExit())
        XCTAssertEqual(v.exit?.status, 1)
        XCTAssertTrue(v.stderr.contains("anduin.yaml:1:") && v.stderr.contains("tap_token_file"), v.stderr)

        let token = "tap-token-0123456789abcdef"
        _ = try sandbox.write("tap-token", token + "\n")
        try writeConfig("""
            data_dir: ./data
            api: {address: "127.0.0.1:0", tap: true, tap_address: "0.0.0.0:0", tap_token_file: ./tap-token}
            inputs:
              in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms}
            outputs:
              out: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}
            """)
        let agent = try startAgent()
        let probes = try XCTUnwrap(address("api.address").flatMap(RawHTTP.port))
        let tap = try XCTUnwrap(address("tap.address").flatMap(RawHTTP.port))
        XCTAssertEqual(RawHTTP.get(port: probes, path: "/health")?.status, 200)
        XCTAssertEqual(RawHTTP.get(port: probes, path: "/tap?limit=1")?.status, 404, "the probes' listener has no /tap")
        XCTAssertEqual(RawHTTP.get(port: tap, path: "/metrics")?.status, 404, "the tap listener has no probes")
        XCTAssertEqual(RawHTTP.get(port: tap, path: "/tap?limit=1")?.status, 401)
        XCTAssertEqual(RawHTTP.get(port: tap, path: "/tap?limit=1", headers: ["Authorization": "Bearer wrong"])?.status, 401)
        XCTAssertEqual(RawHTTP.get(port: tap, path: "/tap?limit=1",
                                   headers: ["Authorization": "Bearer " + token + "x"])?.status, 401)

        // `anduin tap` reads the token file and streams.
        let tapOut = sandbox.path("tap.out")
        let client = try AgentProcess(binary: AnduinBinary.path!, arguments: ["tap", "--config", sandbox.configPath, "--limit", "2"],
                                      stderrPath: sandbox.path("tap.stderr"), workingDirectory: NSTemporaryDirectory(),
                                      stdoutPath: tapOut)
        var i = 0
        XCTAssertTrue(poll(timeout: 60, interval: 0.2) {
            appendText(sandbox.path("logs/a.log"), "line \(i)\n")
            i += 1
            return !client.isRunning
        }, client.stderr)
        XCTAssertEqual(client.exit?.status, 0, client.stderr)
        XCTAssertEqual(((try? String(contentsOfFile: tapOut, encoding: .utf8)) ?? "").split(separator: "\n").count, 2)
        XCTAssertFalse(agent.stderr.contains(token))
        stopAgent(agent)
    }

    /// 40 /tap clients that never read: each may hold at most tap_queue_bytes in the agent (plus the
    /// kernel's socket buffers, which are not the agent's RSS), then it is dropped with a last line,
    /// which it can read for idle_timeout.
    func testStalledTapClientsStayWithinTheMemoryBound() throws {
        try sandbox.mkdir("logs")
        try writeConfig("""
            data_dir: ./data
            api: {address: "127.0.0.1:0", tap: true, tap_queue_bytes: 1MiB, idle_timeout: 10m}
            inputs:
              in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms}
            outputs:
              out: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}
            """)
        let agent = try startAgent()
        let port = try XCTUnwrap(address("api.address").flatMap(RawHTTP.port))
        let pad = String(repeating: "x", count: 180)
        var written = 0
        func write(_ n: Int) {
            var chunk = ""
            chunk.reserveCapacity(n * 200)
            for k in written..<written + n { chunk += "line \(k) \(pad)\n" }
            appendText(sandbox.path("logs/a.log"), chunk)
            written += n
        }
        write(20_000)
        XCTAssertTrue(poll(timeout: 120) { output.refresh().count == written })
        let baseline = try XCTUnwrap(residentBytes(pid: agent.pid))

        var clients: [Int32] = []
        defer { for fd in clients { close(fd) } }
        for _ in 0..<40 {
            // (Not a small SO_RCVBUF: a tiny window makes the final read crawl at zero-window probes.)
            let fd = try XCTUnwrap(RawHTTP.connect(port: port))
            XCTAssertTrue(RawHTTP.send(fd, "GET /tap HTTP/1.1\r\nHost: x\r\n\r\n"))
            clients.append(fd)
        }
        var peak = baseline
        for _ in 0..<10 {
            write(20_000)  // ~4 MiB of records per round
            XCTAssertTrue(poll(timeout: 120, interval: 0.05) {
                peak = max(peak, residentBytes(pid: agent.pid) ?? 0)
                return output.refresh().count == written
            }, "the pipeline kept going: \(output.refresh().count) of \(written)")
        }
        let grown = peak - baseline
        print("stalled tap clients: baseline RSS \(baseline >> 20) MiB, peak \(peak >> 20) MiB, grown \(grown >> 20) MiB")
        // The documented bound: clients x tap_queue_bytes, plus 64 MiB for everything else.
        XCTAssertLessThan(grown, 40 * (1 << 20) + 64 * (1 << 20))

        // Each client, reading at last, finds the records it got and then the line saying what it missed.
        for fd in clients {
            let text = String(decoding: RawHTTP.readAll(fd, timeout: 40, keepLast: 64 << 10), as: UTF8.self)
            let last = text.split(separator: "\n").last(where: { $0.contains("{") }) ?? ""
            XCTAssertTrue(last.contains("\"missed_records\":"), String(last.prefix(300)))
        }
        stopAgent(agent)
    }

    /// 2,000 idle connections: the agent keeps at most max_connections of them and closes idle ones, so
    /// new log files keep being opened and read.
    func testTwoThousandIdleConnectionsLeaveNewLogFilesFlowing() throws {
        try sandbox.mkdir("logs")
        try writeConfig("""
            data_dir: ./data
            api: {address: "127.0.0.1:0", max_connections: 64, header_timeout: 2s, idle_timeout: 2s}
            inputs:
              in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms}
            outputs:
              out: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}
            """)
        let agent = try startAgent()  // before raising our own limit: the agent keeps the normal one
        let port = try XCTUnwrap(address("api.address").flatMap(RawHTTP.port))
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let saved = limit
        limit.rlim_cur = min(limit.rlim_max, 8192)
        XCTAssertEqual(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit), 0)
        XCTAssertGreaterThanOrEqual(limit.rlim_cur, 2100, "the test needs 2,000 sockets (hard limit \(limit.rlim_max))")
        var idle: [Int32] = []
        defer {
            for fd in idle { close(fd) }
            var back = saved
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &back)
        }
        for _ in 0..<2000 {
            if let fd = RawHTTP.connect(port: port, blocking: false) { idle.append(fd) }
        }
        XCTAssertEqual(idle.count, 2000)
        // New files, one after another, while the connections are held.
        for f in 0..<20 {
            appendText(sandbox.path("logs/new-\(f).log"), "file \(f)\n")
        }
        XCTAssertTrue(poll(timeout: 60) { output.refresh().count == 20 }, "\(output.refresh().count) of 20 new files read")
        let fds = openFDs(pid: agent.pid)
        print("2,000 idle connections: the agent has \(fds) file descriptors open")
        XCTAssertLessThan(fds, 200)
        // Idle slots are freed by the timeouts: the probes answer again.
        XCTAssertTrue(poll(timeout: 30, interval: 0.5) { RawHTTP.get(port: port, path: "/health", timeout: 2)?.status == 200 })
        stopAgent(agent)
    }
}
