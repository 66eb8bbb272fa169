import Foundation
import XCTest

/// The `kubernetes` filter end to end: the real binary tails a folder laid out like a node's
/// /var/log/containers (symlinks) and /var/log/pods, against kube_apiserver.py.
final class KubernetesFilterTests: AgentTestCase {
    private var api: KubeAPIServer?

    /// `stopAgent`; with ANDUIN_TEST_VERBOSE=1 also prints the agent's log of passing tests.
    private func finish(_ a: AgentProcess, file: StaticString = #filePath, line: UInt = #line) {
        stopAgent(a, file: file, line: line)
        if ProcessInfo.processInfo.environment["ANDUIN_TEST_VERBOSE"] != nil { print("----- agent stderr -----\n\(a.stderr)") }
    }

    override func tearDown() {
        api?.stop()
        api = nil
        super.tearDown()
    }

    // MARK: helpers

    private func startAPI(down: Bool = false, tokenFile: String? = nil) throws -> KubeAPIServer {
        let tf = tokenFile ?? sandbox.path("token")
        if !FileManager.default.fileExists(atPath: tf) { try "token-1".write(toFile: tf, atomically: true, encoding: .utf8) }
        let s = try KubeAPIServer(tokenFile: tf, down: down)
        api = s
        return s
    }

    enum Layout { case containers, pods }

    /// The file kubelet would write for `container` of a created pod, and (containers layout) the
    /// /var/log/containers-style symlink the agent tails. Returns the path to append to.
    private func logFile(_ pod: [String: Any], _ container: String, layout: Layout = .containers) throws -> String {
        let meta = pod["metadata"] as? [String: Any] ?? [:]
        let ns = meta["namespace"] as? String ?? "", name = meta["name"] as? String ?? "", uid = meta["uid"] as? String ?? ""
        let statuses = (pod["status"] as? [String: Any])?["containerStatuses"] as? [[String: Any]] ?? []
        let cid = (statuses.first { $0["name"] as? String == container }?["containerID"] as? String ?? "")
            .replacingOccurrences(of: "containerd://", with: "")
        switch layout {
        case .pods:
            try sandbox.mkdir("pods/\(ns)_\(name)_\(uid)/\(container)")
            return sandbox.path("pods/\(ns)_\(name)_\(uid)/\(container)/0.log")
        case .containers:
            // The real file outside the tailed globs; the agent sees it through the symlink only.
            try sandbox.mkdir("kubelet-pods/\(ns)_\(name)_\(uid)/\(container)")
            try sandbox.mkdir("containers")
            let real = sandbox.path("kubelet-pods/\(ns)_\(name)_\(uid)/\(container)/0.log")
            appendText(real, "")
            let link = sandbox.path("containers/\(name)_\(ns)_\(container)-\(cid).log")
            if !FileManager.default.fileExists(atPath: link) {
                try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: real)
            }
            return real
        }
    }

    /// CRI lines, as containerd writes them.
    private func writeLines(_ file: String, _ prefix: String, _ range: Range<Int>) {
        appendText(file, logLines(prefix, range).map { "2024-05-01T10:00:00.000000000Z stdout F \($0)\n" }.joined())
    }

    /// `connection` replaces the api_url/token_file lines (e.g. with a kubeconfig).
    private func config(api: KubeAPIServer?, connection: String? = nil, extra: String = "",
                        paths: [String] = ["./containers/*.log"]) -> String {
        var tail = TailOptions()
        tail.paths = paths
        tail.format = "cri"
        var y = "data_dir: ./data\nshutdown_timeout: 30s\ninputs:\n" + tail.yaml(name: "in")
        y += "filters:\n  k8s:\n    type: kubernetes\n    from: [in]\n"
        if let connection {
            for line in connection.split(separator: "\n") { y += "    \(line)\n" }
            y += "    node_name: node-a\n    retry: {initial: 100ms, max: 1s}\n"
        } else if let api {
            y += "    api_url: \(api.url)\n    token_file: ./token\n    node_name: node-a\n"
            y += "    retry: {initial: 100ms, max: 1s}\n"
        } else {
            y += "    api: off\n"
        }
        for line in extra.split(separator: "\n") { y += "    \(line)\n" }
        y += "outputs:\n  local: {type: file, from: [k8s], path: ./out/records.ndjson, \(allMetadata)}\n"
        return y
    }

    private func k8s(_ r: OutRecord) -> [String: Any] { r.json["kubernetes"] as? [String: Any] ?? [:] }

    private func labels(_ r: OutRecord) -> [String: String]? { k8s(r)["labels"] as? [String: String] }

    private func records(_ prefix: String) -> [OutRecord] {
        output.refresh().filter { $0.message?.hasPrefix(prefix + " line ") == true }
    }

    /// Appends a line at a time to `file` until one arrives whose record satisfies `condition`
    /// (the agent picked up an API change); returns the next free line index.
    @discardableResult
    private func appendUntil(_ file: String, _ prefix: String, from start: Int, _ what: String,
                             timeout: Double = 30, file f: StaticString = #filePath, line: UInt = #line,
                             _ condition: @escaping (OutRecord) -> Bool) -> Int {
        var next = start
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            writeLines(file, prefix, next..<(next + 1))
            let want = logLine(prefix, next)
            next += 1
            guard poll(timeout: 10, interval: 0.05, { output.refresh().contains { $0.message == want } }) else { continue }
            if let r = output.records.first(where: { $0.message == want }), condition(r) { return next }
            usleep(100_000)  // pacing the writer, not a wait for the agent
        }
        XCTFail("timed out after \(Int(timeout)) s waiting for: \(what)", file: f, line: line)
        return next
    }

    /// Counter `name` of component k8s in the agent's stop line.
    private func stopCounter(_ agent: AgentProcess, _ name: String) -> Int? {
        guard let line = agent.stderr.split(separator: "\n").last(where: { $0.contains("anduin stopped") }),
              let r = line.range(of: "\(name)=") else { return nil }
        return Int(line[r.upperBound...].prefix { $0.isNumber })
    }

    private func waitForWatch(_ api: KubeAPIServer, file: StaticString = #filePath, line: UInt = #line) {
        waitFor("an open watch at the API server", file: file, line: line) { ((try? api.stats())?.activeWatches ?? 0) >= 1 }
    }

    // MARK: tests

    /// Metadata from the watch: all fields on the first lines; a label change reaches later lines; a
    /// pod added while running is enriched; a deleted pod's lines keep metadata within delete_grace.
    func testWatchCacheAddModifyDelete() throws {
        let api = try startAPI()
        try api.setNamespace("shop", labels: ["team": "payments"])
        var web = KubeAPIServer.Pod(name: "web-7d4b9c.v2-x2k4p", namespace: "shop")
        web.labels = ["app.kubernetes.io/name": "web", "tier": "front"]
        web.annotations = ["prometheus.io/scrape": "true"]
        web.owner = ("ReplicaSet", "web-7d4b9c")
        web.containers = [.init(name: "app", image: "nginx:1.25")]
        let created = try api.addPods([web])
        let webPod = try XCTUnwrap(created.first)
        let webUID = try XCTUnwrap((webPod["metadata"] as? [String: Any])?["uid"] as? String)
        let webFile = try logFile(webPod, "app")
        writeLines(webFile, "web", 0..<10)

        try writeConfig(config(api: api, extra: "annotations: true\nnamespace_labels: true"))
        let agent = try startAgent()
        waitForMessages(logLines("web", 0..<10))

        let link = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: sandbox.path("containers")).first)
        let cid = String(link.dropLast(4).suffix(64))
        for r in records("web") {
            let k = k8s(r)
            XCTAssertEqual(k["namespace_name"] as? String, "shop")
            XCTAssertEqual(k["pod_name"] as? String, "web-7d4b9c.v2-x2k4p")
            XCTAssertEqual(k["pod_id"] as? String, webUID)
            XCTAssertEqual(k["container_name"] as? String, "app")
            XCTAssertEqual(k["container_id"] as? String, cid)
            XCTAssertEqual(k["container_image"] as? String, "docker.io/library/nginx:1.25", "the status image wins")
            XCTAssertEqual(k["host"] as? String, "node-a")
            XCTAssertEqual(labels(r), ["app.kubernetes.io/name": "web", "tier": "front"])
            XCTAssertEqual((k["annotations"] as? [String: String])?["prometheus.io/scrape"], "true")
            XCTAssertEqual(k["owner"] as? [String: String], ["kind": "ReplicaSet", "name": "web-7d4b9c"],
                           "the controller owner, not the first one")
            // The namespace watch may trail the first lines; once present it must be right.
            if let nl = k["namespace_labels"] as? [String: String] { XCTAssertEqual(nl["team"], "payments") }
        }

        // A label change: later lines carry it, and keep carrying it.
        try api.setLabels("shop", "web-7d4b9c.v2-x2k4p", ["app.kubernetes.io/name": "web", "tier": "back"])
        var next = appendUntil(webFile, "web", from: 10, "web lines with tier=back") { self.labels($0)?["tier"] == "back" }
        writeLines(webFile, "web", next..<(next + 10))
        waitForMessages(logLines("web", next..<(next + 10)))
        for r in records("web").suffix(10) { XCTAssertEqual(labels(r)?["tier"], "back", r.message ?? "") }
        next += 10

        // A pod added while running; its file appears after.
        var api0 = KubeAPIServer.Pod(name: "api-0", namespace: "shop")
        api0.labels = ["app": "api"]
        api0.owner = ("StatefulSet", "api")
        api0.containers = [.init(name: "server", image: "ghcr.io/acme/api:2.1", statusImage: "ghcr.io/acme/api@sha256:abc")]
        let apiPod = try XCTUnwrap(try api.addPods([api0]).first)
        let apiFile = try logFile(apiPod, "server")
        writeLines(apiFile, "api", 0..<5)
        waitForMessages(logLines("api", 0..<5))
        for r in records("api") {
            XCTAssertEqual(labels(r), ["app": "api"])
            XCTAssertEqual(k8s(r)["container_image"] as? String, "ghcr.io/acme/api@sha256:abc")
            XCTAssertEqual(k8s(r)["owner"] as? [String: String], ["kind": "StatefulSet", "name": "api"])
        }

        // Delete web; a later event (on api-0) proves the agent has seen the deletion too.
        try api.deletePod("shop", "web-7d4b9c.v2-x2k4p")
        try api.setLabels("shop", "api-0", ["app": "api", "after": "delete"])
        appendUntil(apiFile, "api", from: 5, "api-0 lines with after=delete") { self.labels($0)?["after"] == "delete" }
        writeLines(webFile, "web", next..<(next + 5))
        waitForMessages(logLines("web", next..<(next + 5)))
        for r in records("web").suffix(5) {
            XCTAssertEqual(labels(r)?["tier"], "back", "a deleted pod's last lines keep metadata within delete_grace")
            XCTAssertEqual(k8s(r)["pod_id"] as? String, webUID)
        }

        finish(agent)
        assertWellFormed()
        XCTAssertEqual(stopCounter(agent, "records_enriched_path_only"), nil, "every record had API metadata")
        let stats = try api.stats()
        XCTAssertEqual(stats.gets, 0, "no per-pod GETs")
        XCTAssertTrue(stats.requests.contains { $0["resource"] == "namespaces" && $0["kind"] == "watch" })
        XCTAssertTrue(stats.requests.filter { $0["resource"] == "pods" }.allSatisfy { $0["fieldSelector"] == "spec.nodeName=node-a" })
    }

    /// Issue 24 (10): a short-lived pod is deleted (and the kubelet removes its log) while the output
    /// is down and the input is paused on the full buffer; its backlog, read from the still-open file
    /// long after delete_grace, ships with the pod's labels, every line of it.
    func testDeletedPodsBacklogReadAfterAnOutageKeepsItsMetadata() throws {
        let api = try startAPI()
        var job = KubeAPIServer.Pod(name: "report-28514-x7k2q", namespace: "batch")
        job.labels = ["app": "report", "run": "28514"]
        job.owner = ("Job", "report-28514")
        job.containers = [.init(name: "main", image: "acme/report:3")]
        let pod = try XCTUnwrap(try api.addPods([job]).first)
        let uid = try XCTUnwrap((pod["metadata"] as? [String: Any])?["uid"] as? String)
        let file = try logFile(pod, "main")

        let receiver = try ReceiverPeer()
        defer { receiver.stop() }
        try receiver.script([], then: "503")
        var y = config(api: api, extra: "delete_grace: 1s\nwait_for_pod: 0s")
        y = y.replacingOccurrences(of: "outputs:\n  local: {type: file, from: [k8s], path: ./out/records.ndjson, \(allMetadata)}\n", with: """
            outputs:
              sink:
                type: http
                from: [k8s]
                uri: \(receiver.url)
                buffer: {type: memory, max_records: 20}
                batch: {max_records: 10, timeout: 50ms}
                retry: {initial: 50ms, max: 200ms}

            """)
        y = "api: {address: \"127.0.0.1:0\"}\n" + y
        try writeConfig(y)
        let agent = try startAgent()
        waitForWatch(api)
        let address = try XCTUnwrap(apiAddress(), "the agent wrote no data/api.address")
        let filtered = "anduin_filter_records_in_total{component=k8s,type=kubernetes}"
        func filteredCount() -> Double { scrapeMetrics(address)?[filtered] ?? -1 }

        // Lines that fill the buffer while every delivery is refused, then lines the input reads and
        // then holds, paused on the full buffer; then the backlog, which it cannot read yet.
        writeLines(file, "job", 0..<50)
        waitFor("deliveries refused by the receiver") { ((try? receiver.snapshot())?.requests ?? 0) >= 3 }
        writeLines(file, "job", 50..<100)
        waitFor("the filter seeing 100 records") { filteredCount() >= 100 }
        writeLines(file, "job", 100..<2_000)
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(filteredCount(), 100, "the input is paused: the backlog is not read yet")

        // The pod ends; the kubelet removes its log (the agent still holds the file open).
        try api.deletePod("batch", "report-28514-x7k2q")
        let links = try FileManager.default.contentsOfDirectory(atPath: sandbox.path("containers"))
        for l in links { unlink(sandbox.path("containers/\(l)")) }
        unlink(file)
        // Well past delete_grace (1 s) with nothing of the pod passing the filter.
        Thread.sleep(forTimeInterval: 4)
        XCTAssertTrue(agent.isRunning)

        try receiver.script([], then: "200")
        let expected = Set(logLines("job", 0..<2_000))
        var got: [[String: Any]] = []
        waitFor("all 2,000 lines of the deleted pod at the receiver", timeout: 120) {
            got = (try? receiver.snapshot())?.records ?? []
            return expected.isSubset(of: Set(got.compactMap { $0["message"] as? String }))
        }
        var unlabelled: [String] = []
        for r in got {
            let k = r["kubernetes"] as? [String: Any] ?? [:]
            if k["labels"] as? [String: String] != ["app": "report", "run": "28514"] || k["pod_id"] as? String != uid {
                unlabelled.append(r["message"] as? String ?? "?")
            }
        }
        XCTAssertEqual(unlabelled.count, 0, "\(unlabelled.count) of \(got.count) lines without the pod's metadata, e.g. \(unlabelled.prefix(3))")
        finish(agent)
        XCTAssertEqual(stopCounter(agent, "records_enriched_path_only"), nil, "every record had API metadata")
    }

    /// Issue 24 (10): `wait_for_pod` is per pod. A gone pod's file (never in the API) waits and times
    /// out; a pod whose ADDED event comes 0.5 s after its file still gets its wait, and its labels.
    func testWaitForPodIsPerPodAfterAnotherPodTimedOut() throws {
        let api = try startAPI()
        try writeConfig(config(api: api, extra: "wait_for_pod: 8s", paths: ["./pods/*/*/*.log"]))
        let agent = try startAgent()
        waitForWatch(api)

        let goneUID = UUID().uuidString.lowercased()
        try sandbox.mkdir("pods/shop_gone-1_\(goneUID)/app")
        writeLines(sandbox.path("pods/shop_gone-1_\(goneUID)/app/0.log"), "gone", 0..<5)
        waitForMessages(logLines("gone", 0..<5), timeout: 60)
        for r in records("gone") { XCTAssertNil(labels(r), "never in the API: path metadata only") }

        var late = KubeAPIServer.Pod(name: "late-1", namespace: "shop")
        late.labels = ["app": "late"]
        late.uid = UUID().uuidString.lowercased()
        let file = try logFile(["metadata": ["namespace": "shop", "name": "late-1", "uid": late.uid ?? ""]], "app", layout: .pods)
        writeLines(file, "late", 0..<20)
        Thread.sleep(forTimeInterval: 0.5)
        try api.addPods([late])
        waitForMessages(logLines("late", 0..<20), timeout: 60)
        let unlabelled = records("late").filter { labels($0) != ["app": "late"] }
        XCTAssertEqual(unlabelled.count, 0, "\(unlabelled.count) of 20 lines of the late pod without its labels")
        finish(agent)
        assertWellFormed()
    }

    /// 410 Gone as an ERROR event and as HTTP 410 both lead to a re-list, after which changes still
    /// flow; a BOOKMARK moves the resourceVersion the next watch starts from.
    func testRelistOn410AndBookmarkAdvancesResourceVersion() throws {
        let api = try startAPI()
        var pod = KubeAPIServer.Pod(name: "worker-5f6d", namespace: "jobs")
        pod.labels = ["v": "1"]
        let file = try logFile(try XCTUnwrap(try api.addPods([pod]).first), "app")
        writeLines(file, "w", 0..<3)
        try writeConfig(config(api: api))
        let agent = try startAgent()
        waitForMessages(logLines("w", 0..<3))
        waitForWatch(api)

        // Bookmark: other nodes' writes move the RV; the bookmark hands it over; the next watch uses it.
        try api.advance(5)
        let bookmarkRV = try api.bookmark()
        try api.closeWatches()
        waitFor("a watch from the bookmark's resourceVersion \(bookmarkRV)") {
            ((try? api.stats())?.requests ?? []).contains { $0["kind"] == "watch" && $0["resourceVersion"] == String(bookmarkRV) }
        }
        XCTAssertEqual(try api.stats().lists, 1, "a bookmark and a watch end need no list")

        // ERROR 410 on the open watch.
        waitForWatch(api)
        try api.expire()
        waitFor("a second list after ERROR 410") { ((try? api.stats())?.lists ?? 0) >= 2 }
        try api.setLabels("jobs", "worker-5f6d", ["v": "2"])
        var next = appendUntil(file, "w", from: 3, "v=2 after the re-list") { self.labels($0)?["v"] == "2" }

        // HTTP 410 on the next watch request.
        waitForWatch(api)
        try api.expire(http410: true)
        waitFor("a third list after HTTP 410") { ((try? api.stats())?.lists ?? 0) >= 3 }
        try api.setLabels("jobs", "worker-5f6d", ["v": "3"])
        next = appendUntil(file, "w", from: next, "v=3 after the second re-list") { self.labels($0)?["v"] == "3" }

        finish(agent)
        XCTAssertEqual(stopCounter(agent, "watch_relists"), 2)
        XCTAssertGreaterThanOrEqual(stopCounter(agent, "watch_reconnects") ?? 0, 3)
        XCTAssertEqual(try api.stats().gets, 0)
    }

    /// The token file is re-read: rotated before the server switches, no request fails; server
    /// first, the agent gets 401s, then recovers as soon as its file has the new token.
    func testTokenRotation() throws {
        let serverToken = sandbox.path("server-token")
        try "token-1".write(toFile: serverToken, atomically: true, encoding: .utf8)
        try "token-1".write(toFile: sandbox.path("token"), atomically: true, encoding: .utf8)
        let api = try startAPI(tokenFile: serverToken)
        var pod = KubeAPIServer.Pod(name: "auth-1", namespace: "sec")
        pod.labels = ["v": "1"]
        let file = try logFile(try XCTUnwrap(try api.addPods([pod]).first), "app")
        writeLines(file, "t", 0..<3)
        try writeConfig(config(api: api))
        let agent = try startAgent()
        waitForMessages(logLines("t", 0..<3))
        waitForWatch(api)

        // Agent's file first (as kubelet does before the old token expires), then the server.
        try "token-2".write(toFile: sandbox.path("token"), atomically: true, encoding: .utf8)
        try api.setToken("token-2")
        try api.closeWatches()
        try api.setLabels("sec", "auth-1", ["v": "2"])
        var next = appendUntil(file, "t", from: 3, "v=2 with token-2") { self.labels($0)?["v"] == "2" }
        let afterFirst = try api.stats()
        XCTAssertEqual(afterFirst.unauthorized, 0, "the rotated file was read before the next request")
        XCTAssertEqual(afterFirst.requests.last?["token"], "token-2")

        // Server first: 401s until the agent's file catches up; then it keeps watching.
        try api.setToken("token-3")
        try api.closeWatches()
        waitFor("a 401 for the old token") { ((try? api.stats())?.unauthorized ?? 0) >= 1 }
        try "token-3".write(toFile: sandbox.path("token"), atomically: true, encoding: .utf8)
        try api.setLabels("sec", "auth-1", ["v": "3"])
        next = appendUntil(file, "t", from: next, "v=3 with token-3") { self.labels($0)?["v"] == "3" }
        XCTAssertEqual(try api.stats().requests.last?["token"], "token-3")
        waitForLog(agent, "answered 401")
        waitForLog(agent, "reachable again")

        finish(agent)
        XCTAssertFalse(agent.stderr.contains("token-2") || agent.stderr.contains("token-3"), "tokens never appear in logs")
    }

    /// `anduin.io/exclude` drops a pod, `anduin.io/exclude-<container>` one container, and
    /// `namespaces.exclude` a namespace; everything else ships.
    func testExclusionAnnotationsAndNamespaceRulesDropRecords() throws {
        let api = try startAPI()
        var noisy = KubeAPIServer.Pod(name: "noisy-1", namespace: "apps")
        noisy.annotations = ["anduin.io/exclude": "true"]
        var mixed = KubeAPIServer.Pod(name: "mixed-1", namespace: "apps")
        mixed.annotations = ["anduin.io/exclude-sidecar": "true"]
        mixed.containers = [.init(name: "app", image: "app:1"), .init(name: "sidecar", image: "envoy:1")]
        let system = KubeAPIServer.Pod(name: "coredns-abc", namespace: "kube-system")
        let keep = KubeAPIServer.Pod(name: "keep-1", namespace: "apps")
        let pods = try api.addPods([noisy, mixed, system, keep])
        XCTAssertEqual(pods.count, 4)
        let files = [("noisy", try logFile(pods[0], "app")), ("mixapp", try logFile(pods[1], "app")),
                     ("sidecar", try logFile(pods[1], "sidecar")), ("system", try logFile(pods[2], "app")),
                     ("keep", try logFile(pods[3], "app"))]
        for (prefix, f) in files { writeLines(f, prefix, 0..<20) }

        try writeConfig(config(api: api, extra: "namespaces: {exclude: [\"kube-*\"]}"))
        let agent = try startAgent()
        waitForMessages(logLines("keep", 0..<20) + logLines("mixapp", 0..<20))
        // Dropped batches are still acknowledged: every file's checkpoint reaches its end.
        var sizes: [String: Int64] = [:]
        for link in try FileManager.default.contentsOfDirectory(atPath: sandbox.path("containers")) {
            let real = try FileManager.default.destinationOfSymbolicLink(atPath: sandbox.path("containers/\(link)"))
            sizes[sandbox.path("containers/\(link)")] = (try FileManager.default.attributesOfItem(atPath: real)[.size] as? NSNumber)?.int64Value
        }
        XCTAssertEqual(sizes.count, 5)
        waitFor("every file checkpointed to its end (excluded ones too): \(sizes) vs \(sandbox.checkpoints("in"))") {
            let cp = sandbox.checkpoints("in")
            return sizes.allSatisfy { path, size in size > 0 && cp[path] == size }
        }
        finish(agent)

        let prefixes = Set(output.refresh().compactMap { $0.message.flatMap(parseLogLine)?.prefix })
        XCTAssertEqual(prefixes, ["keep", "mixapp"])
        XCTAssertEqual(stopCounter(agent, "records_excluded"), 60)
        assertWellFormed()
    }

    /// API down at start: lines ship at once with path metadata (no wait per pod), the outage is
    /// logged once; when the API comes up, later lines get the pod metadata.
    func testAPIDownAtStartShipsPathOnlyWithoutStalling() throws {
        let api = try startAPI(down: true)
        // The API process keeps the pods while its port is closed.
        let pods = try api.addPods((0..<20).map { i in
            var p = KubeAPIServer.Pod(name: "down-\(i)", namespace: "ns-\(i % 3)")
            p.labels = ["i": "\(i)"]
            return p
        })
        var files: [String] = []
        for (i, p) in pods.enumerated() {
            let f = try logFile(p, "app")
            writeLines(f, "p\(i)", 0..<5)
            files.append(f)
        }
        try writeConfig(config(api: api))
        let started = Date()
        let agent = try startAgent()
        let expected = (0..<20).flatMap { logLines("p\($0)", 0..<5) }
        waitForMessages(expected, timeout: 60)
        let took = Date().timeIntervalSince(started)
        // Waiting wait_for_pod (2 s) per unknown pod would take 40 s or more.
        XCTAssertLessThan(took, 20, "lines must not wait for an unreachable API")
        for r in output.records {
            let k = k8s(r)
            XCTAssertNotNil(k["namespace_name"]); XCTAssertNotNil(k["pod_name"])
            XCTAssertEqual(k["container_name"] as? String, "app")
            XCTAssertEqual((k["container_id"] as? String)?.count, 64)
            XCTAssertNil(k["labels"], "no API metadata while the API is down")
        }
        waitForLog(agent, "Kubernetes API unreachable")

        try api.up()
        appendUntil(files[7], "p7", from: 5, "p7 lines with labels after the API came up") { self.labels($0)?["i"] == "7" }
        waitForLog(agent, "reachable again")
        finish(agent)
        XCTAssertEqual(agent.stderr.components(separatedBy: "Kubernetes API unreachable").count - 1, 1,
                       "the outage is logged once, not per retry")
        // Every record went through the filter: those without labels were enriched from the path only.
        let pathOnly = output.refresh().filter { labels($0) == nil }.count
        XCTAssertGreaterThanOrEqual(pathOnly, 100, "the 100 lines written while the API was down")
        XCTAssertEqual(stopCounter(agent, "records_enriched_path_only"), pathOnly)
        XCTAssertEqual(stopCounter(agent, "records_enriched_api"), output.records.count - pathOnly)
    }

    /// 20 pods × 200 lines, both log layouts: one list and one watch in all, whatever the number of
    /// pods or lines (no request per line or per pod).
    func testRequestsDoNotGrowWithPodsOrLines() throws {
        let api = try startAPI()
        let pods = try api.addPods((0..<20).map { i in
            var p = KubeAPIServer.Pod(name: "load-\(i)-7c9f.abc", namespace: "load")
            p.labels = ["i": "\(i)", "app.kubernetes.io/part-of": "load"]
            p.owner = ("ReplicaSet", "load-\(i)-7c9f")
            return p
        })
        var files: [String] = []
        for (i, p) in pods.enumerated() {
            let f = try logFile(p, "app", layout: i < 10 ? .containers : .pods)
            writeLines(f, "L\(i)", 0..<100)
            files.append(f)
        }
        try writeConfig(config(api: api, paths: ["./containers/*.log", "./pods/*/*/*.log"]))
        let agent = try startAgent()
        waitForRecordCount(2000, timeout: 90)
        for (i, f) in files.enumerated() { writeLines(f, "L\(i)", 100..<200) }
        let expected = (0..<20).flatMap { logLines("L\($0)", 0..<200) }
        waitForMessages(expected, timeout: 90)
        finish(agent)

        assertExactlyOnce(output.refresh(), expected)
        let uids = pods.map { ($0["metadata"] as? [String: Any])?["uid"] as? String ?? "" }
        for r in output.records {
            guard let m = r.message, let (prefix, _) = parseLogLine(m), let i = Int(prefix.dropFirst()) else { continue }
            XCTAssertEqual(labels(r)?["i"], "\(i)", m)
            XCTAssertEqual(k8s(r)["pod_id"] as? String, uids[i], m)
        }
        let stats = try api.stats()
        XCTAssertEqual(stats.lists, 1, "one list for 20 pods × 200 lines")
        XCTAssertEqual(stats.watches, 1, "one watch")
        XCTAssertEqual(stats.gets, 0, "no per-pod GETs")
        XCTAssertEqual(stopCounter(agent, "api_requests"), 2)
        XCTAssertEqual(stopCounter(agent, "records_enriched_api"), 4000)
    }

    /// TLS is verified: without the cluster CA the API is unusable (logged, path metadata only);
    /// a kubeconfig with certificate-authority-data and a token connects.
    func testKubeconfigOverVerifiedTLS() throws {
        let pki = try TestPKI(in: sandbox.path("pki"))
        try "token-1".write(toFile: sandbox.path("token"), atomically: true, encoding: .utf8)
        let api = try KubeAPIServer(tokenFile: sandbox.path("token"), tls: (pki.certFile, pki.keyFile))
        self.api = api
        var pod = KubeAPIServer.Pod(name: "secure-1", namespace: "tls")
        pod.labels = ["secure": "yes"]
        let file = try logFile(try XCTUnwrap(try api.addPods([pod]).first), "app")
        writeLines(file, "s", 0..<3)

        // No CA: the server certificate cannot be verified.
        try writeConfig(config(api: nil, connection: "api_url: \(api.url)\ntoken_file: ./token"))
        var agent = try startAgent()
        waitForMessages(logLines("s", 0..<3))
        waitForLog(agent, "TLS with \(api.url)")
        finish(agent)
        XCTAssertTrue(records("s").allSatisfy { labels($0) == nil })

        let ca = try XCTUnwrap(FileManager.default.contents(atPath: pki.caFile)).base64EncodedString()
        try sandbox.mkdir("kube")
        try sandbox.write("kube/config", """
            apiVersion: v1
            kind: Config
            current-context: test
            clusters:
            - name: c
              cluster: {server: "\(api.url)", certificate-authority-data: "\(ca)"}
            contexts:
            - name: test
              context: {cluster: c, user: agent}
            users:
            - name: agent
              user: {token: token-1}
            """)
        try writeConfig(config(api: nil, connection: "kubeconfig: ./kube/config"))
        agent = try startAgent()
        writeLines(file, "s", 3..<6)
        waitForMessages(logLines("s", 3..<6))
        for r in records("s").suffix(3) { XCTAssertEqual(labels(r), ["secure": "yes"], r.message ?? "") }
        finish(agent)
        let caCopy = sandbox.path("data/kubernetes/k8s/ca.crt")
        let mode = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: caCopy)[.posixPermissions] as? NSNumber)
        XCTAssertEqual(mode.intValue & 0o777, 0o600)
        XCTAssertFalse(agent.stderr.contains("token-1"))
    }
}
