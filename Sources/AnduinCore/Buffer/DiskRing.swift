#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

// MARK: On-disk format
//
// One directory per output:
//
//   <dir>/segment-<20-digit id>.ring   append-only data files; ids count up from 1 and are never reused
//   <dir>/cursor                       the committed read position (replaced atomically)
//   <dir>/cursor.tmp                   transient, while the cursor is being replaced
//
// A segment is a sequence of blocks. A new segment starts when the next block would push the current
// one past `segmentBytes` (a block never spans segments; a single record too large for a segment gets a
// segment of its own). Block (all integers little-endian):
//
//   offset size
//        0    4  magic AD 55 49 4E
//        4    1  format version (1)
//        5    1  flags: bit 0 = payload is LZ4 (block format); other bits must be 0
//        6    2  reserved, 0
//        8    4  record count (>= 1)
//       12    4  payload length before compression
//       16    4  payload length as stored
//       20    4  CRC32C of the stored payload
//       24    4  CRC32C of bytes 0..<24
//       28    …  payload
//
// Payload before compression = the records back to back, each
//   [u32 length][u32 crc32c][u64 timestamp][u64 sourceID][i64 offset][document bytes]
// where `length` = 24 + document length and the CRC covers those `length` bytes.
//
// Cursor file (28 bytes): [u32 magic AD 55 43 52][u32 version 1][u64 segment id][i64 byte offset]
// [u32 CRC32C of the first 24 bytes]. Everything before (segment, offset) was delivered.
//
// Damage handling: a block whose header CRC fails is skipped by scanning for the next valid header (magic
// + header CRC + fits the file); a block whose payload CRC fails is skipped using its (trusted) header
// length. Both are counted (buffer_corrupt_blocks / buffer_corrupt_records) when the reader passes them.
// At start, a partial block after the last intact block of the LAST segment (a write cut short by a
// crash) is truncated.
//
// What each fsync policy can lose on power failure (kill -9 loses nothing with any policy: written
// bytes are in the page cache; at worst records after the last persisted cursor are delivered again):
//   .always       nothing `append` returned for: each block is fdatasync'ed before `append` returns and
//                 a new segment's directory entry is synced; the cursor is persisted on every commit.
//   .interval(t)  blocks written in the last ~t seconds (a background thread fsyncs the active segment
//                 every t s; a segment is fsynced when it is finished); the cursor is at most ~t s old,
//                 so up to t s of delivered records are sent again.
//   .never        whatever the kernel had not written back (Linux: typically up to ~30 s); the cursor is
//                 replaced every second without fsync. Files are still fsynced at shutdown.

public enum WhenFull: String, CaseIterable, Sendable { case block, drop_oldest }

public enum FsyncPolicy: Sendable, Equatable { case always, never, interval(Double) }

public struct DiskRingOptions: Sendable {
    /// Hard cap on the bytes of segment files on disk (the cursor file is not counted).
    public var maxBytes: Int
    /// Segment files are at most this big (except one holding a single record larger than it).
    public var segmentBytes: Int
    public var whenFull: WhenFull
    public var fsync: FsyncPolicy
    /// LZ4-compress block payloads (stored uncompressed anyway when LZ4 does not shrink them).
    public var compress: Bool

    public static let minimumSegmentBytes = 1024

    /// The defaults are the config's (`DeliveryKeys`), declared once.
    public init(maxBytes: Int = DeliveryKeys.diskMaxBytes.defaultValue, segmentBytes: Int = DeliveryKeys.segmentBytes.defaultValue,
                whenFull: WhenFull = DeliveryKeys.whenFull.defaultValue,
                fsync: FsyncPolicy = .interval(DeliveryKeys.fsyncInterval.defaultValue),
                compress: Bool = DeliveryKeys.compress.defaultValue) {
        self.maxBytes = maxBytes
        self.segmentBytes = segmentBytes
        self.whenFull = whenFull
        self.fsync = fsync
        self.compress = compress
    }

    /// Why these options cannot work, or nil. `DiskRing.init` throws with this text; the config layer
    /// can call it to report problems early.
    public var problem: String? {
        if segmentBytes < Self.minimumSegmentBytes {
            return "segment size \(segmentBytes) bytes is below the minimum of \(Self.minimumSegmentBytes)"
        }
        if segmentBytes > BlockHeader.maxPayload {
            return "segment size \(segmentBytes) bytes is above the maximum of \(BlockHeader.maxPayload)"
        }
        if segmentBytes > maxBytes {
            return "segment size (\(segmentBytes) bytes) must not exceed the buffer's max size (\(maxBytes) bytes)"
        }
        if case .interval(let t) = fsync, !(t > 0) {  // huge is fine: waits clamp (clampedSeconds)
            return "fsync interval must be a positive number of seconds, not \(t)"
        }
        return nil
    }
}

/// A position in the ring that the reader can commit: a byte offset in a segment, always at a block
/// boundary when it comes from `read`. (s, size of s) and (next segment, 0) denote the same point.
public struct RingPosition: Sendable, Comparable, Hashable, CustomStringConvertible {
    public var segment: UInt64
    public var offset: Int64

    public init(segment: UInt64, offset: Int64) {
        self.segment = segment
        self.offset = offset
    }

    public static func < (a: RingPosition, b: RingPosition) -> Bool {
        (a.segment, a.offset) < (b.segment, b.offset)
    }

    public var description: String { "\(SegmentName.make(segment))@\(offset)" }
}

/// A disk ring that cannot be opened: the directory cannot be created or written, or bad options.
public struct DiskRingError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "disk buffer \(path): \(message)" }
}

/// A bounded, crash-safe FIFO of encoded records on disk, one per output: inputs `append`, the
/// output's thread `read`s, delivers and `commit`s.
///
/// One reader is expected (the output's thread); concurrent `read` calls are serialised. Any number of
/// threads may `append`; their blocks are written one at a time.
///
/// Locks, always taken in this order: `writeLock` → `cursorLock` → `lock`, and `readLock` → `lock`.
/// Disk I/O happens outside `lock`, so a slow fsync does not stall the reader.
///
/// Invariants:
/// - `s.segments` is never empty, ids strictly increase, and the last one is the writer's active segment
///   (`w.id`, `s.activeFD`); earlier ones are sealed (never written again).
/// - Bytes `[0, size)` of every listed segment are whole blocks as written; `size` grows only after a
///   block was fully written, so the reader never sees half a block.
/// - `s.commitPos <= s.readPos <= s.readHigh`, except that `readPos` may briefly point into a segment
///   deleted by drop_oldest (normalised before use).
/// - A segment file is deleted only after it was removed from `s.segments`, and only (a) when it lies
///   wholly before the cursor already persisted, or (b) by drop_oldest. Recovery deletes segments wholly
///   before the persisted cursor, so a crash between persisting and deleting is harmless, and a cursor
///   naming a missing segment resumes at the next existing one.
/// - `s.diskBytes` = sum of segment sizes; `s.records` = sum of `uncommitted` = records in blocks after
///   `commitPos`. `s.inflight` lists the blocks read past `commitPos` in order (one entry per block), so
///   a commit can subtract exactly.
public final class DiskRing: @unchecked Sendable {
    public let directory: String
    public let options: DiskRingOptions
    private let log: @Sendable (String) -> Void
    private let cursorPath: String

    private let droppedRecords: Counter
    private let fullEvents: Counter
    private let writeErrors: Counter
    private let corruptRecords: Counter
    private let corruptBlocks: Counter
    private let bytesGauge: Gauge
    private let recordsGauge: Gauge

    private struct Segment {
        let id: UInt64
        var size: Int
        /// Records in this segment's blocks after the commit position.
        var uncommitted: Int
    }

    private struct InFlight {
        var end: RingPosition
        var records: Int
    }

    private struct Shared {
        var segments: [Segment]
        var diskBytes: Int
        var records: Int
        var commitPos: RingPosition
        var readPos: RingPosition
        /// The furthest block end ever read; commits are clamped to it.
        var readHigh: RingPosition
        var inflight: [InFlight] = []
        var inflightHead = 0
        /// Damage before this was already counted (a rewind reads it again).
        var corruptCountedUpTo: RingPosition
        var activeFD: Int32
        var writeGen: UInt64 = 0
        var syncedGen: UInt64 = 0
        var lastPersist: Double
        var shuttingDown = false
    }

    private let lock = ConditionLock()
    private var s: Shared

    private struct Writer {
        var fd: Int32
        var id: UInt64
        var size: Int
        /// A failed write may have left bytes after `size`; cut them before writing again.
        var needsTruncate = false
        var lastFullLog = -Double.infinity
    }

    private let writeLock = ConditionLock()
    private var w: Writer

    // Reader state, guarded by `readLock`. Separate properties so that buffers can be used together
    // without overlapping access to one struct.
    private let readLock = ConditionLock()
    private var readerFD: Int32 = -1
    private var readerSegment: UInt64 = 0
    private var readerScanner = SegmentScanner()
    private var readerStored: [UInt8] = []
    private var readerPlain: [UInt8] = []
    private var readerLastErrorLog = -Double.infinity

    // Guarded by `cursorLock`, which also serialises writes of the cursor file.
    private let cursorLock = ConditionLock()
    private var persisted: RingPosition?
    private var cursorFailing = false

    private let stopSignal = ConditionLock()
    private var stopped = false  // under stopSignal

    /// Opens (creating) `directory` and recovers its content; see the type's documentation.
    /// Throws only for bad options or a directory it cannot create or write.
    public init(directory: String, options: DiskRingOptions, stats: ComponentStats,
                log: @escaping @Sendable (String) -> Void) throws {
        if let problem = options.problem { throw DiskRingError(path: directory, message: problem) }
        self.directory = directory
        self.options = options
        self.cursorPath = directory + "/cursor"
        let prefix = "disk buffer \(directory): "
        let logger: @Sendable (String) -> Void = { log(prefix + $0) }
        self.log = logger
        droppedRecords = stats.counter("buffer_records_dropped", "records deleted from a full disk buffer before delivery (when_full: drop_oldest)")
        fullEvents = stats.counter("buffer_full_events", "appends that found the disk buffer full")
        writeErrors = stats.counter("buffer_write_errors", "failed writes to the disk buffer (each is retried)")
        corruptRecords = stats.counter("buffer_corrupt_records", "records skipped because their disk buffer block was damaged")
        corruptBlocks = stats.counter("buffer_corrupt_blocks", "damaged disk buffer blocks skipped")
        bytesGauge = stats.gauge("buffer_bytes", "bytes of disk buffer segment files")
        recordsGauge = stats.gauge("buffer_records", "records in the disk buffer not yet delivered")

        try Self.makeDirectory(directory)
        let rec = try Self.recover(directory: directory, options: options, log: logger)
        s = Shared(segments: rec.segments, diskBytes: rec.segments.reduce(0) { $0 + $1.size },
                   records: rec.segments.reduce(0) { $0 + $1.uncommitted },
                   commitPos: rec.commit, readPos: rec.commit, readHigh: rec.commit,
                   corruptCountedUpTo: rec.commit, activeFD: rec.fd, lastPersist: monotonicSeconds())
        w = Writer(fd: rec.fd, id: rec.segments[rec.segments.count - 1].id, size: rec.segments[rec.segments.count - 1].size)
        persisted = rec.cursor
        bytesGauge.set(s.diskBytes)
        recordsGauge.set(s.records)
        if options.fsync != .always { startFlusher() }
    }

    deinit {
        close(w.fd)
        if readerFD >= 0 { close(readerFD) }
    }

    // MARK: Public API

    /// Bytes of segment files on disk.
    public var bufferedBytes: Int { lock.withLock { s.diskBytes } }

    /// Records appended and not yet committed (exact, also after a restart: recovery counts block headers).
    public var bufferedRecords: Int { lock.withLock { s.records } }

    /// Appends a batch, normally as one block (split into several when it would not fit a segment).
    /// Returns once written (and fdatasync'ed under `.always`). While the ring is full, waits (`.block`)
    /// or deletes whole oldest segments (`.drop_oldest`, counted in buffer_records_dropped). On write
    /// errors (ENOSPC…) logs, cuts back any partial block and retries until it succeeds. Returns false
    /// only if `shutdown()` came first; blocks of the batch written before that stay in the ring.
    public func append(_ batch: EncodedBatch) -> Bool {
        if batch.isEmpty { return true }
        var blocks: [(bytes: [UInt8], records: Int)] = []
        for run in BlockCodec.runs(batch, maxPayload: options.segmentBytes - BlockHeader.size) {
            let size = BlockCodec.plainLength(batch, run)
            if size > BlockHeader.maxPayload {
                // Only a lone record can get here; it could never be read back, so it is not stored.
                droppedRecords.add(run.count)
                log("dropped a record of \(size) bytes: larger than the largest block (\(BlockHeader.maxPayload) bytes)")
                continue
            }
            blocks.append((BlockCodec.encode(batch, run, compress: options.compress), run.count))
        }
        return writeLock.withLock {
            var fullCounted = false
            for b in blocks where !writeBlock(b.bytes, records: b.records, fullCounted: &fullCounted) { return false }
            return true
        }
    }

    /// The records after the last read (not the last commit), whole blocks of one segment, up to
    /// `maxRecords` records and `maxBytes` document bytes (but always at least one block). Damaged blocks
    /// are skipped and counted. Waits up to `timeout` seconds for data; nil on timeout or shutdown.
    public func read(maxRecords: Int, maxBytes: Int, timeout: Double) -> (batch: EncodedBatch, end: RingPosition)? {
        let deadline = monotonicSeconds() + max(0, timeout)
        return readLock.withLock { readLocked(maxRecords: max(1, maxRecords), maxBytes: max(1, maxBytes), deadline: deadline) }
    }

    /// Everything before `position` was delivered. Moves only forward, and never past what was read.
    /// Persists the cursor (under `.interval(t)` at most every t s, the flusher catches up; immediately
    /// when a segment can be deleted, and after shutdown) and then deletes the segments wholly before it.
    public func commit(_ position: RingPosition) {
        let plan: (collect: Bool, closing: Bool)? = lock.withLock {
            let p = min(position, s.readHigh)
            guard p > s.commitPos else { return nil }
            s.commitPos = p
            if s.readPos < p { s.readPos = p }
            while s.inflightHead < s.inflight.count && s.inflight[s.inflightHead].end <= p {
                let e = s.inflight[s.inflightHead]
                s.inflightHead += 1
                if let i = segmentIndex(e.end.segment) {
                    s.segments[i].uncommitted -= e.records
                    s.records -= e.records
                }
            }
            if s.inflightHead > 256 && s.inflightHead * 2 > s.inflight.count {
                s.inflight.removeFirst(s.inflightHead)
                s.inflightHead = 0
            }
            updateGauges()
            return (firstSegmentDeletable(before: p), s.shuttingDown)
        }
        guard let plan else { return }
        let due: Bool
        switch options.fsync {
        case .always: due = true
        case .never: due = false
        case .interval(let t): due = lock.withLock { monotonicSeconds() - s.lastPersist >= t }
        }
        if plan.collect || plan.closing || due { persistAndCollect(durable: plan.closing) }
    }

    /// Goes back to the last committed position: the next `read` returns the records after it again.
    public func rewind() {
        lock.withLock {
            s.readPos = s.commitPos
            lock.broadcast()
        }
    }

    /// Wakes waiting `append` (they return false) and `read` (nil) calls, waits for a block being written,
    /// fsyncs the active segment and persists the cursor. Commits after this persist at once.
    public func shutdown() {
        lock.withLock {
            s.shuttingDown = true
            lock.broadcast()
        }
        stopSignal.withLock {
            stopped = true
            stopSignal.broadcast()
        }
        writeLock.withLock {
            if !syncData(w.fd) { log("fsync of \(segmentPath(w.id)) at shutdown failed: \(errnoText(errno))") }
        }
        persistAndCollect(durable: true)
    }

    // MARK: Writing (under writeLock)

    /// Writes one block, rolling over and making room first. False if shut down before it was written.
    private func writeBlock(_ block: [UInt8], records: Int, fullCounted: inout Bool) -> Bool {
        var failures = 0
        while true {
            if lock.withLock({ s.shuttingDown }) { return false }
            if w.size > 0 && w.size + block.count > options.segmentBytes {
                if let failure = roll() {
                    guard retryAfter(failure, failures: &failures) else { return false }
                    continue
                }
            }
            guard makeRoom(for: block.count, fullCounted: &fullCounted) else { return false }
            if w.needsTruncate {
                if ftruncate(w.fd, off_t(w.size)) != 0 {
                    guard retryAfter(POSIXFailure("truncate \(segmentPath(w.id))"), failures: &failures) else { return false }
                    continue
                }
                w.needsTruncate = false
            }
            var failure: POSIXFailure?
            if !block.withUnsafeBytes({ pwriteAll(w.fd, $0, at: w.size) }) {
                failure = POSIXFailure("write \(segmentPath(w.id))")
            } else if options.fsync == .always && !syncData(w.fd) {
                failure = POSIXFailure("fsync \(segmentPath(w.id))")
            }
            if let failure {
                // Never leave half a block: cut back to the last whole one before retrying.
                if ftruncate(w.fd, off_t(w.size)) != 0 { w.needsTruncate = true }
                guard retryAfter(failure, failures: &failures) else { return false }
                continue
            }
            if failures > 0 { log("writing to \(segmentPath(w.id)) works again after \(failures) failed attempts") }
            w.size += block.count
            lock.withLock {
                let i = s.segments.count - 1
                s.segments[i].size += block.count
                s.segments[i].uncommitted += records
                s.records += records
                s.diskBytes += block.count
                s.writeGen &+= 1
                updateGauges()
                lock.broadcast()
            }
            return true
        }
    }

    /// Counts and logs (on the first failure only) a failed write, then waits before the next attempt.
    /// False if shut down meanwhile.
    private func retryAfter(_ failure: POSIXFailure, failures: inout Int) -> Bool {
        failures += 1
        writeErrors.add()
        if failures == 1 { log("\(failure); retrying until it succeeds (inputs wait meanwhile)") }
        let delay = min(0.05 * Double(1 << min(failures - 1, 6)), 2.0)
        return lock.withLock {
            let deadline = monotonicSeconds() + delay
            while !s.shuttingDown {
                let left = deadline - monotonicSeconds()
                if left <= 0 { break }
                lock.wait(seconds: left)
            }
            return !s.shuttingDown
        }
    }

    /// Seals the active segment (fsynced unless `.never`) and starts the next one.
    private func roll() -> POSIXFailure? {
        if options.fsync != .never && !syncData(w.fd) { return POSIXFailure("fsync \(segmentPath(w.id))") }
        let id = w.id + 1
        let path = segmentPath(id)
        let fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return POSIXFailure("create \(path)") }
        // The new name must survive a power failure before blocks in it are acknowledged.
        if options.fsync != .never { syncDirectory(directory) }
        let old = w.fd
        lock.withLock {
            s.segments.append(Segment(id: id, size: 0, uncommitted: 0))
            s.activeFD = fd
            updateGauges()
        }
        close(old)
        w = Writer(fd: fd, id: id, size: 0, needsTruncate: false, lastFullLog: w.lastFullLog)
        // The sealed segment may already be wholly committed: only now can it be deleted.
        if lock.withLock({ firstSegmentDeletable(before: s.commitPos) }) { persistAndCollect(durable: false) }
        return nil
    }

    /// Waits (`.block`) or drops oldest segments (`.drop_oldest`) until `bytes` more fit under maxBytes.
    /// A block always fits once only the active segment is left: segmentBytes <= maxBytes, and the one
    /// exception (a lone record larger than a segment) is admitted into an otherwise empty ring.
    private func makeRoom(for bytes: Int, fullCounted: inout Bool) -> Bool {
        while true {
            enum Step { case fits, shutdown, full, waited, dropped([UInt64], records: Int) }
            let step: Step = lock.withLock {
                if s.shuttingDown { return .shutdown }
                let active = s.segments[s.segments.count - 1].size
                if s.diskBytes + bytes <= options.maxBytes || s.diskBytes == active { return .fits }
                if options.whenFull == .block {
                    // Count and log before the first wait; the check above runs under the lock before
                    // every wait, so a commit's wake-up cannot be missed.
                    if !fullCounted { return .full }
                    lock.wait(seconds: 1)
                    return .waited
                }
                var victims: [UInt64] = []
                var lost = 0
                while s.segments.count > 1 && s.diskBytes + bytes > options.maxBytes {
                    let v = s.segments.removeFirst()
                    victims.append(v.id)
                    s.diskBytes -= v.size
                    s.records -= v.uncommitted
                    // Blocks already read are in a delivery thread's hands and will still be sent:
                    // not dropped.
                    var inFlight = 0
                    while s.inflightHead < s.inflight.count && s.inflight[s.inflightHead].end.segment <= v.id {
                        inFlight += s.inflight[s.inflightHead].records
                        s.inflightHead += 1
                    }
                    lost += max(0, v.uncommitted - inFlight)
                }
                let floor = RingPosition(segment: s.segments[0].id, offset: 0)
                s.commitPos = max(s.commitPos, floor)
                s.readPos = max(s.readPos, floor)
                s.readHigh = max(s.readHigh, floor)
                updateGauges()
                return .dropped(victims, records: lost)
            }
            switch step {
            case .fits: return true
            case .shutdown: return false
            case .full:
                noteFull(&fullCounted) { "full (\(self.options.maxBytes) bytes): inputs wait until the output catches up" }
            case .waited:
                // Retries a cursor write that failed (a full disk): a pending deletion may free room.
                persistAndCollect(durable: false)
            case .dropped(let victims, let lost):
                droppedRecords.add(lost)
                noteFull(&fullCounted) {
                    "full (\(self.options.maxBytes) bytes): dropped \(lost) undelivered records by deleting "
                        + "\(victims.count) oldest segment(s) (when_full: drop_oldest)"
                }
                for id in victims where unlink(segmentPath(id)) != 0 && errno != ENOENT {
                    log("cannot delete \(segmentPath(id)): \(errnoText(errno))")
                }
            }
        }
    }

    /// Counts a full-ring event once per append; logs at most once a minute.
    private func noteFull(_ counted: inout Bool, _ message: () -> String) {
        guard !counted else { return }
        counted = true
        fullEvents.add()
        let now = monotonicSeconds()
        if now - w.lastFullLog >= 60 {
            w.lastFullLog = now
            log(message())
        }
    }

    // MARK: Reading (under readLock)

    private struct Span {
        var segment: UInt64
        var start: Int
        var end: Int
        var sealed: Bool
    }

    private struct Damage {
        var at: RingPosition
        var records: Int
        var reason: String
    }

    private func readLocked(maxRecords: Int, maxBytes: Int, deadline: Double) -> (batch: EncodedBatch, end: RingPosition)? {
        while true {
            guard let span = waitForData(until: deadline) else { return nil }
            let path = segmentPath(span.segment)
            if readerFD < 0 || readerSegment != span.segment {
                if readerFD >= 0 { close(readerFD) }
                readerFD = open(path, O_RDONLY | O_CLOEXEC)
                readerSegment = span.segment
                if readerFD < 0 {
                    let err = errno
                    if skipUnreadable(span, error: err) { continue }
                    return waitAfterError("cannot open \(path): \(errnoText(err))", until: deadline)
                }
            }
            let fd = readerFD
            var batch = EncodedBatch()
            var pos = span.start
            var blocks: [InFlight] = []
            var damage: [Damage] = []
            var ioError: Int32 = 0
            scan: while pos < span.end {
                switch readerScanner.probe(fd: fd, at: pos, end: span.end) {
                case .failed(let e):
                    ioError = e
                    break scan
                case .garbage(let next):
                    damage.append(Damage(at: RingPosition(segment: span.segment, offset: Int64(pos)), records: 0,
                                         reason: "\(next - pos) bytes without a valid block header"))
                    pos = next
                case .block(let h):
                    if !batch.isEmpty && (batch.count + h.recordCount > maxRecords
                                          || batch.documents.count + h.plainLength > maxBytes) { break scan }
                    let n = h.storedLength
                    if readerStored.count < n { readerStored = [UInt8](repeating: 0, count: n) }
                    let outcome = readerStored.withUnsafeMutableBytes {
                        preadFully(fd, UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), at: pos + BlockHeader.size)
                    }
                    if case .failed(let e) = outcome {
                        ioError = e
                        break scan
                    }
                    let result: BlockCodec.Decoded = outcome == .eof
                        ? .corrupt(decoded: 0, reason: "the file ends inside the block")
                        : readerStored.withUnsafeBytes {
                            BlockCodec.decode(h, stored: UnsafeRawBufferPointer(rebasing: $0[0..<n]), scratch: &readerPlain, into: &batch)
                        }
                    if case .corrupt(let decoded, let reason) = result {
                        damage.append(Damage(at: RingPosition(segment: span.segment, offset: Int64(pos)),
                                             records: h.recordCount - decoded, reason: reason))
                    }
                    pos += h.blockLength
                    blocks.append(InFlight(end: RingPosition(segment: span.segment, offset: Int64(pos)), records: h.recordCount))
                }
            }
            if ioError != 0 && pos == span.start {
                return waitAfterError("reading \(path) at offset \(pos) failed: \(errnoText(ioError))", until: deadline)
            }
            let end = RingPosition(segment: span.segment, offset: Int64(pos))
            let fresh: [Damage] = lock.withLock {
                if s.readPos == RingPosition(segment: span.segment, offset: Int64(span.start)) { s.readPos = end }
                for b in blocks where b.end > s.readHigh {
                    s.inflight.append(b)
                    s.readHigh = b.end
                }
                s.readHigh = max(s.readHigh, end)
                let fresh = damage.filter { $0.at >= s.corruptCountedUpTo }
                s.corruptCountedUpTo = max(s.corruptCountedUpTo, end)
                return fresh
            }
            for d in fresh {
                corruptBlocks.add()
                corruptRecords.add(d.records)
                log("skipped a damaged block in \(path) at offset \(d.at.offset) (\(d.reason)); \(d.records) records lost")
            }
            if !batch.isEmpty { return (batch, end) }
        }
    }

    /// Waits until there is something to read after `readPos`; the readable range of its segment.
    private func waitForData(until deadline: Double) -> Span? {
        lock.withLock {
            while true {
                if s.shuttingDown { return nil }
                normalizeReadPosition()
                if let i = segmentIndex(s.readPos.segment), Int(s.readPos.offset) < s.segments[i].size {
                    return Span(segment: s.readPos.segment, start: Int(s.readPos.offset), end: s.segments[i].size,
                                sealed: i < s.segments.count - 1)
                }
                let left = deadline - monotonicSeconds()
                if left <= 0 { return nil }
                lock.wait(seconds: left)
            }
        }
    }

    /// Moves `readPos` off deleted segments and off the end of sealed ones. Under `lock`.
    private func normalizeReadPosition() {
        while let first = s.segments.first {
            if s.readPos.segment < first.id {
                s.readPos = RingPosition(segment: first.id, offset: 0)
            }
            guard let i = segmentIndex(s.readPos.segment) else {
                if let next = s.segments.first(where: { $0.id > s.readPos.segment }) {
                    s.readPos = RingPosition(segment: next.id, offset: 0)
                }
                return
            }
            guard i < s.segments.count - 1, Int(s.readPos.offset) >= s.segments[i].size else { return }
            s.readPos = RingPosition(segment: s.segments[i + 1].id, offset: 0)
        }
    }

    /// A sealed segment that cannot be opened is skipped (counted as damaged) so that one bad file does
    /// not stop delivery for good. False for the active segment: the caller waits and retries.
    private func skipUnreadable(_ span: Span, error: Int32) -> Bool {
        enum Outcome { case vanished, skipped, active }
        let outcome: Outcome = lock.withLock {
            guard segmentIndex(span.segment) != nil else { return .vanished }  // deleted meanwhile
            guard span.sealed else { return .active }
            if s.readPos == RingPosition(segment: span.segment, offset: Int64(span.start)) {
                s.readPos = RingPosition(segment: span.segment, offset: Int64(span.end))
            }
            return .skipped
        }
        switch outcome {
        case .vanished: return true
        case .active: return false
        case .skipped:
            corruptBlocks.add()
            log("cannot open \(segmentPath(span.segment)) (\(errnoText(error))): skipping its \(span.end - span.start) bytes")
            return true
        }
    }

    /// Logs a read failure (at most every 10 s), waits out the timeout, and returns nil.
    private func waitAfterError(_ message: String, until deadline: Double) -> (batch: EncodedBatch, end: RingPosition)? {
        let now = monotonicSeconds()
        if now - readerLastErrorLog >= 10 {
            readerLastErrorLog = now
            log(message + "; retrying")
        }
        lock.withLock {
            while !s.shuttingDown {
                let left = deadline - monotonicSeconds()
                if left <= 0 { break }
                lock.wait(seconds: left)
            }
        }
        return nil
    }

    // MARK: Cursor and deletion

    /// Persists the commit position if it moved, then deletes segments wholly before the persisted one.
    /// The order is what makes a crash in between harmless (see the type's invariants).
    private func persistAndCollect(durable: Bool) {
        cursorLock.withLock {
            let (target, deleting) = lock.withLock { (s.commitPos, firstSegmentDeletable(before: s.commitPos)) }
            if persisted.map({ target > $0 }) ?? true,
               writeCursor(target, durable: durable || deleting || options.fsync != .never) {
                persisted = target
                lock.withLock { s.lastPersist = monotonicSeconds() }
            }
            guard let done = persisted else { return }
            let victims: [UInt64] = lock.withLock {
                var victims: [UInt64] = []
                while firstSegmentDeletable(before: done) {
                    let v = s.segments.removeFirst()
                    victims.append(v.id)
                    s.diskBytes -= v.size
                    s.records -= v.uncommitted
                }
                if !victims.isEmpty {
                    updateGauges()
                    lock.broadcast()
                }
                return victims
            }
            for id in victims where unlink(segmentPath(id)) != 0 && errno != ENOENT {
                log("cannot delete delivered segment \(segmentPath(id)): \(errnoText(errno))")
            }
        }
    }

    /// Whether the oldest segment is sealed and wholly before `p`. Under `lock`.
    private func firstSegmentDeletable(before p: RingPosition) -> Bool {
        guard s.segments.count > 1 else { return false }
        let first = s.segments[0]
        return first.id < p.segment || (first.id == p.segment && p.offset >= Int64(first.size))
    }

    /// Replaces the cursor file (temp + fsync + rename). Under `cursorLock`.
    private func writeCursor(_ p: RingPosition, durable: Bool) -> Bool {
        let bytes = CursorFile.encode(p)
        var failure: String?
        do {
            try AtomicFile.write(Data(bytes), to: cursorPath, durable: durable)
        } catch let e as POSIXFailure where e.code == ENOSPC || e.code == EDQUOT {
            // On a full disk the temp file cannot be created, but commits must still free space:
            // overwrite the 28 bytes in place (no new disk blocks). A torn overwrite fails the CRC and
            // means a replay from the oldest segment: duplicates, never a loss.
            let fd = open(cursorPath, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
            if fd < 0 {
                failure = "\(e); in-place fallback: \(POSIXFailure("open \(cursorPath)"))"
            } else {
                let ok = bytes.withUnsafeBytes { pwriteAll(fd, $0, at: 0) } && ftruncate(fd, off_t(bytes.count)) == 0 && syncData(fd)
                if !ok { failure = "\(e); in-place fallback: \(POSIXFailure("write \(cursorPath)"))" }
                close(fd)
            }
        } catch {
            failure = "\(error)"
        }
        if let failure {
            if !cursorFailing { log("cannot persist the read position: \(failure); retrying (delivered records may be sent again after a restart)") }
            cursorFailing = true
            return false
        }
        if cursorFailing { log("read position persisted again to \(cursorPath)") }
        cursorFailing = false
        return true
    }

    // MARK: Background flusher

    /// For `.interval(t)`: fsyncs the active segment and persists the cursor every t s.
    /// For `.never`: persists the cursor (without fsync) every second.
    /// Holds the ring only weakly between ticks, so an abandoned ring is still freed.
    private func startFlusher() {
        let period: Double
        if case .interval(let t) = options.fsync { period = t } else { period = 1 }
        _ = startThread(name: "buffer-flush") { [weak self] in
            while let ring = self {
                guard ring.flusherTick(period: period) else { return }
            }
        }
    }

    private func flusherTick(period: Double) -> Bool {
        let stop = stopSignal.withLock { () -> Bool in
            let deadline = monotonicSeconds() + period
            while !stopped {
                let left = deadline - monotonicSeconds()
                if left <= 0 { break }
                stopSignal.wait(seconds: left)
            }
            return stopped
        }
        if stop { return false }
        if case .interval = options.fsync { syncActiveSegment() }
        persistAndCollect(durable: false)
        return true
    }

    /// fsyncs a duplicate of the active segment's descriptor: the writer may close or roll the original
    /// meanwhile, and appenders need not wait for the fsync.
    private func syncActiveSegment() {
        let (fd, gen): (Int32, UInt64) = lock.withLock {
            s.writeGen == s.syncedGen ? (-1, 0) : (dup(s.activeFD), s.writeGen)
        }
        guard fd >= 0 else { return }
        defer { close(fd) }
        if syncData(fd) {
            lock.withLock { if gen > s.syncedGen { s.syncedGen = gen } }
        } else {
            writeErrors.add()
            log("fsync of the active segment failed: \(errnoText(errno)); will retry")
        }
    }

    // MARK: Helpers

    private func segmentPath(_ id: UInt64) -> String { directory + "/" + SegmentName.make(id) }

    /// Index of segment `id` in `s.segments` (binary search). Under `lock`.
    private func segmentIndex(_ id: UInt64) -> Int? {
        var lo = 0
        var hi = s.segments.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if s.segments[mid].id < id { lo = mid + 1 } else { hi = mid }
        }
        return lo < s.segments.count && s.segments[lo].id == id ? lo : nil
    }

    /// Under `lock`.
    private func updateGauges() {
        bytesGauge.set(s.diskBytes)
        recordsGauge.set(s.records)
    }

    // MARK: Recovery

    private static func makeDirectory(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + part
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                throw DiskRingError(path: path, message: "cannot create directory \(prefix): \(errnoText(errno))")
            }
        }
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw DiskRingError(path: path, message: "exists but is not a directory")
        }
        guard access(path, W_OK | X_OK) == 0 else {
            throw DiskRingError(path: path, message: "directory is not writable: \(errnoText(errno))")
        }
    }

    private static func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else {
            throw DiskRingError(path: path, message: "cannot list directory: \(errnoText(errno))")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            names.append(name)
        }
        return names
    }

    private struct Recovered {
        var segments: [Segment]
        var commit: RingPosition
        var cursor: RingPosition?
        var fd: Int32
    }

    /// Reads the cursor, deletes delivered segments, counts the records left, truncates a torn tail and
    /// opens the active segment. Damaged content is logged and worked around, never fatal.
    private static func recover(directory: String, options: DiskRingOptions, log: (String) -> Void) throws -> Recovered {
        func path(_ id: UInt64) -> String { directory + "/" + SegmentName.make(id) }
        let cursorPath = directory + "/cursor"
        unlink(cursorPath + ".tmp")

        var cursor: RingPosition?
        let cfd = open(cursorPath, O_RDONLY | O_CLOEXEC)
        if cfd >= 0 {
            let bytes = readPrefix(cfd, max: 64)
            close(cfd)
            switch bytes.map(CursorFile.decode) ?? .failure(.init(reason: "cannot be read (\(errnoText(errno)))")) {
            case .success(let p): cursor = p
            case .failure(let e):
                log("cursor file \(cursorPath) \(e.reason); replaying from the oldest segment (records may be delivered twice)")
            }
        } else if errno != ENOENT {
            log("cannot open cursor file \(cursorPath) (\(errnoText(errno))); replaying from the oldest segment (records may be delivered twice)")
        }

        var found: [(id: UInt64, size: Int)] = []
        for id in try listDirectory(directory).compactMap(SegmentName.parse).sorted() {
            var st = stat()
            guard stat(path(id), &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
                log("ignoring \(path(id)): not a regular file")
                continue
            }
            found.append((id, Int(st.st_size)))
        }

        // Segments wholly before the cursor were delivered: a crash between persisting the cursor and
        // deleting them leaves them behind.
        if let c = cursor {
            var deleted: [String] = []
            while let first = found.first,
                  first.id < c.segment || (first.id == c.segment && c.offset >= Int64(first.size) && found.count > 1) {
                found.removeFirst()
                if unlink(path(first.id)) == 0 || errno == ENOENT {
                    deleted.append(SegmentName.make(first.id))
                } else {
                    log("cannot delete delivered segment \(path(first.id)): \(errnoText(errno))")
                }
            }
            if !deleted.isEmpty {
                log("deleted \(deleted.count) already delivered segment(s) left by the last run: \(deleted.joined(separator: ", "))")
            }
        }

        var commit = cursor ?? RingPosition(segment: found.first?.id ?? 1, offset: 0)
        var scanner = SegmentScanner()
        var segments: [Segment] = []
        var fd: Int32 = -1
        var needNewSegment = found.isEmpty
        for (index, seg) in found.enumerated() {
            let isLast = index == found.count - 1
            var size = seg.size
            if seg.id == commit.segment && commit.offset > Int64(size) {
                log("cursor \(commit) is past the end of \(path(seg.id)) (\(size) bytes; blocks lost in a power failure?): resuming at its end")
                commit.offset = Int64(size)
                // New blocks must not land below the stale cursor on disk, or a restart before the next
                // persist would take them for delivered.
                if isLast { needNewSegment = true }
            }
            let start = seg.id == commit.segment ? Int(commit.offset) : 0
            let rfd = open(path(seg.id), (isLast ? O_RDWR : O_RDONLY) | O_CLOEXEC)
            guard rfd >= 0 else {
                if isLast { throw DiskRingError(path: path(seg.id), message: "cannot open segment for writing: \(errnoText(errno))") }
                log("cannot open \(path(seg.id)) (\(errnoText(errno))); the reader will skip it")
                segments.append(Segment(id: seg.id, size: size, uncommitted: 0))
                continue
            }
            let walk = scanner.walk(fd: rfd, from: start, end: size, verify: isLast)
            var records = walk.records
            if walk.error != 0 {
                let next = isLast ? "; new blocks go to a new segment" : ""
                log("reading \(path(seg.id)) failed (\(errnoText(walk.error))); record counts may be low\(next)")
                if isLast { needNewSegment = true }
            } else if isLast {
                records = walk.recordsAtGoodEnd
                if walk.goodEnd < size {
                    guard ftruncate(rfd, off_t(walk.goodEnd)) == 0 else {
                        throw DiskRingError(path: path(seg.id), message: "cannot truncate the incomplete block at its end: \(errnoText(errno))")
                    }
                    log("truncated \(size - walk.goodEnd) bytes at the end of \(path(seg.id)) (offset \(walk.goodEnd)): "
                        + "a block cut short by a crash, or damaged data")
                    size = walk.goodEnd
                }
            }
            segments.append(Segment(id: seg.id, size: size, uncommitted: records))
            if isLast && !needNewSegment { fd = rfd } else { close(rfd) }
        }
        if needNewSegment {
            let id = max(segments.last?.id ?? 0, cursor?.segment ?? 0) + 1
            fd = open(path(id), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw DiskRingError(path: path(id), message: "cannot create segment: \(errnoText(errno))") }
            if options.fsync != .never { syncDirectory(directory) }
            segments.append(Segment(id: id, size: 0, uncommitted: 0))
            if cursor == nil && segments.count == 1 { commit = RingPosition(segment: id, offset: 0) }
        }
        return Recovered(segments: segments, commit: commit, cursor: cursor, fd: fd)
    }
}
