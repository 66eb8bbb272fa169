/// The ring's positions and accounting, shared by its writer, reader and cursor: which segments exist,
/// where the reader and the last commit are, and the sequence numbers that make every count exact.
///
/// All fields are guarded by `lock` (the innermost lock of the ring: never held while taking another,
/// never held across disk I/O). Its condition wakes readers waiting for data, appenders waiting for
/// room, and waits after errors.
///
/// Invariants (under `lock`):
/// - `segments` is never empty, ids strictly increase, the last one is the writer's active segment;
///   earlier ones are sealed (never written again). Bytes `[0, size)` of each are whole blocks as written.
/// - Records are numbered 1, 2, 3… in append order; `nextSeq` is the next number to assign. Every segment
///   knows `firstSeq`, the number of its first record (a sealed segment's records are
///   `firstSeq ..< next.firstSeq`).
/// - `commitPos <= readPos <= readHigh` (positions), and `commitSeq <= readSeq <= readHighSeq <= nextSeq`
///   (the numbers of the first record after each). `bufferedRecords = nextSeq - commitSeq`.
/// - Damage is counted once: only records numbered `>= corruptCountedSeq` are counted again.
struct RingLedgerState {
    struct Segment {
        let id: UInt64
        var size: Int
        var firstSeq: UInt64
    }

    var segments: [Segment]
    var nextSeq: UInt64
    var commitPos: RingPosition
    var commitSeq: UInt64
    var readPos: RingPosition
    var readSeq: UInt64
    var readHigh: RingPosition
    var readHighSeq: UInt64
    var corruptCountedSeq: UInt64
    /// Bumped by every write; the flusher fsyncs when it moved.
    var writeGen: UInt64 = 0
    var syncedGen: UInt64 = 0
    var activeFile: RingFile
    /// The last segment whose file `RingWriter` made again under the same name (it was deleted behind
    /// the ring's back while active), and how many times that happened: a reader holding the old file
    /// of that segment opens the name again. Other segments keep their files.
    var recreatedSegment: UInt64 = 0
    var recreations: UInt64 = 0
    var lastPersist: Double
    var shuttingDown = false
    /// Set when the agent stops (`DiskRing.takeWhatIsQueued`): bytes a full ring takes past
    /// `maxBytes` without waiting; a block that does not fit even so is given up at once.
    var stopAllowance: Int?
    /// Plain (uncompressed) bytes of every block written since start; with `readerWake`.
    var writtenPlain: UInt64 = 0
    /// Set while the reader waits to gather more of a batch (`DiskRing.read(gather:)`): a write wakes
    /// it only once `nextSeq` or `writtenPlain` reaches these, so a batch fills without a wake-up per
    /// block. nil: every write wakes it.
    var readerWake: (seq: UInt64, plain: UInt64)?

    /// Whether a write that left the state like this must wake the reader.
    var writeWakesReader: Bool {
        guard let w = readerWake else { return true }
        return nextSeq >= w.seq || writtenPlain >= w.plain
    }

    var diskBytes: Int { segments.reduce(0) { $0 + $1.size } }
    var bufferedRecords: Int { Int(clamping: nextSeq - min(commitSeq, nextSeq)) }

    /// Index of segment `id` (binary search).
    func index(of id: UInt64) -> Int? {
        var lo = 0
        var hi = segments.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if segments[mid].id < id { lo = mid + 1 } else { hi = mid }
        }
        return lo < segments.count && segments[lo].id == id ? lo : nil
    }

    /// Whether the oldest segment is sealed and wholly before `p`.
    func firstSegmentDeletable(before p: RingPosition) -> Bool {
        guard segments.count > 1 else { return false }
        let first = segments[0]
        return first.id < p.segment || (first.id == p.segment && p.offset >= Int64(first.size))
    }

    /// Moves `readPos` off deleted segments and off the end of sealed ones. `readSeq` stays: a segment
    /// is deleted under the reader only when wholly read (committed), and drop_oldest moves both itself.
    mutating func normalizeReadPosition() {
        while let first = segments.first {
            guard let i = index(of: readPos.segment) else {
                let next = segments.first(where: { $0.id > readPos.segment }) ?? first
                readPos = RingPosition(segment: next.id, offset: 0)
                continue
            }
            guard i < segments.count - 1, Int(readPos.offset) >= segments[i].size else { return }
            readPos = RingPosition(segment: segments[i + 1].id, offset: 0)
        }
    }

    /// Moves the commit position to `position` (clamped to what was read); false if it does not
    /// advance. The record number comes with positions from `read`; for others (seq 0) it is known only
    /// at the furthest read position, else the count is left as it was (too high, never too low).
    mutating func commit(_ position: RingPosition) -> Bool {
        let clamped = position > readHigh
        let p = clamped ? readHigh : position
        guard p > commitPos else { return false }
        commitPos = p
        let seq = clamped || p == readHigh ? readHighSeq : position.seq
        commitSeq = max(commitSeq, seq)
        if readPos < p {
            readPos = p
            readSeq = max(readSeq, commitSeq)
        }
        return true
    }

    /// Removes the oldest segments until `bytes` more fit under `maxBytes` (drop_oldest). Returns the
    /// removed ids and how many undelivered records they held. Records a delivery thread holds count
    /// too: the ring no longer has them, and a kill -9 before their delivery loses them, with this
    /// count the only trace. Delivered after all, they are counted again (`DiskRing.commit(_:takes:)`).
    mutating func dropOldest(toFit bytes: Int, maxBytes: Int) -> (victims: [UInt64], dropped: Int) {
        var victims: [UInt64] = []
        var disk = diskBytes
        while segments.count > 1 && disk + bytes > maxBytes {
            let v = segments.removeFirst()
            victims.append(v.id)
            disk -= v.size
        }
        guard !victims.isEmpty else { return ([], 0) }
        let floor = RingPosition(segment: segments[0].id, offset: 0)
        let floorSeq = segments[0].firstSeq
        let dropped = floorSeq > commitSeq ? Int(clamping: floorSeq - commitSeq) : 0
        if commitPos < floor {
            commitPos = floor
            commitSeq = max(commitSeq, floorSeq)
        }
        if readPos < floor {
            readPos = floor
            readSeq = max(readSeq, floorSeq)
        }
        if readHigh < floor {
            readHigh = floor
            readHighSeq = max(readHighSeq, floorSeq)
        }
        corruptCountedSeq = max(corruptCountedSeq, floorSeq)
        return (victims, dropped)
    }

    /// Of a take (`records` read up to record number `endSeq`) not committed yet, how many records
    /// drop_oldest deleted (and counted dropped) while a delivery thread held them. Takes are
    /// committed in ring order, so only a drop moves the commit past an uncommitted one.
    func deleted(fromTakeEndingAt endSeq: UInt64, records: Int) -> Int {
        let n = UInt64(max(0, records))
        guard endSeq > 0, n > 0 else { return 0 }
        let start = endSeq - min(endSeq, n)
        return commitSeq > start ? Int(clamping: min(n, commitSeq - start)) : 0
    }
}

/// The ledger: its state and the lock that guards it.
/// Why the Sendable conformance is unchecked: `state` is only touched inside `lock.withLock`; the lock is shared with the
/// writer and reader, which wait on its condition for new blocks and free space.
final class RingLedger: @unchecked Sendable {
    let lock = ConditionLock()
    private var state: RingLedgerState

    init(_ state: RingLedgerState) { self.state = state }

    /// Runs `body` with the state, under the lock. `body` must not wait: another thread changes the
    /// state while the lock is released, and `body` holds it `inout` (the optimizer may keep what it
    /// loaded from it, such as an array's count, across the wait). Waits go through `withStateWaiting`.
    @inline(__always)
    func withState<R>(_ body: (inout RingLedgerState) throws -> R) rethrows -> R {
        try lock.withLock { try body(&state) }
    }

    /// Runs `body` under the lock until it returns `.done`; after `.wait(seconds:)` the lock is released
    /// until a `broadcast` or the time passes, and `body` runs again on the state as it is then. The
    /// wait happens between calls, never while `body` holds the state.
    func withStateWaiting<R>(_ body: (inout RingLedgerState) throws -> LockStep<R>) rethrows -> R {
        try lock.withLock {
            while true {
                switch try body(&state) {
                case .done(let result): return result
                case .wait(let seconds): lock.wait(seconds: seconds)
                }
            }
        }
    }

    func broadcast() { lock.broadcast() }

    /// Waits until `deadline` or shutdown, whichever comes first. False on shutdown.
    func sleep(until deadline: Double) -> Bool {
        withStateWaiting { s in
            if s.shuttingDown { return .done(false) }
            let left = deadline - monotonicSeconds()
            return left <= 0 ? .done(true) : .wait(seconds: left)
        }
    }
}
