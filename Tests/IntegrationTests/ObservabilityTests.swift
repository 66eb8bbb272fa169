import Foundation
import XCTest
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The agent's API (metrics, health, ready, tap), reloads, as an operator uses them.
final class ObservabilityTests: AgentTestCase {
    /// Parses Prometheus text with the reference parser (prometheus-client, installed by `make test`)
    /// and returns {"name{label=value,...}": value} for every sample.
    func parsePrometheus(_ text: String) throws -> [String: Double] {
        let python = packageRoot.appendingPathComponent(".venv-test/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw PeerError("no .venv-test: run the tests with `make test` (installs prometheus-client)")
        }
        let script = """
            import sys, json
            from prometheus_client.parser import text_string_to_metric_families
            out = {}
            for fam in text_string_to_metric_families(sys.stdin.read()):
                for s in fam.samples:
                    labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                    out[f"{s.name}{{{labels}}}"] = s.value
            print(json.dumps(out))
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", script]
        let inPipe = Pipe(), outPipe = Pipe(), errPipe = Pipe()
        p.standardInput = inPipe
        p.standardOutput = outPipe
        p.standardError = errPipe
        try p.run()
        inPipe.fileHandleForWriting.write(Data(text.utf8))
        try inPipe.fileHandleForWriting.close()
        let data = outPipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let err = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw PeerError("the Prometheus parser refused the metrics: \(err)")
        }
        return (try JSONSerialization.jsonObject(with: data) as? [String: Double]) ?? [:]
    }

    /// `anduin status --watch`: one block per --interval (plain blocks when stdout is not a
    /// terminal), exit 0 on SIGINT; when the agent goes away, a message and exit 1.
    func testStatusWatchRefreshesAndEndsCleanly() throws {
        try sandbox.mkdir("logs")
        try writeConfig("""
            data_dir: ./data
            api: {address: "127.0.0.1:0"}
            inputs:
              in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms}
            outputs:
              out: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}
            """)
        let agent = try startAgent()
        appendText(sandbox.path("logs/a.log"), "one\ntwo\n")
        waitForRecordCount(2)
        // The input saves its checkpoint and bytes_behind together, up to a checkpoint interval
        // after the delivery: caught up from then on.
        waitFor("both lines checkpointed") { sandbox.checkpoints("in").values.reduce(0, +) == 8 }
        waitFor("the API address file") { FileManager.default.fileExists(atPath: sandbox.path("data/api.address")) }
        func watch(_ name: String) throws -> (AgentProcess, String) {
            let out = sandbox.path("\(name).out")
            let p = try AgentProcess(binary: AnduinBinary.path!,
                                     arguments: ["status", "--config", sandbox.configPath, "--watch", "--interval", "0.2"],
                                     stderrPath: out + ".err", workingDirectory: NSTemporaryDirectory(), stdoutPath: out)
            return (p, out)
        }
        func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

        let (first, out1) = try watch("watch1")
        waitFor("three refreshes") { text(out1).components(separatedBy: "anduin status ").count - 1 >= 3 }
        first.signal(SIGINT)
        XCTAssertTrue(first.waitExit(timeout: 30))
        XCTAssertEqual(first.exit?.status, 0, first.stderr)
        XCTAssertEqual(first.exit?.signalled, false)
        let blocks = text(out1).components(separatedBy: "anduin status ").dropFirst()
        XCTAssertFalse(text(out1).contains("\u{1B}["), "no terminal escapes in a file")
        for b in blocks.dropLast() { XCTAssertTrue(b.contains("OK: caught up") && b.contains("OUTPUT"), b) }

        // --json --watch: one JSON document a line.
        let jsonOut = sandbox.path("watch-json.out")
        let j = try AgentProcess(binary: AnduinBinary.path!,
                                 arguments: ["status", "--config", sandbox.configPath, "--watch", "--json", "--interval", "0.2"],
                                 stderrPath: jsonOut + ".err", workingDirectory: NSTemporaryDirectory(), stdoutPath: jsonOut)
        waitFor("two JSON lines") { text(jsonOut).split(separator: "\n").count >= 2 }
        j.signal(SIGINT)
        XCTAssertTrue(j.waitExit(timeout: 30))
        XCTAssertEqual(j.exit?.status, 0, j.stderr)
        for l in text(jsonOut).split(separator: "\n") {
            XCTAssertNotNil(try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any], String(l))
        }

        let (second, out2) = try watch("watch2")
        waitFor("a refresh") { text(out2).contains("OUTPUT") }
        stopAgent(agent)
        XCTAssertTrue(second.waitExit(timeout: 30), "the watch ends when the agent goes away")
        XCTAssertEqual(second.exit?.status, 1)
        XCTAssertTrue(second.stderr.contains("the agent went away") && second.stderr.contains("stopped watching"), second.stderr)
    }

    /// The README's `status` examples (Observability) have the real binary's table headers and
    /// identity line: a change of the table must come with a fresh capture.
    func testReadmeStatusExamplesMatchTheRealOutput() throws {
        try sandbox.mkdir("logs")
        try writeConfig("""
            data_dir: ./data
            api: {address: "127.0.0.1:0"}
            inputs:
              containers: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms}
            filters:
              parse: {type: parse, from: [containers], formats: [json]}
            outputs:
              out: {type: file, from: [parse], path: ./out/records.ndjson, \(allMetadata)}
            """)
        let agent = try startAgent()
        appendText(sandbox.path("logs/a.log"), #"{"msg":"one"}"# + "\n")
        waitForRecordCount(1)
        waitFor("the API address file") { FileManager.default.fileExists(atPath: sandbox.path("data/api.address")) }
        let out = sandbox.path("status.out")
        let p = try AgentProcess(binary: AnduinBinary.path!, arguments: ["status", "--config", sandbox.configPath],
                                 stderrPath: out + ".err", workingDirectory: NSTemporaryDirectory(), stdoutPath: out)
        XCTAssertTrue(p.waitExit(timeout: 60))
        let real = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        stopAgent(agent)
        func fixed(_ lines: [String]) -> [String] {
            lines.filter { ["INPUT ", "FILTER ", "OUTPUT ", "in + recovered"].contains(where: $0.hasPrefix) }
                .map { $0.replacingOccurrences(of: "(holds; records are moving, counted as pending)", with: "(holds)")
                    .split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }  // widths follow the content
        }
        let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let section = readme.components(separatedBy: "An agent whose Elasticsearch refuses the credentials").dropFirst().first ?? ""
        let examples = section.components(separatedBy: "```text").dropFirst().prefix(2).map { block in
            (block.components(separatedBy: "```").first ?? "").split(separator: "\n").map { String($0.drop { $0 == " " }) }
        }
        XCTAssertEqual(examples.count, 2, "two examples in the README")
        XCTAssertTrue(examples.first?.first?.hasPrefix("NOT READY: ") == true)
        XCTAssertEqual(examples.last?.first, "OK: caught up, every output delivering")
        for e in examples { XCTAssertEqual(fixed(e), fixed(real), "README example vs the real status:\n\(real.joined(separator: "\n"))") }
    }

    func testMetricsCountWhatWasWrittenAndParseAsPrometheusText() throws {
        try sandbox.mkdir("logs")
        try writeConfig("""
            data_dir: ./data
            api: {address: "127.0.0.1:0"}
            inputs:
              in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms, checkpoint_interval: 200ms}
            filters:
              parse: {type: parse, from: [in], formats: [json]}
            outputs:
              out: {type: file, from: [parse], path: ./out/records.ndjson, \(allMetadata)}
            """)
        let agent = try startAgent()
        let lines = (0..<300).map { i in i % 3 == 0 ? #"{"level":"info","n":\#(i)}"# : "plain line \(i)" }
        appendText(sandbox.path("logs/a.log"), lines.joined(separator: "\n") + "\n")
        appendText(sandbox.path("logs/b.log"), "one\ntwo\n")
        XCTAssertTrue(poll { output.refresh().count == 302 }, "records: \(output.refresh().count)")
        let api = try XCTUnwrap(apiAddress())
        var samples: [String: Double] = [:]
        // Counters are brought up to date at scrape time; wait until the checkpoint-driven gauges settle.
        XCTAssertTrue(poll(timeout: 30) {
            guard let m = get("http://\(api)/metrics"), m.status == 200, let s = try? parsePrometheus(m.body) else { return false }
            samples = s
            return s["anduin_input_bytes_behind{component=in,type=tail}"] == 0
        }, "\(samples)")
        XCTAssertEqual(samples["anduin_input_records_out_total{component=in,type=tail}"], 302)
        XCTAssertEqual(samples["anduin_filter_records_in_total{component=parse,type=parse}"], 302)
        XCTAssertEqual(samples["anduin_filter_parsed_json_total{component=parse,type=parse}"], 100)
        XCTAssertEqual(samples["anduin_output_records_out_total{component=out,type=file}"], 302)
        XCTAssertEqual(samples["anduin_input_files_watched{component=in,type=tail}"], 2)
        XCTAssertEqual(samples["anduin_input_inotify{component=in,type=tail}"], 1)
        let bytes = lines.joined(separator: "\n").utf8.count + 1 + "one\ntwo\n".utf8.count
        XCTAssertEqual(samples["anduin_input_bytes_read_total{component=in,type=tail}"], Double(bytes))
        // Read-to-acknowledged latency: one observation per acknowledged batch.
        XCTAssertGreaterThan(samples["anduin_input_ack_latency_seconds_count{component=in,type=tail}"] ?? 0, 0, "\(samples.keys.sorted())")
        // The build and the standard process metrics.
        XCTAssertEqual(samples["anduin_build_info{commit=unknown,version=0.1.0}"], 1, "\(samples.keys.filter { $0.contains("build") })")
        XCTAssertGreaterThan(samples["process_cpu_seconds_total{}"] ?? -1, 0)
        XCTAssertGreaterThan(samples["process_resident_memory_bytes{}"] ?? -1, 1_048_576)
        XCTAssertGreaterThan(samples["process_open_fds{}"] ?? -1, 3)
        XCTAssertGreaterThan(samples["process_max_fds{}"] ?? -1, samples["process_open_fds{}"] ?? 0)
        let start = samples["process_start_time_seconds{}"] ?? 0, now = Date().timeIntervalSince1970
        XCTAssertTrue(start > now - 3600 && start <= now + 1, "process_start_time_seconds \(start), now \(now)")
        XCTAssertEqual(get("http://\(api)/health")?.status, 200)
        XCTAssertEqual(get("http://\(api)/ready")?.status, 200)
        let unknown = get("http://\(api)/nope")
        XCTAssertEqual(unknown?.status, 404)
        XCTAssertTrue(unknown?.body.contains("/status") == true, "the index names every route: \(unknown?.body ?? "")")
        XCTAssertTrue(agent.stderr.contains("(/metrics, /health, /ready, /status)"), agent.stderr)
        agent.terminate()
        XCTAssertTrue(agent.waitExit())
    }

    func testReadyTurns503WhileAnOutputIsDownWithAFullBufferAndBackAfter() throws {
        let receiver = try ReceiverPeer()
        let port = receiver.port
        receiver.stop()  // down from the start
        try sandbox.mkdir("logs")
        try writeConfig("""
            data_dir: ./data
            api: {address: "127.0.0.1:0"}
            inputs:
              in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms, checkpoint_interval: 200ms}
            outputs:
              sink:
                type: http
                from: [in]
                uri: http://127.0.0.1:\(port)/ingest
                buffer: {type: memory, max_records: 50}
                batch: {max_records: 50, timeout: 100ms}
                retry: {initial: 50ms, max: 300ms}
                connect_timeout: 1s
                ready: {stall_after: 1s}
            """)
        let agent = try startAgent()
        let api = try XCTUnwrap(apiAddress())
        appendText(sandbox.path("logs/a.log"), (0..<400).map { "line \($0)" }.joined(separator: "\n") + "\n")
        var last: (status: Int, body: String)?
        XCTAssertTrue(poll(timeout: 60) {
            last = get("http://\(api)/ready")
            return last?.status == 503
        }, "ready stayed \(String(describing: last))")
        XCTAssertTrue(last?.body.contains("output sink") == true, last?.body ?? "")
        XCTAssertEqual(get("http://\(api)/health")?.status, 200, "alive even when not ready")

        let back = try ReceiverPeer(port: port)
        defer { back.stop() }
        XCTAssertTrue(poll(timeout: 60) { (try? back.snapshot().records.count) == 400 }, "\(String(describing: try? back.snapshot().records.count))")
        XCTAssertTrue(poll(timeout: 30) { get("http://\(api)/ready")?.status == 200 })
        // Requests were timed (failed ones too) and delivered records' lag observed.
        let samples = try parsePrometheus(get("http://\(api)/metrics")?.body ?? "")
        XCTAssertGreaterThan(samples["anduin_output_request_duration_seconds_count{component=sink,type=http}"] ?? 0, 1)
        XCTAssertGreaterThan(samples["anduin_output_delivery_lag_seconds_count{component=sink,type=http}"] ?? 0, 0)
        agent.terminate()
        XCTAssertTrue(agent.waitExit())
    }

    func testReloadAddsAnOutputKeepsPositionsAndRefusesABadConfig() throws {
        try sandbox.mkdir("logs")
        let base = """
            data_dir: ./data
            inputs:
              in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms, checkpoint_interval: 200ms}
            outputs:
              out: {type: file, from: [in], path: ./out/records.ndjson, \(allMetadata)}
            """
        try writeConfig(base)
        let agent = try startAgent()
        appendText(sandbox.path("logs/a.log"), (0..<100).map { "before \($0)" }.joined(separator: "\n") + "\n")
        XCTAssertTrue(poll { output.refresh().count == 100 })

        try writeConfig(base.replacingOccurrences(of: "checkpoint_interval: 200ms", with: "checkpoint_interval: 300ms")
                        + "\n  second: {type: file, from: [in], path: ./out/second.ndjson, \(allMetadata)}\n")
        agent.signal(SIGHUP)
        XCTAssertTrue(poll { agent.stderr.contains("reloaded") }, agent.stderr)
        // One line says what changed; the reload does not read like a stop and a start.
        XCTAssertTrue(agent.stderr.contains("reloaded \(sandbox.configPath): added output second; changed in.checkpoint_interval 200ms → 300ms"), agent.stderr)
        XCTAssertEqual(agent.stderr.components(separatedBy: "anduin stopped").count, 1, agent.stderr)
        XCTAssertEqual(agent.stderr.components(separatedBy: "anduin started").count, 2, agent.stderr)
        appendText(sandbox.path("logs/a.log"), (0..<50).map { "after \($0)" }.joined(separator: "\n") + "\n")
        let second = OutputReader(path: sandbox.path("out/second.ndjson"))
        XCTAssertTrue(poll { output.refresh().count == 150 && second.refresh().count == 50 },
                      "first \(output.refresh().count), second \(second.refresh().count)")
        let firstMessages = output.refresh().compactMap(\.message)
        XCTAssertEqual(Set(firstMessages).count, 150, "no line twice in the old output across the reload")
        XCTAssertEqual(second.refresh().compactMap(\.message), (0..<50).map { "after \($0)" })

        // An invalid config is refused with file:line:column and the running one keeps going.
        try writeConfig(base + "\n  broken: {type: file, from: [nowhere], path: x}\n")
        agent.signal(SIGHUP)
        XCTAssertTrue(poll { agent.stderr.contains("reload refused") }, agent.stderr)
        XCTAssertTrue(agent.stderr.contains("anduin.yaml:6:31: output \"broken\": from: names \"nowhere\""), "at the reference, not the component: \(agent.stderr)")
        appendText(sandbox.path("logs/a.log"), "still running\n")
        XCTAssertTrue(poll { output.refresh().count == 151 && second.refresh().count == 51 })
        agent.terminate()
        XCTAssertTrue(agent.waitExit())
        XCTAssertEqual(agent.exit?.status, 0)
    }

    func testTapShowsRecordsPassingAComponent() throws {
        try sandbox.mkdir("logs")
        try writeConfig("""
            data_dir: ./data
            api: {address: "127.0.0.1:0", tap: true}
            inputs:
              in: {type: tail, paths: ["./logs/*.log"], format: raw, glob_interval: 200ms}
            filters:
              parse: {type: parse, from: [in], formats: [json]}
            outputs:
              out: {type: file, from: [parse], path: ./out/records.ndjson, \(allMetadata)}
            """)
        let agent = try startAgent()
        _ = try XCTUnwrap(apiAddress())
        let tapOut = sandbox.path("tap.out")
        let tap = try AgentProcess(binary: AnduinBinary.path!, arguments: ["tap", "--config", sandbox.configPath,
                                                                           "--component", "parse", "--limit", "3"],
                                   stderrPath: sandbox.path("tap.stderr"), workingDirectory: NSTemporaryDirectory(),
                                   stdoutPath: tapOut)
        // Keep writing until tap has connected and seen three records.
        var i = 0
        XCTAssertTrue(poll(timeout: 60, interval: 0.2) {
            appendText(sandbox.path("logs/a.log"), #"{"n":\#(i)}"# + "\n")
            i += 1
            return !tap.isRunning
        }, "tap did not end: \(tap.stderr)")
        XCTAssertEqual(tap.exit?.status, 0, tap.stderr)
        let lines = ((try? String(contentsOfFile: tapOut, encoding: .utf8)) ?? "").split(separator: "\n")
        XCTAssertEqual(lines.count, 3, "\(lines)")
        for line in lines {
            let j = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            XCTAssertEqual(j["component"] as? String, "parse")
            let record = try XCTUnwrap(j["record"] as? [String: Any])
            XCTAssertNotNil(record["n"], "tap shows the record after the parse filter: \(record)")
        }
        agent.terminate()
        XCTAssertTrue(agent.waitExit())
    }
}
