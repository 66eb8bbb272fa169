#if canImport(Glibc)
import Glibc
#endif

/// A secret kept in a file that is replaced while the agent runs (a Kubernetes projected
/// service-account token, a mounted bearer token or password): read again only when the file changed
/// (inode, size or mtime), so a rotated value is picked up at the next request without reading the
/// file for every request.
///
/// Used by one thread (a delivery or watch thread owns its reader): not Sendable.
public final class SecretFile {
    public let path: String
    private var stamp: (ino: UInt64, size: Int64, sec: Int, nsec: Int)?
    private var value = Secret("")

    /// Why the file gave no usable secret.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let path: String
        public let detail: String
        public var description: String { "\(path): \(detail)" }
    }

    public init(path: String) { self.path = path }

    /// The current secret, surrounding whitespace and newlines trimmed.
    public func current() throws(Failure) -> Secret {
        var st = stat()
        guard stat(path, &st) == 0 else { throw Failure(path: path, detail: String(cString: strerror(errno))) }
        let now = (UInt64(st.st_ino), Int64(st.st_size), Int(st.st_mtim.tv_sec), Int(st.st_mtim.tv_nsec))
        if let old = stamp, old == now { return value }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(path: path, detail: String(cString: strerror(errno))) }
        defer { close(fd) }
        // A secret is small; a file larger than this is a mistake, not a token.
        var bytes = [UInt8](repeating: 0, count: 64 * 1024)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { throw Failure(path: path, detail: String(cString: strerror(errno))) }
        let text = String(decoding: bytes[0..<n], as: UTF8.self)
        let trimmed = text.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed()
        guard !trimmed.isEmpty else { throw Failure(path: path, detail: "the file is empty") }
        value = Secret(String(trimmed))
        stamp = now
        return value
    }

    /// Forces a re-read at the next call (after a 401: the file may have been replaced in a way that
    /// kept inode, size and mtime, e.g. within one mtime tick).
    public func invalidate() { stamp = nil }
}
