import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Records built from lines of several read batches, across kill -9: a CRI container writes Java
/// traces on stderr (each in several writes, so traces routinely span read batches) while stdout keeps
/// logging; the agent (tail with `multiline:` → elasticsearch on osmem-server) is SIGKILLed again and again.
/// In the index every trace is one document, whole, with its first line's event.id; no continuation
/// line ever becomes a document of its own; every stdout line is one document. The lines are joined
/// by `multiline:` on the tail input, before acknowledgements exist.
final class MultilineCrashTests: AgentTestCase {
    var os: OsmemPeer!

    override func setUpWithError() throws {
        try super.setUpWithError()
        os = try OsmemPeer()
    }

    override func tearDown() {
        super.tearDown()
        os?.stop()
        os = nil
    }

    static func cri(_ stream: String, _ text: String) -> String {
        "2026-12-01T10:00:00.000000001Z \(stream) F \(text)\n"
    }

    static func trace(_ i: Int) -> [String] {
        ["ERROR trace \(i) failed", "java.lang.IllegalStateException: trace \(i)"]
            + (0..<(2 + i % 7)).map { "\tat com.example.Frame\(i).call\($0)(Frame.java:\($0))" }
    }

    func testTracesSurviveKillDashNineWholeAndOnce() throws {
        try runCrashScenario(kills: ProcessInfo.processInfo.environment["ANDUIN_LONG_TESTS"] == nil ? 9 : 25,
                             buffer: "{type: memory}")
    }

    func testTracesSurviveKillDashNineWithTheDiskBuffer() throws {
        try runCrashScenario(kills: 5, buffer: "{type: disk, max_bytes: 64MiB, segment_bytes: 1MiB}")
    }

    private func count() -> Int { max(0, (try? os.count("traces")) ?? 0) }

    private func runCrashScenario(kills: Int, buffer: String) throws {
        var tail = TailOptions()
        tail.format = "cri"
        try writeConfig("""
            data_dir: ./data
            shutdown_timeout: 30s
            inputs:
            \(tail.yaml(name: "in").replacingOccurrences(of: "\n\n", with: "\n"))    multiline: {mode: java, flush_timeout: 300ms}
            outputs:
              es:
                type: elasticsearch
                from: [in]
                hosts: ["\(os.url)"]
                index: traces
                buffer: \(buffer)
                batch: {max_records: 50, timeout: 50ms}
                retry: {initial: 50ms, max: 500ms}
                \(allMetadata)

            """)
        let path = sandbox.path("logs/app.log")
        var agent = try startAgent()
        let state = SharedState()
        let job = BackgroundJob("writer") {
            // Each trace in three writes, and the last one also starts the next trace: read batches cut
            // traces at random places, and the batch that completes a trace holds the next one.
            func head(_ i: Int) -> String {
                let lines = Self.trace(i)
                return lines[..<(1 + i % 2)].map { Self.cri("stderr", $0) }.joined() + Self.cri("stdout", "GET /r\(i) 200")
            }
            appendText(path, head(0))
            var i = 0
            while true {
                let lines = Self.trace(i)
                let cut1 = 1 + i % 2, cut2 = min(lines.count, cut1 + 2)
                usleep(3_000)
                appendText(path, lines[cut1..<cut2].map { Self.cri("stderr", $0) }.joined())
                usleep(3_000)
                let last = state.stopRequested
                appendText(path, lines[cut2...].map { Self.cri("stderr", $0) }.joined() + (last ? "" : head(i + 1)))
                state.add("traces", 1)
                if last { break }
                i += 1
                usleep(5_000)
            }
        }
        for _ in 0..<kills {
            let before = count()
            waitFor("progress in the index (have \(before))") { count() >= before + 40 }
            usleep(UInt32.random(in: 0...150_000))
            killAgent(agent)
            agent = try startAgent()
        }
        state.requestStop()
        XCTAssertTrue(job.join(), "writer stopped")
        let traces = state.counts["traces"] ?? 0
        // Every trace and every stdout line; the last trace ships by the flush timeout.
        waitFor("\(2 * traces) documents (have \(count()))", timeout: 120) { count() >= 2 * traces }
        stopAgent(agent)

        let docs = try os.search("traces", size: 2 * traces + 1000)
        var byMessage: [String: Int] = [:]
        for d in docs { byMessage[d.source["message"] as? String ?? "?", default: 0] += 1 }
        var missing: [Int] = []
        for i in 0..<traces where byMessage[Self.trace(i).joined(separator: "\n")] != 1 { missing.append(i) }
        let fragments = byMessage.keys.filter { $0.hasPrefix("\tat") || $0.hasPrefix("java.lang") }
        let stdoutMissing = (0..<traces).filter { byMessage["GET /r\($0) 200"] != 1 }
        XCTAssertTrue(fragments.isEmpty, "\(fragments.count) fragments shipped as documents, e.g. \(fragments.prefix(3))")
        XCTAssertTrue(missing.isEmpty, "\(missing.count) of \(traces) traces not exactly once and whole, e.g. \(missing.prefix(5))")
        XCTAssertTrue(stdoutMissing.isEmpty, "\(stdoutMissing.count) stdout lines not exactly once")
        XCTAssertEqual(docs.count, 2 * traces, "documents")
        XCTAssertTrue(docs.allSatisfy { $0.id == eventID($0.source) }, "_id = event.id of the first line")
        print("multiline kill -9 (\(buffer)): \(traces) traces, \(kills) kills, \(docs.count) documents")
    }
}
