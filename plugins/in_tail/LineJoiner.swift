import AnduinCore
import Multiline

/// `multiline:` on the tail: joins the decoded records of one file into multi-line records (a stack
/// trace), per stream, before they are batched and acknowledged. One per tailed file, so lines of two
/// files (a rotated file and its successor) are never joined.
///
/// An open record is to the checkpoint what a partial line is: the file's position never passes its
/// first line (`openStart`, see `TailedFile.position`), and nothing of it is shipped until it is
/// closed. After a crash it is read and joined again, whole, with its first line's offset (so its
/// `event.id`). A record is closed, and appended to the batch, when a line of its stream does not
/// continue it (that line is decoded at an offset past everything the record holds: `LineReader`'s
/// replay rule then treats it like any record completed by that line), at `max_bytes`, or by `flush`.
public struct LineJoiner: Sendable {
    typealias State = MultilineRules.State

    /// A record of one or more lines, copied out of the batches its lines came in.
    struct Open: Sendable {
        var bytes: [UInt8]
        /// Trailing blank lines with their separators: written only if a non-blank line follows, so a
        /// trace never ends in empty lines.
        var blankTail: [UInt8] = []
        var timestamp: Int64
        var offset: Int64
        /// Offset of its last line (of the last part of a partial record).
        var lastOffset: Int64
        var flags: RecordFlags
        var state: State
        var lastLine: Double
    }

    public struct Stats: Sendable, Equatable {
        /// Lines joined into the record before them.
        public var merged = 0
        /// Records cut at max_bytes.
        public var truncated = 0
        /// Continuation lines dropped after their record was cut.
        public var dropped = 0
    }

    let rules: MultilineRules
    public let timeout: Double
    let maxBytes: Int
    let separator: [UInt8]
    /// By `LogStream.rawValue`: stdout and stderr interleave, each joins alone.
    private var open: [Open?] = [nil, nil, nil]
    /// A stream whose record was cut at max_bytes: its continuation lines are dropped until another
    /// record starts (or `flush` forgets it), with the time of the last one.
    private var discarding: [(state: State, lastLine: Double)?] = [nil, nil, nil]
    /// Buffers of closed records, reused for the next ones: no allocation per ordinary line.
    private var spare: [[UInt8]] = []
    static let keepCapacity = 4096
    public private(set) var stats = Stats()

    public init(_ settings: MultilineSettings) {
        rules = MultilineRules(settings)
        timeout = settings.flushTimeout
        maxBytes = settings.maxBytes
        separator = Array(settings.separator.utf8)
    }

    /// File offset of the first line of the oldest open record, nil when none: checkpoints must not
    /// pass it.
    public var openStart: Int64? {
        var best: Int64?
        for case let o? in open { best = min(best ?? o.offset, o.offset) }
        return best
    }

    /// The last-line time of the stream waiting longest (an open record, or dropping lines after a
    /// cut), nil when none waits.
    public var oldestLine: Double? {
        var best: Double?
        for case let o? in open { best = min(best ?? o.lastLine, o.lastLine) }
        for case let d? in discarding { best = min(best ?? d.lastLine, d.lastLine) }
        return best
    }

    public mutating func takeStats() -> Stats {
        defer { stats = Stats() }
        return stats
    }

    /// Joins `batch.records[start...]` (just decoded from one line, or flushed partial records): each
    /// joins its stream's open record, or closes it (the closed record is appended in its place) and
    /// is shipped or starts the next one. `now`: monotonic seconds, for `flush_timeout`. `line`: the
    /// file offset of the line that completed them (a partial record's last part), if later than
    /// their own offsets.
    public mutating func join(_ batch: inout RecordBatch, from start: Int, now: Double, line: Int64? = nil) {
        let count = batch.records.count - start
        guard count > 0 else { return }
        if count == 1 {
            let r = batch.records.removeLast()
            step(r, &batch, now: now, line: line)
            return
        }
        let added = Array(batch.records[start...])
        batch.records.removeLast(count)
        for r in added { step(r, &batch, now: now, line: line) }
    }

    /// Appends to `batch` every open record whose last line is older than `flush_timeout` (every one
    /// when `all`), in file order, and forgets the cuts that waited as long.
    ///
    /// Unless `all`, a due record waits while something that stays open began before its last line:
    /// another stream's record not yet due, or a partial line of the decoder (`pendingFrom`). Flushed
    /// then, the file's checkpoint could not pass that other record, and after a crash the replay
    /// from there would rebuild this one (or its last lines, as a fragment) and ship it again. It
    /// flushes with that record, or once that record is closed.
    public mutating func flush(into batch: inout RecordBatch, now: Double, all: Bool = false, pendingFrom: Int64? = nil) {
        var due: [Int] = []
        for s in open.indices {
            if let o = open[s], all || now - o.lastLine >= timeout { due.append(s) }
            if let d = discarding[s], all || now - d.lastLine >= timeout { discarding[s] = nil }
        }
        if !all {
            var changed = true
            while changed {
                changed = false
                for s in due {
                    guard let last = open[s]?.lastOffset else { continue }
                    let blocked = (pendingFrom.map { $0 < last } ?? false) || open.indices.contains { t in
                        !due.contains(t) && (open[t].map { $0.offset < last } ?? false)
                    }
                    if blocked {
                        due.removeAll { $0 == s }
                        changed = true
                        break
                    }
                }
            }
        }
        due.sort { (open[$0]?.offset ?? 0) < (open[$1]?.offset ?? 0) }
        for s in due {
            if let o = open[s] {
                open[s] = nil
                emit(o, stream: s, into: &batch)
            }
        }
    }

    /// Forgets everything (the file is read again from its start).
    public mutating func reset() {
        open = [nil, nil, nil]
        discarding = [nil, nil, nil]
    }

    // MARK: per line

    private mutating func step(_ r: Record, _ batch: inout RecordBatch, now: Double, line lineOffset: Int64?) {
        let s = Int(r.stream.rawValue) % 3
        let end = max(r.offset, lineOffset ?? r.offset)
        guard r.message.lowerBound >= 0, r.message.upperBound <= batch.bytes.count else {
            // Not a line of this batch's arena (never from the decoder): shipped alone, in order.
            if let o = open[s] {
                open[s] = nil
                emit(o, stream: s, into: &batch)
            }
            discarding[s] = nil
            batch.records.append(r)
            return
        }
        var closed: Open?
        var shipLine = false
        batch.bytes.withUnsafeBytes { arena in
            let line = UnsafeRawBufferPointer(rebasing: arena[r.message])
            if open[s] == nil, let d = discarding[s] {
                if let next = rules.continues(line, after: d.state) {
                    discarding[s] = (next, now)
                    stats.dropped += 1
                    return
                }
                discarding[s] = nil
            }
            if let o = open[s], let next = rules.continues(line, after: o.state) {
                stats.merged += 1
                if let cut = append(line, offset: end, flags: r.flags, state: next, stream: s, now: now) {
                    closed = cut
                    discarding[s] = (next, now)
                }
                return
            }
            closed = open[s]
            open[s] = nil
            let state = rules.initial(line)
            if state == .closed {
                // Nothing can join it (an ordinary line in python/go mode): ship it now, as it is.
                shipLine = true
            } else {
                var bytes = spare.popLast() ?? []
                bytes.append(contentsOf: line)
                open[s] = Open(bytes: bytes, timestamp: r.timestamp, offset: r.offset, lastOffset: end,
                               flags: r.flags, state: state, lastLine: now)
            }
        }
        // The line is in a record kept here now (or dropped): its bytes, the last of the arena, go.
        if !shipLine && r.fields.isEmpty && r.message.upperBound == batch.bytes.count {
            batch.bytes.removeLast(r.message.count)
        }
        if let c = closed { emit(c, stream: s, into: &batch) }
        if shipLine { batch.records.append(r) }
    }

    /// Joins `line` to stream `s`'s open record. Returns the record when that made it longer than
    /// max_bytes: it is then cut (on a UTF-8 character boundary), flagged truncated and closed.
    private mutating func append(_ line: UnsafeRawBufferPointer, offset: Int64, flags: RecordFlags, state next: State,
                                 stream s: Int, now: Double) -> Open? {
        guard var o = open[s] else { return nil }
        open[s] = nil
        o.state = next
        o.lastLine = now
        o.lastOffset = offset
        // A line the decoder had to cut makes the whole record incomplete.
        if flags.contains(.truncated) { o.flags.insert(.truncated) }
        if MultilineRules.isBlank(line) {
            // Bounded: blanks beyond max_bytes could never be written anyway.
            if o.bytes.count + o.blankTail.count + separator.count + line.count <= maxBytes {
                o.blankTail.append(contentsOf: separator)
                o.blankTail.append(contentsOf: line)
            }
            open[s] = o
            return nil
        }
        o.bytes.append(contentsOf: o.blankTail)
        o.blankTail.removeAll()
        o.bytes.append(contentsOf: separator)
        o.bytes.append(contentsOf: line)
        if o.bytes.count <= maxBytes {
            open[s] = o
            return nil
        }
        var cut = maxBytes
        var back = 0
        while cut > 0 && back < 3 && o.bytes[cut] & 0xC0 == 0x80 {
            cut -= 1
            back += 1
        }
        o.bytes.removeLast(o.bytes.count - cut)
        o.flags.insert(.truncated)
        stats.truncated += 1
        return o
    }

    /// Appends a closed record (no longer in `open`) to the batch and keeps its buffer for reuse.
    private mutating func emit(_ o: consuming Open, stream s: Int, into batch: inout RecordBatch) {
        let start = batch.bytes.count
        batch.bytes.append(contentsOf: o.bytes)
        batch.records.append(Record(timestamp: o.timestamp, offset: o.offset, message: start..<batch.bytes.count,
                                    stream: LogStream(rawValue: UInt8(s)) ?? .none, flags: o.flags))
        var b = o.bytes
        o.bytes = []
        recycle(&b)
    }

    /// Keeps `b` (emptied) for a later record, unless it is larger than an ordinary line (thousands of
    /// idle files must not each pin a trace-sized buffer) or two are kept (one per stream suffices:
    /// a line closing a record and opening the next reuses the closed one's buffer at the next line).
    private mutating func recycle(_ b: inout [UInt8]) {
        guard b.capacity <= Self.keepCapacity, spare.count < 2 else { return }
        b.removeAll(keepingCapacity: true)
        spare.append(b)
        b = []
    }
}
