import AnduinCore
import Foundation
import XCTest
import in_tail
import out_file

@testable import filter_kubernetes

final class KubernetesConfigTests: XCTestCase {
    let registry = PluginRegistry([KubernetesPlugin.spec, TailPlugin.spec, FileOutputPlugin.spec])

    private func load(_ filter: String) -> Result<AgentConfig, ConfigErrors> {
        let yaml = """
            data_dir: /tmp/anduin-test
            inputs:
              x: {type: tail, paths: ["/var/log/containers/*.log"]}
            outputs:
              o: {type: file, from: [k8s], path: o.ndjson}
            filters:
              k8s:
                type: kubernetes
            \(filter.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
            """
        return AgentConfig.parse(yaml: yaml, file: "/etc/anduin/a.yaml", registry: registry, environment: [:])
    }

    private func config(_ filter: String, file: StaticString = #filePath, line: UInt = #line) throws -> KubernetesConfig {
        switch load(filter) {
        case .failure(let e):
            XCTFail("unexpected errors: \(e)", file: file, line: line)
            throw e
        case .success(let c):
            let d = try XCTUnwrap(c.components.first { $0.name == "k8s" }, file: file, line: line)
            guard case .filter(let fc) = d.config else {
                XCTFail("k8s is not a filter", file: file, line: line)
                throw NotAFilter()
            }
            return try XCTUnwrap(fc as? KubernetesConfig, file: file, line: line)
        }
    }

    private func errors(_ filter: String) -> String {
        if case .failure(let e) = load(filter) { return e.description }
        return ""
    }

    func testDefaultsAndOptions() throws {
        let d = try config("from: [x]")
        XCTAssertEqual(d.api, .auto)
        XCTAssertEqual(d.deleteGrace, 60)
        XCTAssertEqual(d.waitForPod, 2)
        XCTAssertEqual(d.watchTimeout, 300)
        XCTAssertFalse(d.render.annotations)

        let c = try config("""
            from: [x]
            api_url: http://127.0.0.1:8001/
            token_file: token
            insecure_skip_verify: true
            node_name: node-7
            annotations: true
            namespace_labels: true
            namespaces: {include: ["team-*"], exclude: [team-secret]}
            delete_grace: 2m
            wait_for_pod: 500ms
            watch_timeout: 30s
            retry: {initial: 100ms, max: 5s}
            """)
        XCTAssertEqual(c.api, .url("http://127.0.0.1:8001/"))
        XCTAssertEqual(c.tokenFile, "/etc/anduin/token", "relative to the config file")
        XCTAssertTrue(c.insecureSkipVerify)
        XCTAssertEqual(c.nodeName, "node-7")
        XCTAssertTrue(c.render.annotations && c.render.namespaceLabels)
        XCTAssertEqual(c.namespaces, NamespaceRules(include: ["team-*"], exclude: ["team-secret"]))
        XCTAssertEqual(c.deleteGrace, 120)
        XCTAssertEqual(c.waitForPod, 0.5)
        XCTAssertEqual(c.watchTimeout, 30)
        XCTAssertEqual(c.retry.initial, 0.1)
        XCTAssertEqual(c.retry.max, 5)
        XCTAssertEqual(try config("from: [x]\napi: off").api, .off)
        XCTAssertEqual(try config("from: [x]\napi: in_cluster").api, .inCluster)
    }

    func testConflictsAndTyposAreReported() {
        XCTAssertTrue(errors("from: [x]\napi: cluster").contains("expected in_cluster or off"))
        XCTAssertTrue(errors("from: [x]\napi: off\napi_url: http://a").contains("cannot be combined"))
        XCTAssertTrue(errors("from: [x]\nkubeconfig: /k\napi_url: http://a").contains("not both"))
        XCTAssertTrue(errors("from: [x]\napi_url: ftp://a").contains("must start with http"))
        XCTAssertTrue(errors("from: [x]\nkubeconfig: /k\ntoken_file: /t").contains("set it in the kubeconfig"))
        XCTAssertTrue(errors("from: [x]\ninsecure_skip_verify: true").contains("only with api_url"))
        XCTAssertTrue(errors("from: [x]\nwait_for_pod: 5m").contains("5m is too long (at most 1m)"))
        XCTAssertTrue(errors("from: [x]\nnode_nme: a").contains("did you mean \"node_name\""))
        XCTAssertTrue(errors("from: [x]\nnamespaces: {exclud: [a]}").contains("unknown key \"exclud\""))
    }

    func testStartupNeedsANodeNameAndAnInClusterEnvironment() throws {
        let ctx = ComponentContext(name: "k8s", kind: .filter, dataDirectory: NSTemporaryDirectory(),
                                   logger: .init(label: "test"), stats: ComponentStats(component: "k8s", kind: .filter))
        var c = KubernetesConfig()
        c.api = .url("http://127.0.0.1:9")
        XCTAssertThrowsError(try c.build(ctx, environment: [:])) { e in
            XCTAssertTrue("\(e)".contains("NODE_NAME"), "\(e)")
        }
        c.api = .inCluster
        XCTAssertThrowsError(try c.build(ctx, environment: ["NODE_NAME": "n"])) { e in
            XCTAssertTrue("\(e)".contains("KUBERNETES_SERVICE_HOST"), "\(e)")
        }
        // auto without a cluster: path metadata only, no thread.
        c.api = .auto
        let f = try c.build(ctx, environment: [:])
        XCTAssertTrue(f.watchers.isEmpty)
    }

    func testInClusterEndpoint() throws {
        let dir = NSTemporaryDirectory() + "k8s-sa-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "tok".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        let ep = try KubeEndpoint.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"],
                                            tokenFile: dir + "/token", caFile: nil)
        XCTAssertEqual(ep.server, "https://[fd00::1]:6443")
        XCTAssertEqual(ep.token, .file(dir + "/token"))
        XCTAssertEqual(ep.caFile, KubeEndpoint.serviceAccountDir + "/ca.crt")
        XCTAssertThrowsError(try KubeEndpoint.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "10.0.0.1"],
                                                        tokenFile: dir + "/missing", caFile: nil)) { e in
            XCTAssertTrue("\(e)".contains("automountServiceAccountToken"), "\(e)")
        }
    }

    func testTokenReaderPicksUpRotation() throws {
        let p = NSTemporaryDirectory() + "k8s-token-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: p) }
        try "one\n".write(toFile: p, atomically: true, encoding: .utf8)
        let r = SecretFile(path: p)
        XCTAssertEqual(try r.current().reveal(), "one")
        XCTAssertEqual("\(try r.current())", "***", "never printed")
        try "two".write(toFile: p, atomically: true, encoding: .utf8)
        XCTAssertEqual(try r.current().reveal(), "two")
        try FileManager.default.removeItem(atPath: p)
        XCTAssertThrowsError(try r.current())
    }

    // MARK: kubeconfig

    private let kubeconfig = """
        apiVersion: v1
        kind: Config
        current-context: prod
        clusters:
        - name: dev
          cluster: {server: "https://dev:6443"}
        - name: prod-cluster
          cluster:
            server: https://10.0.0.1:6443/
            certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
        contexts:
        - name: dev
          context: {cluster: dev, user: dev}
        - name: prod
          context: {cluster: prod-cluster, user: agent, namespace: logging}
        users:
        - name: dev
          user: {token: dev-token}
        - name: agent
          user:
            tokenFile: secrets/token
            client-certificate: certs/client.crt
            client-key-data: a2V5Cg==
        """

    func testKubeconfigCurrentContext() throws {
        var written: [String: [UInt8]] = [:]
        let ep = try Kubeconfig.parse(yaml: kubeconfig, path: "/etc/kube/config") { name, bytes in
            written[name] = bytes
            return "/data/" + name
        }
        XCTAssertEqual(ep.server, "https://10.0.0.1:6443")
        XCTAssertEqual(ep.caFile, "/data/ca.crt")
        XCTAssertEqual(written["ca.crt"], Array("-----BEGIN CERTIFICATE-----\n".utf8))
        XCTAssertEqual(ep.token, .file("/etc/kube/secrets/token"), "relative to the kubeconfig")
        XCTAssertEqual(ep.certFile, "/etc/kube/certs/client.crt")
        XCTAssertEqual(ep.keyFile, "/data/client.key")
        XCTAssertEqual(written["client.key"], Array("key\n".utf8))
        XCTAssertFalse(ep.insecureSkipVerify)

        let dev = try Kubeconfig.parse(yaml: kubeconfig.replacingOccurrences(of: "current-context: prod", with: "current-context: dev"),
                                       path: "/k") { _, _ in "" }
        XCTAssertEqual(dev.token, .literal("dev-token"))
        XCTAssertNil(dev.caFile)
    }

    func testKubeconfigProblemsAreExplained() {
        func problem(_ yaml: String) -> String {
            do {
                _ = try Kubeconfig.parse(yaml: yaml, path: "/k") { _, _ in "" }
                return ""
            } catch {
                return error.description
            }
        }
        XCTAssertTrue(problem("current-context: x\ncontexts: []").contains("\"x\" is not in contexts"))
        XCTAssertTrue(problem("""
            current-context: c
            contexts: [{name: c, context: {cluster: k, user: u}}]
            clusters: [{name: k, cluster: {server: "https://a"}}]
            users: [{name: u, user: {exec: {command: aws}}}]
            """).contains("exec is not supported"))
        XCTAssertTrue(problem("""
            contexts: [{name: c, context: {cluster: k}}]
            clusters: [{name: k, cluster: {server: "https://a", certificate-authority-data: "!!!"}}]
            """).contains("not valid base64"))
        XCTAssertTrue(problem("""
            contexts: [{name: c, context: {cluster: k}}]
            clusters: [{name: k, cluster: {}}]
            """).contains("has no server"))
        XCTAssertTrue(problem("a: [").contains("/k"))
    }

    func testKubeconfigLoadWritesInlineCredentialsPrivately() throws {
        let dir = NSTemporaryDirectory() + "k8s-kc-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try kubeconfig.write(toFile: dir + "/config", atomically: true, encoding: .utf8)
        let ep = try Kubeconfig.load(path: dir + "/config", dataDirectory: dir + "/data/kubernetes/k8s")
        let key = try XCTUnwrap(ep.keyFile)
        XCTAssertEqual(FileManager.default.contents(atPath: key), Data("key\n".utf8))
        let mode = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? Int)
        XCTAssertEqual(mode & 0o777, 0o600)
        XCTAssertThrowsError(try Kubeconfig.load(path: dir + "/missing", dataDirectory: dir))
    }
}

private struct NotAFilter: Error {}
