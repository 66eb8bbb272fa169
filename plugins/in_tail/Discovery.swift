import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

/// A regular file a glob (or a search) found.
struct FoundFile: Equatable {
    let path: String
    let key: FileKey
    let size: Int64
    let mtime: Int64
}

/// Finding files: globs, exclusions, symlinks, and the search for a known identity among the files
/// of a directory (a file renamed by rotation to a name no glob matches).
///
/// A scan only ever *adds* knowledge: a glob that fails (EMFILE, EACCES, …) yields fewer paths, and
/// nothing is concluded from a path's absence here. Whether a followed file was rotated is decided
/// per file, from its own path (see `FileTable.checkRotation`).
struct Discovery {
    let patterns: [String]
    let exclude: [String]

    /// Every matched regular file, by identity (the first path wins when several lead to one file).
    /// `failures` lists paths that could not be looked at (retried at the next scan); `empty` the
    /// patterns that matched no file to follow.
    func scan() -> (files: [FileKey: FoundFile], failures: [(String, Int32)], empty: [String]) {
        var seen: [FileKey: FoundFile] = [:]
        var failures: [(String, Int32)] = []
        var empty: [String] = []
        for pattern in patterns {
            let (paths, err) = glob(pattern)
            if let err { failures.append((pattern, err)) }
            let before = seen.count
            var matchedKnown = false
            for path in paths where !isExcluded(path) {
                var st = stat()
                guard stat(path, &st) == 0 else {
                    // ENOENT: a dangling symlink (its container's log is gone), normal on a node.
                    if errno != ENOENT { failures.append((path, errno)) }
                    continue
                }
                guard let f = Discovery.found(path, st) else { continue }
                if seen[f.key] == nil { seen[f.key] = f } else { matchedKnown = true }
            }
            if seen.count == before && !matchedKnown && err == nil { empty.append(pattern) }
        }
        return (seen, failures, empty)
    }

    /// The folders the globs pass through, to watch for new files: each pattern's longest prefix
    /// without wildcards (its root, which must exist to be watched), then at each deeper level down
    /// to the files' own folders the folders that level's glob matches now. For
    /// `/var/log/pods/*/*/*.log`: `/var/log/pods`, each pod's folder and each container's folder, so
    /// a pod, a container or a file appearing is an event on a watched folder.
    func watchDirectories() -> (directories: [String], roots: Set<String>) {
        var out: [String] = []
        var seen: Set<String> = []
        var roots: Set<String> = []
        var expanded: Set<String> = []
        for pattern in patterns {
            let parts = pattern.split(separator: "/", omittingEmptySubsequences: false).dropLast()
            let fixed = parts.prefix(while: { !Discovery.hasWildcard($0) }).count
            let root = Discovery.join(parts.prefix(fixed), absolute: pattern.hasPrefix("/"))
            roots.insert(root)
            if seen.insert(root).inserted { out.append(root) }
            var level = fixed + 1
            while level <= parts.count {
                let prefix = Discovery.join(parts.prefix(level), absolute: pattern.hasPrefix("/"))
                level += 1
                guard expanded.insert(prefix).inserted else { continue }
                for dir in glob(prefix, flags: GLOB_ONLYDIR).0 where seen.insert(dir).inserted { out.append(dir) }
            }
        }
        return (out, roots)
    }

    private static func hasWildcard(_ part: Substring) -> Bool { part.contains(where: { "*?[".contains($0) }) }

    private static func join(_ parts: ArraySlice<Substring>, absolute: Bool) -> String {
        let joined = parts.joined(separator: "/")
        if joined.isEmpty { return absolute ? "/" : "." }
        return joined
    }

    /// What a search by identity found.
    enum Search: Equatable {
        case found(FoundFile)
        /// Every directory was listed without it, or is gone (a deleted pod's folder): the file was
        /// deleted, or moved out of them.
        case gone
        /// A directory could not be listed (EACCES, EIO, EMFILE...): nothing can be said.
        case unknown
    }

    /// Looks for the file `key` among the entries of `directories` (rotated names included,
    /// compressed ones excluded).
    static func search(_ key: FileKey, in directories: [String]) -> Search {
        var listedAll = true
        for dir in directories {
            guard let d = opendir(dir) else {
                if errno != ENOENT { listedAll = false }
                continue
            }
            defer { closedir(d) }
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                // d_ino is the inode of the entry itself (a symlink's own inode): a cheap first filter.
                guard name != ".", name != "..", !isCompressedName(name),
                      UInt64(e.pointee.d_ino) == key.inode || e.pointee.d_type == UInt8(DT_LNK) else { continue }
                let path = dir + "/" + name
                var st = stat()
                guard stat(path, &st) == 0, let f = found(path, st), f.key == key else { continue }
                return .found(f)
            }
        }
        return listedAll && !directories.isEmpty ? .gone : .unknown
    }

    static func found(_ path: String, _ st: stat) -> FoundFile? {
        guard (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return FoundFile(path: path, key: FileKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)),
                         size: Int64(st.st_size), mtime: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }

    /// Kubelet compresses older rotations (`0.log.20261201-061500.gz`, written as `….gz.tmp`):
    /// never read as text, whatever the globs say.
    static func isCompressedName(_ name: String) -> Bool {
        name.hasSuffix(".gz") || name.hasSuffix(".gz.tmp")
    }

    func isExcluded(_ path: String) -> Bool {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        if Discovery.isCompressedName(name) { return true }
        for pattern in exclude {
            // A pattern without "/" matches the file name alone, like Fluent Bit's Exclude_Path users expect.
            if fnmatch(pattern, pattern.contains("/") ? path : name, 0) == 0 { return true }
        }
        return false
    }

    /// Paths matching `pattern`, and the first error met (nil when every directory could be read).
    private func glob(_ pattern: String, flags: Int32 = 0) -> ([String], Int32?) {
        var g = glob_t()
        defer { globfree(&g) }
        let (rc, firstError): (Int32, Int32?) = GlobErrors.lock.withLock {
            GlobErrors.reset()
            let rc = Glibc.glob(pattern, flags, { _, err in
                GlobErrors.record(err)
                return 0  // keep going: report what could be seen
            }, &g)
            return (rc, GlobErrors.first)
        }
        var err = firstError
        if rc != 0 && rc != GLOB_NOMATCH && err == nil { err = rc == GLOB_NOSPACE ? ENOMEM : EIO }
        guard rc == 0 else { return ([], err) }
        var out: [String] = []
        out.reserveCapacity(Int(g.gl_pathc))
        for i in 0..<Int(g.gl_pathc) {
            if let p = g.gl_pathv[i] { out.append(String(cString: p)) }
        }
        return (out, err)
    }
}

/// glob(3)'s error callback is a C function without context: it records here, under `lock`, held
/// for the whole glob call (scans of several tail inputs take turns).
private enum GlobErrors {
    static let lock = ConditionLock()
    nonisolated(unsafe) private static var firstError: Int32?
    static func reset() { firstError = nil }
    static func record(_ err: Int32) {
        // A directory that vanished between readdir and opendir is not a failure.
        if err != ENOENT && err != ENOTDIR && firstError == nil { firstError = err }
    }
    static var first: Int32? { firstError }
}
