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

    private func cache(grace: Double = 60, wait: Double = 2, cooldown: Double = 30, clock: ManualClock = ManualClock()) -> KubernetesCache {
        KubernetesCache(apiEnabled: true, deleteGrace: grace, waitForPod: wait, options: .init(), rules: .init(),
                        podsGauge: nil, waitCooldown: cooldown, clock: clock.cacheClock)
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
        XCTAssertEqual(labels(c.resolve(path: path)), ["v": "2"], "at the end of the grace")
        c.purgeExpired()
        XCTAssertEqual(c.podCount, 1, "kept until the grace has passed")
        clock.advance(1)
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false, "past the grace: path metadata only")
        c.purgeExpired()
        XCTAssertEqual(c.podCount, 0)
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

    func testWaitIsBoundedOncePerPodAndCoolsDown() {
        let clock = ManualClock()
        let c = cache(wait: 0.5, cooldown: 30, clock: clock)
        c.setState(.synced)
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false)
        XCTAssertEqual(clock.waits, [0.5], "one wait of wait_for_pod, timed out")
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false)
        XCTAssertEqual(clock.waits, [0.5], "only once per pod")
        // Another unknown pod right after a timed-out wait: no wait (files of pods long gone).
        XCTAssertEqual(fromAPI(c.resolve(path: "/var/log/containers/gone-2_shop_app-\(id).log")), false)
        XCTAssertEqual(clock.waits, [0.5], "cool-down after a timed-out wait")
        clock.advance(29)
        XCTAssertEqual(fromAPI(c.resolve(path: "/var/log/containers/gone-3_shop_app-\(id).log")), false)
        XCTAssertEqual(clock.waits, [0.5], "still cooling down")
        clock.advance(1)
        XCTAssertEqual(fromAPI(c.resolve(path: "/var/log/containers/gone-4_shop_app-\(id).log")), false)
        XCTAssertEqual(clock.waits, [0.5, 0.5], "the cool-down is over: a new pod is waited for again")
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
