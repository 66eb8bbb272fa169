import AnduinCore
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The lifecycle of followed files: open (resuming at a checkpoint), notice rotation and truncation,
/// drain, close. Owned by the tail thread.
///
/// A rotated (renamed or deleted) file stays open until it was read to its end *and* everything
/// read from it was acknowledged, then `rotate_wait` more. The descriptor keeps the file whatever
/// happens to its name, so what the agent once followed is never lost to a rename or a glob.
final class FileTable {
    private let config: TailConfig
    private let logger: Logger
    let reader: LineReader
    let registry: CheckpointRegistry
    private let backend: any WatchBackend
    private(set) var files: [FileKey: TailedFile] = [:]
    private var byWatch: [Int32: FileKey] = [:]
    private var nextID = 0
    /// `max_open_files`, lowered when the process runs out of descriptors first (see `shortOfDescriptors`).
    private(set) var maxOpen: Int
    private var unreadable: Set<String> = []
    private var compressed: Set<FileKey> = []
    private var limitLogged = false
    /// Files found but not opened in the current scan (limit reached, or no descriptor).
    var waiting = 0
    /// Files found at the last scan but not opened (a descriptor, the limit, a permission), or files
    /// closed while idle (their changes are seen by a scan only): scans must come every glob_interval.
    var needsPolledScans: Bool { waitedAtLastScan || !unreadable.isEmpty || closedIdle }
    private var waitedAtLastScan = false
    private var closedIdle = false
    /// A followed file's folder inotify could not watch since the last call.
    private var folderWatchFailure: (String, Int32)?
    func takeFolderWatchFailure() -> (String, Int32)? {
        defer { folderWatchFailure = nil }
        return folderWatchFailure
    }
    private let rotations, truncations, openErrors, fdShortages, idleClosed, givenUp, givenUpBytes: Counter
    private let filesWatched, filesWaiting: Gauge

    init(config: TailConfig, logger: Logger, reader: LineReader, registry: CheckpointRegistry,
         backend: any WatchBackend, stats: ComponentStats) {
        self.config = config
        self.logger = logger
        self.reader = reader
        self.registry = registry
        self.backend = backend
        maxOpen = config.maxOpenFiles > 0 ? config.maxOpenFiles : TailConfig.defaultMaxOpenFiles()
        // A limit set above what the descriptor limit allows would starve the outputs' sockets, the
        // buffer's segments, the checkpoints and the API once every file is open.
        if config.maxOpenFiles > 0, let limit = ProcessDescriptors.limit {
            let most = max(8, limit - Self.descriptorReserve * 2)
            if maxOpen > most {
                logger.warning("max_open_files \(maxOpen) leaves too few of the process's \(limit) file descriptors to the rest of the agent: holding at most \(most) open (raise the descriptor limit to hold more)")
                maxOpen = most
            }
        }
        rotations = stats.counter("rotations", "files that were renamed away or deleted and drained")
        truncations = stats.counter("truncations", "files truncated in place (copytruncate) and read again from 0")
        openErrors = stats.counter("open_errors", "failed attempts to open a file (one per scan while it cannot be opened; retried)")
        fdShortages = stats.counter("open_deferred", "opens deferred because max_open_files or the process's descriptor limit was reached (retried, never restarted at 0)")
        idleClosed = stats.counter("idle_closed", "idle files closed to stay within max_open_files (reopened at their checkpoint when they change)")
        givenUp = stats.counter("rotated_given_up", "rotated files closed before their end because more than max_rotated_files were held open in one directory")
        givenUpBytes = stats.counter("rotated_bytes_given_up", "bytes left unread in rotated files that were given up")
        filesWatched = stats.gauge("files_watched", "files being followed (open)")
        filesWaiting = stats.gauge("files_waiting", "files found but not open yet (max_open_files or descriptor limit)")
    }

    /// Open files in the order they were opened (fair, and a container's files oldest first).
    var ordered: [TailedFile] {
        if let o = orderedCache { return o }
        let o = files.values.sorted { $0.id < $1.id }
        orderedCache = o
        return o
    }
    private var orderedCache: [TailedFile]?

    func file(watch: Int32) -> TailedFile? { byWatch[watch].flatMap { files[$0] } }

    // MARK: opening

    /// Opens `found` and resumes it at its checkpoint. `startAtEnd`: no checkpoint → start after
    /// its last complete line. Returns the file, or nil (counted and logged; retried later).
    @discardableResult
    func open(_ found: FoundFile, startAtEnd: Bool) -> TailedFile? {
        if files.count >= maxOpen && !closeIdle() {
            deferOpen(found.path, "max_open_files (\(maxOpen)) files are open and none is idle")
            return nil
        }
        var fd = Glibc.open(found.path, O_RDONLY | O_CLOEXEC)
        if fd < 0 && (errno == EMFILE || errno == ENFILE) && closeIdle() {
            // The process limit is lower than max_open_files: give an idle file's descriptor.
            fd = Glibc.open(found.path, O_RDONLY | O_CLOEXEC)
        }
        guard fd >= 0 else {
            let err = errno
            if err == EMFILE || err == ENFILE {
                shortOfDescriptors()
                deferOpen(found.path, "the process has no file descriptor left (\(String(cString: strerror(err)))); raise the limit or lower max_open_files")
            } else {
                cannotOpen(found.path, err)
            }
            return nil
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            Glibc.close(fd)
            return nil
        }
        let key = FileKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
        if files[key] != nil || compressed.contains(key) {
            Glibc.close(fd)
            return nil
        }
        if Fingerprint.isGzip(fd: fd) {
            Glibc.close(fd)
            compressed.insert(key)
            logger.info("\(found.path) is gzip-compressed (a compressed rotation): not read as text")
            return nil
        }
        if unreadable.remove(found.path) != nil { logger.info("\(found.path) is readable now") }
        let realPath = resolve(found.path)
        let size = Int64(st.st_size)
        var offset: Int64 = 0
        var resumed: FileCheckpoint?
        var generation: Int?
        if let cp = registry.take(key) {
            if cp.fingerprintLength == 0 {
                // Checkpointed before its first line was complete: read it from the start, in the
                // same truncation generation (so the event.ids are the ones already shipped).
                offset = 0
                generation = cp.generation
            } else if Fingerprint.hash(fd: fd, length: cp.fingerprintLength) == cp.fingerprint {
                if cp.offset >= 0 && cp.offset <= size {
                    offset = cp.offset
                    resumed = cp
                } else {
                    logger.warning("\(found.path): checkpoint offset \(cp.offset) is outside the file (\(size) bytes): the file was truncated while it was not followed; reading it from the start")
                    generation = (cp.generation ?? 0).addingSaturating(1)
                }
            } else {
                logger.info("\(found.path): content differs from the checkpoint (truncated and rewritten, or the inode reused by a new file); reading it from the start")
                // As a live truncation would: the next generation, so ids match those a previous
                // run may already have shipped for this content after seeing the truncation.
                generation = (cp.generation ?? 0).addingSaturating(1)
            }
        } else if startAtEnd {
            offset = lineAlignedEnd(fd: fd, size: size)
        }
        let f = TailedFile(id: nextID, key: key, path: found.path, realPath: realPath, fd: fd, offset: offset,
                           format: config.format, maxLineBytes: config.maxLineBytes, multiline: config.multiline)
        nextID += 1
        if let cp = resumed {
            // Keep the identity the records were first shipped with: replays get the same event.id.
            f.fingerprintLength = cp.fingerprintLength
            f.fingerprint = cp.fingerprint
            f.source = SourceInfo(path: found.path, sourceID: Fingerprint.sourceID(key: key, fingerprint: cp.fingerprint))
            if let delivered = cp.delivered { f.replayUntil = delivered }
            generation = cp.generation
            // `format: auto` decided on the file's first line: a restart decoding from the line it
            // resumes at (which may not fit) would decode, join and so replay differently.
            f.decoder.assumeDetected(cp.format.flatMap(LogFormat.init(rawValue:)) ?? (offset > 0 ? f.detectFormatFromStart() : nil))
        }
        if let g = generation { f.setGeneration(g) }
        // Started at its end (start_at: end): take its identity now so the position is checkpointed
        // even if no line comes before the next stop, or that stop would start it at the end again.
        if resumed == nil && offset > 0 { _ = f.establishIdentity() }
        // Opened inside a line: the line-end check before reading on does not apply to this position.
        if offset > 0 && !f.byteBeforeReadOffsetIsNewline() { f.readOffsetMidLine = true }
        reader.register(f)
        registry.fileOpened()
        files[key] = f
        orderedCache = nil
        if let wd = backend.watchFile(found.path) {
            f.watch = wd
            byWatch[wd] = key
        }
        // New files in its real directory (a symlink's target) wake the scan at once.
        if let err = backend.watchDirectory(f.directory), err != ENOENT, folderWatchFailure == nil {
            folderWatchFailure = (f.directory, err)
        }
        filesWatched.set(files.count)
        logger.info("following \(found.path) from offset \(offset)\(resumed != nil ? " (checkpoint)" : "")")
        return f
    }

    private func resolve(_ path: String) -> String {
        guard let p = realpath(path, nil) else { return path }
        defer { free(p) }
        return String(cString: p)
    }

    /// The process ran out of descriptors (EMFILE/ENFILE from an open, a glob, a checkpoint write)
    /// before max_open_files was reached: hold fewer files open, leaving a few descriptors for the
    /// scans and checkpoints, by closing idle ones (reopened at their checkpoint when they change).
    func shortOfDescriptors(atLeast wanted: Int = 8) {
        let target = max(1, files.count - max(8, wanted))
        if target < maxOpen {
            logger.warning("the process ran out of file descriptors with \(files.count) files open: holding at most \(target) open from now on (raise the descriptor limit, or set max_open_files)")
            maxOpen = target
        }
        while files.count > maxOpen && closeIdle() {}
        filesWatched.set(files.count)
    }

    private func cannotOpen(_ path: String, _ err: Int32) {
        openErrors.add()
        if unreadable.insert(path).inserted {
            logger.warning("cannot open \(path): \(String(cString: strerror(err))); skipping it and trying again at each scan (its checkpoint is kept)")
        }
    }

    private func deferOpen(_ path: String, _ why: String) {
        fdShortages.add()
        waiting += 1
        if !limitLogged {
            limitLogged = true
            logger.warning("cannot open \(path) yet: \(why); such files are opened as soon as possible, at their checkpoint (logged once)")
        }
    }

    /// Descriptors the tail leaves free for the rest of the agent (sockets, buffer segments,
    /// checkpoints, dead letters, the API).
    static let descriptorReserve = 16
    private var lastHeadroomCheck = 0.0

    /// Another part of the agent may be short of descriptors although every open of the tail
    /// succeeded (it opened its files first): at most once a second, when fewer than
    /// `descriptorReserve` are free, hold fewer files open.
    private func keepDescriptorHeadroom() {
        let now = monotonicSeconds()
        guard now - lastHeadroomCheck >= 1, files.count > 1 else { return }
        lastHeadroomCheck = now
        guard let free = ProcessDescriptors.free(), free < Self.descriptorReserve else { return }
        shortOfDescriptors(atLeast: Self.descriptorReserve - free)
    }

    /// End of a scan: publish how many files wait for a descriptor.
    func scanDone() {
        keepDescriptorHeadroom()
        idleCandidates = nil
        filesWaiting.set(waiting)
        waitedAtLastScan = waiting > 0
        if waiting == 0 && limitLogged {
            limitLogged = false
            logger.notice("every file found is open again")
        }
        waiting = 0
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

    // MARK: rotation and truncation

    /// A followed file is rotated when its own path no longer leads to it (renamed away, deleted, or
    /// a symlink re-pointed). Decided per file: a failing glob or stat (EMFILE, EACCES) concludes
    /// nothing. `matched` (this scan's files) gives its new name when a glob matches it.
    func checkRotation(now: Double, matched: [FileKey: FoundFile]) {
        for f in files.values where f.rotatedAt == nil {
            var st = stat()
            if stat(f.path, &st) == 0 {
                if UInt64(st.st_dev) == f.key.device && UInt64(st.st_ino) == f.key.inode { continue }
            } else if errno != ENOENT {
                continue  // cannot tell: change nothing
            }
            if let m = matched[f.key], m.path != f.path {
                logger.info("file \(f.path) is now at \(m.path)")
                f.renamed(to: m.path)
            }
            markRotated(f, now: now)
        }
    }

    func markRotated(_ f: TailedFile, now: Double) {
        guard f.rotatedAt == nil else { return }
        f.rotatedAt = now
        f.dirty = true
        rotations.add()
        logger.info("file \(f.path) was rotated or deleted: reading it to its end")
    }

    /// Reads `f`, first checking whether it was truncated in place (copytruncate).
    func read(_ f: TailedFile, now: Double, isStopping: () -> Bool) -> Bool {
        guard let size = f.size() else { return false }
        f.sizeAtRead = size
        // Truncated in place: shorter than what was read, or (if it grew back before we looked) its
        // first line changed. The fingerprint is re-read at most once a second per file.
        var truncated = size < f.readOffset
        if !truncated && f.fingerprintLength > 0 && now - f.fingerprintCheckedAt >= 1 {
            f.fingerprintCheckedAt = now
            truncated = !f.fingerprintMatches()
        }
        if truncated { restartTruncated(f) }
        // Between fingerprint looks: a file read to its end that has new bytes, truncated and
        // rewritten past the read position meanwhile, no longer has a line end just before that
        // position. Reading on from there would ship the new content from mid-line, and all of it
        // again once the fingerprint tells (duplicates under another identity). The reader takes
        // that byte with its first read.
        let checkLineEnd = !truncated && f.atEnd && size > f.readOffset && f.lineEndCheckApplies
        var lineEndMissing = false
        let more = reader.read(f, size: size, checkLineEnd: checkLineEnd, lineEndMissing: &lineEndMissing, isStopping: isStopping)
        guard lineEndMissing else { return more }
        restartTruncated(f)
        return reader.read(f, size: size, lineEndMissing: &lineEndMissing, isStopping: isStopping)
    }

    private func restartTruncated(_ f: TailedFile) {
        truncations.add()
        logger.warning("\(f.path) was truncated (copytruncate?): reading it again from the start")
        restart(f)
    }

    /// copytruncate: the same inode starts over with new content, under a new identity.
    private func restart(_ f: TailedFile) {
        // The old content's open records are complete as far as it goes: shipped under its identity.
        reader.flushJoined(f, now: monotonicSeconds(), all: true)
        if let acked = reader.tracker.acked(f.id), f.fingerprintLength > 0 {
            registry.retire(id: f.id, checkpoint(f, acked), size: nil, mtime: nil)
        } else {
            reader.tracker.forget(f.id)
        }
        reader.forget(f.id)
        f.restart()
        f.id = nextID
        nextID += 1
        orderedCache = nil
        reader.register(f)
        registry.fileOpened()  // saved soon: a crash must not resume the old generation's identity
    }

    // MARK: draining and closing

    /// Partial-record timeouts; closing rotated files once drained and acknowledged; the bound on
    /// rotated files held open per directory.
    func housekeeping(now: Double, isStopping: () -> Bool) {
        let tracker = reader.tracker
        var rotatedByDir: [String: [TailedFile]] = [:]
        for f in ordered {
            if let since = f.decoder.pendingSince, now - since >= config.partialTimeout, !f.dirty {
                reader.flushPartial(f)
            }
            if let j = f.joiner, let since = j.oldestLine, now - since >= j.timeout, !f.dirty, reader.hasRoom {
                // A line already written may still continue the record: read it first. Under
                // backpressure nothing is flushed (an unread line must not be cut off its record).
                if read(f, now: now, isStopping: isStopping) {
                    f.dirty = true
                } else {
                    reader.flushJoined(f, now: now)
                }
            }
            guard f.rotatedAt != nil else { continue }
            guard f.atEnd && !f.dirty && !tracker.hasOutstanding(f.id) else {
                f.drainedSince = nil
                rotatedByDir[f.directory, default: []].append(f)
                continue
            }
            guard let since = f.drainedSince else {
                f.drainedSince = now
                rotatedByDir[f.directory, default: []].append(f)
                continue
            }
            if now - since < config.rotateWait {
                rotatedByDir[f.directory, default: []].append(f)
                continue
            }
            // One last read: a write whose inotify event is still queued must not be left behind.
            if read(f, now: now, isStopping: isStopping) || f.drainedSince == nil {
                f.dirty = true
                rotatedByDir[f.directory, default: []].append(f)
                continue
            }
            reader.readUnterminatedTail(f)
            reader.flushPartial(f)
            reader.flushJoined(f, now: now, all: true)
            logger.info("closing \(f.path): rotated away, read to its end and acknowledged")
            close(f)
        }
        for (dir, list) in rotatedByDir where list.count > config.maxRotatedFiles {
            for f in list.sorted(by: { ($0.rotatedAt ?? 0) < ($1.rotatedAt ?? 0) }).prefix(list.count - config.maxRotatedFiles) {
                let size = f.size() ?? 0
                // Read to its end: closing it early loses nothing (records in flight are still
                // acknowledged through the registry), so it is not given up, only closed sooner.
                if f.atEnd && !f.dirty && f.readOffset >= size {
                    reader.flushPartial(f)
                    logger.info("closing \(f.path): rotated away and read to its end; \(list.count) rotated files held open in \(dir) (max_rotated_files: \(config.maxRotatedFiles))")
                    close(f)
                    continue
                }
                let unread = max(0, size - (tracker.acked(f.id)?.resume ?? f.readOffset))
                givenUp.add()
                givenUpBytes.add(Int(unread))
                logger.warning("\(list.count) rotated files held open in \(dir) (max_rotated_files: \(config.maxRotatedFiles)): giving up \(f.path) with \(unread) bytes not yet read or acknowledged")
                close(f, givenUp: true)
            }
        }
    }

    /// Closes an idle file (read to its end, all acknowledged, nothing pending) to make room for
    /// another: the least recently active. Returns false when none is idle.
    /// The candidates are listed once per scan (least recently active last), so opening thousands
    /// of files past the limit costs one pass over the open ones, not one per file.
    private func closeIdle() -> Bool {
        if idleCandidates == nil {
            let tracker = reader.tracker
            idleCandidates = files.values.filter { f in
                f.rotatedAt == nil && f.atEnd && !f.dirty && f.decoder.pendingStart == nil && f.longLineStart == nil
                    && f.joiner?.openStart == nil
                    && !tracker.hasOutstanding(f.id)
            }.sorted { $0.lastDataAt > $1.lastDataAt }
        }
        while let f = idleCandidates?.popLast() {
            // Still idle: open, nothing new since it was listed.
            guard files[f.key] === f, f.atEnd, !f.dirty, f.size() == f.readOffset else { continue }
            idleClosed.add()
            closedIdle = true
            logger.debug("closing \(f.path): idle (read to its end, acknowledged) to stay within max_open_files (\(maxOpen)); reopened at its checkpoint when it changes")
            close(f)
            return true
        }
        return false
    }

    /// Idle files that may be closed for room, listed at the first need in a scan.
    private var idleCandidates: [TailedFile]?

    /// Closes `f`; its position is parked in the registry (or retired until its last batches complete).
    func close(_ f: TailedFile, givenUp: Bool = false) {
        let tracker = reader.tracker
        if let w = f.watch {
            backend.unwatchFile(w)
            byWatch[w] = nil
            f.watch = nil
        }
        reader.forget(f.id)
        // Parked with the size read so far: a file that grew after the last read (its event still
        // queued) differs at the next scan and is reopened.
        let st = f.status()
        let mtime = st?.size == f.readOffset ? st?.mtime : nil
        if let acked = tracker.acked(f.id) {
            let cp = checkpoint(f, acked)
            if tracker.hasOutstanding(f.id) {
                registry.retire(id: f.id, cp, size: f.readOffset, mtime: mtime, givenUp: givenUp)
            } else {
                tracker.forget(f.id)
                registry.park(cp, size: f.readOffset, mtime: mtime, givenUp: givenUp)
            }
        }
        files[f.key] = nil
        orderedCache = nil
        filesWatched.set(files.count)
    }

    func checkpoint(_ f: TailedFile, _ acked: AckTracker.Position) -> FileCheckpoint {
        var cp = FileCheckpoint(device: f.key.device, inode: f.key.inode, fingerprintLength: f.fingerprintLength,
                                fingerprint: f.fingerprint, offset: 0, path: f.path,
                                generation: f.generation > 0 ? f.generation : nil,
                                realPath: f.realPath != f.path ? f.realPath : nil,
                                seen: wallClockNanos() / 1_000_000_000,
                                format: f.decoder.format == .auto && f.decoder.resolvedFormat != .auto
                                    ? f.decoder.resolvedFormat.rawValue : nil)
        cp.apply(acked)
        return cp
    }

    /// The acknowledged positions of the open files.
    func checkpoints() -> [FileCheckpoint] {
        files.values.compactMap { f in reader.tracker.acked(f.id).map { checkpoint(f, $0) } }
    }

    /// Size minus acknowledged offset, summed: what this input still owes its outputs; how many
    /// files owe something; and the bytes acknowledged since the last call (files open at both).
    func behind() -> (bytes: Int, files: Int, acknowledged: Int) {
        var behind: Int64 = 0, progressed: Int64 = 0
        var count = 0
        var acked: [Int: Int64] = [:]
        acked.reserveCapacity(files.count)
        for f in files.values {
            guard let position = reader.tracker.acked(f.id)?.resume else { continue }
            acked[f.id] = position
            let before = lastAcked[f.id]
            if let before { progressed = progressed.addingSaturating(max(0, position - before)) }
            if position != before { logger.debug("checkpoint \(f.path): acknowledged up to offset \(position)") }
            // A watched file without an event since its last read has not changed size.
            let known = backend.notifies && f.watch != nil && !f.dirty ? f.sizeAtRead : nil
            guard let size = known ?? f.size() else { continue }
            let owed = max(0, size - position)
            behind = behind.addingSaturating(owed)
            if owed > 0 { count += 1 }
        }
        lastAcked = acked
        return (Int(behind), count, Int(progressed))
    }

    /// The acknowledged positions at the last `behind()`.
    private var lastAcked: [Int: Int64] = [:]
}
