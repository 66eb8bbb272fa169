#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Persists the delivered position (the `cursor` file) and deletes segments wholly before it.
///
/// Every commit overwrites one 64-byte slot of the cursor file in place (`CursorFile`): a positional
/// write into the page cache, so a kill -9 replays only what was read and not yet committed. Whether
/// the write is also fsynced follows the ring's fsync policy (`.always`: at once; `.interval`: by the
/// flusher; `.never`: at shutdown). Writing in place never needs a new disk block, so commits keep
/// working (and freeing space) on a full disk.
///
/// Lock order: `lock` (this type's) → ledger. The writer takes it while holding its own lock.
/// A segment is deleted only after it left the ledger and after a cursor at or past its end was written,
/// and after that cursor was fsynced, so a crash in between leaves a segment that recovery finds wholly
/// delivered and deletes, and the cursor on disk is never older than a deleted segment.
/// Why the Sendable conformance is unchecked: every `var` is read and written only inside `lock.withLock`; kept so (not a
/// `Locked`) because the cursor write and its fsync happen under that lock, in the documented lock order.
final class RingCursor: @unchecked Sendable {
    private let io: any RingStorage
    private let ledger: RingLedger
    private let log: @Sendable (String) -> Void
    private let fsync: FsyncPolicy
    static let fileName = "cursor"

    private let lock = ConditionLock()
    private var file: RingFile?
    private var generation: UInt64
    /// The last position written (durably or not), and whether an fsync is owed.
    private var written: CursorRecord?
    private var dirty = false
    private var failing = false

    init(io: any RingStorage, ledger: RingLedger, recovered: CursorRecord?, fsync: FsyncPolicy,
         log: @escaping @Sendable (String) -> Void) {
        self.io = io
        self.fsync = fsync
        self.ledger = ledger
        self.log = log
        self.written = recovered
        self.generation = recovered?.generation ?? 0
    }

    deinit { if let file { io.close(file) } }

    /// The position last written to the cursor file.
    var persisted: CursorRecord? { lock.withLock { written } }

    /// Writes the commit position if it moved (fsynced when `durable`), then deletes the segments wholly
    /// before what was written.
    func persistAndCollect(durable: Bool) {
        lock.withLock {
            let (position, seq) = ledger.withState { ($0.commitPos, $0.commitSeq) }
            if written.map({ position > $0.position || ($0.position == position && seq > $0.seq) }) ?? true {
                if write(CursorRecord(position: position, seq: seq, generation: generation + 1)) {
                    ledger.withState { $0.lastPersist = monotonicSeconds() }
                }
            }
            if durable { syncLocked() }
            collectLocked()
        }
    }

    /// Opens (creating) the cursor file at start-up, so that commits only ever overwrite a slot.
    /// A failure is logged; the next commit tries again.
    func prepare() {
        lock.withLock {
            guard file == nil else { return }
            do { file = try open() } catch { report("\(error)") }
        }
    }

    /// fsyncs the cursor file if a write since the last fsync is pending (the interval flusher).
    func syncIfDirty() { lock.withLock { syncLocked() } }

    private func syncLocked() {
        guard dirty, let file else { return }
        do {
            try io.sync(file)
            dirty = false
        } catch {
            report("\(error)")
        }
    }

    private func collectLocked() {
        guard let done = written?.position, ledger.withState({ $0.firstSegmentDeletable(before: done) }) else { return }
        // Recovery trusts the cursor's record number because no segment goes before a cursor past it is
        // durable: one fsync per deleted segment. Not durable yet: the next commit tries again.
        syncLocked()
        if dirty { return }
        let victims: [UInt64] = ledger.withState { s in
            var victims: [UInt64] = []
            while s.firstSegmentDeletable(before: done) { victims.append(s.segments.removeFirst().id) }
            ledger.broadcast()
            return victims
        }
        for id in victims {
            do { try io.remove(SegmentName.make(id)) } catch { log("cannot delete delivered segment: \(error)") }
        }
    }

    /// Writes one slot (opening or creating the file first if needed). Under `lock`.
    private func write(_ record: CursorRecord) -> Bool {
        do {
            var f: RingFile
            if let file {
                f = file
            } else {
                f = try open()
                file = f
            }
            let bytes = CursorFile.encodeSlot(record)
            try io.write(f, bytes: bytes, at: CursorFile.slotOffset(record.generation))
            if !io.isLinked(f) {
                // Deleted behind the ring's back (the buffer directory removed): a position written
                // only to the nameless file would be forgotten at the next start.
                io.close(f)
                file = nil
                try io.prepareDirectory()
                f = try open()
                file = f
                try io.write(f, bytes: bytes, at: CursorFile.slotOffset(record.generation))
                log("\(io.path(Self.fileName)) was deleted while in use: recreated it")
            }
            generation = record.generation
            written = record
            dirty = true
            if failing { log("read position persisted again to \(io.path(Self.fileName))") }
            failing = false
            return true
        } catch {
            report("\(error)")
            return false
        }
    }

    /// Opens the cursor file, creating it at its full size with both slots valid (so that later writes
    /// never grow it) when it is missing or of another format.
    private func open() throws(POSIXFailure) -> RingFile {
        if let f = try? io.open(Self.fileName, create: false) {
            if (try? io.size(f)) == CursorFile.fileSize { return f }
            io.close(f)
        }
        let fresh = try io.open(Self.fileName, create: true)
        // The name must outlive a power failure like the slots written into it.
        if fsync != .never { io.syncDirectory() }
        // Both slots get the last known position, so either may be overwritten next.
        let base = written ?? ledger.withState { CursorRecord(position: $0.commitPos, seq: $0.commitSeq, generation: 0) }
        for g in [generation, generation + 1] {
            var r = base
            r.generation = g
            let bytes = CursorFile.encodeSlot(r)
            try io.write(fresh, bytes: bytes, at: CursorFile.slotOffset(g))
        }
        generation += 1
        return fresh
    }

    private func report(_ failure: String) {
        if !failing {
            log("cannot persist the read position to \(io.path(Self.fileName)): \(failure); retrying "
                + "(delivered records may be sent again after a restart)")
        }
        failing = true
    }
}
