#if canImport(Glibc)
import Glibc

/// inotify as a wake-up source: which watched files changed, and whether any watched directory did.
///
/// Invariant: only the tail input's thread uses it.
final class Inotify {
    let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)

    /// nil when inotify is not available (no kernel support, or the instance limit is reached).
    init?() {
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        if fd < 0 { return nil }
        self.fd = fd
    }

    deinit { close(fd) }

    static let fileEvents = UInt32(IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF | IN_CLOSE_WRITE)
    static let dirEvents = UInt32(IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB)

    /// Returns the watch descriptor, or -errno.
    func add(_ path: String, mask: UInt32) -> Int32 {
        let wd = inotify_add_watch(fd, path, mask)
        return wd >= 0 ? wd : -errno
    }

    func remove(_ wd: Int32) { inotify_rm_watch(fd, wd) }

    /// Waits up to `timeout` seconds for events and returns the watch descriptors that fired.
    func wait(timeout: Double, into fired: inout [Int32]) {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(max(0, min(timeout, 60)) * 1000)
        guard poll(&pfd, 1, ms) > 0 else { return }
        drain(into: &fired)
    }

    private func drain(into fired: inout [Int32]) {
        let eventSize = MemoryLayout<inotify_event>.size
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            buffer.withUnsafeBytes { raw in
                var i = 0
                while i + eventSize <= n {
                    let wd = raw.loadUnaligned(fromByteOffset: i, as: Int32.self)
                    let len = raw.loadUnaligned(fromByteOffset: i + 12, as: UInt32.self)
                    fired.append(wd)
                    i += eventSize + Int(len)
                }
            }
        }
    }
}
#endif
