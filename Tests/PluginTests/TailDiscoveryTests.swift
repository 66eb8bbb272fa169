import AnduinCore
import Foundation
import Logging
import XCTest
@testable import in_tail

/// Finding new files: with inotify from the events of every folder the globs pass through (no
/// periodic re-evaluation but the slow `refresh_interval`), and by polling every `glob_interval`
/// when a folder cannot be watched.
final class TailDiscoveryTests: XCTestCase {
    private var root: String!

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "anduin-tail-discovery-\(UUID().uuidString.prefix(8))"
        for d in ["data", "pods/ns_old_1/app"] {
            try FileManager.default.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true)
        }
        try Data("old\n".utf8).write(to: URL(fileURLWithPath: root + "/pods/ns_old_1/app/0.log"))
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    private func config(glob: Double, refresh: Double) -> TailConfig {
        var config = TailConfig(paths: [root + "/pods/*/*/*.log"])
        config.format = .raw
        config.globInterval = glob
        config.refreshInterval = refresh
        return config
    }

    private func context(_ stats: ComponentStats = ComponentStats(component: "in", kind: .input)) -> ComponentContext {
        ComponentContext(name: "in", kind: .input, dataDirectory: root + "/data",
                         logger: Logger(label: "t", factory: { _ in SwiftLogNoOpLogHandler() }), stats: stats)
    }

    private func write(_ relative: String, _ text: String) throws {
        let path = root + "/" + relative
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    /// The real inotify backend with both intervals at an hour: a pod folder, then its container
    /// folder, then a file in it, each made after the scan that the previous one started, and a
    /// new container (and file) in a pod folder present at start-up. Only the folder events of
    /// the pod and container folders can find them. Before, only `pods/` was watched: the
    /// container folder and its file were found at the next `glob_interval` (here never).
    func testNewPodAndContainerFoldersAreFoundFromTheirEvents() throws {
        let input = try config(glob: 3600, refresh: 3600).build(context())
        let got = Locked<[String]>([])
        let control = InputControl(name: "in") { batch, _ in
            let messages = batch.records.map { String(decoding: batch.bytes[$0.message], as: UTF8.self) }
            got.withLock { $0 += messages }
        }
        let thread = startThread(name: "tail-test") { input.run(control) }
        defer {
            control.requestStop()
            XCTAssertTrue(thread.join(timeout: 30))
        }
        func waitFor(_ message: String) -> Bool {
            let deadline = monotonicSeconds() + 20
            while !got.current.contains(message) && monotonicSeconds() < deadline { usleep(20_000) }
            return got.current.contains(message)
        }
        XCTAssertTrue(waitFor("old"))
        XCTAssertEqual(mkdir(root + "/pods/ns_new_2", 0o755), 0)
        usleep(1_500_000)  // its event's scan (at most one a second) has run: the pod has no container yet
        XCTAssertEqual(mkdir(root + "/pods/ns_new_2/web", 0o755), 0)
        usleep(1_500_000)
        try write("pods/ns_new_2/web/0.log", "new pod\n")
        XCTAssertTrue(waitFor("new pod"), "a file in a new pod's new container folder was not found: \(got.current)")
        try write("pods/ns_old_1/sidecar/0.log", "new container\n")
        XCTAssertTrue(waitFor("new container"), "a file in a new container folder of an existing pod was not found: \(got.current)")
    }

    /// Driven turn by turn with a backend that reports nothing: no event, no scan before
    /// `refresh_interval`, however many `glob_interval`s pass; a folder event finds the file.
    func testWithEveryFolderWatchedOnlyEventsAndTheRefreshScan() throws {
        let stats = ComponentStats(component: "in", kind: .input)
        let input = TailInput(config: config(glob: 0.5, refresh: 60), context: context(stats))
        let sink = CollectingSink()
        let backend = FakeWatchBackend()
        input.prepare(backend: backend, sink: sink)
        var now = monotonicSeconds()
        _ = input.turn(now: now, isStopping: { false })
        XCTAssertEqual(sink.batches.flatMap(\.messages), ["old"])
        XCTAssertEqual(Set(backend.watched), [root + "/pods", root + "/pods/ns_old_1", root + "/pods/ns_old_1/app"])
        let scans = stats.counters.first { $0.name == "scans" }
        XCTAssertEqual(scans?.current, 1)
        try write("pods/ns_new_2/web/0.log", "new\n")
        for _ in 0..<10 {
            now += 2
            _ = input.turn(now: now, isStopping: { false })
        }
        XCTAssertEqual(scans?.current, 1, "scans without a folder event before refresh_interval")
        XCTAssertEqual(sink.batches.flatMap(\.messages), ["old"])
        var events = WatchEvents()
        events.directoryChanged = true
        input.take(events)
        now += 0.1
        _ = input.turn(now: now, isStopping: { false })
        XCTAssertEqual(sink.batches.flatMap(\.messages), ["old", "new"])
        XCTAssertTrue(backend.watched.contains(root + "/pods/ns_new_2/web"))
        // The safety net: a file whose event was lost is found at refresh_interval.
        try write("pods/ns_new_2/web/1.log", "missed\n")
        now += 30
        _ = input.turn(now: now, isStopping: { false })
        XCTAssertEqual(sink.batches.flatMap(\.messages), ["old", "new"])
        now += 31
        _ = input.turn(now: now, isStopping: { false })
        XCTAssertEqual(sink.batches.flatMap(\.messages), ["old", "new", "missed"])
    }

    /// inotify_add_watch failing with ENOSPC (the watch limit) on the folders: the globs are
    /// re-evaluated every glob_interval, so a new file is found without any event; the gauge tells.
    func testFoldersThatCannotBeWatchedAreFoundByPolling() throws {
        let stats = ComponentStats(component: "in", kind: .input)
        let input = TailInput(config: config(glob: 0.5, refresh: 3600), context: context(stats))
        let sink = CollectingSink()
        let backend = FakeWatchBackend()
        backend.failure = ENOSPC
        input.prepare(backend: backend, sink: sink)
        var now = monotonicSeconds()
        _ = input.turn(now: now, isStopping: { false })
        XCTAssertEqual(sink.batches.flatMap(\.messages), ["old"])
        XCTAssertEqual(stats.gauges.first { $0.name == "folders_unwatched" }?.current, 3)
        try write("pods/ns_new_2/web/0.log", "new\n")
        now += 1
        _ = input.turn(now: now, isStopping: { false })
        XCTAssertEqual(sink.batches.flatMap(\.messages), ["old", "new"])
        // Watches work again (watches freed): tried again at refresh_interval, then back to events.
        backend.failure = nil
        now += 3600
        _ = input.turn(now: now, isStopping: { false })
        XCTAssertEqual(stats.gauges.first { $0.name == "folders_unwatched" }?.current, 0)
        try write("pods/ns_new_2/web/1.log", "later\n")
        now += 10
        _ = input.turn(now: now, isStopping: { false })
        XCTAssertEqual(sink.batches.flatMap(\.messages), ["old", "new"])
    }

    /// The folders to watch for `/pods/*/*/*.log` and a pattern with a fixed folder after a wildcard.
    func testWatchDirectoriesFollowEveryLevelOfTheGlobs() throws {
        try FileManager.default.createDirectory(atPath: root + "/pods/ns_b_2/app", withIntermediateDirectories: true)
        try write("pods/not-a-folder", "")
        let d = Discovery(patterns: [root + "/pods/*/*/*.log", root + "/pods/*/app/*.log.*", "rel/*.log"], exclude: [])
        let (dirs, roots) = d.watchDirectories()
        XCTAssertEqual(roots, Set([root + "/pods", "rel"]))
        let pods: String = root + "/pods"
        let want: Set<String> = [pods, pods + "/ns_old_1", pods + "/ns_b_2", pods + "/ns_old_1/app", pods + "/ns_b_2/app", "rel"]
        XCTAssertEqual(Set(dirs), want)
        XCTAssertEqual(dirs.count, Set(dirs).count)
    }
}

/// A backend that watches nothing for real: records the folders asked for, or fails them all with
/// `failure`; reports no event (tests hand events to `TailInput.take`).
final class FakeWatchBackend: WatchBackend {
    var failure: Int32?
    var watched: [String] = []
    private var next: Int32 = 0
    var notifies: Bool { true }
    func watchDirectory(_ dir: String) -> Int32? {
        if let failure { return failure }
        if !watched.contains(dir) { watched.append(dir) }
        return nil
    }
    func watchFile(_ path: String) -> Int32? {
        next += 1
        return next
    }
    func unwatchFile(_ token: Int32) {}
    func wait(timeout: Double, into events: inout WatchEvents) {}
}
