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

/// The parts of a pod the filter writes or decides on, parsed from the API's JSON on the watch
/// thread (never on the record path).
public struct PodMeta: Sendable {
    public struct Container: Sendable, Equatable {
        public var image: String?
        /// Without the runtime prefix (`containerd://`), as in the /var/log/containers file name.
        public var id: String?
        public init(image: String? = nil, id: String? = nil) {
            self.image = image
            self.id = id
        }
    }

    public var namespace: String
    public var name: String
    public var uid: String
    public var resourceVersion: String
    public var nodeName: String?
    /// Sorted by key, so a pod renders the same bytes whatever order the API sent.
    public var labels: [(String, String)]
    public var annotations: [(String, String)]
    public var owner: (kind: String, name: String)?
    /// By container name: image and id from `status.containerStatuses` (and init/ephemeral ones),
    /// image falling back to `spec.containers[].image`.
    public var containers: [String: Container]
    /// `anduin.io/exclude: "true"`.
    public var excluded: Bool
    /// Containers named in `anduin.io/exclude-<container>: "true"`.
    public var excludedContainers: Set<String>
    /// A static pod's mirror carries the config hash that its /var/log/pods folder is named after.
    public var mirrorUID: String?

    public var ref: PodRef { PodRef(namespace: namespace, name: name) }

    public static let excludeAnnotation = "anduin.io/exclude"
    public static let excludeContainerPrefix = "anduin.io/exclude-"

    public init(namespace: String, name: String, uid: String, resourceVersion: String = "", nodeName: String? = nil,
                labels: [(String, String)] = [], annotations: [(String, String)] = [],
                owner: (kind: String, name: String)? = nil, containers: [String: Container] = [:]) {
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.resourceVersion = resourceVersion
        self.nodeName = nodeName
        self.labels = labels.sorted { $0.0 < $1.0 }
        self.annotations = annotations.sorted { $0.0 < $1.0 }
        self.owner = owner
        self.containers = containers
        self.excluded = false
        self.excludedContainers = []
        self.mirrorUID = nil
        for (k, v) in self.annotations {
            if k == PodMeta.excludeAnnotation {
                excluded = PodMeta.isTrue(v)
            } else if k.hasPrefix(PodMeta.excludeContainerPrefix), PodMeta.isTrue(v) {
                excludedContainers.insert(String(k.dropFirst(PodMeta.excludeContainerPrefix.count)))
            } else if k == "kubernetes.io/config.mirror" {
                mirrorUID = v
            }
        }
    }

    static func isTrue(_ v: String) -> Bool { v.lowercased() == "true" }

    /// From a pod object as the API returns it (a list item or a watch event's `object`).
    /// Throws when the identifying fields are missing.
    public static func parse(_ obj: JSONValue) throws(KubernetesAPIError) -> PodMeta {
        guard let meta = obj["metadata"],
              let name = meta["name"]?.string, let namespace = meta["namespace"]?.string,
              let uid = meta["uid"]?.string else {
            throw .badResponse(what: "pod object", detail: "metadata.name, namespace or uid missing")
        }
        let spec = obj["spec"]
        let status = obj["status"]

        var containers: [String: Container] = [:]
        for key in ["initContainers", "containers", "ephemeralContainers"] {
            for c in spec?[key]?.array ?? [] {
                guard let n = c["name"]?.string else { continue }
                containers[n, default: Container()].image = c["image"]?.string
            }
        }
        for key in ["initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"] {
            for c in status?[key]?.array ?? [] {
                guard let n = c["name"]?.string else { continue }
                var entry = containers[n] ?? Container()
                // The status has the resolved image (tag as run); the spec is the fallback.
                if let image = c["image"]?.string, !image.isEmpty { entry.image = image }
                if let id = c["containerID"]?.string, !id.isEmpty { entry.id = stripRuntime(id) }
                containers[n] = entry
            }
        }

        var owner: (kind: String, name: String)?
        let refs = meta["ownerReferences"]?.array ?? []
        // The controller owns the pod; any other owner is only a fallback.
        if let r = refs.first(where: { $0["controller"]?.bool == true }) ?? refs.first,
           let kind = r["kind"]?.string, let oname = r["name"]?.string {
            owner = (kind, oname)
        }

        return PodMeta(namespace: namespace, name: name, uid: uid,
                       resourceVersion: meta["resourceVersion"]?.string ?? "",
                       nodeName: spec?["nodeName"]?.string,
                       labels: stringPairs(meta["labels"]), annotations: stringPairs(meta["annotations"]),
                       owner: owner, containers: containers)
    }

    /// `containerd://abc` -> `abc`.
    static func stripRuntime(_ id: String) -> String {
        guard let r = id.firstRange(of: "://") else { return id }
        return String(id[r.upperBound...])
    }

    /// A string map (labels, annotations); non-string values are left out, the first of a duplicate key wins.
    static func stringPairs(_ v: JSONValue?) -> [(String, String)] {
        var seen = Set<String>()
        return (v?.members ?? []).compactMap { m in
            guard let s = m.value.string, seen.insert(m.key).inserted else { return nil }
            return (m.key, s)
        }
    }
}

/// A namespace's labels (with `namespace_labels: true`).
public struct NamespaceMeta: Sendable {
    public var name: String
    public var resourceVersion: String
    public var labels: [(String, String)]

    public init(name: String, resourceVersion: String = "", labels: [(String, String)]) {
        self.name = name
        self.resourceVersion = resourceVersion
        self.labels = labels.sorted { $0.0 < $1.0 }
    }

    public static func parse(_ obj: JSONValue) throws(KubernetesAPIError) -> NamespaceMeta {
        guard let meta = obj["metadata"], let name = meta["name"]?.string else {
            throw .badResponse(what: "namespace object", detail: "metadata.name missing")
        }
        return NamespaceMeta(name: name, resourceVersion: meta["resourceVersion"]?.string ?? "",
                             labels: PodMeta.stringPairs(meta["labels"]))
    }
}
