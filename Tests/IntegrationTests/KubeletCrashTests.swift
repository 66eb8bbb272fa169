import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// kill -9 storms on a kubelet node tree (see `KubeletNode`), on both layouts: every line exactly
/// once in the index (ES drops replays by `_id`), and the replays an HTTP destination would see
/// counted (they are bounded by about one checkpoint interval per file and one batch per output).
final class KubeletCrashTests: AgentTestCase {
    private var os: OsmemPeer!
    private var receiver: ReceiverPeer!

    override func setUpWithError() throws {
        try super.setUpWithError()
        os = try OsmemPeer()
        receiver = try ReceiverPeer()
    }

    override func tearDown() {
        os?.stop()
        receiver?.stop()
        super.tearDown()
    }

    func testKillStormContainersLayout() throws { try killStorm(.containers) }
    func testKillStormPodsLayout() throws { try killStorm(.pods) }

    private func indexed() -> [String] {
        ((try? os.search("kube", size: 10_000)) ?? []).compactMap { $0.source["message"] as? String }
    }

    /// 16 kill -9 while two containers write: rotations while the agent runs and while it is dead,
    /// one copytruncate (logrotate with olddir), older rotations gzipped once read.
    private func killStorm(_ layout: NodeLayout) throws {
        let node = KubeletNode(root: sandbox.path("node"))
        let a = node.addContainer(pod: "api-1")
        let b = node.addContainer(pod: "web-2")
        let tail = TailOptions(paths: node.glob(layout), format: "cri", rotateWait: "1s")
        try writeConfig(deliveryConfig(tail, shutdownTimeout: "5s", outputs: [
            .elasticsearch("es", url: os.url, index: "kube"),
            // A memory buffer acknowledges only what was delivered: its replays are the tail's own
            // (lines read after the last checkpoint), not the disk buffer's.
            .http("http", uri: receiver.url, ["buffer: {type: memory, max_records: 5000}"]),
        ]))
        var agent = try startAgent()
        var kills = 0
        func caughtUp() {
            let want = Set(node.expected)
            waitFor("the index to hold every line written so far", timeout: 120) { want.isSubset(of: Set(indexed())) }
        }
        for k in 0..<16 {
            for _ in 0..<5 {
                a.write(10)
                b.write(10)
                usleep(30_000)
            }
            if k % 4 == 1 {
                a.rotate(compress: false)  // while running
                b.write(5)
            }
            killAgent(agent)
            kills += 1
            a.write(20)
            b.write(20)
            if k % 4 == 3 {
                // While the agent is dead: the part written since its last checkpoint is only in
                // the rotated file, which no glob matches.
                a.rotate(compress: false)
                b.rotate(compress: false)
                a.write(10)
            }
            agent = try startAgent()
            waitForLog(agent, "anduin started")
            if k == 9 {
                caughtUp()
                b.copyTruncate(olddir: sandbox.path("node/var/log/old"))
                b.write(30)
            }
            if k % 4 == 0 && k > 0 {
                // Kubelet compresses older rotations at its next rotation, long after they were read.
                caughtUp()
                for c in [a, b] { c.compressOld(keep: 5) }
            }
        }
        caughtUp()
        stopAgent(agent)
        let messages = indexed()
        let report = exactlyOnceReport(messages, expected: node.expected)
        XCTAssertEqual(report.missing.count, 0, "\(layout): lost \(report.missing.prefix(5))")
        XCTAssertEqual(report.duplicated.count, 0, "\(layout): duplicated in the index \(report.duplicated.prefix(5))")
        XCTAssertEqual(report.unexpected, 0, "\(layout): unexpected documents")
        let snap = try receiver.snapshot()
        let httpMessages = snap.records.compactMap { $0["message"] as? String }
        let httpReport = exactlyOnceReport(httpMessages, expected: node.expected)
        XCTAssertEqual(httpReport.missing.count, 0, "\(layout): lost at the HTTP receiver \(httpReport.missing.prefix(5))")
        let replays = httpMessages.count - Set(httpMessages).count
        print("kill storm \(layout): \(kills) kill -9, \(node.expected.count) lines, index exactly once; HTTP receiver got \(httpMessages.count) records, \(replays) replays (\(String(format: "%.1f", Double(replays) / Double(kills))) per kill)")
    }
}
