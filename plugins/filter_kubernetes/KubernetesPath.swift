/// A pod by namespace and name (unique among live pods; a recreated pod keeps it, with a new uid).
public struct PodRef: Hashable, Sendable, CustomStringConvertible {
    public var namespace: String
    public var name: String
    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }
    public var description: String { "\(namespace)/\(name)" }
}

/// What a container log file's path says about its container. Kubelet writes logs under
/// `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log` (rotated to
/// `<restart>.log.<timestamp>`) and links them from
/// `/var/log/containers/<pod>_<namespace>_<container>-<64 hex container id>.log`.
///
/// Only the file name (and, for the pods layout, its two parent folders) is looked at, not the
/// folders above, so a node whose logs live elsewhere (or a test folder) parses the same way.
public struct KubernetesPathInfo: Equatable, Sendable {
    public enum Layout: Sendable, Equatable { case containers, pods }

    public var layout: Layout
    public var namespace: String
    public var podName: String
    /// Only the pods layout carries it (for a static pod, the config hash, not the mirror pod's uid).
    public var podUID: String?
    public var containerName: String
    /// Only the containers layout carries it (64 hex digits, no runtime prefix).
    public var containerID: String?

    public var pod: PodRef { PodRef(namespace: namespace, name: podName) }

    public init(layout: Layout, namespace: String, podName: String, podUID: String?, containerName: String,
                containerID: String?) {
        self.layout = layout
        self.namespace = namespace
        self.podName = podName
        self.podUID = podUID
        self.containerName = containerName
        self.containerID = containerID
    }

    /// Parses either layout; nil for any other path. Names are split from the right because pod
    /// names may hold dashes and dots while namespaces and container names hold no underscores.
    public static func parse(_ path: String) -> KubernetesPathInfo? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard let file = parts.last else { return nil }
        if let info = parseContainersName(file) { return info }
        guard parts.count >= 3 else { return nil }
        return parsePodsLayout(dir: parts[parts.count - 3], container: parts[parts.count - 2], file: file)
    }

    /// `<pod>_<namespace>_<container>-<64 hex>.log`
    static func parseContainersName(_ file: Substring) -> KubernetesPathInfo? {
        guard file.hasSuffix(".log") else { return nil }
        let stem = file.dropLast(4)
        guard stem.utf8.count > 65 else { return nil }
        let id = stem.suffix(64)
        let head = stem.dropLast(64)
        guard head.last == "-", id.utf8.allSatisfy(isLowerHex) else { return nil }
        let names = head.dropLast()
        guard let lastUnderscore = names.lastIndex(of: "_") else { return nil }
        let container = names[names.index(after: lastUnderscore)...]
        let rest = names[..<lastUnderscore]
        guard let nsUnderscore = rest.lastIndex(of: "_") else { return nil }
        let namespace = rest[rest.index(after: nsUnderscore)...]
        let pod = rest[..<nsUnderscore]
        guard isLabelName(namespace), isLabelName(container), isPodName(pod) else { return nil }
        return KubernetesPathInfo(layout: .containers, namespace: String(namespace), podName: String(pod),
                                  podUID: nil, containerName: String(container), containerID: String(id))
    }

    /// `<namespace>_<pod>_<uid>/<container>/<n>.log[.<rotation suffix>]`
    static func parsePodsLayout(dir: Substring, container: Substring, file: Substring) -> KubernetesPathInfo? {
        let digits = file.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty else { return nil }
        let after = file.dropFirst(digits.count)
        guard after == ".log" || (after.hasPrefix(".log.") && after.count > 5) else { return nil }
        guard let first = dir.firstIndex(of: "_"), let last = dir.lastIndex(of: "_"), first < last else { return nil }
        let namespace = dir[..<first]
        let pod = dir[dir.index(after: first)..<last]
        let uid = dir[dir.index(after: last)...]
        guard isLabelName(namespace), isLabelName(container), isPodName(pod), !uid.isEmpty,
              uid.utf8.allSatisfy({ isLowerHex($0) || $0 == UInt8(ascii: "-") }) else { return nil }
        return KubernetesPathInfo(layout: .pods, namespace: String(namespace), podName: String(pod),
                                  podUID: String(uid), containerName: String(container), containerID: nil)
    }

    /// DNS-1123 label characters (namespaces, container names); lenient about the first/last char.
    static func isLabelName(_ s: Substring) -> Bool {
        !s.isEmpty && s.utf8.count <= 253 && s.utf8.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "-") }
    }

    /// DNS-1123 subdomain characters: pod names may also hold dots.
    static func isPodName(_ s: Substring) -> Bool {
        !s.isEmpty && s.utf8.count <= 253
            && s.utf8.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
    }

    @inline(__always) static func isLowerAlnum(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
    }

    @inline(__always) static func isLowerHex(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "f")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
    }
}
