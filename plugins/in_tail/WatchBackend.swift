import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

/// What woke the tail loop.
struct WatchEvents {
    /// Watch tokens of files that changed.
    var files: [Int32] = []
    /// A watched directory changed (a file appeared, moved or went): scan again.
    var directoryChanged = false
    /// Events were lost (queue overflow): look at every file.
    var overflow = false

    mutating func reset() {
        files.removeAll(keepingCapacity: true)
        directoryChanged = false
        overflow = false
    }
}

/// How the tail input learns that files changed: inotify, or plain polling. Only the tail thread
/// uses a backend.
protocol WatchBackend: AnyObject {
    /// False for polling: every file is looked at every `poll_interval`.
    var notifies: Bool { get }
    /// Watches `dir` for files and folders appearing, moving or going. Returns nil when it is
    /// watched (or nothing needs watching: polling), else the errno (ENOENT: it does not exist).
    func watchDirectory(_ dir: String) -> Int32?
    /// A token for `unwatchFile`, or nil when this file cannot be watched (it is then polled).
    func watchFile(_ path: String) -> Int32?
    func unwatchFile(_ token: Int32)
    /// Waits up to `timeout` seconds (0: only collects what is pending).
    func wait(timeout: Double, into events: inout WatchEvents)
}

/// Polling: nothing to watch; waiting is sleeping (cut short at stop).
final class PollBackend: WatchBackend {
    private let sleep: (Double) -> Void
    init(sleep: @escaping (Double) -> Void) { self.sleep = sleep }
    var notifies: Bool { false }
    func watchDirectory(_ dir: String) -> Int32? { nil }
    func watchFile(_ path: String) -> Int32? { nil }
    func unwatchFile(_ token: Int32) {}
    func wait(timeout: Double, into events: inout WatchEvents) {
        if timeout > 0 { sleep(timeout) }
    }
}

/// inotify as a wake-up source: which watched files changed, and whether any watched directory did.
final class InotifyBackend: WatchBackend {
    private let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    private var directories: [String: Int32] = [:]
    private var directoryWatches: [Int32: String] = [:]
    private let onWatchError: (String, Int32) -> Void

    static let fileEvents = UInt32(IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF | IN_CLOSE_WRITE)
    /// IN_MOVE_SELF: a folder renamed away is no longer the one at its path (its watch is dropped
    /// and the path watched again at the next scan). IN_ONLYDIR: a path that is not a folder fails.
    static let dirEvents = UInt32(IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB | IN_MOVE_SELF)
    static let dirFlags = UInt32(IN_ONLYDIR)

    /// nil when inotify is not available (no kernel support, or the instance limit is reached).
    /// `onWatchError(path, errno)` reports a file that cannot be watched (it is polled instead).
    init?(onWatchError: @escaping (String, Int32) -> Void) {
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        if fd < 0 { return nil }
        self.fd = fd
        self.onWatchError = onWatchError
    }

    deinit { close(fd) }

    var notifies: Bool { true }

    func watchDirectory(_ dir: String) -> Int32? {
        guard directories[dir] == nil else { return nil }
        let wd = inotify_add_watch(fd, dir, InotifyBackend.dirEvents | InotifyBackend.dirFlags)
        // A directory that does not exist yet is tried again at the next scan.
        guard wd >= 0 else { return errno }
        directories[dir] = wd
        directoryWatches[wd] = dir
        return nil
    }

    /// Forgets every path of the watch `wd` (two paths lead to one folder through a symlink).
    private func forgetDirectory(_ wd: Int32) {
        guard directoryWatches.removeValue(forKey: wd) != nil else { return }
        for (dir, w) in directories where w == wd { directories[dir] = nil }
    }

    func watchFile(_ path: String) -> Int32? {
        let wd = inotify_add_watch(fd, path, InotifyBackend.fileEvents)
        if wd >= 0 { return wd }
        onWatchError(path, errno)
        return nil
    }

    func unwatchFile(_ token: Int32) { inotify_rm_watch(fd, token) }

    func wait(timeout: Double, into events: inout WatchEvents) {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(max(0, min(timeout, 60)) * 1000)
        guard poll(&pfd, 1, ms) > 0 else { return }
        let eventSize = MemoryLayout<inotify_event>.size
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            buffer.withUnsafeBytes { raw in
                var i = 0
                while i + eventSize <= n {
                    let wd = raw.loadUnaligned(fromByteOffset: i, as: Int32.self)
                    let mask = raw.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self)
                    let len = raw.loadUnaligned(fromByteOffset: i + 12, as: UInt32.self)
                    if wd == -1 || mask & UInt32(IN_Q_OVERFLOW) != 0 {
                        events.overflow = true
                        events.directoryChanged = true
                    } else if directoryWatches[wd] != nil {
                        events.directoryChanged = true
                        if mask & UInt32(IN_IGNORED) != 0 {
                            // The directory went (a deleted pod): watch it again if it comes back.
                            forgetDirectory(wd)
                        } else if mask & UInt32(IN_MOVE_SELF) != 0 {
                            // Renamed away: its path is watched again (whatever is there) at the scan.
                            inotify_rm_watch(fd, wd)
                            forgetDirectory(wd)
                        }
                    } else {
                        events.files.append(wd)
                    }
                    i += eventSize + Int(len)
                }
            }
        }
    }
}
