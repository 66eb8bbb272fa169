import AnduinCore
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The `tail` input: finds files by glob, follows them through rotation, decodes their lines and
/// checkpoints what the outputs acknowledged.
///
/// Threading: `run` owns every mutable field on the input's thread; `finish` runs after `run`
/// returned. Only `tracker` is touched by other threads (it locks).
final class TailInput: Input, @unchecked Sendable {
    private let config: TailConfig
    private let name: String
    private let logger: Logger
    private let store: CheckpointStore
    private let tracker: AckTracker

    private var files: [FileKey: TailedFile] = [:]
    /// Files closed (or restarted) whose batches are still on their way: their identity stays in the
    /// checkpoint until those are acknowledged.
    private var retired: [Int: FileCheckpoint] = [:]
    private var saved: [FileKey: FileCheckpoint] = [:]
    private var nextID = 0
    private var firstScan = true
    private var inotify: Inotify?
    private var dirWatches: [String: Int32] = [:]
    private var watchedFiles: [Int32: FileKey] = [:]
    private var watchLimitLogged = false
    private var unreadable: Set<String> = []
    private var rescanRequested = true
    private var lastSaveFailed = false
    /// One read buffer for every file: memory does not grow with the number of files.
    private var buffer: UnsafeMutableRawBufferPointer
    private var lastRegistered: [Int: AckTracker.Position] = [:]

    private let recordsOut, bytesRead, decodeErrors, invalidTimes, truncatedLines, partsMerged: Counter
    private let rotations, truncations, openErrors, checkpointErrors, scans: Counter
    private let filesWatched, inotifyMode, bytesBehind: Gauge

    init(config: TailConfig, context: ComponentContext) {
        self.config = config
        self.name = context.name
        self.logger = context.logger
        self.store = CheckpointStore(dataDirectory: context.dataDirectory, input: context.name)
        buffer = .allocate(byteCount: 256 * 1024, alignment: 16)
        let s = context.stats
        let ackLatency = s.histogram("ack_latency", "time from reading a batch to every output having it safe (delivered, or written to a disk buffer)",
                                     buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300])
        tracker = AckTracker(latency: { ackLatency.observe(seconds: $0) })
        recordsOut = s.counter("records_out", "records read and passed on")
        bytesRead = s.counter("bytes_read", "bytes read from files")
        decodeErrors = s.counter("decode_errors", "lines that did not match the format (shipped as plain messages)")
        invalidTimes = s.counter("invalid_times", "lines whose time was not RFC 3339: kept, with the read time")
        truncatedLines = s.counter("truncated_records", "records cut at max_line_bytes")
        partsMerged = s.counter("partial_parts_merged", "Docker/CRI partial parts merged into records")
        rotations = s.counter("rotations", "files that were renamed away or deleted and drained")
        truncations = s.counter("truncations", "files truncated in place (copytruncate) and read again from 0")
        openErrors = s.counter("open_errors", "files that could not be opened (retried)")
        checkpointErrors = s.counter("checkpoint_errors", "failed checkpoint writes (retried)")
        scans = s.counter("scans", "looks at the globs for new, rotated and deleted files (every glob_interval, and on directory events)")
        filesWatched = s.gauge("files_watched", "files being followed")
        inotifyMode = s.gauge("inotify", "1 when inotify wakes the input, 0 when it polls")
        bytesBehind = s.gauge("bytes_behind", "bytes of the followed files not yet acknowledged (size minus checkpoint)")
    }

    deinit { buffer.deallocate() }

    // MARK: main loop

    func run(_ control: InputControl) {
        switch store.load() {
        case .success(let list):
            for c in list { saved[FileKey(device: c.device, inode: c.inode)] = c }
        case .failure(let e):
            logger.error("\(e)")
        }
        if config.watch != .poll {
            inotify = Inotify()
            if inotify == nil {
                logger.warning("inotify is unavailable (\(String(cString: strerror(errno)))): polling every \(config.pollInterval)s instead")
            }
        }
        inotifyMode.set(inotify == nil ? 0 : 1)

        var lastScan = -Double.infinity
        var lastSweep = -Double.infinity
        var lastSave = monotonicSeconds()
        var fired: [Int32] = []
        while !control.isStopping {
            let now = monotonicSeconds()
            if rescanRequested || now - lastScan >= config.globInterval {
                rescan(now: now)
                lastScan = now
                rescanRequested = false
            }
            // Safety net in inotify mode: look at every file now and then, in case an event was missed.
            let sweep = inotify == nil || now - lastSweep >= 5
            if sweep { lastSweep = now }
            var more = false
            for f in files.values.sorted(by: { $0.id < $1.id }) {
                if control.isStopping { break }
                if sweep || f.dirty || f.watch == nil {
                    f.dirty = false
                    if read(f, control) {
                        f.dirty = true
                        more = true
                    }
                }
                housekeeping(f, now: now, control: control)
            }
            releaseRetired()
            if now - lastSave >= config.checkpointInterval {
                saveCheckpoints()
                updateBehind()
                lastSave = now
            }
            if more || control.isStopping { continue }
            if inotify != nil {
                fired.removeAll(keepingCapacity: true)
                inotify?.wait(timeout: config.pollInterval, into: &fired)
                for wd in fired {
                    if let key = watchedFiles[wd] {
                        files[key]?.dirty = true
                    } else {
                        // A directory changed, or the queue overflowed (wd -1): look again.
                        rescanRequested = true
                        if wd == -1 { lastSweep = -Double.infinity }
                    }
                }
            } else {
                control.sleep(config.pollInterval)
            }
        }
    }

    func finish() {
        releaseRetired()
        saveCheckpoints(force: true)
    }

    // MARK: discovery

    private func rescan(now: Double) {
        scans.add()
        var seen: [FileKey: String] = [:]
        for pattern in config.paths {
            addDirectoryWatch(for: pattern)
            for path in globPaths(pattern) where !isExcluded(path) {
                var st = stat()
                guard stat(path, &st) == 0 else {
                    // ENOENT: a dangling symlink (its container's log is gone), normal on a node.
                    if errno != ENOENT { cannotOpen(path, errno) }
                    continue
                }
                guard (st.st_mode & S_IFMT) == S_IFREG else { continue }
                let key = FileKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
                if seen[key] == nil { seen[key] = path }
            }
        }
        for (key, f) in files {
            if let p = seen[key] {
                if p != f.path {
                    logger.info("file \(f.path) is now at \(p)")
                    f.renamed(to: p)
                }
                f.rotatedAt = nil
            } else if f.rotatedAt == nil {
                f.rotatedAt = now
                f.dirty = true
                rotations.add()
                logger.info("file \(f.path) was rotated or deleted: reading it to its end")
            }
        }
        for (key, path) in seen.sorted(by: { $0.value < $1.value }) where files[key] == nil {
            open(path: path)
        }
        if firstScan {
            firstScan = false
            saved.removeAll()  // entries of files that are gone
        }
        filesWatched.set(files.count)
    }

    private func open(path: String) {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            cannotOpen(path, errno)
            return
        }
        if unreadable.remove(path) != nil { logger.info("\(path) is readable now") }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            close(fd)
            return
        }
        let key = FileKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
        if files[key] != nil {
            close(fd)
            return
        }
        let size = Int64(st.st_size)
        var offset: Int64 = 0
        var resumed: FileCheckpoint?
        if let cp = saved.removeValue(forKey: key) {
            if cp.fingerprintLength == 0 {
                offset = 0  // checkpointed before its first line was complete: read it from the start
            } else if Fingerprint.hash(fd: fd, length: cp.fingerprintLength) == cp.fingerprint {
                if cp.offset <= size {
                    offset = cp.offset
                    resumed = cp
                } else {
                    logger.warning("\(path): checkpoint offset \(cp.offset) is past the end (\(size) bytes): the file was truncated while the agent was down; reading it from the start")
                }
            } else {
                logger.info("\(path): inode reused by a new file (content differs from the checkpoint); reading it from the start")
            }
        } else if firstScan && config.startAt == .end {
            offset = lineAlignedEnd(fd: fd, size: size)
        }
        let f = TailedFile(id: nextID, key: key, path: path, fd: fd, offset: offset,
                           format: config.format, maxLineBytes: config.maxLineBytes)
        nextID += 1
        if let cp = resumed {
            // Keep the identity the records were first shipped with: replays get the same event.id.
            f.fingerprintLength = cp.fingerprintLength
            f.fingerprint = cp.fingerprint
            f.source = SourceInfo(path: path, sourceID: Fingerprint.sourceID(key: key, fingerprint: cp.fingerprint))
        }
        if let delivered = resumed?.delivered { f.replayUntil = delivered }
        if let held = resumed?.held { f.replayHeld = held.heldFrom }
        if let g = resumed?.generation { f.setGeneration(g) }
        // Started at its end (start_at: end): take its identity now so the position is checkpointed
        // even if no line comes before the next stop, or that stop would start it at the end again.
        if resumed == nil && offset > 0 { _ = f.establishIdentity() }
        tracker.setAcked(fileID: f.id, position: f.position)
        lastRegistered[f.id] = f.position
        files[key] = f
        addFileWatch(f)
        logger.info("following \(path) from offset \(offset)\(resumed != nil ? " (checkpoint)" : "")")
    }

    private func cannotOpen(_ path: String, _ err: Int32) {
        openErrors.add()
        if unreadable.insert(path).inserted {
            logger.warning("cannot open \(path): \(String(cString: strerror(err))); skipping it and trying again at each scan")
        }
    }

    /// For `start_at: end`: the offset just after the last complete line.
    private func lineAlignedEnd(fd: Int32, size: Int64) -> Int64 {
        guard size > 0 else { return 0 }
        let want = Int(min(size, 64 * 1024))
        var buf = [UInt8](repeating: 0, count: want)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(size - Int64(want))) }
        guard n == want, let nl = buf.lastIndex(of: UInt8(ascii: "\n")) else { return size }
        return size - Int64(want) + Int64(nl) + 1
    }

    private func globPaths(_ pattern: String) -> [String] {
        var g = glob_t()
        defer { globfree(&g) }
        guard glob(pattern, 0, nil, &g) == 0 else { return [] }
        var out: [String] = []
        for i in 0..<Int(g.gl_pathc) {
            if let p = g.gl_pathv[i] { out.append(String(cString: p)) }
        }
        return out
    }

    private func isExcluded(_ path: String) -> Bool {
        for pattern in config.exclude {
            // A pattern without "/" matches the file name alone, like Fluent Bit's Exclude_Path users expect.
            let subject = pattern.contains("/") ? path : String(path.split(separator: "/").last ?? "")
            if fnmatch(pattern, subject, 0) == 0 { return true }
        }
        return false
    }

    private func addDirectoryWatch(for pattern: String) {
        guard let ino = inotify else { return }
        var dir = ""
        for part in pattern.split(separator: "/", omittingEmptySubsequences: false).dropLast() {
            if part.contains(where: { "*?[".contains($0) }) { break }
            dir += (dir.isEmpty && pattern.hasPrefix("/") && part.isEmpty) ? "/" : (dir.hasSuffix("/") || dir.isEmpty ? "" : "/") + part
        }
        if dir.isEmpty { dir = "." }
        guard dirWatches[dir] == nil else { return }
        let wd = ino.add(dir, mask: Inotify.dirEvents)
        if wd >= 0 { dirWatches[dir] = wd }
    }

    private func addFileWatch(_ f: TailedFile) {
        guard let ino = inotify else { return }
        let wd = ino.add(f.path, mask: Inotify.fileEvents)
        if wd >= 0 {
            f.watch = wd
            watchedFiles[wd] = f.key
        } else if !watchLimitLogged {
            watchLimitLogged = true
            logger.warning("inotify cannot watch \(f.path) (\(String(cString: strerror(-wd)))); likely fs.inotify.max_user_watches: polling such files every \(config.pollInterval)s")
        }
    }

    // MARK: reading

    /// Reads up to the per-file budget. Returns true when the file has more to read right away.
    private func read(_ f: TailedFile, _ control: InputControl) -> Bool {
        guard let size = f.size() else { return false }
        let now = monotonicSeconds()
        // Truncated in place: shorter than what was read, or (if it grew back before we looked) its
        // first line changed. The fingerprint is re-read at most once a second per file.
        var truncated = size < f.readOffset
        if !truncated && f.fingerprintLength > 0 && now - f.fingerprintCheckedAt >= 1 {
            f.fingerprintCheckedAt = now
            truncated = !f.fingerprintMatches()
        }
        if truncated {
            truncations.add()
            logger.warning("\(f.path) was truncated (copytruncate?): reading it again from the start")
            restart(f)
        }
        if size <= f.readOffset { return false }
        guard f.establishIdentity(), let source = f.source else { return false }

        var consumed = 0
        while consumed < config.readBudget && !control.isStopping {
            let base = f.readOffset
            let n = pread(f.fd, buffer.baseAddress, buffer.count, off_t(base))
            if n <= 0 { return false }
            bytesRead.add(n)
            f.lastDataAt = now
            let readTime = wallClockNanos()
            var batch = RecordBatch(source: source, inputName: name, recordCapacity: 1024, byteCapacity: n)
            let full = n == buffer.count
            let used = scan(f, base: base, count: n, full: full, readTime: readTime, into: &batch)
            consumed += max(used, 1)
            emit(f, &batch, control)
            if used == 0 {
                // One incomplete line fills the buffer: grow it, up to max_line_bytes + 1.
                if full && buffer.count <= config.maxLineBytes {
                    grow()
                    continue
                }
                return false
            }
            if !full { return false }
        }
        return !control.isStopping
    }

    /// Splits a chunk into lines and decodes them. Returns how many bytes were consumed.
    private func scan(_ f: TailedFile, base: Int64, count n: Int, full: Bool, readTime: Int64,
                      into batch: inout RecordBatch) -> Int {
        guard let p = buffer.baseAddress else { return 0 }
        var pos = 0
        if f.longLineStart != nil {
            // Skipping the rest of an over-long line.
            guard let nl = memchr(p, 0x0A, n) else {
                f.readOffset = base + Int64(n)
                return n
            }
            pos = p.distance(to: nl) + 1
            f.longLineStart = nil
        }
        while pos < n {
            guard let nl = memchr(p + pos, 0x0A, n - pos) else { break }
            let end = p.distance(to: nl)
            let lineOffset = base + Int64(pos)
            let before = batch.records.count
            f.decoder.decode(line: UnsafeRawBufferPointer(start: p + pos, count: end - pos),
                             offset: lineOffset, truncated: false, readTime: readTime, into: &batch)
            if batch.records.count > before, let r = batch.records.last, r.offset < f.replayHeld[r.stream],
               lineOffset < f.replayUntil || r.offset < f.replayHeld[through: r.stream] {
                // The last run delivered it: it completed before that run's delivered position, or it
                // was a line of a record a filter held across that position and then delivered. What
                // a filter still held (at or after the stream's pending offset) is shipped again.
                batch.records.removeLast(batch.records.count - before)
            }
            pos = end + 1
        }
        if pos == 0 && full && n > config.maxLineBytes {
            // No newline in max_line_bytes + 1 bytes: ship the first max_line_bytes, flagged, skip the rest.
            let before = batch.records.count
            f.decoder.decode(line: UnsafeRawBufferPointer(start: p, count: config.maxLineBytes),
                             offset: base, truncated: true, readTime: readTime, into: &batch)
            if base < f.replayUntil { batch.records.removeLast(batch.records.count - before) }
            f.longLineStart = base
            f.readOffset = base + Int64(n)
            logger.warning("\(f.path): line at offset \(base) is longer than max_line_bytes (\(config.maxLineBytes)); shipped cut and flagged truncated")
            return n
        }
        f.readOffset = base + Int64(pos)
        return pos
    }

    private func grow() {
        let newSize = min(buffer.count * 2, config.maxLineBytes + 1)
        guard newSize > buffer.count else { return }
        buffer.deallocate()
        buffer = .allocate(byteCount: newSize, alignment: 16)
    }

    /// Hands a batch on and registers the offset it makes safe.
    private func emit(_ f: TailedFile, _ batch: inout RecordBatch, _ control: InputControl) {
        let stats = f.decoder.takeStats()
        if stats.decodeErrors > 0 { decodeErrors.add(stats.decodeErrors) }
        if stats.invalidTimes > 0 { invalidTimes.add(stats.invalidTimes) }
        if stats.truncated > 0 { truncatedLines.add(stats.truncated) }
        if stats.partsMerged > 0 { partsMerged.add(stats.partsMerged) }
        let position = f.position
        if batch.isEmpty && lastRegistered[f.id] == position { return }
        lastRegistered[f.id] = position
        let seq = tracker.register(fileID: f.id, position: position)
        if batch.isEmpty {
            tracker.complete(seq)
            return
        }
        recordsOut.add(batch.count)
        let tracker = self.tracker
        control.emit(batch, ack: AckToken { (held: HeldFrom) in tracker.complete(seq, held: held) })
        batch = RecordBatch(source: batch.source, inputName: name)
    }

    /// Partial-record timeout, and closing rotated files once drained.
    private func housekeeping(_ f: TailedFile, now: Double, control: InputControl) {
        if let since = f.decoder.pendingSince, now - since >= config.partialTimeout, !f.dirty, let source = f.source {
            var batch = RecordBatch(source: source, inputName: name)
            f.decoder.flushPending(into: &batch)
            emit(f, &batch, control)
        }
        if let rotatedAt = f.rotatedAt, !f.dirty, now - max(rotatedAt, f.lastDataAt) >= config.rotateWait {
            // One last read: a write whose inotify event is still queued must not be left behind.
            if read(f, control) {
                f.dirty = true
                return
            }
            if let source = f.source {
                var batch = RecordBatch(source: source, inputName: name)
                f.decoder.flushPending(into: &batch)
                emit(f, &batch, control)
            }
            logger.info("closing \(f.path): rotated away and read to its end")
            retire(f)
            files[f.key] = nil
            filesWatched.set(files.count)
        }
    }

    /// copytruncate: the same inode starts over with new content, under a new identity.
    private func restart(_ f: TailedFile) {
        retire(f)
        f.restart()
        f.id = nextID
        nextID += 1
        tracker.setAcked(fileID: f.id, position: f.position)
        lastRegistered[f.id] = f.position
    }

    private func retire(_ f: TailedFile) {
        if let w = f.watch, f.rotatedAt != nil || files[f.key] == nil {
            inotify?.remove(w)
            watchedFiles[w] = nil
            f.watch = nil
        }
        lastRegistered[f.id] = nil
        if f.fingerprintLength > 0, let acked = tracker.acked(f.id) {
            retired[f.id] = checkpoint(f, acked)
        } else {
            tracker.forget(f.id)
        }
    }

    private func releaseRetired() {
        for (id, _) in retired where !tracker.hasOutstanding(id) {
            retired[id] = nil
            tracker.forget(id)
        }
    }

    /// Size minus acknowledged offset, summed: what this input still owes its outputs.
    private func updateBehind() {
        var behind: Int64 = 0
        for f in files.values {
            guard let size = f.size(), let acked = tracker.acked(f.id) else { continue }
            behind += max(0, size - acked.resume)
        }
        bytesBehind.set(Int(behind))
    }

    // MARK: checkpoints

    private func checkpoint(_ f: TailedFile, _ acked: AckTracker.Position) -> FileCheckpoint {
        FileCheckpoint(device: f.key.device, inode: f.key.inode, fingerprintLength: f.fingerprintLength,
                       fingerprint: f.fingerprint, offset: acked.resume,
                       delivered: acked.delivered > acked.resume ? acked.delivered : nil, path: f.path,
                       generation: f.generation > 0 ? f.generation : nil, held: HeldOffsets(acked.held))
    }

    private func saveCheckpoints(force: Bool = false) {
        guard tracker.takeDirty() || force else { return }
        var list: [FileCheckpoint] = []
        for f in files.values {
            // A file without identity yet (empty, or no complete first line) is saved too, with no
            // fingerprint: after a restart it cannot match, so it is read from the start, never
            // skipped by start_at: end.
            guard let acked = tracker.acked(f.id) else { continue }
            list.append(checkpoint(f, acked))
        }
        for (id, var cp) in retired {
            if let acked = tracker.acked(id) {
                cp.offset = acked.resume
                cp.delivered = acked.delivered > acked.resume ? acked.delivered : nil
                cp.held = HeldOffsets(acked.held)
            }
            // A retired copytruncated inode is superseded by its restarted entry.
            if !list.contains(where: { $0.device == cp.device && $0.inode == cp.inode }) { list.append(cp) }
        }
        list.sort { ($0.path, $0.inode) < ($1.path, $1.inode) }
        do {
            try store.save(list)
            if lastSaveFailed {
                lastSaveFailed = false
                logger.notice("checkpoints are written again")
            }
        } catch {
            checkpointErrors.add()
            if !lastSaveFailed {
                lastSaveFailed = true
                logger.error("cannot write checkpoints to \(store.path): \(error); retrying")
            }
        }
    }
}
