#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Appends blocks to the active segment: numbers their records, rolls to a new segment when one is
/// full, makes room (waits, or drops the oldest segments), and retries failed writes without ever
/// leaving half a block behind.
///
/// Lock order: `lock` (this type's, held for a whole append so that the blocks of one batch stay
/// together and numbers follow file order) → cursor → ledger. Disk writes happen outside the ledger lock.
/// Why the Sendable conformance is unchecked: every `var` is touched only inside `lock.withLock`, held for a whole append
/// (disk writes included) so a batch's blocks stay together; the other stored properties are `let`s.
final class RingWriter: @unchecked Sendable {
    private let io: any RingStorage
    private let ledger: RingLedger
    private let cursor: RingCursor
    private let options: DiskRingOptions
    private let counters: RingCounters
    private let log: @Sendable (String) -> Void

    private let lock = ConditionLock()
    private var file: RingFile
    private var id: UInt64
    private var size: Int
    /// A failed write may have left bytes after `size`; cut them before writing again.
    private var needsTruncate = false
    private var lastFullLog = -Double.infinity

    init(io: any RingStorage, ledger: RingLedger, cursor: RingCursor, options: DiskRingOptions, counters: RingCounters,
         active: (file: RingFile, id: UInt64, size: Int), log: @escaping @Sendable (String) -> Void) {
        self.io = io
        self.ledger = ledger
        self.cursor = cursor
        self.options = options
        self.counters = counters
        self.log = log
        self.file = active.file
        self.id = active.id
        self.size = active.size
    }

    deinit { io.close(file) }

    /// See `DiskRing.append`. `handled`: the batch's records that are in the ring (or were counted as
    /// dropped) when it returns, also when it returns false.
    func append(_ batch: EncodedBatch, handled: inout Int) -> Bool {
        var blocks: [(bytes: [UInt8], records: Int, plain: Int)] = []
        handled = 0
        for run in BlockCodec.runs(batch, maxPayload: options.segmentBytes - BlockHeader.size) {
            let size = BlockCodec.plainLength(batch, run)
            if size > BlockHeader.maxPayload {
                // Only a lone record can get here; it could never be read back, so it is not stored.
                counters.dropped.add(run.count)
                handled += run.count
                log("dropped a record of \(size) bytes: larger than the largest block (\(BlockHeader.maxPayload) bytes)")
                continue
            }
            blocks.append((BlockCodec.encode(batch, run, compress: options.compress), run.count, size))
        }
        var written = 0
        defer { handled += written }
        return lock.withLock {
            var fullCounted = false
            for i in blocks.indices {
                guard writeBlock(&blocks[i].bytes, records: blocks[i].records, plain: blocks[i].plain,
                                 fullCounted: &fullCounted) else { return false }
                written += blocks[i].records
            }
            return true
        }
    }

    /// Recreates the active segment if its name is gone; see `relinkActive`. Does nothing when an
    /// append holds the writer (it checks after each block itself): callers such as the reader may be
    /// what that append waits for.
    @discardableResult
    func repairIfUnlinked() -> Bool {
        lock.withLockIfFree {
            guard !io.isLinked(file) else { return false }
            if let failure = relinkActive(length: size) {
                log("\(failure); will retry")
                return false
            }
            return true
        } ?? false
    }

    /// fsyncs the active segment (shutdown).
    func syncActive() {
        lock.withLock {
            do { try io.sync(file) } catch { log("fsync of \(io.path(SegmentName.make(id))) at shutdown failed: \(error)") }
        }
    }

    // MARK: Under `lock`

    /// Writes one block, rolling over and making room first. False if shut down before it was written.
    private func writeBlock(_ block: inout [UInt8], records: Int, plain: Int, fullCounted: inout Bool) -> Bool {
        var failures = 0
        while true {
            if ledger.withState({ $0.shuttingDown }) { return false }
            if size > 0 && size + block.count > options.segmentBytes {
                if let failure = roll() {
                    guard retryAfter(failure, failures: &failures) else { return false }
                    continue
                }
            }
            guard makeRoom(for: block.count, fullCounted: &fullCounted) else { return false }
            do {
                if needsTruncate {
                    try io.truncate(file, to: size)
                    needsTruncate = false
                }
            } catch {
                guard retryAfter(error, failures: &failures) else { return false }
                continue
            }
            let seq = ledger.withState { $0.nextSeq }
            block.withUnsafeMutableBytes { BlockHeader.setFirstSeq(seq, in: $0) }
            do {
                try io.write(file, bytes: block, at: size)
                if options.fsync == .always { try io.sync(file) }
            } catch {
                // Never leave half a block: cut back to the last whole one before retrying.
                do { try io.truncate(file, to: size) } catch { needsTruncate = true }
                guard retryAfter(POSIXFailure("\(error.operation) \(io.path(SegmentName.make(id)))", code: error.code),
                                 failures: &failures) else { return false }
                continue
            }
            // Checked before the block counts as written: a block in a file without a name would be
            // acknowledged, checkpointed upstream, and gone at the next start.
            if !io.isLinked(file), let failure = relinkActive(length: size + block.count) {
                guard retryAfter(failure, failures: &failures) else { return false }
                continue
            }
            if failures > 0 { log("writing to \(io.path(SegmentName.make(id))) works again after \(failures) failed attempts") }
            size += block.count
            ledger.withState { s in
                s.segments[s.segments.count - 1].size += block.count
                s.nextSeq = seq.addingSaturating(UInt64(records))
                s.writtenPlain = s.writtenPlain.addingSaturating(UInt64(plain))
                s.writeGen &+= 1
                counters.update(s)
                if s.writeWakesReader { ledger.broadcast() }
            }
            return true
        }
    }

    /// Counts and logs (on the first failure only) a failed write, then waits before the next attempt
    /// (50 ms doubling to 2 s). False if shut down meanwhile, or at once when the agent is stopping
    /// (`DiskRing.takeWhatIsQueued`): a full disk must not hold the stop up.
    private func retryAfter(_ failure: POSIXFailure, failures: inout Int) -> Bool {
        failures += 1
        counters.writeErrors.add()
        if ledger.withState({ $0.stopAllowance != nil }) {
            log("\(failure); stopping: what is not written is read again at the next start")
            return false
        }
        if failures == 1 { log("\(failure); retrying until it succeeds (inputs wait meanwhile)") }
        let delay = min(0.05 * Double(1 << min(failures - 1, 6)), 2.0)
        return ledger.sleep(until: monotonicSeconds() + delay)
    }

    /// Seals the active segment (fsynced unless `.never`) and starts the next one.
    private func roll() -> POSIXFailure? {
        // Sealing a segment whose name is gone would close the last handle to its records.
        if !io.isLinked(file), let failure = relinkActive(length: size) { return failure }
        guard id < UInt64.max else {
            return POSIXFailure("starting a segment after \(io.path(SegmentName.make(id))): segment numbers are used up "
                                + "(move the directory aside to start an empty buffer)", code: EOVERFLOW)
        }
        let next = id + 1
        let fresh: RingFile
        do {
            if options.fsync != .never { try io.sync(file) }
            fresh = try io.open(SegmentName.make(next), create: true)
        } catch {
            return POSIXFailure("\(error.operation) (starting \(io.path(SegmentName.make(next))))", code: error.code)
        }
        // The new name must survive a power failure before blocks in it are acknowledged.
        if options.fsync != .never { io.syncDirectory() }
        let deletable: Bool = ledger.withState { s in
            s.segments.append(RingLedgerState.Segment(id: next, size: 0, firstSeq: s.nextSeq))
            s.activeFile = fresh
            return s.firstSegmentDeletable(before: s.commitPos)
        }
        io.close(file)
        file = fresh
        id = next
        size = 0
        needsTruncate = false
        // The sealed segment may already be wholly committed: only now can it be deleted.
        if deletable { cursor.persistAndCollect(durable: false) }
        return nil
    }

    /// The active segment's name is gone: its directory was deleted while the ring ran. Makes the
    /// directory again and the segment under the same name, holding its first `length` bytes (still
    /// readable through the open handle), so that nothing acknowledged from it is lost. Sealed segments
    /// deleted with it are gone; the reader counts their records as lost (the gap in record numbers).
    /// Under `lock`.
    private func relinkActive(length: Int) -> POSIXFailure? {
        let name = SegmentName.make(id)
        let fresh: RingFile
        do {
            try io.prepareDirectory()
            fresh = try io.open(name, create: true)
        } catch {
            return POSIXFailure("\(error.operation) (recreating \(io.path(name)), deleted while in use)", code: error.code)
        }
        var chunk = [UInt8](repeating: 0, count: min(max(length, 1), 1 << 20))
        var at = 0
        while at < length {
            let n = min(chunk.count, length - at)
            let outcome = chunk.withUnsafeMutableBytes { io.read(file, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), at: at) }
            var failure: POSIXFailure?
            switch outcome {
            case .ok:
                do { try io.write(fresh, bytes: Array(chunk[0..<n]), at: at) } catch { failure = error }
            case .eof:
                failure = POSIXFailure("read (copying \(io.path(name)), deleted while in use): the file is short", code: EIO)
            case .failed(let code):
                failure = POSIXFailure("read (copying \(io.path(name)), deleted while in use)", code: code)
            }
            if let failure {
                io.close(fresh)
                return failure
            }
            at += n
        }
        if options.fsync != .never {
            do { try io.sync(fresh) } catch {
                io.close(fresh)
                return error
            }
            io.syncDirectory()
        }
        io.close(file)
        file = fresh
        needsTruncate = false
        ledger.withState { s in
            s.activeFile = fresh
            s.recreatedSegment = id
            s.recreations &+= 1
        }
        counters.writeErrors.add()
        log("\(io.path(name)) was deleted while in use (the buffer directory removed?): recreated it with its "
            + "\(length) bytes; records of older segments deleted with it are counted as lost (buffer_corrupt_records)")
        return nil
    }

    /// Waits (`.block`) or drops oldest segments (`.drop_oldest`) until `bytes` more fit under maxBytes.
    /// A block always fits once only the active segment is left: segmentBytes <= maxBytes, and the one
    /// exception (a lone record larger than a segment) is admitted into an otherwise empty ring.
    private func makeRoom(for bytes: Int, fullCounted: inout Bool) -> Bool {
        while true {
            enum Step { case fits, shutdown, full, waited, dropped([UInt64], records: Int) }
            var waited = false
            let step: Step = ledger.withStateWaiting { s -> LockStep<Step> in
                if s.shuttingDown { return .done(.shutdown) }
                let disk = s.diskBytes
                if disk + bytes <= options.maxBytes || disk == s.segments[s.segments.count - 1].size { return .done(.fits) }
                if let allowance = s.stopAllowance, options.whenFull == .block {
                    // Stopping: no wait (a full ring empties only as fast as the destination takes records).
                    return .done(disk.addingSaturating(bytes) <= options.maxBytes.addingSaturating(allowance) ? .fits : .shutdown)
                }
                if options.whenFull == .block {
                    // Count and log before the first wait; the check above runs under the lock before
                    // every wait, so a commit's wake-up cannot be missed.
                    if !fullCounted { return .done(.full) }
                    if waited { return .done(.waited) }
                    waited = true
                    return .wait(seconds: 1)
                }
                let d = s.dropOldest(toFit: bytes, maxBytes: options.maxBytes)
                counters.update(s)
                return .done(.dropped(d.victims, records: d.dropped))
            }
            switch step {
            case .fits: return true
            case .shutdown: return false
            case .full:
                noteFull(&fullCounted) { "full (\(self.options.maxBytes) bytes): inputs wait until the output catches up" }
            case .waited:
                // Retries a cursor write that failed (a full disk): a pending deletion may free room.
                cursor.persistAndCollect(durable: false)
                if !io.isLinked(file), let failure = relinkActive(length: size) { log("\(failure); will retry") }
            case .dropped(let victims, let lost):
                counters.dropped.add(lost)
                noteFull(&fullCounted) {
                    "full (\(self.options.maxBytes) bytes): dropped \(lost) undelivered records by deleting "
                        + "\(victims.count) oldest segment(s) (when_full: drop_oldest)"
                }
                // The cursor moves past the dropped segments before they go, so a restart never counts
                // their records again (as damage).
                cursor.persistAndCollect(durable: true)
                for v in victims {
                    do { try io.remove(SegmentName.make(v)) } catch { log("cannot delete \(io.path(SegmentName.make(v))): \(error)") }
                }
            }
        }
    }

    /// Counts a full-ring event once per append; logs at most once a minute.
    private func noteFull(_ counted: inout Bool, _ message: () -> String) {
        guard !counted else { return }
        counted = true
        counters.fullEvents.add()
        let now = monotonicSeconds()
        if now - lastFullLog >= 60 {
            lastFullLog = now
            log(message())
        }
    }
}
