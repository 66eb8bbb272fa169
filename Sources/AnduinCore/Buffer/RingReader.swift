#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads whole blocks after the read position, skipping damage and counting exactly what it cost.
///
/// Damage accounting uses the records' sequence numbers: the reader knows the number of the next record
/// it expects (`readSeq`); a valid block numbered higher means the records in between were in damaged
/// bytes (a destroyed header, a zeroed page, a truncated segment), however many blocks that was. A block
/// whose header is intact but whose payload is damaged costs its undecodable records. Each lost record is
/// counted once (`corruptCountedSeq`), also when a rewind reads the same bytes again.
///
/// Lock order: `lock` (this type's; one read at a time) → ledger. Disk reads happen outside the ledger lock.
/// Why the Sendable conformance is unchecked: every `var` is touched only inside `lock.withLock` (one read at a time; the
/// read buffers it reuses are why this is a lock around disk reads, not a `Locked` value).
final class RingReader: @unchecked Sendable {
    private let io: any RingStorage
    private let ledger: RingLedger
    private let counters: RingCounters
    private let log: @Sendable (String) -> Void
    /// Asks the writer to recreate the active segment when its name is gone (never waits for the
    /// writer); true if it did.
    private let repairActive: @Sendable () -> Bool

    private let lock = ConditionLock()
    private var file: RingFile?
    private var fileSegment: UInt64 = 0
    private var fileGeneration: UInt64 = 0
    private var scanner = SegmentScanner()
    private var stored: [UInt8] = []
    private var plain: [UInt8] = []
    private var lastErrorLog = -Double.infinity
    /// The block a read stopped inside, decoded, until a read takes its last record.
    private var held: HeldBlock?

    private struct HeldBlock {
        var segment: UInt64
        var offset: Int
        var records: EncodedBatch
        /// Records decoded before damage (all of them when `reason` is nil).
        var decoded: Int
        var reason: String?
    }

    init(io: any RingStorage, ledger: RingLedger, counters: RingCounters, log: @escaping @Sendable (String) -> Void,
         repairActive: @escaping @Sendable () -> Bool = { false }) {
        self.io = io
        self.ledger = ledger
        self.counters = counters
        self.log = log
        self.repairActive = repairActive
    }

    deinit { if let file { io.close(file) } }

    private struct Span {
        var segment: UInt64
        var start: Int
        var end: Int
        var sealed: Bool
        /// Records of the block at `start` already taken.
        var record: Int
        /// The number of the first record expected at `start` (0: unknown, take the next block's).
        var seq: UInt64
        /// How many times the segment's file was made again (the ledger's `recreations` for the
        /// recreated segment, 0 for others): a file opened at another generation is reopened.
        var generation: UInt64
    }

    /// Records lost in `seqs`, found at `offset`.
    private struct Damage {
        var offset: Int
        var seqs: Range<UInt64>
        var reason: String
    }

    /// See `DiskRing.read`.
    func read(maxRecords: Int, maxBytes: Int, deadline: Double, gather: Bool = false) -> (batch: EncodedBatch, end: RingPosition)? {
        lock.withLock {
            readLocked(maxRecords: max(1, maxRecords), maxBytes: max(1, maxBytes), deadline: deadline, gather: gather)
        }
    }

    private func readLocked(maxRecords: Int, maxBytes: Int, deadline: Double, gather: Bool) -> (batch: EncodedBatch, end: RingPosition)? {
        while true {
            let want = gather ? (records: maxRecords, bytes: maxBytes) : nil
            guard let span = waitForData(until: deadline, wakeFor: want) else { return nil }
            let name = SegmentName.make(span.segment)
            if file == nil || fileSegment != span.segment || fileGeneration != span.generation {
                if let file { io.close(file) }
                file = nil
                do {
                    file = try io.open(name, create: false)
                    fileSegment = span.segment
                    fileGeneration = span.generation
                } catch {
                    if skipUnreadable(span, error: error) { continue }
                    if error.code == ENOENT && repairActive() { continue }
                    return waitAfterError("cannot open \(io.path(name)): \(errnoText(error.code))", until: deadline)
                }
            }
            guard let f = file else { continue }
            var batch = EncodedBatch()
            var pos = span.start
            var seq = span.seq
            var damage: [Damage] = []
            var ioError: Int32 = 0
            var stopRecord = 0
            scan: while pos < span.end {
                switch scanner.probe(io, f, at: pos, end: span.end) {
                case .failed(let e):
                    ioError = e
                    break scan
                case .garbage(let next):
                    pos = next  // what it held is counted by the next block's number
                case .block(let h):
                    // Resuming inside a block (a previous read stopped there): skip what was taken.
                    let skip = seq != 0 ? (h.firstSeq < seq ? Int(min(seq - h.firstSeq, UInt64(Int32.max))) : 0)
                                        : (pos == span.start ? span.record : 0)
                    if skip >= h.recordCount {
                        // Never written by this ring's writer (numbers only grow): not ours to deliver.
                        log("skipped a block in \(io.path(name)) at offset \(pos): numbered \(h.firstSeq) where \(seq) was expected")
                        pos += h.blockLength
                        continue
                    }
                    let fits = batch.count + h.recordCount - skip <= maxRecords
                        && batch.documents.count + h.plainLength <= maxBytes
                    if !batch.isEmpty && !fits { break scan }
                    if seq != 0 && h.firstSeq > seq {
                        damage.append(Damage(offset: pos, seqs: seq..<h.firstSeq, reason: "damaged bytes before this block"))
                    }
                    let decoded: Int
                    var reason: String?
                    if skip == 0 && fits {
                        // The common case: the whole block goes into the batch, decoded in place.
                        switch decodeBlock(h, f, at: pos, into: &batch) {
                        case .failure(let e):
                            ioError = e.code
                            break scan
                        case .success(let d):
                            (decoded, reason) = d
                        }
                    } else {
                        // Only part of the block fits (or part was taken): decode it once, hand it out
                        // in pieces.
                        if held?.segment != span.segment || held?.offset != pos {
                            var records = EncodedBatch()
                            switch decodeBlock(h, f, at: pos, into: &records) {
                            case .failure(let e):
                                ioError = e.code
                                break scan
                            case .success(let d):
                                held = HeldBlock(segment: span.segment, offset: pos, records: records, decoded: d.decoded, reason: d.reason)
                            }
                        }
                        guard let b = held else { break scan }
                        var next = skip
                        var bytes = batch.documents.count
                        while next < b.decoded && batch.count + (next - skip) < maxRecords {
                            let n = b.records.records[next].document.count
                            if (!batch.isEmpty || next > skip) && bytes + n > maxBytes { break }
                            bytes += n
                            next += 1
                        }
                        Self.append(b.records, skip..<next, to: &batch)
                        if next < b.decoded {
                            stopRecord = next
                            seq = h.firstSeq.addingSaturating(UInt64(next))
                            break scan
                        }
                        held = nil
                        (decoded, reason) = (b.decoded, b.reason)
                    }
                    if let reason {
                        damage.append(Damage(offset: pos, seqs: min(h.firstSeq.addingSaturating(UInt64(max(decoded, skip))), h.endSeq)..<h.endSeq, reason: reason))
                    }
                    pos += h.blockLength
                    seq = h.endSeq
                }
            }
            if ioError != 0 && pos == span.start && stopRecord == 0 {
                return waitAfterError("reading \(io.path(name)) at offset \(pos) failed: \(errnoText(ioError))", until: deadline)
            }
            var end = RingPosition(segment: span.segment, offset: Int64(pos), record: stopRecord)
            let fresh: [Damage]? = ledger.withState { s in
                // Rewound, or the segment was dropped (its unread records were counted as dropped)
                // while this read ran: this result is stale.
                guard s.readPos == RingPosition(segment: span.segment, offset: Int64(span.start), record: span.record),
                      s.index(of: span.segment) != nil else { return nil }
                if seq != 0 { s.readSeq = seq }
                end.seq = s.readSeq
                s.readPos = end
                if end > s.readHigh {
                    s.readHigh = end
                    s.readHighSeq = max(s.readHighSeq, s.readSeq)
                }
                var fresh: [Damage] = []
                for var d in damage {
                    d.seqs = max(d.seqs.lowerBound, s.corruptCountedSeq)..<max(d.seqs.upperBound, s.corruptCountedSeq)
                    s.corruptCountedSeq = d.seqs.upperBound
                    fresh.append(d)
                }
                return fresh
            }
            guard let fresh else { continue }
            for d in fresh where !d.seqs.isEmpty {
                counters.corruptBlocks.add()
                counters.corruptRecords.add(Int(clamping: d.seqs.upperBound - d.seqs.lowerBound))
                log("skipped damaged data in \(io.path(name)) at offset \(d.offset) (\(d.reason)); \(d.seqs.upperBound - d.seqs.lowerBound) records lost")
            }
            if !batch.isEmpty { return (batch, end) }
        }
    }

    /// Appends `src.records[range]` with one copy of their documents (they lie back to back in a decoded
    /// block, between their frame headers).
    private static func append(_ src: EncodedBatch, _ range: Range<Int>, to dst: inout EncodedBatch) {
        guard let first = range.first, let last = range.last else { return }
        let lo = src.records[first].document.lowerBound
        let hi = src.records[last].document.upperBound
        let base = dst.documents.count - lo
        dst.documents.append(contentsOf: src.documents[lo..<hi])
        dst.records.reserveCapacity(dst.records.count + range.count)
        for i in range {
            var r = src.records[i]
            r.document = (r.document.lowerBound + base)..<(r.document.upperBound + base)
            dst.records.append(r)
        }
    }

    /// Reads and decodes the block at `pos`, appending its intact records to `out`: how many records were
    /// decoded and, if the block is damaged, why the rest were not.
    private func decodeBlock(_ h: BlockHeader, _ f: RingFile, at pos: Int,
                             into out: inout EncodedBatch) -> Result<(decoded: Int, reason: String?), POSIXFailure> {
        let n = h.storedLength
        if stored.count < n { stored = [UInt8](repeating: 0, count: n) }
        let outcome = stored.withUnsafeMutableBytes {
            io.read(f, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), at: pos + h.headerSize)
        }
        if case .failed(let e) = outcome { return .failure(POSIXFailure("read", code: e)) }
        if outcome == .eof { return .success((0, "the file ends inside the block")) }
        let result = stored.withUnsafeBytes {
            BlockCodec.decode(h, stored: UnsafeRawBufferPointer(rebasing: $0[0..<n]), scratch: &plain, into: &out)
        }
        switch result {
        case .intact: return .success((h.recordCount, nil))
        case .corrupt(let decoded, let reason): return .success((decoded, reason))
        }
    }

    /// Waits until there is something to read after `readPos`; the readable range of its segment.
    /// With `wakeFor`, when nothing is there yet, writes wake the wait only once they add that many
    /// records or plain bytes (or at `deadline`): the rest of a batch is gathered in one wake-up.
    private func waitForData(until deadline: Double, wakeFor: (records: Int, bytes: Int)?) -> Span? {
        ledger.withStateWaiting { s -> LockStep<Span?> in
            if s.shuttingDown {
                s.readerWake = nil
                return .done(nil)
            }
            s.normalizeReadPosition()
            if let i = s.index(of: s.readPos.segment), Int(s.readPos.offset) < s.segments[i].size {
                s.readerWake = nil
                return .done(Span(segment: s.readPos.segment, start: Int(s.readPos.offset), end: s.segments[i].size,
                                  sealed: i < s.segments.count - 1, record: s.readPos.record, seq: s.readSeq,
                                  generation: s.readPos.segment == s.recreatedSegment ? s.recreations : 0))
            }
            let left = deadline - monotonicSeconds()
            if left <= 0 {
                s.readerWake = nil
                return .done(nil)
            }
            s.readerWake = wakeFor.map {
                (s.nextSeq.addingSaturating(UInt64($0.records)), s.writtenPlain.addingSaturating(UInt64($0.bytes)))
            }
            return .wait(seconds: left)
        }
    }

    /// A sealed segment that cannot be opened is skipped (its records are counted as damaged when the
    /// next segment's first block is read) so that one bad file does not stop delivery for good. False
    /// for the active segment: the caller waits and retries.
    private func skipUnreadable(_ span: Span, error: POSIXFailure) -> Bool {
        enum Outcome { case vanished, skipped, active }
        let outcome: Outcome = ledger.withState { s in
            guard s.index(of: span.segment) != nil else { return .vanished }  // deleted meanwhile
            guard span.sealed else { return .active }
            if s.readPos == RingPosition(segment: span.segment, offset: Int64(span.start), record: span.record) {
                s.readPos = RingPosition(segment: span.segment, offset: Int64(span.end))
            }
            return .skipped
        }
        switch outcome {
        case .vanished: return true
        case .active: return false
        case .skipped:
            log("cannot open \(io.path(SegmentName.make(span.segment))) (\(errnoText(error.code))): skipping its "
                + "\(span.end - span.start) bytes (its records are counted as damaged)")
            return true
        }
    }

    /// Logs a read failure (at most every 10 s), waits out the timeout, and returns nil.
    private func waitAfterError(_ message: String, until deadline: Double) -> (batch: EncodedBatch, end: RingPosition)? {
        let now = monotonicSeconds()
        if now - lastErrorLog >= 10 {
            lastErrorLog = now
            log(message + "; retrying")
        }
        _ = ledger.sleep(until: deadline)
        return nil
    }
}
