import AnduinCore
import Foundation
import XCTest

@testable import filter_kubernetes

/// The cache behind the filter, without a server: updates as the watch thread makes them.
final class KubernetesCacheTests: XCTestCase {
    let id = String(repeating: "cd", count: 32)
    var path: String { "/var/log/containers/web-1_shop_app-\(id).log" }

    /// Time for the cache under test, moved by hand: a wait for a late pod returns at once as if it
    /// timed out (the time moves to its end), unless `onWait` says otherwise. Records every wait.
    final class ManualClock: @unchecked Sendable {
        // `lock` protects `time` and `waits`; `onWait` is set before the cache is used.
        private let lock = NSLock()
        private var time: Double = 1000
        private var waitsSoFar: [Double] = []
        /// Called (with the cache's lock held) for each wait instead of the time-out; return true
        /// when it waited for real and was woken, false to time out.
        var onWait: ((ConditionLock, Double) -> Bool)?

        var now: Double { lock.withLock { time } }
        var waits: [Double] { lock.withLock { waitsSoFar } }
        func advance(_ seconds: Double) { lock.withLock { time += seconds } }

        var cacheClock: CacheClock {
            CacheClock(now: { self.now }, wait: { cacheLock, seconds in
                self.lock.withLock { self.waitsSoFar.append(seconds) }
                if let hook = self.onWait, hook(cacheLock, seconds) { return }
                self.advance(seconds)
            })
        }
    }

    /// The files the process has open, as the cache sees them (`/proc/self/fd` in the agent).
    final class FakeOpenFiles: @unchecked Sendable {
        private let lock = NSLock()
        private var list: [String] = []
        var paths: [String] {
            get { lock.withLock { list } }
            set { lock.withLock { list = newValue } }
        }
    }

    private func cache(grace: Double = 60, wait: Double = 2, budget: Double? = nil, maxDeleted: Int = 1024,
                       clock: ManualClock = ManualClock(), open: FakeOpenFiles = FakeOpenFiles()) -> KubernetesCache {
        KubernetesCache(apiEnabled: true, deleteGrace: grace, waitForPod: wait, options: .init(), rules: .init(),
                        podsGauge: nil, waitBudget: budget, maxDeletedPods: maxDeleted, clock: clock.cacheClock,
                        openFiles: { open.paths })
    }

    /// An `onWait` that runs `update` on another thread and waits for real (the update needs the
    /// cache's lock, so it lands while this waits), once; later waits time out.
    private func wokenOnceBy(_ update: @escaping @Sendable () -> Void) -> (ConditionLock, Double) -> Bool {
        var first = true
        return { lock, _ in
            guard first else { return false }
            first = false
            Thread { update() }.start()
            // Woken by the update, this returns within milliseconds. Not woken, it returns after 60 s
            // and counts as a time-out (the manual time moves on), which the tests catch: no hang.
            let start = monotonicSeconds()
            lock.wait(seconds: 60)
            return monotonicSeconds() - start < 30
        }
    }

    private func pod(_ name: String = "web-1", uid: String = "u1", rv: String = "1", labels: [(String, String)] = [("v", "1")],
                     annotations: [(String, String)] = []) -> PodMeta {
        PodMeta(namespace: "shop", name: name, uid: uid, resourceVersion: rv, labels: labels, annotations: annotations)
    }

    private func labels(_ d: KubernetesDecision) -> [String: String]? {
        guard case .enrich(let fields, _) = d,
              let doc = try? JSONSerialization.jsonObject(with: Data([0x7B] + fields + [0x7D])) as? [String: Any] else { return nil }
        return (doc["kubernetes"] as? [String: Any])?["labels"] as? [String: String]
    }

    private func fromAPI(_ d: KubernetesDecision) -> Bool? {
        if case .enrich(_, let api) = d { return api }
        return nil
    }

    func testUpdatesReRenderAndDeletedPodsLastForTheGrace() {
        let clock = ManualClock()
        let c = cache(grace: 10, wait: 0, clock: clock)
        c.setState(.synced)
        c.replacePods([pod()])
        XCTAssertEqual(labels(c.resolve(path: path)), ["v": "1"])
        c.upsertPod(pod(rv: "2", labels: [("v", "2")]))
        XCTAssertEqual(labels(c.resolve(path: path)), ["v": "2"])
        c.deletePod(pod(rv: "3", labels: [("v", "2")]))
        XCTAssertEqual(labels(c.resolve(path: path)), ["v": "2"], "within the grace")
        clock.advance(10)
        c.purgeExpired()
        XCTAssertEqual(c.podCount, 1, "kept until the grace has passed")
        clock.advance(1)
        c.purgeExpired()
        XCTAssertEqual(c.podCount, 0, "no record for the grace, no file open: forgotten")
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false, "past the grace: path metadata only")
        XCTAssertEqual(clock.waits, [], "wait_for_pod 0 never waits")
    }

    func testRelistMarksMissingPodsDeleted() {
        let c = cache(grace: 60)
        c.setState(.synced)
        c.replacePods([pod(), pod("other", uid: "u2")])
        c.replacePods([pod("other", uid: "u2")])
        // Gone from the list: still known within the grace.
        XCTAssertEqual(fromAPI(c.resolve(path: path)), true)
        XCTAssertEqual(c.podCount, 2)
    }

    func testExclusionAnnotations() {
        let c = cache()
        c.setState(.synced)
        c.replacePods([pod(annotations: [("anduin.io/exclude", "true")])])
        guard case .drop = c.resolve(path: path) else { return XCTFail("excluded pod") }
        c.upsertPod(pod(rv: "2", annotations: [("anduin.io/exclude-app", "true")]))
        guard case .drop = c.resolve(path: path) else { return XCTFail("excluded container") }
        c.upsertPod(pod(rv: "3", annotations: [("anduin.io/exclude-sidecar", "true")]))
        XCTAssertEqual(fromAPI(c.resolve(path: path)), true)
    }

    func testWaitsOnceForAPodThatArrivesLate() {
        let clock = ManualClock()
        let c = cache(wait: 5, clock: clock)
        c.setState(.synced)
        let late = pod()
        clock.onWait = wokenOnceBy { c.upsertPod(late) }
        XCTAssertEqual(fromAPI(c.resolve(path: path)), true, "the pod arrived while the batch waited")
        XCTAssertEqual(clock.waits, [5], "one wait of wait_for_pod, woken by the update (a second wait would mean it was not)")
        XCTAssertEqual(clock.now, 1000, "no time-out happened")
    }

    func testWaitIsOncePerPod() {
        let clock = ManualClock()
        let c = cache(wait: 0.5, clock: clock)
        c.setState(.synced)
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false)
        XCTAssertEqual(clock.waits, [0.5], "one wait of wait_for_pod, timed out")
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false)
        XCTAssertEqual(clock.waits, [0.5], "only once per pod")
        clock.advance(700)
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false)
        XCTAssertEqual(clock.waits, [0.5, 0.5], "long after, the name may be a new pod: waited for again")
    }

    /// One pod's timed-out wait must not cost another, merely late, pod its wait (its lines would ship
    /// without labels).
    func testAnotherPodsTimedOutWaitDoesNotSkipTheWait() {
        let clock = ManualClock()
        let c = cache(wait: 2, clock: clock)
        c.setState(.synced)
        XCTAssertEqual(fromAPI(c.resolve(path: "/var/log/containers/gone-1_shop_app-\(id).log")), false)
        XCTAssertEqual(clock.waits, [2], "a gone pod: its wait timed out")
        clock.advance(0.5)
        let late = pod()
        clock.onWait = wokenOnceBy { c.upsertPod(late) }
        XCTAssertEqual(labels(c.resolve(path: path)), ["v": "1"], "the late pod is waited for and gets its labels")
        XCTAssertEqual(clock.waits, [2, 2])
    }

    /// Files of many gone pods (left on the node) do not stall an input thread a full wait each: the
    /// time spent in waits that time out is bounded (the budget, then its refill of 0.1 s a second).
    func testTimedOutWaitsAreBounded() {
        let clock = ManualClock()
        let c = cache(wait: 0.5, budget: 2, clock: clock)
        c.setState(.synced)
        let start = clock.now
        for i in 0..<50 {
            XCTAssertEqual(fromAPI(c.resolve(path: "/var/log/containers/gone-\(i)_shop_app-\(id).log")), false)
        }
        let waited = clock.waits.reduce(0, +)
        XCTAssertEqual(Array(clock.waits.prefix(4)), [0.5, 0.5, 0.5, 0.5], "the budget: full waits first")
        XCTAssertLessThanOrEqual(waited, 2 + 0.1 * (clock.now - start) + 1e-9, "\(clock.waits)")
        XCTAssertLessThan(waited, 2.5, "50 gone pods cost about the budget, not 25 s: \(clock.waits)")
        clock.advance(20)
        XCTAssertEqual(fromAPI(c.resolve(path: "/var/log/containers/new-1_shop_app-\(id).log")), false)
        XCTAssertEqual(clock.waits.last, 0.5, "refilled: a full wait again")
    }

    /// A deleted pod's backlog read after an outage (nothing passed the filter for longer than the
    /// grace) still gets its metadata while its file is open (the tail input has not finished it, even
    /// though the kubelet already deleted it).
    func testDeletedPodKeepsMetadataWhileItsFilesAreOpen() {
        let clock = ManualClock()
        let open = FakeOpenFiles()
        let c = cache(grace: 10, wait: 0, clock: clock, open: open)
        c.setState(.synced)
        c.replacePods([pod(uid: "5b9f3a1e-aaaa"), pod("other", uid: "u2")])
        let file = "/var/log/pods/shop_web-1_5b9f3a1e-aaaa/app/0.log"
        XCTAssertEqual(labels(c.resolve(path: file)), ["v": "1"])
        c.deletePod(pod(uid: "5b9f3a1e-aaaa", rv: "2"))
        open.paths = ["/var/lib/anduin/checkpoints.json", file + " (deleted)"]
        for _ in 0..<60 {
            clock.advance(5)
            c.purgeExpired()
        }
        XCTAssertEqual(c.podCount, 2, "kept: its file is still open")
        XCTAssertEqual(labels(c.resolve(path: file)), ["v": "1"], "5 minutes after the deletion, the backlog gets labels")
        // The file was read to its end and closed: forgotten a grace after the last sign of it.
        open.paths = []
        clock.advance(10)
        c.purgeExpired()
        XCTAssertEqual(c.podCount, 2, "within the grace after its last record")
        clock.advance(1)
        c.purgeExpired()
        XCTAssertEqual(c.podCount, 1)
        XCTAssertEqual(fromAPI(c.resolve(path: file)), false)
    }

    /// Records of a deleted pod keep arriving (a slow backlog): each one extends the grace.
    func testDeletedPodKeptWhileItsRecordsPassTheFilter() {
        let clock = ManualClock()
        let c = cache(grace: 10, wait: 0, clock: clock)
        c.setState(.synced)
        c.replacePods([pod()])
        c.deletePod(pod(rv: "2"))
        for _ in 0..<10 {
            clock.advance(9)
            XCTAssertEqual(labels(c.resolve(path: path)), ["v": "1"])
            c.purgeExpired()
        }
        XCTAssertEqual(c.podCount, 1)
        clock.advance(11)
        c.purgeExpired()
        XCTAssertEqual(c.podCount, 0)
    }

    /// However many pods end while their files are open, the deleted ones kept are bounded (the
    /// least recently active go first).
    func testDeletedPodsKeptAreCapped() {
        let clock = ManualClock()
        let open = FakeOpenFiles()
        let c = cache(grace: 1, wait: 0, maxDeleted: 3, clock: clock, open: open)
        c.setState(.synced)
        c.replacePods([pod("live", uid: "live")])
        for i in 0..<6 {
            clock.advance(1)
            c.deletePod(pod("p\(i)", uid: "5b9f3a1e-000\(i)"))
            open.paths.append("/var/log/pods/shop_p\(i)_5b9f3a1e-000\(i)/app/0.log")
        }
        XCTAssertEqual(c.podCount, 4, "the live pod and the 3 most recently deleted")
        for i in 0..<3 {
            XCTAssertEqual(fromAPI(c.resolve(path: "/var/log/pods/shop_p\(i)_5b9f3a1e-000\(i)/app/0.log")), false, "p\(i)")
        }
        for i in 3..<6 {
            XCTAssertEqual(fromAPI(c.resolve(path: "/var/log/pods/shop_p\(i)_5b9f3a1e-000\(i)/app/0.log")), true, "p\(i)")
        }
    }

    /// The agent's view of its open files: an unlinked file held open is still listed, under the
    /// folder that names its pod.
    func testOpenFilesOfThisProcessListsAnUnlinkedFile() throws {
        #if os(Linux)
        let dir = NSTemporaryDirectory() + "shop_web-1_5b9f3a1e-\(UUID().uuidString)/app"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: (dir as NSString).deletingLastPathComponent) }
        let file = dir + "/0.log"
        let fd = open(file, O_CREAT | O_RDWR, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        unlink(file)
        let open = OpenFiles.ofThisProcess()
        XCTAssertTrue(open.contains { $0.hasPrefix(file) }, "\(open.filter { $0.contains("shop_web-1") })")
        #endif
    }

    func testFileOfPodMatchesUIDFolderMirrorAndDockerID() {
        var p = PodMeta(namespace: "shop", name: "web-1", uid: "5b9f3a1e-aaaa",
                        containers: ["app": .init(id: "0123456789abcdef0123")])
        XCTAssertTrue(KubernetesCache.isFile("/var/log/pods/shop_web-1_5b9f3a1e-aaaa/app/0.log", of: p))
        XCTAssertTrue(KubernetesCache.isFile("/var/log/pods/shop_web-1_5b9f3a1e-aaaa/app/0.log (deleted)", of: p))
        XCTAssertTrue(KubernetesCache.isFile("/var/lib/docker/containers/0123456789abcdef0123/x-json.log", of: p))
        XCTAssertFalse(KubernetesCache.isFile("/var/log/pods/shop_web-1_5b9f3a1e-bbbb/app/0.log", of: p))
        p.mirrorUID = "e3b0c442"
        XCTAssertTrue(KubernetesCache.isFile("/var/log/pods/kube-system_etcd_e3b0c442/etcd/0.log", of: p))
    }

    func testNoWaitWhileUnreachable() {
        let clock = ManualClock()
        let c = cache(wait: 5, clock: clock)
        c.setState(.unreachable)
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false)
        XCTAssertEqual(clock.waits, [])
    }

    func testUnreachableEndsAWaitInProgress() {
        let clock = ManualClock()
        let c = cache(wait: 10, clock: clock)
        c.setState(.synced)
        clock.onWait = wokenOnceBy { c.setState(.unreachable) }
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false)
        XCTAssertEqual(clock.waits, [10], "woken by the state change, not waiting again")
        XCTAssertEqual(clock.now, 1000, "no time-out happened")
    }

    /// Before the first list, every unknown pod shares one window from the start.
    func testWaitBeforeTheFirstListEndsAtOneSharedDeadline() {
        let clock = ManualClock()
        let c = cache(wait: 5, clock: clock)
        clock.advance(2)
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false)
        XCTAssertEqual(clock.waits, [3], "the rest of the window from the start")
        XCTAssertEqual(fromAPI(c.resolve(path: "/var/log/containers/other-1_shop_app-\(id).log")), false)
        XCTAssertEqual(clock.waits, [3], "the window is over")
    }

    func testPodsLayoutMatchesUIDAndStaticPodMirror() {
        let c = cache(wait: 0)
        c.setState(.synced)
        c.replacePods([pod(uid: "5b9f3a1e-aaaa"),
                       pod("etcd-node", uid: "mirror-uid", annotations: [("kubernetes.io/config.mirror", "e3b0c442")])])
        XCTAssertEqual(fromAPI(c.resolve(path: "/var/log/pods/shop_web-1_5b9f3a1e-aaaa/app/0.log")), true)
        // Another incarnation's folder (same name, other uid) does not get this pod's metadata.
        XCTAssertEqual(fromAPI(c.resolve(path: "/var/log/pods/shop_web-1_0bd0bd00-aaaa/app/0.log")), false)
        XCTAssertEqual(fromAPI(c.resolve(path: "/var/log/pods/shop_etcd-node_e3b0c442/etcd/0.log")), true)
    }

    func testRecreatedPodWithSameNameWins() {
        let c = cache()
        c.setState(.synced)
        c.replacePods([pod(uid: "old", labels: [("gen", "old")])])
        c.deletePod(pod(uid: "old", rv: "2", labels: [("gen", "old")]))
        c.upsertPod(pod(uid: "new", rv: "3", labels: [("gen", "new")]))
        XCTAssertEqual(labels(c.resolve(path: path)), ["gen": "new"])
    }
}
