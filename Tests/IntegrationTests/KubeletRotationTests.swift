import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The zero-loss promise on a kubelet node tree (see `KubeletNode`), on both layouts: output
/// outages with rotations, rotation while the agent is down, kill -9 storms.
final class KubeletRotationTests: AgentTestCase {
    private var receiver: ReceiverPeer?
    static let long = ProcessInfo.processInfo.environment["ANDUIN_LONG_TESTS"] == "1"

    override func tearDown() {
        receiver?.stop()
        super.tearDown()
    }

    private func tailYAML(_ globs: [String], rotateWait: String = "1s") -> String {
        """
          in:
            type: tail
            paths: [\(globs.map { "\"\($0)\"" }.joined(separator: ", "))]
            format: cri
            rotate_wait: \(rotateWait)
            glob_interval: 200ms
            poll_interval: 100ms
            checkpoint_interval: 200ms

        """
    }

    private func httpOutput(_ port: Int, buffer: String) -> String {
        """
          out:
            type: http
            from: [in]
            uri: "http://127.0.0.1:\(port)/ingest"
            buffer: \(buffer)
            batch: {max_records: 500, timeout: 100ms}
            retry: {initial: 50ms, max: 300ms}

        """
    }

    private static let smallDisk = "{type: disk, max_bytes: 64KiB, segment_bytes: 16KiB}"

    /// Messages the receiver has, and how many records it got in all (replays included).
    private func received() -> (messages: [String], records: Int, idsByMessage: [String: Set<String>]) {
        guard let snap = try? receiver?.snapshot() else { return ([], 0, [:]) }
        var msgs: [String] = []
        var ids: [String: Set<String>] = [:]
        for r in snap.records {
            guard let m = r["message"] as? String else { continue }
            msgs.append(m)
            let id = (r["event"] as? [String: Any])?["id"] as? String ?? ""
            ids[m, default: []].insert(id)
        }
        return (msgs, snap.records.count, ids)
    }

    /// Waits until every expected message reached the receiver (at least once).
    private func waitForAll(_ node: KubeletNode, timeout: Double, file: StaticString = #filePath, line: UInt = #line) {
        let want = Set(node.expected)
        var missing = want.count
        waitFor("all \(want.count) lines at the receiver (\(missing) missing)", timeout: timeout, file: file, line: line) {
            missing = want.subtracting(received().messages).count
            return missing == 0
        }
    }

    // MARK: (1) output outage with rotations

    func testOutageWithRotationsContainersLayout() throws { try outageWithRotations(.containers) }
    func testOutageWithRotationsPodsLayout() throws { try outageWithRotations(.pods) }

    /// The output fails for the whole writing period (20 s; 2 min with ANDUIN_LONG_TESTS=1) while two
    /// containers log and kubelet rotates each file 4 times (older rotations gzipped). The disk buffer
    /// is small, so the input is paused most of the time: new files must still be found and pinned.
    /// Every line arrives exactly once.
    private func outageWithRotations(_ layout: NodeLayout) throws {
        let node = KubeletNode(root: sandbox.path("node"))
        let a = node.addContainer(pod: "api-1")
        let b = node.addContainer(pod: "web-2")
        receiver = try ReceiverPeer()
        let port = receiver!.port
        try writeConfig("data_dir: ./data\nshutdown_timeout: 10s\ninputs:\n" + tailYAML(node.glob(layout))
                        + "outputs:\n" + httpOutput(port, buffer: Self.smallDisk))
        let agent = try startAgent()
        for c in [a, b] { c.write(10) }
        waitForAll(node, timeout: 60)

        try receiver!.script([], then: "500")  // the outage
        let seconds = Self.long ? 120.0 : 20.0
        let perSecond = Self.long ? 500 : 150
        let ticks = Int(seconds * 10)
        for t in 1...ticks {
            for c in [a, b] {
                c.write(perSecond / 10)
                // 4 rotations per file, evenly spread.
                if t % (ticks / 5) == 0 && t < ticks { c.rotate() }
            }
            usleep(100_000)
        }
        try receiver!.script([], then: "200")
        waitForAll(node, timeout: Self.long ? 600 : 180)
        stopAgent(agent)

        let r = received()
        let report = exactlyOnceReport(r.messages, expected: node.expected)
        XCTAssertEqual(report.missing.count, 0, "\(layout): \(report.missing.count) of \(node.expected.count) lines lost, e.g. \(report.missing.prefix(5))")
        XCTAssertEqual(report.duplicated.count, 0, "\(layout): \(report.duplicated.count) lines delivered more than once, e.g. \(report.duplicated.prefix(3))")
        XCTAssertFalse(agent.stderr.contains("giving up"), "a rotated file was given up")
        print("outage \(layout): \(node.expected.count) lines, \(r.records) records received, 0 lost")
    }

    // MARK: (3) rotation while the agent is stopped

    func testRotationWhileStoppedContainersLayout() throws { try rotationWhileStopped(.containers) }
    func testRotationWhileStoppedPodsLayout() throws { try rotationWhileStopped(.pods) }

    /// The output is down, lines are read (and, with a disk buffer, buffered); the agent is stopped
    /// (SIGTERM, then in another round kill -9), kubelet rotates, new lines go to the new file, the
    /// agent starts again with the output up: every line of the rotated file and of the new one is
    /// delivered, each under one event.id (replays after kill -9 carry the same id).
    private func rotationWhileStopped(_ layout: NodeLayout) throws {
        receiver = try ReceiverPeer()
        let port = receiver!.port
        var round = 0
        for buffer in [Self.smallDisk, "{type: memory, max_records: 1000}"] {
            for kill in [false, true] {
                round += 1
                let node = KubeletNode(root: sandbox.path("node\(round)"))
                let c = node.addContainer(pod: "r\(round)")
                try receiver!.request("/_control/reset")
                try receiver!.script([], then: "500")
                try writeConfig("data_dir: ./data\(round)\nshutdown_timeout: 2s\ninputs:\n" + tailYAML(node.glob(layout))
                                + "outputs:\n" + httpOutput(port, buffer: buffer))
                let agent = try startAgent()
                c.write(300)
                // Read, and tried at least once (so it is in the buffer, or in flight in memory).
                waitFor("a delivery attempt", timeout: 60) { (try? receiver!.snapshot().requests) ?? 0 > 0 }
                // The agent knows the file (its checkpoint names it); with a disk buffer, what was
                // buffered is acknowledged in it.
                let cpFile = sandbox.path("data\(round)/checkpoints/in.json")
                waitFor("the checkpoint to name the file", timeout: 60) {
                    let text = (try? String(contentsOfFile: cpFile, encoding: .utf8)) ?? ""
                    return text.contains("r\(round)") && (!buffer.contains("disk") || !text.contains("\"offset\":0,"))
                }
                if kill { killAgent(agent) } else {
                    agent.terminate()
                    XCTAssertTrue(agent.waitExit(timeout: 60))
                }
                c.write(200)  // written after the stop, before the rotation
                c.rotate()
                c.write(300)  // the new file
                try receiver!.script([], then: "200")
                let again = try startAgent()
                waitForAll(node, timeout: 90)
                stopAgent(again)
                let r = received()
                let report = exactlyOnceReport(r.messages, expected: node.expected)
                let what = "\(layout), \(buffer.contains("disk") ? "disk" : "memory"), \(kill ? "kill -9" : "SIGTERM")"
                XCTAssertEqual(report.missing.count, 0, "\(what): lines lost: \(report.missing.prefix(5))")
                let splitIDs = r.idsByMessage.filter { $0.value.count > 1 }
                XCTAssertEqual(splitIDs.count, 0, "\(what): lines shipped under several event.ids: \(splitIDs.prefix(3))")
                if !kill {
                    XCTAssertEqual(report.duplicated.count, 0, "\(what): duplicates after a clean stop: \(report.duplicated.prefix(3))")
                }
                print("rotation while stopped (\(what)): \(node.expected.count) lines, \(r.records) records received (\(r.records - node.expected.count) replays)")
            }
        }
    }
}

extension ReceiverPeer {
    func request(_ path: String) throws {
        _ = try httpJSON("POST", "http://127.0.0.1:\(port)\(path)", body: [:])
    }
}
