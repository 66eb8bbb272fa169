import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Tests/IntegrationTests/Peers/kube_apiserver.py: a stand-in kube-apiserver (pods and namespaces,
/// list + watch, bookmarks, 410 Gone, bearer token from a file) with a control API on its own port,
/// so the API port can go down and up.
final class KubeAPIServer {
    let peer: PeerProcess
    let port: Int
    let controlPort: Int
    let tls: Bool
    var url: String { "\(tls ? "https" : "http")://127.0.0.1:\(port)" }

    /// `tokenFile`: the server accepts only `Bearer <contents>` (read per request). `down`: start
    /// with the API port not listening. `tls`: (certificate, key) PEM files to serve HTTPS with.
    init(tokenFile: String? = nil, down: Bool = false, tls: (cert: String, key: String)? = nil) throws {
        let script = packageRoot.appendingPathComponent("Tests/IntegrationTests/Peers/kube_apiserver.py").path
        var args = ["python3", script]
        if let tokenFile { args += ["--token-file", tokenFile] }
        if down { args.append("--down") }
        if let tls { args += ["--tls-cert", tls.cert, "--tls-key", tls.key] }
        self.tls = tls != nil
        peer = try PeerProcess(executable: "/usr/bin/env", arguments: args)
        guard let p = peer.ready["port"] as? Int, let c = peer.ready["control_port"] as? Int else {
            throw PeerError("kube_apiserver.py gave no ports: \(peer.ready)")
        }
        port = p
        controlPort = c
    }

    func stop() { peer.stop() }

    struct Container {
        var name: String
        var image: String
        var statusImage: String?
        var id: String?
        var json: [String: Any] {
            var j: [String: Any] = ["name": name, "image": image]
            if let statusImage { j["status_image"] = statusImage }
            if let id { j["id"] = id }
            return j
        }
    }

    struct Pod {
        var name: String
        var namespace: String
        var node = "node-a"
        var labels: [String: String] = [:]
        var annotations: [String: String] = [:]
        var containers = [Container(name: "app", image: "nginx:1.25")]
        var owner: (kind: String, name: String)?
        /// Set to name the pod's /var/log/pods folder before the pod is added; the server makes one otherwise.
        var uid: String?
        var json: [String: Any] {
            var j: [String: Any] = ["name": name, "namespace": namespace, "node": node, "labels": labels,
                                    "annotations": annotations, "containers": containers.map(\.json)]
            if let uid { j["uid"] = uid }
            if let owner { j["owner"] = ["kind": owner.kind, "name": owner.name]; j["extra_owner"] = true }
            return j
        }
    }

    /// Adds pods (ADDED events); returns the created objects (uid, container IDs).
    @discardableResult
    func addPods(_ pods: [Pod]) throws -> [[String: Any]] {
        let r = try control("POST", "pods", ["pods": pods.map(\.json)])
        return r["pods"] as? [[String: Any]] ?? []
    }

    func setLabels(_ namespace: String, _ name: String, _ labels: [String: String]) throws {
        _ = try control("POST", "pods/modify", ["namespace": namespace, "name": name, "labels": labels])
    }

    func setAnnotations(_ namespace: String, _ name: String, _ annotations: [String: String]) throws {
        _ = try control("POST", "pods/modify", ["namespace": namespace, "name": name, "annotations": annotations])
    }

    func deletePod(_ namespace: String, _ name: String) throws {
        _ = try control("POST", "pods/delete", ["namespace": namespace, "name": name])
    }

    func setNamespace(_ name: String, labels: [String: String]) throws {
        _ = try control("POST", "namespaces", ["name": name, "labels": labels])
    }

    /// Every resourceVersion so far becomes too old. Default: open watches get an ERROR 410 event
    /// (as do new watches from an old RV). `http410`: open watches end quietly instead, and a new
    /// watch from an old RV gets HTTP 410. Returns the new current RV.
    @discardableResult
    func expire(http410: Bool = false) throws -> Int {
        try control("POST", "expire", ["http_410": http410])["rv"] as? Int ?? -1
    }

    /// Open watches get a BOOKMARK at the current RV. Returns it.
    @discardableResult
    func bookmark() throws -> Int { try control("POST", "bookmark", [:])["rv"] as? Int ?? -1 }

    /// Bumps the RV without events for this node (writes elsewhere in the cluster). Returns it.
    @discardableResult
    func advance(_ n: Int = 1) throws -> Int { try control("POST", "advance", ["n": n])["rv"] as? Int ?? -1 }

    /// Ends open watches as a server timeout does.
    func closeWatches() throws { _ = try control("POST", "close_watches", [:]) }

    func setToken(_ token: String) throws { _ = try control("POST", "token", ["token": token]) }

    func down() throws { _ = try control("POST", "down", [:]) }
    func up() throws { _ = try control("POST", "up", [:]) }

    struct Stats {
        var lists: Int
        var watches: Int
        var gets: Int
        var unauthorized: Int
        var activeWatches: Int
        var rv: Int
        /// In arrival order: kind (list/watch/get), resource, resourceVersion, token, fieldSelector.
        var requests: [[String: String]]
    }

    func stats() throws -> Stats {
        let j = try control("GET", "stats", nil)
        return Stats(lists: j["list"] as? Int ?? -1, watches: j["watch"] as? Int ?? -1, gets: j["get"] as? Int ?? -1,
                     unauthorized: j["unauthorized"] as? Int ?? -1, activeWatches: j["active_watches"] as? Int ?? -1,
                     rv: j["rv"] as? Int ?? -1,
                     requests: (j["requests"] as? [[String: Any]] ?? []).map { r in r.compactMapValues { $0 as? String } })
    }

    private func control(_ method: String, _ action: String, _ body: [String: Any]?) throws -> [String: Any] {
        let r = try httpJSON(method, "http://127.0.0.1:\(controlPort)/_control/\(action)", body: body)
        if let e = r["error"] { throw PeerError("kube_apiserver.py \(action): \(e)") }
        return r
    }
}
