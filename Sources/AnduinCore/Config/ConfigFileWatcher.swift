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

/// Notices when a config file's content changes: `anduin run --watch-config` (or `watch_config: true`).
///
/// It polls the content, not inotify events, because of how Kubernetes updates a mounted ConfigMap:
/// `anduin.yaml` is a symlink to `..data/anduin.yaml`, and `..data` is itself a symlink that the
/// kubelet swaps atomically to a new timestamped directory. No event fires on the file we were given,
/// and its inode changes behind a symlink; comparing what `open(path)` reads catches every pattern
/// (in-place rewrite, rename over it, symlink swap) for the price of reading a small file each
/// second. A change is reported once the content has stayed the same for one more poll, so an editor
/// writing the file in pieces does not trigger a reload of half a file.
public final class ConfigFileWatcher: Sendable {
    private let path: String
    private let interval: Double
    private let onChange: @Sendable () -> Void
    private let stopSignal = ConditionLock()
    private let state = Locked<(stopped: Bool, thread: ThreadHandle?)>((false, nil))

    /// `onChange` runs on the watcher's thread after each settled change.
    public init(path: String, interval: Double = 1, onChange: @escaping @Sendable () -> Void) {
        self.path = path
        self.interval = interval
        self.onChange = onChange
    }

    /// What the file holds now (nil when it cannot be read: missing during a swap, no permission).
    static func fingerprint(_ path: String) -> Data? {
        FileManager.default.contents(atPath: path)
    }

    public func start() {
        let initial = Self.fingerprint(path)
        let handle = startThread(name: "config-watch") { [self] in
            var applied = initial      // what the running config was loaded from (or last reported)
            var candidate: Data?? = .none  // a changed content seen once, waiting to settle
            while sleep() {
                let now = Self.fingerprint(path)
                if now == applied {
                    candidate = .none
                    continue
                }
                // Unreadable (a swap in progress, or removed): keep the running config, look again.
                guard now != nil else { continue }
                if case .some(let seen) = candidate, seen == now {
                    applied = now
                    candidate = .none
                    onChange()
                } else {
                    candidate = .some(now)
                }
            }
        }
        state.withLock { $0.thread = handle }
    }

    public func stop() {
        stopSignal.withLock {
            state.withLock { $0.stopped = true }
            stopSignal.broadcast()
        }
        _ = state.withLock({ $0.thread })?.join(timeout: 5)
    }

    /// Waits one interval; false once stopped.
    private func sleep() -> Bool {
        stopSignal.withLock {
            if !state.withLock({ $0.stopped }) { stopSignal.wait(seconds: interval) }
            return !state.withLock { $0.stopped }
        }
    }
}
