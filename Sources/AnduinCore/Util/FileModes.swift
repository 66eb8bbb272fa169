#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// data_dir holds what was read from every container on the node (disk buffers, dead letters) and
/// where (checkpoints): only the agent's user may read it. Files are created 0600 and directories
/// 0700; the process umask (set by `anduin run`) covers anything else written there.
public enum DataDirectory {
    /// Why `dir` cannot be used as data_dir, in words, or nil. Nothing is created: a missing folder is
    /// fine when the nearest existing folder above it can take it. Checked by `validate` and again at
    /// start, so the operator reads `not a directory: /x/file` rather than an error code.
    /// `checkCreatable` false (validate): a missing folder whose parent this user cannot write to is
    /// not reported, since `validate` often runs elsewhere (CI, a laptop) than the agent and as
    /// another user; a file in the way, or an existing folder that cannot be written, is.
    public static func problem(_ dir: String, checkCreatable: Bool = true) -> String? {
        var path = dir
        var missing = false
        while true {
            var st = stat()
            if stat(path, &st) == 0 {
                if (st.st_mode & S_IFMT) != S_IFDIR { return "not a directory: \(path)" }
                if access(path, W_OK | X_OK) != 0 {
                    if missing && !checkCreatable { return nil }
                    let why = errno == EROFS ? "on a read-only file system" : "not writable by this user"
                    return missing ? "cannot create it: \(path) is \(why)" : "\(path) is \(why)"
                }
                return nil
            }
            let err = errno
            guard err == ENOENT || err == ENOTDIR else { return "\(path): \(String(cString: strerror(err)))" }
            // ENOTDIR: a component above is a file; walking up finds it and says so.
            missing = true
            let parent = parentDirectory(path)
            if parent == path { return nil }
            path = parent
        }
    }

    private static func parentDirectory(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        if slash == p.startIndex { return "/" }
        return String(p[..<slash])
    }

    /// Sets the process umask to 077, so any file the agent creates is private to its user.
    public static func restrictUmask() {
        umask(0o077)
    }

    /// Removes group and other permissions from `dir` and everything under it (not following
    /// symlinks): files written 0644 by versions before 0.1.1 become 0600, directories 0700. Cheap: a
    /// data_dir holds a few files per component. Errors are ignored (a file may vanish meanwhile).
    public static func tighten(_ dir: String, depth: Int = 0) {
        var st = stat()
        guard depth <= 8, lstat(dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return }
        if st.st_mode & 0o077 != 0 { chmod(dir, st.st_mode & 0o700) }
        guard let d = opendir(dir) else { return }
        defer { closedir(d) }
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            let path = dir + "/" + name
            var es = stat()
            guard lstat(path, &es) == 0 else { continue }
            switch es.st_mode & S_IFMT {
            case S_IFDIR: tighten(path, depth: depth + 1)
            case S_IFREG: if es.st_mode & 0o077 != 0 { chmod(path, es.st_mode & 0o700) }
            default: continue
            }
        }
    }
}
