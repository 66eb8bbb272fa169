import AnduinCore
import Foundation
import XCTest

@testable import filter_kubernetes

/// The cache behind the filter, without a server: updates as the watch thread makes them.
final class KubernetesCacheTests: XCTestCase {
    let id = String(repeating: "cd", count: 32)
    var path: String { "/var/log/containers/web-1_shop_app-\(id).log" }

    private func cache(grace: Double = 60, wait: Double = 2, cooldown: Double = 30) -> KubernetesCache {
        KubernetesCache(apiEnabled: true, deleteGrace: grace, waitForPod: wait, options: .init(), rules: .init(),
                        podsGauge: nil, waitCooldown: cooldown)
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
        let c = cache(grace: 0.3, wait: 0)
        c.setState(.synced)
        c.replacePods([pod()])
        XCTAssertEqual(labels(c.resolve(path: path)), ["v": "1"])
        c.upsertPod(pod(rv: "2", labels: [("v", "2")]))
        XCTAssertEqual(labels(c.resolve(path: path)), ["v": "2"])
        c.deletePod(pod(rv: "3", labels: [("v", "2")]))
        XCTAssertEqual(labels(c.resolve(path: path)), ["v": "2"], "within the grace")
        usleep(400_000)
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false, "past the grace: path metadata only")
        c.purgeExpired()
        XCTAssertEqual(c.podCount, 0)
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
        let c = cache(wait: 5)
        c.setState(.synced)
        let late = pod()
        let adder = Thread { usleep(200_000); c.upsertPod(late) }
        let t0 = monotonicSeconds()
        adder.start()
        XCTAssertEqual(fromAPI(c.resolve(path: path)), true, "the pod arrived while the batch waited")
        XCTAssertLessThan(monotonicSeconds() - t0, 4, "woken by the update, not by the deadline")
    }

    func testWaitIsBoundedOncePerPodAndCoolsDown() {
        let c = cache(wait: 0.3, cooldown: 30)
        c.setState(.synced)
        var t0 = monotonicSeconds()
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false)
        let first = monotonicSeconds() - t0
        XCTAssertGreaterThanOrEqual(first, 0.25)
        t0 = monotonicSeconds()
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false)
        XCTAssertLessThan(monotonicSeconds() - t0, 0.2, "only once per pod")
        // Another unknown pod right after a timed-out wait: no wait (files of pods long gone).
        t0 = monotonicSeconds()
        XCTAssertEqual(fromAPI(c.resolve(path: "/var/log/containers/gone-2_shop_app-\(id).log")), false)
        XCTAssertLessThan(monotonicSeconds() - t0, 0.2, "cool-down after a timed-out wait")
    }

    func testNoWaitWhileUnreachable() {
        let c = cache(wait: 5)
        c.setState(.unreachable)
        let t0 = monotonicSeconds()
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false)
        XCTAssertLessThan(monotonicSeconds() - t0, 0.5)
    }

    func testUnreachableEndsAWaitInProgress() {
        let c = cache(wait: 10)
        c.setState(.synced)
        let t = Thread { usleep(200_000); c.setState(.unreachable) }
        let t0 = monotonicSeconds()
        t.start()
        XCTAssertEqual(fromAPI(c.resolve(path: path)), false)
        XCTAssertLessThan(monotonicSeconds() - t0, 5)
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
