import AnduinCore
import Foundation
import XCTest

@testable import filter_kubernetes

final class KubernetesRenderTests: XCTestCase {
    let id = String(repeating: "ab", count: 32)

    private var path: KubernetesPathInfo {
        KubernetesPathInfo(layout: .containers, namespace: "shop", podName: "web-1", podUID: nil,
                           containerName: "app", containerID: id)
    }

    private func pod(labels: [(String, String)] = [("app.kubernetes.io/name", "web")],
                     annotations: [(String, String)] = [("note", "x")]) -> PodMeta {
        PodMeta(namespace: "shop", name: "web-1", uid: "uid-1", resourceVersion: "5", nodeName: "node-a",
                labels: labels, annotations: annotations, owner: ("ReplicaSet", "web-abc"),
                containers: ["app": .init(image: "docker.io/library/nginx:1.25", id: "ffff")])
    }

    /// Parses `"kubernetes":{...}` as JSON (Foundation rejects invalid JSON).
    private func object(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let doc = Data([UInt8(ascii: "{")] + bytes + [UInt8(ascii: "}")])
        XCTAssertNotNil(String(data: doc, encoding: .utf8), "valid UTF-8", file: file, line: line)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: doc) as? [String: Any], file: file, line: line)
        return try XCTUnwrap(obj["kubernetes"] as? [String: Any], file: file, line: line)
    }

    func testPathOnly() throws {
        let k = try object(KubernetesRender.render(path: path, pod: nil, namespaceLabels: nil, options: .init()))
        XCTAssertEqual(k.count, 4)
        XCTAssertEqual(k["namespace_name"] as? String, "shop")
        XCTAssertEqual(k["pod_name"] as? String, "web-1")
        XCTAssertEqual(k["container_name"] as? String, "app")
        XCTAssertEqual(k["container_id"] as? String, id, "the path's id")
    }

    func testFullMetadataLabelsWithDotsStayKeys() throws {
        let k = try object(KubernetesRender.render(path: path, pod: pod(), namespaceLabels: [("team", "pay")],
                                                   options: .init(annotations: false, namespaceLabels: true)))
        XCTAssertEqual(k["pod_id"] as? String, "uid-1")
        XCTAssertEqual(k["container_id"] as? String, id, "the path's id wins over the status")
        XCTAssertEqual(k["container_image"] as? String, "docker.io/library/nginx:1.25")
        XCTAssertEqual(k["host"] as? String, "node-a")
        XCTAssertEqual(k["labels"] as? [String: String], ["app.kubernetes.io/name": "web"])
        XCTAssertNil(k["annotations"], "annotations are opt-in")
        XCTAssertEqual(k["owner"] as? [String: String], ["kind": "ReplicaSet", "name": "web-abc"])
        XCTAssertEqual(k["namespace_labels"] as? [String: String], ["team": "pay"])
        let withAnnotations = try object(KubernetesRender.render(path: path, pod: pod(), namespaceLabels: nil,
                                                                 options: .init(annotations: true)))
        XCTAssertEqual(withAnnotations["annotations"] as? [String: String], ["note": "x"])
        XCTAssertNil(withAnnotations["namespace_labels"])
    }

    func testContainerIDFromStatusForPodsLayout() throws {
        let p = KubernetesPathInfo(layout: .pods, namespace: "shop", podName: "web-1", podUID: "uid-from-path",
                                   containerName: "app", containerID: nil)
        let k = try object(KubernetesRender.render(path: p, pod: pod(), namespaceLabels: nil, options: .init()))
        XCTAssertEqual(k["container_id"] as? String, "ffff")
        XCTAssertEqual(k["pod_id"] as? String, "uid-1", "the API uid (a static pod's folder has a hash)")
        let pathOnly = try object(KubernetesRender.render(path: p, pod: nil, namespaceLabels: nil, options: .init()))
        XCTAssertEqual(pathOnly["pod_id"] as? String, "uid-from-path")
        XCTAssertNil(pathOnly["container_id"])
    }

    func testHostileStringsStayValidJSON() throws {
        let bad = String(decoding: [0x61, 0xFF, 0xFE, 0x22, 0x5C, 0x0A, 0x00, 0x62], as: UTF8.self)
        let p = pod(labels: [("q\"uote", "line\nbreak\u{0}"), ("bad\(bad)", bad), ("emoji", "🚀")],
                    annotations: [("json", "{\"a\":1}")])
        let k = try object(KubernetesRender.render(path: path, pod: p, namespaceLabels: [("x\u{1}", "\\")],
                                                   options: .init(annotations: true, namespaceLabels: true)))
        let labels = try XCTUnwrap(k["labels"] as? [String: String])
        XCTAssertEqual(labels["q\"uote"], "line\nbreak\u{0}")
        XCTAssertEqual(labels["emoji"], "🚀")
        XCTAssertEqual(labels.count, 3)
        XCTAssertEqual((k["annotations"] as? [String: String])?["json"], "{\"a\":1}")
    }

    func testPodParsingFromAPIObject() throws {
        let obj: [String: Any] = [
            "kind": "Pod",
            "metadata": ["name": "w", "namespace": "n", "uid": "u", "resourceVersion": "42",
                         "labels": ["a": "1", "b.io/c": "2"],
                         "annotations": ["anduin.io/exclude-sidecar": "true", "anduin.io/exclude": "false",
                                         "kubernetes.io/config.mirror": "hash"],
                         "ownerReferences": [["kind": "ConfigMap", "name": "cm"],
                                             ["kind": "ReplicaSet", "name": "rs", "controller": true]]],
            "spec": ["nodeName": "node-a",
                     "containers": [["name": "app", "image": "app:1"], ["name": "sidecar", "image": "envoy:1"]],
                     "initContainers": [["name": "init", "image": "busybox"]]],
            "status": ["containerStatuses": [["name": "app", "image": "docker.io/library/app:1",
                                              "containerID": "containerd://abc123"]]],
        ]
        let p = try PodMeta.parse(JSONValue.parse(Array(JSONSerialization.data(withJSONObject: obj))))
        XCTAssertEqual(p.ref, PodRef(namespace: "n", name: "w"))
        XCTAssertEqual(p.resourceVersion, "42")
        XCTAssertEqual(p.labels.map(\.0), ["a", "b.io/c"], "sorted")
        XCTAssertEqual(p.owner?.kind, "ReplicaSet")
        XCTAssertEqual(p.containers["app"], .init(image: "docker.io/library/app:1", id: "abc123"))
        XCTAssertEqual(p.containers["sidecar"], .init(image: "envoy:1", id: nil))
        XCTAssertEqual(p.containers["init"]?.image, "busybox")
        XCTAssertFalse(p.excluded)
        XCTAssertEqual(p.excludedContainers, ["sidecar"])
        XCTAssertEqual(p.mirrorUID, "hash")
        XCTAssertThrowsError(try PodMeta.parse(JSONValue.parse(Array(#"{"metadata":{"name":"x"}}"#.utf8))))
    }

    // MARK: the filter on batches (API off: path metadata only)

    private func batch(_ path: String, _ n: Int) -> RecordBatch {
        var b = RecordBatch(source: SourceInfo(path: path, sourceID: 1), inputName: "in")
        for i in 0..<n {
            let r = Array("line \(i)".utf8).withUnsafeBytes { b.append(bytes: $0) }
            b.records.append(Record(timestamp: 0, offset: Int64(i * 10), message: r, stream: .stdout))
        }
        return b
    }

    private func filter(_ c: KubernetesConfig, stats: ComponentStats) throws -> KubernetesFilter {
        let ctx = ComponentContext(name: "k8s", kind: .filter, dataDirectory: NSTemporaryDirectory(),
                                   logger: .init(label: "test"), stats: stats)
        return try c.build(ctx, environment: [:])
    }

    func testFilterPathOnlySharesRenderedBytesAndCounts() throws {
        var c = KubernetesConfig()
        c.api = .off
        c.namespaces = NamespaceRules(exclude: ["kube-*"])
        let stats = ComponentStats(component: "k8s", kind: .filter)
        let f = try filter(c, stats: stats)
        let path = "/var/log/containers/web-1_shop_app-\(id).log"
        var b1 = batch(path, 3)
        f.process(&b1)
        var b2 = batch(path, 2)
        f.process(&b2)
        XCTAssertEqual(b1.count, 3)
        let k = try object(b1.sharedFields)
        XCTAssertEqual(k["pod_name"] as? String, "web-1")
        XCTAssertEqual(b1.sharedFields, b2.sharedFields)
        // Same storage: the second batch got the cached array, not a new rendering.
        b1.sharedFields.withUnsafeBufferPointer { p1 in
            b2.sharedFields.withUnsafeBufferPointer { p2 in XCTAssertEqual(p1.baseAddress, p2.baseAddress) }
        }
        var encoded: [UInt8] = []
        RecordEncoder.appendNDJSON(b1, to: &encoded)
        for line in encoded.split(separator: 0x0A) {
            XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        }

        var excluded = batch("/var/log/containers/coredns-1_kube-system_coredns-\(id).log", 4)
        f.process(&excluded)
        XCTAssertEqual(excluded.count, 0)

        var other = batch("/var/log/syslog", 2)
        f.process(&other)
        XCTAssertEqual(other.count, 2)
        XCTAssertTrue(other.sharedFields.isEmpty)

        let counters = Dictionary(uniqueKeysWithValues: stats.counters.map { ($0.name, $0.current) })
        XCTAssertEqual(counters["records_enriched_path_only"], 5)
        XCTAssertEqual(counters["records_excluded"], 4)
        XCTAssertEqual(counters["records_not_kubernetes"], 2)
        XCTAssertEqual(counters["records_enriched_api"], 0)
    }

    func testFilterAppendsAfterExistingSharedFields() throws {
        var c = KubernetesConfig()
        c.api = .off
        let f = try filter(c, stats: ComponentStats(component: "k8s", kind: .filter))
        var b = batch("/var/log/containers/web-1_shop_app-\(id).log", 1)
        b.sharedFields = Array(#""cluster":"eu-1""#.utf8)
        f.process(&b)
        let doc = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data([0x7B] + b.sharedFields + [0x7D])) as? [String: Any])
        XCTAssertEqual(doc["cluster"] as? String, "eu-1")
        XCTAssertNotNil(doc["kubernetes"])
    }
}
