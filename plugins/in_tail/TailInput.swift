import AnduinCore
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The `tail` input: finds files by glob, follows them through rotation, decodes their lines and
/// checkpoints what the outputs acknowledged.
///
/// Parts: `Discovery` (globs, symlinks, searching a directory for a known file), a `WatchBackend`
/// (inotify or polling), `FileTable` (open, rotate, drain, close), `LineReader` (bytes to batches),
/// `CheckpointRegistry` (positions, parked files, persistence) and `TailEmitter` (emitting on a
/// thread of its own, so a full output pauses reading but never discovery).
///
/// Threading: the pipeline moves the input to its thread for `run` and takes it back for `finish`
/// (it is not Sendable). Only `tracker` and `emitter` are reached from other threads (they lock).
final class TailInput: Input {
    private let config: TailConfig
    private let name: String
    private let logger: Logger
    private let stats: ComponentStats
    private let tracker: AckTracker
    private let registry: CheckpointRegistry
    private let discovery: Discovery
    /// Built by `prepare` (read by tests: which files are open).
    private(set) var table: FileTable?
    private var backend: (any WatchBackend)?
    private var emitter: TailEmitter?
    private var rescanRequested = true
    private var startupKeys: Set<FileKey>?
    private let checkpointErrors, searchesFound, checkpointsExpired, scanErrors, scans: Counter
    private let inotifyMode, bytesBehind, filesBehind, ackedRate, globsEmpty, foldersUnwatched, checkpointsUnreadable: Gauge
    /// (time, bytes acknowledged since start) at each checkpoint save of the last 10 seconds.
    private var ackedSamples: [(time: Double, total: Int)] = []
    private var ackedTotal = 0
    private let emptyGlobWarnings: Counter
    private var scanFailureLogged = false
    /// Folders the globs pass through that inotify did not watch at the last scan (the globs are
    /// then re-evaluated every `glob_interval`), and whether a watch failure was logged.
    private var lastUnwatched: Set<String> = []
    private var folderWatchLogged = false
    /// When a folder watch last failed other than by the folder's absence.
    private var watchFailedAt: Double?
    /// With inotify, folder events start a scan at most this often (`glob_interval` when shorter).
    static let eventScanSpacing: Double = 1
    /// Patterns matching nothing, and when that was last said: a typo in `paths:` ships nothing,
    /// so it is said at once and again every `emptyGlobRepeat` while it lasts.
    private var emptyGlobs: [String: Double] = [:]
    static let emptyGlobRepeat: Double = 600
    /// Shortest time between the starts of two read passes when caught up (inotify mode): what it
    /// adds to delivery latency, against one wake-up per written line.
    static let passInterval: Double = 0.1

    init(config: TailConfig, context: ComponentContext) {
        self.config = config
        self.name = context.name
        self.logger = context.logger
        self.stats = context.stats
        registry = CheckpointRegistry(store: CheckpointStore(dataDirectory: context.dataDirectory, input: context.name),
                                      ttl: config.checkpointTTL)
        discovery = Discovery(patterns: config.paths, exclude: config.exclude)
        let s = context.stats
        let ackLatency = s.histogram("ack_latency", "time from reading a batch to every output having it safe (delivered, or written to a disk buffer)",
                                     buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300])
        tracker = AckTracker(latency: { ackLatency.observe(seconds: $0) })
        checkpointErrors = s.counter("checkpoint_errors", "failed checkpoint writes (retried)")
        scans = s.counter("scans", "looks at the globs for new, rotated and deleted files (on folder events and every refresh_interval with inotify; every glob_interval when polling)")
        searchesFound = s.counter("rotated_found", "files found again by identity under a name no glob matches (rotated while not followed) and drained")
        checkpointsExpired = s.counter("checkpoints_expired", "checkpoints dropped: their file gone from its folders for a minute, or seen nowhere for checkpoint_ttl")
        scanErrors = s.counter("scan_errors", "globs or paths that could not be looked at (EMFILE, EACCES…); nothing is concluded from them")
        inotifyMode = s.gauge("inotify", "1 when inotify wakes the input, 0 when it polls")
        bytesBehind = s.gauge("bytes_behind", "bytes of the followed files not yet acknowledged (size minus checkpoint)")
        filesBehind = s.gauge("files_behind", "followed files with bytes not yet acknowledged")
        ackedRate = s.gauge("acked_bytes_per_second", "bytes of the followed files read and acknowledged per second over the last 10 seconds; status estimates the time to catch up as bytes_behind over it")
        globsEmpty = s.gauge("globs_matching_nothing", "patterns of paths that match no file at the last scan")
        foldersUnwatched = s.gauge("folders_unwatched", "folders the globs pass through that inotify could not watch at the last scan (a missing root, or the watch limit): the globs are then re-evaluated every glob_interval")
        checkpointsUnreadable = s.gauge("checkpoints_unreadable", "1 while the checkpoint file is there but cannot be read (a permission, an I/O error): no file of this input is read until it can be")
        emptyGlobWarnings = s.counter("empty_glob_warnings", "warnings that a pattern of paths matches no file (at once, then every 10 minutes while it lasts)")
    }

    /// The acknowledged bytes per second over the last 10 seconds (reading runs ahead of delivery
    /// into the outputs' queues, so progress is measured where it is safe).
    private func updateAckedRate(now: Double, acknowledged: Int) {
        ackedTotal = ackedTotal.addingSaturating(acknowledged)
        ackedSamples.append((now, ackedTotal))
        // Keep one sample at least 10 s old as the base.
        while ackedSamples.count > 2, now - ackedSamples[1].time >= 10 { ackedSamples.removeFirst() }
        guard let base = ackedSamples.first, now - base.time >= 1 else { return }
        ackedRate.set(Int(Double(ackedTotal - base.total) / (now - base.time)))
    }

    // MARK: main loop

    func run(_ control: InputControl) {
        var backend: any WatchBackend = PollBackend(sleep: { control.sleep($0) })
        if config.watch != .poll {
            var watchLimitLogged = false
            let logger = self.logger, pollInterval = config.pollInterval
            if let ino = InotifyBackend(onWatchError: { path, err in
                guard !watchLimitLogged else { return }
                watchLimitLogged = true
                logger.warning("inotify cannot watch \(path) (\(String(cString: strerror(err)))); likely fs.inotify.max_user_watches: polling such files every \(pollInterval)s")
            }) {
                backend = ino
            } else {
                logger.warning("inotify is unavailable (\(String(cString: strerror(errno)))): polling every \(config.pollInterval)s instead")
            }
        }
        // Nothing is read before the checkpoints are (an error said why, again every minute).
        var loadAttempts = 0
        while !registry.load(logger: logger, quiet: loadAttempts % 6 != 0) {
            loadAttempts += 1
            checkpointsUnreadable.set(1)
            control.sleep(CheckpointRegistry.loadRetryInterval)
            if control.isStopping { return }
        }
        if loadAttempts > 0 {
            checkpointsUnreadable.set(0)
            logger.notice("checkpoint file \(registry.path) read: input \(name) starts")
        }
        let emitter = TailEmitter(control: control)
        emitter.start()
        self.emitter = emitter
        prepare(backend: backend, sink: emitter, loadCheckpoints: false)

        var events = WatchEvents()
        let stopping = { control.isStopping }
        while !control.isStopping {
            let now = monotonicSeconds()
            let more = turn(now: now, isStopping: stopping)
            if control.isStopping { break }
            emitter.publish()
            events.reset()
            if !emitter.hasRoom {
                // Paused by backpressure: wait for room, but no longer than the next scan is due.
                emitter.waitForRoom(min(config.pollInterval, config.globInterval))
                backend.wait(timeout: 0, into: &events)
            } else if more {
                backend.wait(timeout: 0, into: &events)
            } else {
                // Files written a line at a time would wake the thread once a line: a pass starts at
                // most every `passInterval` while events come, reading what gathered meanwhile.
                let elapsed = monotonicSeconds() - now
                if backend.notifies && elapsed < Self.passInterval { control.sleep(Self.passInterval - elapsed) }
                backend.wait(timeout: config.pollInterval, into: &events)
            }
            take(events)
        }
        emitter.finish()
    }

    /// What the backend reported: changed files are read at the next turn, a folder's change
    /// starts a scan, lost events a look at every file.
    func take(_ events: WatchEvents) {
        for wd in events.files { table?.file(watch: wd)?.dirty = true }
        if events.directoryChanged { rescanRequested = true }
        if events.overflow { lastSweep = -Double.infinity }
    }

    /// Builds the reader and the file table once the checkpoints are loaded (`run`; a test gives its
    /// own backend and sink and then calls `turn`).
    func prepare(backend: any WatchBackend, sink: any BatchSink, loadCheckpoints: Bool = true) {
        if loadCheckpoints { _ = registry.load(logger: logger) }
        inotifyMode.set(backend.notifies ? 1 : 0)
        self.backend = backend
        let reader = LineReader(config: config, name: name, logger: logger, tracker: tracker, sink: sink, stats: stats)
        let table = FileTable(config: config, logger: logger, reader: reader, registry: registry, backend: backend, stats: stats)
        self.table = table
        logger.info("max_open_files: \(table.maxOpen)")
        lastSave = monotonicSeconds()
    }

    private var lastScan = -Double.infinity

    /// With inotify watching every folder the globs pass through, a new, renamed or deleted file is
    /// a folder event: scans run on those, and every `refresh_interval` as a safety net. Otherwise
    /// (polling, a folder not watched, opens waiting for a descriptor or permission, closed idle
    /// files that only a scan sees change, globs failing) every `glob_interval`.
    private func scanDue(_ now: Double, _ backend: any WatchBackend) -> Bool {
        let since = now - lastScan
        if rescanRequested && since >= min(config.globInterval, Self.eventScanSpacing) { return true }
        let eventDriven = backend.notifies && lastUnwatched.isEmpty && !scanFailureLogged
            && !(table?.needsPolledScans ?? true)
        return since >= (eventDriven ? config.refreshInterval : config.globInterval)
    }
    private var lastSweep = -Double.infinity
    private var lastHousekeeping = -Double.infinity
    private var lastSave = 0.0

    /// One turn of the loop at monotonic time `now`: scan when due, read, housekeeping, save the
    /// checkpoints when due. Returns true when a file has more to read right away.
    func turn(now: Double, isStopping: () -> Bool) -> Bool {
        guard let table, let backend else { return false }
        // Discovery runs whether or not there is room downstream: new files are pinned (opened)
        // while reading is paused.
        if scanDue(now, backend) {
            rescan(table, now: now)
            lastScan = now
            rescanRequested = false
        }
        // Safety net in inotify mode: look at every file now and then, in case an event was missed.
        let sweep = !backend.notifies || now - lastSweep >= 5
        if sweep { lastSweep = now }
        var more = false
        let reader = table.reader
        for f in table.ordered {
            if isStopping() || !reader.hasRoom { break }
            if sweep || f.dirty || f.watch == nil {
                f.dirty = false
                if table.read(f, now: now, isStopping: isStopping) {
                    f.dirty = true
                    more = true
                }
            }
        }
        // A pass over every file: at most ten times a second, however busy the loop is.
        if now - lastHousekeeping >= 0.1 {
            table.housekeeping(now: now, isStopping: isStopping)
            registry.releaseRetired(tracker) { table.files[$0] != nil }
            lastHousekeeping = now
        }
        // A file opened or closed is saved at once (at most every 100 ms): a crash right after
        // must not forget a file that is then rotated away while the agent is down.
        if now - lastSave >= config.checkpointInterval || (registry.changed && now - lastSave >= 0.1) {
            saveCheckpoints(table)
            let behind = table.behind()
            bytesBehind.set(behind.bytes)
            filesBehind.set(behind.files)
            updateAckedRate(now: now, acknowledged: behind.acknowledged)
            lastSave = now
        }
        return more
    }

    func finish() {
        guard let table else { return }
        registry.releaseRetired(tracker) { table.files[$0] != nil }
        saveCheckpoints(table, force: true)
    }

    // MARK: discovery

    private func noteEmptyGlobs(_ empty: [String], now: Double) {
        let current = Set(empty)
        for pattern in emptyGlobs.keys where !current.contains(pattern) {
            emptyGlobs[pattern] = nil
            logger.info("input \(name): paths: \(pattern) matches files again")
        }
        for pattern in empty {
            if let last = emptyGlobs[pattern], now - last < Self.emptyGlobRepeat { continue }
            emptyGlobs[pattern] = now
            emptyGlobWarnings.add()
            logger.warning("input \(name): paths: \(pattern) matches no file; nothing is read from it until one appears (said again every 10 minutes while it matches nothing)")
        }
        globsEmpty.set(current.count)
    }

    private func rescan(_ table: FileTable, now: Double) {
        scans.add()
        var unwatched: Set<String> = []
        // After a watch failed (the watch limit), scans poll every glob_interval: the folders are
        // tried again every refresh_interval only, not at each of those scans.
        let retryWatches = watchFailedAt.map { now - $0 >= config.refreshInterval } ?? true
        if let backend, backend.notifies, !retryWatches {
            unwatched = lastUnwatched
        } else if let backend, backend.notifies {
            watchFailedAt = nil
            let (dirs, roots) = discovery.watchDirectories()
            for dir in dirs {
                guard let err = backend.watchDirectory(dir) else { continue }
                // A folder gone since the glob saw it is an event on its parent; a missing root is
                // not (its parent is not watched): found by polling.
                if err == ENOENT && !roots.contains(dir) { continue }
                unwatched.insert(dir)
                if err != ENOENT {
                    folderNotWatched(dir, err)
                    watchFailedAt = now
                }
            }
        }
        let (matched, failures, empty) = discovery.scan()
        noteEmptyGlobs(empty, now: now)
        if !failures.isEmpty {
            scanErrors.add(failures.count)
            if !scanFailureLogged {
                scanFailureLogged = true
                let (what, err) = failures[0]
                logger.warning("cannot look at \(what): \(String(cString: strerror(err))) (\(failures.count) failure(s) in this scan); files it hides are found at a later scan, followed files are unaffected (logged once)")
            }
            if failures.contains(where: { $0.1 == EMFILE || $0.1 == ENFILE }) { table.shortOfDescriptors() }
        } else {
            scanFailureLogged = false
        }
        let first = startupKeys == nil
        if first { startupKeys = Set(matched.keys) }
        for found in matched.values.sorted(by: { $0.path < $1.path }) where table.files[found.key] == nil {
            if registry.parked[found.key] != nil {
                if registry.seen(found, matchedByGlob: true) { table.open(found, startAtEnd: false) }
            } else if registry.isRetired(found.key, at: found.path) {
                // Closed with records in flight (a rotated file matched by a glob such as `*.log.*`):
                // opened as new it would be read again from 0. Parked once they complete. A new file
                // that took the inode of a deleted one is opened at once: skipped until those records
                // complete (an outage can last hours), it would be lost if it were rotated meanwhile.
                continue
            } else {
                table.open(found, startAtEnd: config.startAt == .end && startupKeys?.contains(found.key) == true)
            }
        }
        table.checkRotation(now: now, matched: matched)
        // Parked files no glob matches: look for them by identity where they were (rotated names
        // included) and drain what is left.
        for (key, cp) in registry.dueForSearch(notIn: matched, now: now) where table.files[key] == nil {
            var dirs: [String] = []
            for p in [cp.path, cp.realPath, realTarget(cp.path)].compactMap({ $0 }) {
                if let slash = p.lastIndex(of: "/") {
                    let d = String(p[..<slash])
                    if !dirs.contains(d) { dirs.append(d) }
                }
            }
            let found: FoundFile
            switch Discovery.search(key, in: dirs) {
            case .found(let f): found = f
            case .gone: registry.gone(key, now: now); continue
            case .unknown: continue
            }
            guard registry.seen(found, matchedByGlob: false), let f = table.open(found, startAtEnd: false) else { continue }
            searchesFound.add()
            logger.info("\(found.path) is \(cp.path) (rotated while not followed): reading what is left from offset \(f.readOffset)")
            table.markRotated(f, now: now)
            f.renamed(to: cp.path)  // its records keep the path they were read under (container metadata)
        }
        for (path, gone) in registry.expire(now: now) {
            checkpointsExpired.add()
            if gone {
                logger.debug("dropping the checkpoint of \(path): gone from its folder for \(Int(min(CheckpointRegistry.goneGrace, config.checkpointTTL)))s")
            } else {
                logger.info("dropping the checkpoint of \(path): not seen for checkpoint_ttl (\(Int(config.checkpointTTL))s)")
            }
        }
        table.scanDone()
        if let (dir, err) = table.takeFolderWatchFailure() {
            unwatched.insert(dir)
            folderNotWatched(dir, err)
            watchFailedAt = watchFailedAt ?? now
        }
        if unwatched.isEmpty && !lastUnwatched.isEmpty && folderWatchLogged {
            folderWatchLogged = false
            logger.notice("input \(name): inotify watches every folder of paths again: new files are found from its events, the globs re-evaluated every refresh_interval (\(config.refreshInterval)s)")
        }
        lastUnwatched = unwatched
        foldersUnwatched.set(unwatched.count)
    }

    private func folderNotWatched(_ dir: String, _ err: Int32) {
        guard !folderWatchLogged else { return }
        folderWatchLogged = true
        let hint = err == ENOSPC ? " (the inotify watch limit, fs.inotify.max_user_watches, is reached)" : ""
        logger.warning("input \(name): inotify cannot watch the folder \(dir): \(String(cString: strerror(err)))\(hint); new files are found by re-evaluating the globs every glob_interval (\(config.globInterval)s) while a folder is not watched (said once until every folder is watched again)")
    }

    /// A symlink's target now (the live file of a container), or nil.
    private func realTarget(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        let s = String(cString: p)
        return s == path ? nil : s
    }

    // MARK: checkpoints

    private func saveCheckpoints(_ table: FileTable, force: Bool = false) {
        guard tracker.takeDirty() || force || registry.changed else { return }
        if !registry.save(open: table.checkpoints(), tracker: tracker, logger: logger) { checkpointErrors.add() }
    }
}
