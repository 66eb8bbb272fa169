// A kubelet node's log tree in a temporary folder, written and rotated the way kubelet and the
// container runtime do:
//   var/log/pods/<ns>_<pod>_<uid>/<container>/0.log            the live file (CRI lines)
//   var/log/pods/<ns>_<pod>_<uid>/<container>/0.log.<YYYYMMDD-hhmmss>   rotated (renamed) ones
//   var/log/pods/…/0.log.<…>.gz                                older rotations, compressed
//   var/log/containers/<pod>_<ns>_<container>-<id>.log         symlink to the live file's path
// Every line carries a unique sequence number: `<prefix> line NNNNNN` (see `logLine`).

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Which glob the agent is given.
enum NodeLayout: String, CaseIterable {
    /// `var/log/containers/*.log`: symlinks that always name the live file.
    case containers
    /// `var/log/pods/*/*/*.log` and `*.log.*`: the files themselves, rotated names included.
    case pods
}

final class KubeletNode: @unchecked Sendable {  // each container is written by one thread at a time
    let root: String
    private(set) var containers: [Container] = []

    final class Container: @unchecked Sendable {  // used by one writer thread at a time
        let namespace, pod, uid, name, id: String
        let directory: String
        let symlink: String
        /// Lines written so far (the next sequence number).
        private(set) var written = 0
        private var rotations = 0
        var prefix: String { "\(pod)-\(name)" }
        var live: String { directory + "/0.log" }

        init(root: String, namespace: String, pod: String, name: String) {
            self.namespace = namespace
            self.pod = pod
            self.name = name
            uid = UUID().uuidString.lowercased()
            id = String(repeating: "a", count: 8) + String(pod.count) + name
            directory = "\(root)/var/log/pods/\(namespace)_\(pod)_\(uid)/\(name)"
            symlink = "\(root)/var/log/containers/\(pod)_\(namespace)_\(name)-\(id).log"
        }

        /// Appends `n` CRI lines with the next sequence numbers.
        func write(_ n: Int) {
            var text = ""
            for i in written..<(written + n) {
                text += "2026-12-01T06:15:00.000000000Z stdout F \(logLine(prefix, i))\n"
            }
            appendText(live, text)
            written += n
        }

        /// Kubelet's rotation: rename the live file to `0.log.<timestamp>` and create a new empty one
        /// (the symlink names the path, so it now leads to the new file). Then compress every
        /// rotation but the newest, and keep `keep` of them, as kubelet does.
        @discardableResult
        func rotate(compress: Bool = true, keep: Int = 5) -> String {
            rotations += 1
            // A distinct timestamp per rotation, even several within one second.
            let stamp = String(format: "20261201-%06d", rotations)
            let rotated = live + "." + stamp
            precondition(rename(live, rotated) == 0, "rename \(live): \(String(cString: strerror(errno)))")
            appendText(live, "")
            if compress { compressOld(keep: keep) }
            return rotated
        }

        /// gzip every rotated file except the newest (kubelet's `.gz`, written via `.gz.tmp`), and
        /// delete the oldest beyond `keep`.
        func compressOld(keep: Int) {
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
                .filter { $0.hasPrefix("0.log.") }.sorted()
            let plain = names.filter { !$0.hasSuffix(".gz") }
            for name in plain.dropLast() {
                let src = directory + "/" + name
                guard let data = FileManager.default.contents(atPath: src) else { continue }
                let tmp = src + ".gz.tmp"
                // Not real gzip framing is needed for the agent; the magic bytes and binary bytes are.
                var bytes: [UInt8] = [0x1F, 0x8B, 0x08, 0x00]
                bytes += data.prefix(64).map { $0 ^ 0x5A }
                FileManager.default.createFile(atPath: tmp, contents: Data(bytes))
                rename(tmp, src + ".gz")
                unlink(src)
            }
            let all = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
                .filter { $0.hasPrefix("0.log.") }.sorted()
            for name in all.dropLast(keep) { unlink(directory + "/" + name) }
        }

        /// logrotate's copytruncate (with `olddir`): copy the live file elsewhere, truncate it in place.
        func copyTruncate(olddir: String) {
            try? FileManager.default.createDirectory(atPath: olddir, withIntermediateDirectories: true)
            let dest = olddir + "/\(pod)-\(name)-\(rotations).log"
            try? FileManager.default.removeItem(atPath: dest)
            try? FileManager.default.copyItem(atPath: live, toPath: dest)
            precondition(truncate(live, 0) == 0)
        }

        /// Every line written, as messages.
        var expected: [String] { logLines(prefix, 0..<written) }
    }

    init(root: String) {
        self.root = root
        try? FileManager.default.createDirectory(atPath: root + "/var/log/containers", withIntermediateDirectories: true)
    }

    /// A new container with an empty live file and its symlink.
    @discardableResult
    func addContainer(namespace: String = "default", pod: String, name: String = "app") -> Container {
        let c = Container(root: root, namespace: namespace, pod: pod, name: name)
        try? FileManager.default.createDirectory(atPath: c.directory, withIntermediateDirectories: true)
        appendText(c.live, "")
        symlink(c.live, c.symlink)
        containers.append(c)
        return c
    }

    /// The globs for `layout`, as the agent's `paths` (absolute). The pods layout is the DaemonSet's
    /// default: live files and rotated names (compressed ones are never read).
    func glob(_ layout: NodeLayout) -> [String] {
        switch layout {
        case .containers: return [root + "/var/log/containers/*.log"]
        case .pods: return [root + "/var/log/pods/*/*/*.log", root + "/var/log/pods/*/*/*.log.*"]
        }
    }

    var expected: [String] { containers.flatMap(\.expected) }
    var prefixes: [String] { containers.map(\.prefix) }
}

/// Counts of each expected message among `messages`: (missing, duplicated) with examples.
func exactlyOnceReport(_ messages: [String], expected: [String]) -> (missing: [String], duplicated: [String: Int], unexpected: Int) {
    var counts: [String: Int] = [:]
    for m in messages { counts[m, default: 0] += 1 }
    let missing = expected.filter { counts[$0] == nil }
    let want = Set(expected)
    let dups = counts.filter { $0.value > 1 && want.contains($0.key) }
    let unexpected = counts.keys.filter { !want.contains($0) }.count
    return (missing, dups, unexpected)
}
