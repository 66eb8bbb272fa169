#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

// MARK: On-disk format (version 2)
//
// One directory per output:
//
//   <dir>/segment-<20-digit id>.ring   append-only data files; ids count up from 1 and are never reused
//   <dir>/cursor                       the delivered position, two slots rewritten in place (RingCursor)
//
// A segment is a sequence of blocks. A new segment starts when the next block would push the current
// one past `segmentBytes` (a block never spans segments; a single record too large for a segment gets a
// segment of its own). Block (all integers little-endian):
//
//   offset size
//        0    4  magic AD 55 49 4E                \
//        4    1  format version (2)                | with the header CRC: the sync marker the reader
//        5    1  flags: bit 0 = payload is LZ4     | scans for after damage
//        6    2  reserved, 0                      /
//        8    4  record count (>= 1)
//       12    4  payload length before compression
//       16    4  payload length as stored
//       20    4  CRC32C of the stored payload
//       24    8  sequence number of the block's first record (records are numbered 1, 2, 3… across segments)
//       32    4  CRC32C of bytes 0..<32
//       36    …  payload
//
// Payload before compression = the records back to back, each
//   [u32 length][u32 crc32c][u64 timestamp][u64 sourceID][i64 offset][document bytes]
// where `length` = 24 + document length and the CRC covers those `length` bytes.
//
// Damage costs only what is damaged: the reader skips bytes that are not a valid block (scanning for the
// next sync marker in the same segment), and a block whose payload fails its CRC; the records lost are
// the gap in sequence numbers, so they are counted exactly (buffer_corrupt_records) even when headers
// were destroyed. At start, a torn tail of the last segment is truncated: the records of a block cut
// short (a write a crash interrupted, whose batch was therefore not acknowledged and is read again from
// its files) are counted in buffer_torn_records, those of whole blocks failing their checksum in
// buffer_corrupt_records. Format 1 segments (28-byte headers, no numbers) are converted at start-up
// (LegacySegment).
//
// What each fsync policy can lose on power failure (kill -9 loses nothing with any policy: written
// bytes are in the page cache; the cursor is written at every commit, so at most the batches read and
// not yet committed are delivered again):
//   .always       nothing `append` returned for: each block is fdatasync'ed before `append` returns and
//                 a new segment's directory entry is synced; the cursor is fsynced on every commit.
//   .interval(t)  blocks written in the last ~t seconds (a background thread fsyncs the active segment
//                 and the cursor every t s; a segment is fsynced when it is finished); up to t s of
//                 delivered records are sent again.
//   .never        whatever the kernel had not written back (Linux: typically up to ~30 s). Files are
//                 still fsynced at shutdown.

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

    public static let defaultFsyncInterval = 1.0

    /// These defaults are the config's too: `BufferSettings` takes them from here, so the ring does not
    /// depend on the delivery layer above it.
    public init(maxBytes: Int = 1 << 30, segmentBytes: Int = 64 << 20, whenFull: WhenFull = .block,
                fsync: FsyncPolicy = .interval(defaultFsyncInterval), compress: Bool = true) {
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

/// A position in the ring that the reader can commit: a byte offset in a segment at a block boundary,
/// plus, when a read stopped inside a block (a block holds a whole input batch; an output batch may be
/// smaller), the number of the block's records before it. (s, size of s) and (next segment, 0) denote
/// the same point. Positions from `read` also carry the number of the next record, which makes a
/// commit's accounting exact; equality and order look at (segment, offset, record) only.
public struct RingPosition: Sendable, Comparable, Hashable, CustomStringConvertible {
    public var segment: UInt64
    public var offset: Int64
    /// Records of the block at `offset` that come before this position.
    var record: Int = 0
    /// Sequence number of the first record after this position; 0 when unknown (not from `read`).
    var seq: UInt64 = 0

    public init(segment: UInt64, offset: Int64) {
        self.segment = segment
        self.offset = offset
    }

    init(segment: UInt64, offset: Int64, record: Int, seq: UInt64 = 0) {
        self.segment = segment
        self.offset = offset
        self.record = record
        self.seq = seq
    }

    public static func == (a: RingPosition, b: RingPosition) -> Bool {
        a.segment == b.segment && a.offset == b.offset && a.record == b.record
    }

    public func hash(into h: inout Hasher) {
        h.combine(segment)
        h.combine(offset)
        h.combine(record)
    }

    public static func < (a: RingPosition, b: RingPosition) -> Bool {
        (a.segment, a.offset, a.record) < (b.segment, b.offset, b.record)
    }

    public var description: String { "\(SegmentName.make(segment))@\(offset)" + (record > 0 ? "+\(record)" : "") }
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

/// Metrics of one ring, shared by its parts.
struct RingCounters: Sendable {
    let dropped: Counter
    let fullEvents: Counter
    let writeErrors: Counter
    let corruptRecords: Counter
    let corruptBlocks: Counter
    let tornRecords: Counter
    let bytes: Gauge
    let records: Gauge

    init(_ stats: ComponentStats) {
        dropped = stats.counter("buffer_records_dropped", "records deleted from a full disk buffer before delivery (when_full: drop_oldest)")
        fullEvents = stats.counter("buffer_full_events", "appends that found the disk buffer full")
        writeErrors = stats.counter("buffer_write_errors", "failed writes to the disk buffer (each is retried)")
        corruptRecords = stats.counter("buffer_corrupt_records", "records lost because their disk buffer bytes were damaged")
        corruptBlocks = stats.counter("buffer_corrupt_blocks", "damaged disk buffer regions skipped")
        tornRecords = stats.counter("buffer_torn_records", "records of a block cut short at the end of the disk buffer at start (a crash during its write): not acknowledged, so read again from their files (lost only if a power failure cut an acknowledged write, fsync interval or never)")
        bytes = stats.gauge("buffer_bytes", "bytes of disk buffer segment files")
        records = stats.gauge("buffer_records", "records in the disk buffer not yet delivered")
    }

    /// Under the ledger lock.
    func update(_ s: RingLedgerState) {
        bytes.set(s.diskBytes)
        records.set(s.bufferedRecords)
    }
}

/// A bounded, crash-safe FIFO of encoded records on disk, one per output: inputs `append`, the
/// output's thread `read`s, delivers and `commit`s.
///
/// Built from parts that each do one job: `RingStorage` (all file I/O, fakeable), the block format
/// (`BlockFormat.swift`), `RingWriter`, `RingReader`, `RingCursor` (delivered position, deletion),
/// `RingLedger` (positions and counts) and `RingRecovery` (start-up). One reader is expected (the
/// output's thread); concurrent `read` calls are serialised. Any number of threads may `append`.
///
/// Four locks, outermost first: writer → cursor → ledger, and reader → ledger (the reader never waits
/// for the cursor's or the writer's; it takes the writer's only when free, `repairIfUnlinked`). The ledger's lock is never held across disk I/O, so a slow fsync does
/// not stall the reader; the flusher thread sleeps on the ledger's condition.
public final class DiskRing: Sendable {
    public let directory: String
    public let options: DiskRingOptions
    private let io: any RingStorage
    private let log: @Sendable (String) -> Void
    private let counters: RingCounters
    private let ledger: RingLedger
    private let cursor: RingCursor
    private let writer: RingWriter
    private let reader: RingReader
    /// Records of the previous run counted as lost (buffer_corrupt_records) while opening: a damaged
    /// tail cut off, format 1 blocks that could not be converted. They are not in `bufferedRecords`,
    /// yet were received by an earlier run: the output counts them as recovered too.
    public let lostAtStart: Int
    /// The flusher sleeps on this, not on the ledger's condition, which every append and commit
    /// broadcasts: it wakes once a period, not once a write.
    private let flusherStop = StopSignal()

    /// Opens (creating) `directory` and recovers its content; see the type's documentation.
    /// Throws only for bad options or a directory it cannot create or write.
    public convenience init(directory: String, options: DiskRingOptions, stats: ComponentStats,
                            log: @escaping @Sendable (String) -> Void) throws {
        try self.init(storage: PosixRingStorage(directory: directory), options: options, stats: stats, log: log)
    }

    /// The same on any storage (tests use one that injects faults and simulates crashes).
    init(storage: any RingStorage, options: DiskRingOptions, stats: ComponentStats,
         log: @escaping @Sendable (String) -> Void) throws {
        if let problem = options.problem { throw DiskRingError(path: storage.directory, message: problem) }
        self.directory = storage.directory
        self.options = options
        self.io = storage
        let prefix = "disk buffer \(storage.directory): "
        let logger: @Sendable (String) -> Void = { log(prefix + $0) }
        self.log = logger
        counters = RingCounters(stats)
        let lostBefore = counters.corruptRecords.current
        let rec = try RingRecovery.run(io: storage, options: options, counters: counters, log: logger)
        lostAtStart = counters.corruptRecords.current.subtractingSaturating(lostBefore)
        ledger = RingLedger(RingLedgerState(
            segments: rec.segments, nextSeq: rec.nextSeq, commitPos: rec.commitPos, commitSeq: rec.commitSeq,
            readPos: rec.commitPos, readSeq: rec.commitSeq, readHigh: rec.commitPos, readHighSeq: rec.commitSeq,
            corruptCountedSeq: rec.commitSeq, activeFile: rec.active, lastPersist: monotonicSeconds()))
        cursor = RingCursor(io: storage, ledger: ledger, recovered: rec.cursor, fsync: options.fsync, log: logger)
        cursor.prepare()
        let last = rec.segments[rec.segments.count - 1]
        writer = RingWriter(io: storage, ledger: ledger, cursor: cursor, options: options, counters: counters,
                            active: (rec.active, last.id, last.size), log: logger)
        reader = RingReader(io: storage, ledger: ledger, counters: counters, log: logger,
                            repairActive: { [writer] in writer.repairIfUnlinked() })
        ledger.withState { counters.update($0) }
        if options.fsync != .always { startFlusher() }
    }

    // MARK: Public API

    /// Bytes of segment files on disk.
    public var bufferedBytes: Int { ledger.withState { $0.diskBytes } }

    /// Records appended and not yet committed (exact, also after a restart: records are numbered).
    public var bufferedRecords: Int { ledger.withState { $0.bufferedRecords } }

    /// Appends a batch, normally as one block (split into several when it would not fit a segment).
    /// Returns once written (and fdatasync'ed under `.always`). While the ring is full, waits (`.block`)
    /// or deletes whole oldest segments (`.drop_oldest`, counted in buffer_records_dropped). On write
    /// errors (ENOSPC…) logs, cuts back any partial block and retries until it succeeds. Returns false
    /// only if `shutdown()` came first; blocks of the batch written before that stay in the ring.
    public func append(_ batch: EncodedBatch) -> Bool {
        var handled = 0
        return append(batch, handled: &handled)
    }

    /// The same, also saying how many of the batch's records are in the ring (or counted as dropped)
    /// when it returns: all of them after true, the blocks written before a shutdown after false.
    public func append(_ batch: EncodedBatch, handled: inout Int) -> Bool {
        handled = 0
        if batch.isEmpty { return true }
        return writer.append(batch, handled: &handled)
    }

    /// The records after the last read (not the last commit), whole blocks of one segment, up to
    /// `maxRecords` records and `maxBytes` document bytes (but always at least one block). Damaged data
    /// is skipped and counted. Waits up to `timeout` seconds for data; nil on timeout or shutdown.
    /// `gather`: the caller is filling a batch and wants `maxRecords` or `maxBytes`, else what came by
    /// the timeout; when nothing is there, the wait ends once that much was written, not at the first
    /// write.
    public func read(maxRecords: Int, maxBytes: Int, timeout: Double, gather: Bool = false) -> (batch: EncodedBatch, end: RingPosition)? {
        reader.read(maxRecords: maxRecords, maxBytes: maxBytes, deadline: monotonicSeconds() + max(0, timeout), gather: gather)
    }

    /// Everything before `position` was delivered. Moves only forward, and never past what was read.
    /// Writes the cursor at once (a 64-byte positional write; fsynced under `.always`, by the flusher
    /// under `.interval`), then deletes the segments wholly before it.
    ///
    /// `takes`: the takes this commit covers, in order (each `records` read up to `end`). Returns
    /// how many of their records drop_oldest deleted while a delivery thread held them: counted
    /// dropped then, so counted twice now that they were decided. Counted under the same lock as the
    /// commit: a drop between the two would count the take's records dropped with nothing to
    /// balance it.
    @discardableResult
    public func commit(_ position: RingPosition, takes: [(end: RingPosition, records: Int)] = []) -> Int {
        let (moved, deleted) = ledger.withState { s -> (Bool, Int) in
            let deleted = takes.reduce(0) { $0.addingSaturating(s.deleted(fromTakeEndingAt: $1.end.seq, records: $1.records)) }
            guard s.commit(position) else { return (false, deleted) }
            counters.update(s)
            return (true, deleted)
        }
        guard moved else { return deleted }
        let closing = ledger.withState { $0.shuttingDown }
        cursor.persistAndCollect(durable: options.fsync == .always || closing)
        return deleted
    }

    /// Goes back to the last committed position: the next `read` returns the records after it again.
    public func rewind() {
        ledger.withState { s in
            s.readPos = s.commitPos
            s.readSeq = s.commitSeq
            ledger.broadcast()
        }
    }

    /// The agent stops: what the output has queued is written now, past `max_bytes` if need be (up
    /// to `stopAllowance` more), so that it is not read again. Read again, it would reach the other
    /// outputs of its input twice. A block that does not fit even so is given up at once (its
    /// records are read again); no append waits for room any more.
    public func takeWhatIsQueued() {
        ledger.withState { s in
            s.stopAllowance = Self.stopAllowance
            ledger.broadcast()
        }
    }

    /// Bytes past `max_bytes` a stop may write (`takeWhatIsQueued`): an output queue's worth of
    /// records, which are in memory anyway.
    static let stopAllowance = 64 << 20

    /// Wakes waiting `append` (they return false) and `read` (nil) calls, waits for a block being written,
    /// fsyncs the active segment and persists the cursor. Commits after this persist at once.
    public func shutdown() {
        ledger.withState { s in
            s.shuttingDown = true
            ledger.broadcast()
        }
        flusherStop.set()
        writer.syncActive()
        cursor.persistAndCollect(durable: true)
    }

    /// Test hook: the process dies here. Stops the flusher and wakes waiters; nothing is synced or
    /// persisted (the storage decides what a crash keeps).
    func crashForTesting() {
        ledger.withState { s in
            s.shuttingDown = true
            ledger.broadcast()
        }
        flusherStop.set()
    }

    /// Test and debugging aid: the ledger's positions and segments.
    var ledgerSummary: String {
        ledger.withState { s in
            "commit \(s.commitPos)#\(s.commitSeq) read \(s.readPos)#\(s.readSeq) high \(s.readHigh)#\(s.readHighSeq) "
                + "next #\(s.nextSeq) counted #\(s.corruptCountedSeq) segments "
                + s.segments.map { "\($0.id):\($0.size)#\($0.firstSeq)" }.joined(separator: " ")
        }
    }

    // MARK: Background flusher

    /// For `.interval(t)`: fsyncs the active segment and the cursor every t s. For `.never`: nothing to
    /// do but exist (the cursor is written at every commit). Holds the ring only weakly between ticks,
    /// so an abandoned ring is still freed.
    private func startFlusher() {
        guard case .interval(let period) = options.fsync else { return }
        _ = startThread(name: "buffer-flush") { [weak self] in
            while let ring = self {
                guard ring.flusherTick(period: period) else { return }
            }
        }
    }

    /// Sleeps a period (woken early only by shutdown), then fsyncs what was written and the cursor.
    /// False once shut down.
    private func flusherTick(period: Double) -> Bool {
        if flusherStop.sleep(seconds: period) || ledger.withState({ $0.shuttingDown }) { return false }
        writer.repairIfUnlinked()
        syncActiveSegment()
        cursor.persistAndCollect(durable: false)
        cursor.syncIfDirty()
        return true
    }

    /// fsyncs a duplicate of the active segment's handle: the writer may close or roll the original
    /// meanwhile, and appenders need not wait for the fsync.
    private func syncActiveSegment() {
        let (file, gen): (RingFile?, UInt64) = ledger.withState { s in
            s.writeGen == s.syncedGen ? (nil, 0) : ((try? io.duplicate(s.activeFile)), s.writeGen)
        }
        guard let file else { return }
        defer { io.close(file) }
        do {
            try io.sync(file)
            ledger.withState { s in if gen > s.syncedGen { s.syncedGen = gen } }
        } catch {
            counters.writeErrors.add()
            log("fsync of the active segment failed: \(error); will retry")
        }
    }
}
