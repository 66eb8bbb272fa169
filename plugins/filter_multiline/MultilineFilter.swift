import AnduinCore
import Multiline

/// The `multiline` filter: joins the lines of a stack trace (or any multi-line message) into one record,
/// for records of an input that does not join them itself. Files are better joined by `multiline:` on
/// the `tail` input, before acknowledgements exist: a crash then never ships a fragment.
///
/// Here a held record keeps the tokens of the batches its lines came in, so its input does not
/// checkpoint past them until it is delivered: a crash loses nothing of it. Nothing more is promised
/// across a crash: records shipped next to a held one are read and shipped again after a kill -9.
///
///     filters:
///       traces:
///         type: multiline
///         from: [containers]
///         mode: java              # java | python | go | custom
///         flush_timeout: 1s       # a record waiting this long without a new line is shipped
///         max_bytes: 1MiB         # longer merged records are cut and flagged truncated
///         separator: "\n"
///
/// Lines are joined per source (a file's identity, see `Key`) and stream, so stdout and stderr of one
/// container never mix, and lines of a rotated file and its successor are never joined.
/// The merged record keeps its first line's timestamp, offset (so its `event.id`), stream and fields.
public enum MultilinePlugin {
    /// The options are the tail's `multiline:` group's: one table, `MultilineSettings.table`.
    public static let spec: PluginSpec = .filter("multiline", "join stack traces and other multi-line messages into one record, for records of inputs that do not join them (for files, `multiline:` on the tail input is exact across crashes; this filter is not)",
                                                 options: MultilineSettings.table.options) { reader in
        MultilineSettings.table.parse(reader).map(MultilineConfig.init)
    }
}

public struct MultilineConfig: FilterConfig {
    /// The options, declared and read once for this filter and the tail's `multiline:`.
    public var settings: MultilineSettings

    public init(_ settings: MultilineSettings) { self.settings = settings }

    public func build(_ context: ComponentContext) throws -> any Filter {
        MultilineFilter(config: self, context: context)
    }
}

public final class MultilineFilter: StatefulFilter {
    typealias State = MultilineRules.State

    /// One stream of one file. By the file's identity, not its path: lines of a rotated file and of
    /// its successor at the same path are never joined, and a rename does not cut a record.
    struct Key: Hashable {
        var sourceID: UInt64
        /// For sources without an identity (sourceID 0).
        var path: String
        var stream: LogStream

        init(_ source: SourceInfo, _ stream: LogStream) {
            sourceID = source.sourceID
            path = source.sourceID == 0 ? source.path : ""
            self.stream = stream
        }
    }

    /// A record of several lines, its bytes copied out of the batches its lines came from.
    /// A class so that each joined line appends in place, without moving the record around; only
    /// touched under the `held` lock.
    final class Merged {
        let source: SourceInfo
        let inputName: String
        let sharedFields: [UInt8]
        let timestamp: Int64
        let offset: Int64
        let stream: LogStream
        var flags: RecordFlags
        var message: [UInt8]
        /// Trailing blank lines with their separators: written only if a non-blank line follows, so
        /// a trace never ends in empty lines.
        var blankTail: [UInt8] = []
        let fields: [UInt8]
        /// Tokens of the earlier batches its lines came from, kept until the record is emitted.
        var tokens: [AckToken] = []
        /// A line of the batch being processed is in it (its token is added when the record is carried).
        var hasCurrent = true
        var state: State
        var lastLine: Double

        init(source: SourceInfo, inputName: String, sharedFields: [UInt8], record r: Record, message: [UInt8],
             fields: [UInt8], state: State, now: Double) {
            self.source = source
            self.inputName = inputName
            self.sharedFields = sharedFields
            timestamp = r.timestamp
            offset = r.offset
            stream = r.stream
            flags = r.flags
            self.message = message
            self.fields = fields
            self.state = state
            lastLine = now
        }
    }

    enum Open {
        /// One line of the batch being processed, not copied (shipped as is if nothing joins it).
        case local(index: Int, state: State)
        case merged(Merged)
    }

    /// What a stream holds between batches.
    struct Held {
        var open: Merged?
        /// State of a record cut at max_bytes: its remaining continuation lines are dropped.
        var discarding: State?
        var lastLine: Double
    }

    let rules: MultilineRules
    let timeout: Double
    let maxBytes: Int
    let separator: [UInt8]
    let clock: @Sendable () -> Double
    /// Every stream's held record. One lock for process, tick and flush, held while emitting too:
    /// that keeps each stream's records in order (a tick flushing a record can't overtake or be
    /// overtaken by the next batch's records). It waits on nothing but the outputs' queues, whose
    /// threads never take it, so it cannot deadlock.
    let held = Locked([Key: Held]())

    let merged: Counter
    let truncated: Counter
    let dropped: Counter
    let pending: Gauge

    init(config: MultilineConfig, context: ComponentContext, clock: @escaping @Sendable () -> Double = { monotonicSeconds() }) {
        let s = config.settings
        rules = MultilineRules(s)
        timeout = s.flushTimeout
        maxBytes = s.maxBytes
        separator = Array(s.separator.utf8)
        self.clock = clock
        merged = context.stats.counter("records_merged", "lines joined into the record before them")
        truncated = context.stats.counter("records_truncated", "merged records cut at max_bytes")
        dropped = context.stats.counter("records_dropped", "continuation lines dropped after their record reached max_bytes")
        pending = context.stats.gauge("records_pending", "records waiting for their next line")
    }

    // MARK: StatefulFilter

    public func process(_ batch: RecordBatch, ack: AckToken, emit: (RecordBatch, AckToken) -> Void) {
        let now = clock()
        held.withLock { held in
            var out = Output(batch)
            var counts = Counts()
            // By stream (none, stdout, stderr): the keys of this batch, loaded on first use and
            // updated in place (a copy per line would cost more than the line's own work).
            var slots = [Slot(), Slot(), Slot()]
            batch.bytes.withUnsafeBytes { arena in
                for i in batch.records.indices {
                    let r = batch.records[i]
                    let s = Int(r.stream.rawValue) % 3
                    if slots[s].key == nil {
                        let key = Key(batch.source, r.stream)
                        let h = held.removeValue(forKey: key)
                        slots[s] = Slot(key: key, open: h?.open.map { .merged($0) }, discarding: h?.discarding)
                    }
                    step(i, r, &slots[s], batch: batch, arena: arena, now: now, into: &out, ack: ack, counts: &counts)
                }
                // Carry what is still open: copy it out of the batch and keep the batch's token.
                for s in slots.indices {
                    guard let key = slots[s].key else { continue }
                    var m: Merged?
                    switch slots[s].open {
                    case .local(let index, let state)?:
                        m = makeMerged(index, state: state, batch: batch, arena: arena, now: now)
                    case .merged(let mm)?:
                        m = mm
                    case nil:
                        break
                    }
                    slots[s].open = nil
                    if let mm = m {
                        if mm.hasCurrent {
                            mm.tokens.append(ack)
                            mm.hasCurrent = false
                        }
                    }
                    if m != nil || slots[s].discarding != nil {
                        held[key] = Held(open: m, discarding: slots[s].discarding, lastLine: m?.lastLine ?? now)
                    }
                }
            }
            if counts.merged > 0 { merged.add(counts.merged) }
            if counts.truncated > 0 { truncated.add(counts.truncated) }
            if counts.dropped > 0 { dropped.add(counts.dropped) }
            pending.set(held.values.reduce(0) { $0 + ($1.open == nil ? 0 : 1) })
            out.emit(ack: ack, emit)
        }
    }

    struct Counts {
        var merged = 0
        var truncated = 0
        var dropped = 0
    }

    /// One line: joins it to its stream's open record, or closes that record and starts another.
    private func step(_ i: Int, _ r: Record, _ slot: inout Slot, batch: RecordBatch, arena: UnsafeRawBufferPointer,
                      now: Double, into out: inout Output, ack: AckToken, counts: inout Counts) {
        // A message an earlier filter lifted into fields is no line to join: ship it alone.
        guard !r.flags.contains(.messageLifted), r.message.lowerBound >= 0, r.message.upperBound <= arena.count else {
            close(&slot, into: &out, ack: ack)
            slot.discarding = nil
            out.appendOriginal(i)
            return
        }
        let line = UnsafeRawBufferPointer(rebasing: arena[r.message])
        if slot.open == nil, let d = slot.discarding {
            if let next = rules.continues(line, after: d) {
                slot.discarding = next
                counts.dropped += 1
                return
            }
            slot.discarding = nil
        }
        if let state = slot.open?.state, let next = rules.continues(line, after: state) {
            counts.merged += 1
            if append(line, offset: r.offset, flags: r.flags, state: next, to: &slot, batch: batch, arena: arena, now: now, into: &out, ack: ack) {
                counts.truncated += 1
            }
            return
        }
        close(&slot, into: &out, ack: ack)
        let state = rules.initial(line)
        if state == .closed {
            // Nothing can join it (an ordinary line in python/go mode): ship it now.
            out.appendOriginal(i)
        } else {
            slot.open = .local(index: i, state: state)
        }
    }

    public func tick(now: Double, emit: (RecordBatch, AckToken) -> Void) {
        flush(emit) { now - $0 >= timeout }
    }

    public func flushAll(emit: (RecordBatch, AckToken) -> Void) {
        flush(emit) { _ in true }
    }

    public func discardAll() {
        held.withLock { held in
            for h in held.values { h.open?.tokens.forEach { $0.abandon() } }
            held = [:]
            pending.set(0)
        }
    }

    /// Ships every held record whose last line time passes `due`.
    func flush(_ emit: (RecordBatch, AckToken) -> Void, due: (Double) -> Bool) {
        held.withLock { held in
            var ready: [Merged] = []
            for (key, h) in held where due(h.lastLine) {
                if let m = h.open { ready.append(m) }
                held[key] = nil
            }
            pending.set(held.values.reduce(0) { $0 + ($1.open == nil ? 0 : 1) })
            guard !ready.isEmpty else { return }
            // Oldest first, so one stream's records (and a file's offsets) go out in order.
            ready.sort { $0.lastLine < $1.lastLine }
            var groups = SideBatches()
            for m in ready { groups.add(m, currentAck: nil) }
            groups.emit(emit)
        }
    }

    // MARK: per line

    struct Slot {
        /// nil until the stream's first line in this batch.
        var key: Key?
        var open: Open?
        var discarding: State?
    }

    /// Joins `line` to the open record. Returns true when that made it reach max_bytes (it was then
    /// cut, shipped, and the rest of its lines will be dropped).
    private func append(_ line: UnsafeRawBufferPointer, offset: Int64, flags: RecordFlags, state next: State, to slot: inout Slot, batch: RecordBatch,
                        arena: UnsafeRawBufferPointer, now: Double, into out: inout Output, ack: AckToken) -> Bool {
        let m: Merged
        switch slot.open {
        case .local(let index, let state)?:
            m = makeMerged(index, state: state, batch: batch, arena: arena, now: now)
            slot.open = .merged(m)
        case .merged(let mm)?:
            m = mm
        case nil:
            return false
        }
        m.state = next
        m.hasCurrent = true
        m.lastLine = now
        // A line the input had to cut makes the whole record incomplete.
        if flags.contains(.truncated) { m.flags.insert(.truncated) }
        if MultilineRules.isBlank(line) {
            // Bounded: blanks beyond max_bytes could never be written anyway.
            if m.message.count + m.blankTail.count + separator.count + line.count <= maxBytes {
                m.blankTail.append(contentsOf: separator)
                m.blankTail.append(contentsOf: line)
            }
            return false
        }
        m.message.append(contentsOf: m.blankTail)
        m.blankTail.removeAll()
        m.message.append(contentsOf: separator)
        m.message.append(contentsOf: line)
        if m.message.count <= maxBytes { return false }
        // Cut at max_bytes, on a UTF-8 character boundary (at most 3 bytes back).
        var cut = maxBytes
        var back = 0
        while cut > 0 && back < 3 && m.message[cut] & 0xC0 == 0x80 {
            cut -= 1
            back += 1
        }
        m.message.removeLast(m.message.count - cut)
        m.flags.insert(.truncated)
        close(&slot, into: &out, ack: ack)
        slot.discarding = next
        return true
    }

    private func makeMerged(_ index: Int, state: State, batch: RecordBatch, arena: UnsafeRawBufferPointer, now: Double) -> Merged {
        let r = batch.records[index]
        let fieldsOK = !r.fields.isEmpty && r.fields.lowerBound >= 0 && r.fields.upperBound <= arena.count
        return Merged(source: batch.source, inputName: batch.inputName, sharedFields: batch.sharedFields, record: r,
                      message: Array(arena[r.message]), fields: fieldsOK ? Array(arena[r.fields]) : [],
                      state: state, now: now)
    }

    /// Ships the slot's open record.
    private func close(_ slot: inout Slot, into out: inout Output, ack: AckToken) {
        switch slot.open {
        case .local(let index, _)?: out.appendOriginal(index)
        case .merged(let m)?: out.appendMerged(m, ack: ack)
        case nil: break
        }
        slot.open = nil
    }
}

extension MultilineFilter.Open {
    var state: MultilineRules.State {
        switch self {
        case .local(_, let s): return s
        case .merged(let m): return m.state
        }
    }
}
