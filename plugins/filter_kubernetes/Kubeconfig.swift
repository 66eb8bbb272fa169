import AnduinCore
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The subset of a kubeconfig file the filter needs: the current context's cluster (server, CA,
/// insecure-skip-tls-verify) and user (token, tokenFile, client certificate and key, as files or
/// inline `-data`). Exec and auth-provider plugins are not supported (no subprocesses in the agent).
public enum Kubeconfig {
    /// Inline `*-data` must become files for libcurl; `materialize(name, bytes)` writes them and
    /// returns the path.
    public static func parse(yaml: String, path: String,
                             materialize: (_ name: String, _ bytes: [UInt8]) throws(KubernetesSetupError) -> String)
        throws(KubernetesSetupError) -> KubeEndpoint {
        func fail(_ detail: String) -> KubernetesSetupError { .kubeconfig(path: path, detail: detail) }
        let diags = Diagnostics()
        guard let root = ConfigValue.parse(yaml: yaml, file: path, environment: [:], diagnostics: diags),
              diags.isEmpty else {
            throw fail(diags.sorted.first.map { "\($0.mark.line):\($0.mark.column): \($0.message)" } ?? "not valid YAML")
        }
        let top = members(root)
        let baseDir = parentDirectory(of: path)
        func resolve(_ p: String) -> String {
            p.hasPrefix("/") || baseDir.isEmpty ? p : baseDir + "/" + p
        }

        let contexts = named(top["contexts"], "context")
        var contextName = scalar(top["current-context"]) ?? ""
        if contextName.isEmpty {
            guard contexts.count == 1, let only = contexts.first else {
                throw fail("current-context is not set (and there is not exactly one context to pick)")
            }
            contextName = only.name
        }
        guard let context = contexts.first(where: { $0.name == contextName }) else {
            throw fail("current-context \"\(contextName)\" is not in contexts (have: \(contexts.map(\.name).joined(separator: ", ")))")
        }
        guard let clusterName = scalar(context.body["cluster"]), !clusterName.isEmpty else {
            throw fail("context \"\(contextName)\" names no cluster")
        }
        let clusters = named(top["clusters"], "cluster")
        guard let cluster = clusters.first(where: { $0.name == clusterName })?.body else {
            throw fail("cluster \"\(clusterName)\" (of context \"\(contextName)\") is not in clusters")
        }
        guard let server = scalar(cluster["server"]), !server.isEmpty else {
            throw fail("cluster \"\(clusterName)\" has no server")
        }
        let lower = server.lowercased()
        guard lower.hasPrefix("https://") || lower.hasPrefix("http://") else {
            throw fail("cluster \"\(clusterName)\": server \"\(server)\" must start with https:// or http://")
        }

        func file(_ body: [String: ConfigValue], _ key: String, _ dataName: String, what: String) throws(KubernetesSetupError) -> String? {
            if let data = scalar(body[key + "-data"]), !data.isEmpty {
                guard let bytes = Data(base64Encoded: data, options: .ignoreUnknownCharacters) else {
                    throw fail("\(what): \(key)-data is not valid base64")
                }
                return try materialize(dataName, Array(bytes))
            }
            return scalar(body[key]).map(resolve)
        }

        var endpoint = KubeEndpoint(server: server)
        endpoint.caFile = try file(cluster, "certificate-authority", "ca.crt", what: "cluster \"\(clusterName)\"")
        endpoint.insecureSkipVerify = boolValue(cluster["insecure-skip-tls-verify"])

        if let userName = scalar(context.body["user"]), !userName.isEmpty {
            let users = named(top["users"], "user")
            guard let user = users.first(where: { $0.name == userName })?.body else {
                throw fail("user \"\(userName)\" (of context \"\(contextName)\") is not in users")
            }
            for unsupported in ["exec", "auth-provider", "username", "password"] where user[unsupported] != nil {
                throw fail("user \"\(userName)\": \(unsupported) is not supported; use a token, tokenFile or a client certificate")
            }
            if let t = scalar(user["token"]), !t.isEmpty {
                endpoint.token = .literal(t)
            } else if let tf = scalar(user["tokenFile"]) ?? scalar(user["token-file"]), !tf.isEmpty {
                endpoint.token = .file(resolve(tf))
            }
            endpoint.certFile = try file(user, "client-certificate", "client.crt", what: "user \"\(userName)\"")
            endpoint.keyFile = try file(user, "client-key", "client.key", what: "user \"\(userName)\"")
            if (endpoint.certFile == nil) != (endpoint.keyFile == nil) {
                throw fail("user \"\(userName)\": client-certificate and client-key go together; set both or neither")
            }
        }
        return endpoint
    }

    /// Reads `path`, writing inline credentials to `dataDirectory` (mode 0600).
    public static func load(path: String, dataDirectory: String) throws(KubernetesSetupError) -> KubeEndpoint {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .kubeconfig(path: path, detail: "cannot read it (\(String(cString: strerror(errno))))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw .kubeconfig(path: path, detail: "not UTF-8 text")
        }
        return try parse(yaml: text, path: path) { name, bytes throws(KubernetesSetupError) in
            try writePrivateFile(directory: dataDirectory, name: name, bytes: bytes)
        }
    }

    /// Writes `bytes` to `directory/name` with mode 0600 (credentials), atomically.
    static func writePrivateFile(directory: String, name: String, bytes: [UInt8]) throws(KubernetesSetupError) -> String {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw .files(path: directory, detail: "cannot create it: \(describeFileError(error))")
        }
        let target = directory + "/" + name
        let tmp = target + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .files(path: tmp, detail: "cannot create it: \(String(cString: strerror(errno)))") }
        // The mode of an existing file is not changed by open(2).
        fchmod(fd, 0o600)
        var done = 0
        let ok: Bool = bytes.withUnsafeBytes { buf in
            while done < buf.count {
                guard let base = buf.baseAddress else { return false }
                let n = write(fd, base + done, buf.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                done += n
            }
            return true
        }
        let err = errno
        close(fd)
        guard ok else { throw .files(path: tmp, detail: "cannot write it: \(String(cString: strerror(err)))") }
        guard rename(tmp, target) == 0 else {
            throw .files(path: target, detail: "cannot rename into place: \(String(cString: strerror(errno)))")
        }
        return target
    }

    // MARK: YAML helpers

    static func members(_ v: ConfigValue?) -> [String: ConfigValue] {
        guard case .mapping(let entries, _)? = v else { return [:] }
        var out: [String: ConfigValue] = [:]
        for e in entries { out[e.key] = e.value }
        return out
    }

    static func scalar(_ v: ConfigValue?) -> String? {
        guard case .scalar(let s, _, _)? = v else { return nil }
        return s
    }

    static func boolValue(_ v: ConfigValue?) -> Bool {
        guard let s = scalar(v) else { return false }
        return ["true", "yes", "on"].contains(s.lowercased())
    }

    /// `[{name: x, <key>: {...}}]` entries of a kubeconfig list.
    static func named(_ v: ConfigValue?, _ key: String) -> [(name: String, body: [String: ConfigValue])] {
        guard case .sequence(let items, _)? = v else { return [] }
        return items.compactMap { item in
            let m = members(item)
            guard let name = scalar(m["name"]) else { return nil }
            return (name, members(m[key]))
        }
    }
}
