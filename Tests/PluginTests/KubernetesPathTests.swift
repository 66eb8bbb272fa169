import XCTest

@testable import filter_kubernetes

final class KubernetesPathTests: XCTestCase {
    let id = String(repeating: "0123456789abcdef", count: 4)

    func testContainersLayout() throws {
        let p = try XCTUnwrap(KubernetesPathInfo.parse("/var/log/containers/web-7d4b9c-x2k4p_shop_nginx-\(id).log"))
        XCTAssertEqual(p, KubernetesPathInfo(layout: .containers, namespace: "shop", podName: "web-7d4b9c-x2k4p",
                                             podUID: nil, containerName: "nginx", containerID: id))
    }

    func testContainersLayoutOddNamesParseFromTheRight() throws {
        // Dots and dashes in the pod name, dashes in namespace and container.
        let p = try XCTUnwrap(KubernetesPathInfo.parse("/var/log/containers/my.app-v1.2-0_team-a-prod_log-shipper-\(id).log"))
        XCTAssertEqual(p.podName, "my.app-v1.2-0")
        XCTAssertEqual(p.namespace, "team-a-prod")
        XCTAssertEqual(p.containerName, "log-shipper")
        XCTAssertEqual(p.containerID, id)
        // A container name that itself ends in a hex-looking word.
        let q = try XCTUnwrap(KubernetesPathInfo.parse("/x/containers/a_b_c-deadbeef-\(id).log"))
        XCTAssertEqual(q.containerName, "c-deadbeef")
        XCTAssertEqual(q.podName, "a")
    }

    func testPodsLayoutAndRotatedNames() throws {
        let uid = "5b9f3a1e-2c4d-4e6f-8a9b-0c1d2e3f4a5b"
        for file in ["0.log", "3.log", "0.log.20240101-120000", "12.log.20240501-093000.gz"] {
            let p = try XCTUnwrap(KubernetesPathInfo.parse("/var/log/pods/kube-system_coredns-5d78c9869d-abcde_\(uid)/coredns/\(file)"), file)
            XCTAssertEqual(p, KubernetesPathInfo(layout: .pods, namespace: "kube-system", podName: "coredns-5d78c9869d-abcde",
                                                 podUID: uid, containerName: "coredns", containerID: nil), file)
        }
        // Static pod: the folder carries a config hash instead of a UUID.
        let s = try XCTUnwrap(KubernetesPathInfo.parse("/var/log/pods/kube-system_etcd-node.a_e3b0c44298fc1c149afbf4c8996fb924/etcd/0.log"))
        XCTAssertEqual(s.podName, "etcd-node.a")
        XCTAssertEqual(s.podUID, "e3b0c44298fc1c149afbf4c8996fb924")
    }

    func testNonMatchingPaths() {
        for path in [
            "/var/log/syslog",
            "/var/log/containers/short_ns_c-abc.log",                      // id not 64 hex
            "/var/log/containers/pod_ns_c-\(id).txt",                     // not .log
            "/var/log/containers/pod_c-\(id).log",                        // one underscore
            "/var/log/containers/pod_NS_c-\(id).log",                     // uppercase namespace
            "/var/log/containers/pod_ns_c-\(id.uppercased()).log",        // uppercase id
            "/var/log/containers/_ns_c-\(id).log",                        // empty pod
            "/var/log/pods/ns_pod_uid/c/x.log",                           // not <n>.log
            "/var/log/pods/ns_pod/c/0.log",                               // no uid part
            "/var/log/pods/ns_pod_UID/c/0.log",                           // uid not hex
            "/var/log/pods/ns_pod_abc/c/0.logs",
            "0.log",
            "",
        ] {
            XCTAssertNil(KubernetesPathInfo.parse(path), path)
        }
    }

    func testNamespaceRules() {
        let r = NamespaceRules(include: ["team-*", "default"], exclude: ["team-secret", "*-tmp"])
        XCTAssertTrue(r.allows("team-a"))
        XCTAssertTrue(r.allows("default"))
        XCTAssertFalse(r.allows("team-secret"))
        XCTAssertFalse(r.allows("team-x-tmp"))
        XCTAssertFalse(r.allows("kube-system"))
        XCTAssertTrue(NamespaceRules().allows("anything"))
        XCTAssertFalse(NamespaceRules(exclude: ["kube-*"]).allows("kube-system"))
        XCTAssertTrue(NamespaceRules(exclude: ["kube-*"]).allows("kubeflow"))
    }
}
