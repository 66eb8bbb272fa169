#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// data_dir holds what was read from every container on the node (disk buffers, dead letters) and
/// where (checkpoints): only the agent's user may read it. Files are created 0600 and directories
/// 0700; the process umask (set by `anduin run`) covers anything else written there.
public enum DataDirectory {
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
