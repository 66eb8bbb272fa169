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

public enum AtomicFile {
    /// Replaces `path` with `data` so that readers (and a restart after a crash) see the old or the new
    /// content, never a mix.
    public static func write(_ data: Data, to path: String, durable: Bool = true) throws {
        let dir = parentDirectory(of: path)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let tmp = path + ".tmp"
        // 0600: data_dir holds what was read from every container's logs (see DataDirectory).
        let fd = open(tmp, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXFailure("open \(tmp)") }
        var ok = data.withUnsafeBytes { writeAll(fd: fd, $0) }
        if ok && durable { ok = fsync(fd) == 0 }
        let err = errno
        close(fd)
        guard ok else {
            unlink(tmp)
            errno = err
            throw POSIXFailure("write \(tmp)")
        }
        guard rename(tmp, path) == 0 else { throw POSIXFailure("rename \(tmp)") }
        let dfd = durable ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
    }
}
