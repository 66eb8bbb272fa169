import AnduinCore
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The checkpoints of one tail input: files not open right now ("parked": closed idle, drained after
/// rotation, not found yet, or unreadable), files closed while some of their batches were still on
/// their way ("retired"), and persisting it all with the open files' acknowledged positions.
///
/// An entry is never dropped because a glob stopped matching its file: a parked file is looked for
/// by identity in the directories it was last seen in (rotated names included), and dropped once it
/// was seen nowhere for `checkpoint_ttl`, or once those directories no longer hold it for
/// `goneGrace` (deleted, as kubelet and logrotate delete old rotations: kept, such entries would
/// grow the table and every save by one per rotation). Owned by the tail thread.
final class CheckpointRegistry {
    struct Parked {
        var checkpoint: FileCheckpoint
        /// Bytes read when it was closed, and its mtime then (nil when it had grown past what was
        /// read); nil when loaded from disk (unknown: open to check).
        var size: Int64?
        var mtime: Int64?
        /// Wall-clock seconds it was last seen at a path (found by a scan or a search).
        var lastSeen: Double
        /// Monotonic time of the next directory search while it is not matched by the globs.
        var nextSearch: Double
        /// Given up by the per-directory bound on rotated files: reopened only if a glob matches it.
        var givenUp = false
        /// Monotonic time a search first found it gone from its directories; nil once seen again.
        var goneSince: Double?
    }

    private let store: CheckpointStore
    private let ttl: Double
    /// Wall-clock seconds (a seam for tests).
    private let wallClock: () -> Double
    private let startedWall: Double
    private(set) var parked: [FileKey: Parked] = [:]
    /// Closed files (or truncated generations) whose batches are still on their way.
    private var retired: [Int: (checkpoint: FileCheckpoint, size: Int64?, mtime: Int64?, givenUp: Bool)] = [:]
    private var lastSaveFailed = false
    /// Parked entries changed since the last save.
    private(set) var changed = false
    let searchInterval: Double = 10
    /// How long a file gone from its directories keeps its entry (at most `ttl`): a rename seen
    /// half-way, or a file moved out and back at once, is found again meanwhile.
    static let goneGrace: Double = 60

    init(store: CheckpointStore, ttl: Double, wallClock: @escaping () -> Double = { Double(wallClockNanos()) / 1e9 }) {
        self.store = store
        self.ttl = ttl
        self.wallClock = wallClock
        startedWall = wallClock()
    }

    var path: String { store.path }

    /// A new file is followed: save soon, so a crash does not forget it.
    func fileOpened() { changed = true }

    /// Loads the saved checkpoints. Returns false when the file is there but cannot be read now
    /// (logged unless `quiet`): nothing may be read before it is (see `CheckpointStore.load`).
    func load(logger: Logger, quiet: Bool = false) -> Bool {
        let loaded: Result<[FileCheckpoint], StartupError>
        do throws(POSIXFailure) {
            loaded = try store.load()
        } catch {
            if !quiet {
                logger.error("checkpoint file \(store.path) cannot be read (\(error)): no file of this input is read until it can be, since starting without it would ship again what was already shipped. Give the agent's user read access (the other inputs run meanwhile; retried every \(Int(Self.loadRetryInterval))s)")
            }
            return false
        }
        switch loaded {
        case .success(let list):
            let now = wallClock()
            for c in list {
                parked[FileKey(device: c.device, inode: c.inode)] =
                    Parked(checkpoint: c, size: nil, mtime: nil, lastSeen: c.seen.map(Double.init) ?? now, nextSearch: 0)
            }
        case .failure(let e):
            logger.error("\(e)")
        }
        return true
    }

    /// How often a checkpoint file that cannot be read is tried again.
    static let loadRetryInterval = 10.0

    /// The checkpoint to resume `key` from, removed from the parked set (the file is being opened).
    func take(_ key: FileKey) -> FileCheckpoint? {
        guard let p = parked.removeValue(forKey: key) else { return nil }
        changed = true
        return p.checkpoint
    }

    /// Puts a closed file's position back; `size`/`mtime` tell later scans whether it changed.
    func park(_ cp: FileCheckpoint, size: Int64?, mtime: Int64?, givenUp: Bool = false) {
        var c = cp
        let now = wallClock()
        c.seen = Int64(now)
        changed = true
        parked[FileKey(device: cp.device, inode: cp.inode)] =
            Parked(checkpoint: c, size: size, mtime: mtime, lastSeen: now, nextSearch: monotonicSeconds() + searchInterval, givenUp: givenUp)
    }

    /// A scan or search saw the parked file `f`. Returns true when it should be opened: it changed
    /// since it was closed, or its state is unknown (loaded at start-up).
    func seen(_ f: FoundFile, matchedByGlob: Bool) -> Bool {
        guard var p = parked[f.key] else { return false }
        p.lastSeen = wallClock()
        p.goneSince = nil
        p.checkpoint.seen = Int64(p.lastSeen)
        defer { parked[f.key] = p }
        if p.givenUp && !matchedByGlob { return false }
        guard let size = p.size else {
            // Loaded from disk: a matched file is followed again; one found by a search only when
            // something is left to read in it.
            return matchedByGlob || f.size != p.checkpoint.offset
        }
        // `size` is where reading stopped; mtime (when known) catches a rewrite to the same size.
        return f.size != size || (p.mtime != nil && p.mtime != f.mtime)
    }

    /// Parked files the globs did not match whose directory search is due (given-up ones too: found,
    /// they stay given up; gone, they are forgotten).
    func dueForSearch(notIn matched: [FileKey: FoundFile], now: Double) -> [(FileKey, FileCheckpoint)] {
        var out: [(FileKey, FileCheckpoint)] = []
        for (key, p) in parked where matched[key] == nil && p.nextSearch <= now {
            out.append((key, p.checkpoint))
        }
        for (key, _) in out { parked[key]?.nextSearch = now + searchInterval }
        return out
    }

    /// A search found the parked file `key` gone from its directories (at monotonic `now`).
    func gone(_ key: FileKey, now: Double) {
        if parked[key] != nil && parked[key]?.goneSince == nil { parked[key]?.goneSince = now }
    }

    /// Drops parked entries of files gone from their directories for `goneGrace` (monotonic `now`),
    /// or seen nowhere for `ttl` (counted from start-up at the earliest: a long downtime does not
    /// expire them before they were looked for). Returns the dropped paths and why.
    func expire(now: Double) -> [(path: String, gone: Bool)] {
        let wall = wallClock()
        let grace = min(Self.goneGrace, ttl)
        var dropped: [(path: String, gone: Bool)] = []
        for (key, p) in parked {
            let gone = p.goneSince.map { now - $0 >= grace } ?? false
            guard gone || wall - max(p.lastSeen, startedWall) > ttl else { continue }
            parked[key] = nil
            changed = true
            dropped.append((p.checkpoint.path, gone))
        }
        return dropped
    }

    /// A closed file whose last batches are still in flight: it is not new, and its position is not
    /// known until they complete (then it is parked). `path` is what a scan found with that key: a
    /// file with other content at its start took the inode of the deleted one, and is new.
    /// Of several retired generations of the inode (truncated while batches were in flight), the
    /// newest (highest id) is what the file's start holds now.
    func isRetired(_ key: FileKey, at path: String) -> Bool {
        guard let r = retired.filter({ FileKey(device: $0.value.checkpoint.device, inode: $0.value.checkpoint.inode) == key })
            .max(by: { $0.key < $1.key })?.value else {
            return false
        }
        let cp = r.checkpoint
        guard cp.fingerprintLength > 0 else { return true }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return true }  // cannot tell: looked at again at the next scan
        defer { close(fd) }
        return Fingerprint.hash(fd: fd, length: cp.fingerprintLength) == cp.fingerprint
    }

    func retire(id: Int, _ cp: FileCheckpoint, size: Int64?, mtime: Int64?, givenUp: Bool = false) {
        retired[id] = (cp, size, mtime, givenUp)
    }

    /// Retired files whose batches all completed are parked at their final position, unless a later
    /// state of their inode supersedes them: open again (a truncated generation and its restarted
    /// file), parked (that restarted file, closed since), or retired later (ids grow). Parking an
    /// older generation over a newer one would resume the newer content at the wrong position.
    func releaseRetired(_ tracker: AckTracker, isOpen: (FileKey) -> Bool) {
        for (id, r) in retired where !tracker.hasOutstanding(id) {
            var cp = r.checkpoint
            if let acked = tracker.acked(id) { cp.apply(acked) }
            retired[id] = nil
            tracker.forget(id)
            let key = FileKey(device: cp.device, inode: cp.inode)
            let superseded = isOpen(key) || parked[key] != nil
                || retired.contains { $0.key > id && FileKey(device: $0.value.checkpoint.device, inode: $0.value.checkpoint.inode) == key }
            if !superseded {
                park(cp, size: r.size, mtime: r.mtime, givenUp: r.givenUp)
            }
        }
    }

    /// Writes every position: the open files' (`open`), the retired and the parked ones.
    /// Returns false (and logs once) when the write failed; it is retried at the next interval.
    @discardableResult
    func save(open: [FileCheckpoint], tracker: AckTracker, logger: Logger) -> Bool {
        var list = open
        var keys = Set(open.map { FileKey(device: $0.device, inode: $0.inode) })
        // The newest state of an inode wins (see `releaseRetired`): open, parked, the latest retired.
        for (key, p) in parked where keys.insert(key).inserted { list.append(p.checkpoint) }
        for (id, r) in retired.sorted(by: { $0.key > $1.key }) {
            var cp = r.checkpoint
            if let acked = tracker.acked(id) { cp.apply(acked) }
            if keys.insert(FileKey(device: cp.device, inode: cp.inode)).inserted { list.append(cp) }
        }
        list.sort { ($0.path, $0.inode) < ($1.path, $1.inode) }
        do {
            try store.save(list)
            changed = false
            if lastSaveFailed {
                lastSaveFailed = false
                logger.notice("checkpoints are written again")
            }
            return true
        } catch {
            if !lastSaveFailed {
                lastSaveFailed = true
                logger.error("cannot write checkpoints to \(store.path): \(error); retrying")
            }
            return false
        }
    }
}

extension FileCheckpoint {
    mutating func apply(_ acked: AckTracker.Position) {
        offset = acked.resume
        delivered = acked.delivered > acked.resume ? acked.delivered : nil
    }
}
