import AnduinCore
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Reading: bytes of a file into decoded batches, handed on with the position they make safe.
/// One read buffer for every file, so memory does not grow with the number of files. Owned by the
/// tail thread.
final class LineReader {
    private let config: TailConfig
    private let name: String
    private let logger: Logger
    let tracker: AckTracker
    private let sink: any BatchSink
    private var buffer: UnsafeMutableRawBufferPointer
    /// Last position registered per file id: an empty read registers nothing new.
    private var lastRegistered: [Int: AckTracker.Position] = [:]
    private let recordsOut, bytesRead, decodeErrors, invalidTimes, truncatedLines, partsMerged: Counter
    /// `multiline:` counters (nil without it).
    private let joined: (merged: Counter, truncated: Counter, dropped: Counter)?
    /// Monotonic time of the current read, for the joiner's flush_timeout.
    private var readAt: Double = 0

    init(config: TailConfig, name: String, logger: Logger, tracker: AckTracker, sink: any BatchSink, stats: ComponentStats) {
        self.config = config
        self.name = name
        self.logger = logger
        self.tracker = tracker
        self.sink = sink
        buffer = .allocate(byteCount: 256 * 1024, alignment: 16)
        recordsOut = stats.counter("records_out", "records read and passed on")
        bytesRead = stats.counter("bytes_read", "bytes read from files")
        decodeErrors = stats.counter("decode_errors", "lines that did not match the format (shipped as plain messages)")
        invalidTimes = stats.counter("invalid_times", "lines whose time was not RFC 3339: kept, with the read time")
        truncatedLines = stats.counter("truncated_records", "records cut at max_line_bytes")
        partsMerged = stats.counter("partial_parts_merged", "Docker/CRI partial parts merged into records")
        joined = config.multiline == nil ? nil
            : (stats.counter("multiline_merged", "lines joined into the record before them (multiline)"),
               stats.counter("multiline_truncated", "joined records cut at multiline.max_bytes"),
               stats.counter("multiline_dropped", "continuation lines dropped after their record reached multiline.max_bytes"))
    }

    deinit { buffer.deallocate() }

    /// A file starts (or restarts) at its current position: nothing of it is in flight.
    func register(_ f: TailedFile) {
        tracker.setAcked(fileID: f.id, position: f.position)
        lastRegistered[f.id] = f.position
    }

    func forget(_ id: Int) {
        lastRegistered[id] = nil
        decodeWarned[id] = nil
    }

    /// Files (by id) whose decode errors were said, with the format they did not fit: once per file
    /// and cause, the counter counts every line.
    private var decodeWarned: [Int: LogFormat] = [:]

    private func warnDecodeError(_ f: TailedFile, _ e: DecodeError, count: Int) {
        guard decodeWarned[f.id] != e.format else { return }
        decodeWarned[f.id] = e.format
        var head = ""
        for b in e.head {
            if b >= 0x20 && b < 0x7F && b != UInt8(ascii: "\\") { head.append(Character(UnicodeScalar(b))) } else {
                head += "\\x" + String(b, radix: 16, uppercase: false).leftPadded(2)
            }
        }
        let how = e.detected ? "format \(e.format.rawValue), detected by format: auto from the file's first line" : "format: \(e.format.rawValue)"
        let hint = e.detected && e.format == .docker && e.head.first == UInt8(ascii: "{")
            ? "; a file of plain JSON lines (an application's own log) needs format: raw, and the parse filter lifts its fields" : ""
        logger.warning("\(f.path): line at offset \(e.offset) does not fit \(how): \(e.reason); it begins \"\(head)\"\(e.head.count >= 64 ? "…" : "")\(hint). Shipped as a plain message; decode_errors counts every such line (\(count) in this read), this is said once per file")
    }

    /// Reads up to the per-file budget while the emitter has room. Returns true when the file has
    /// more to read right away. `size`: the file's size as just looked at. `checkLineEnd`: the
    /// first read also takes the byte before `readOffset` (one syscall); when it is not a line end,
    /// nothing is read and `lineEndMissing` is set (the file was truncated and rewritten past it).
    func read(_ f: TailedFile, size: Int64, checkLineEnd: Bool = false, lineEndMissing: inout Bool,
              isStopping: () -> Bool) -> Bool {
        if size <= f.readOffset {
            f.atEnd = true
            return false
        }
        guard f.establishIdentity(), let source = f.source else {
            f.atEnd = true  // all there is, an unterminated first line (shipped if rotated away)
            return false
        }
        let now = monotonicSeconds()
        readAt = now
        var consumed = 0
        var checkLineEnd = checkLineEnd && f.readOffset > 0
        while consumed < config.readBudget && !isStopping() {
            if !sink.hasRoom { return true }
            let base = f.readOffset
            var n: Int
            if checkLineEnd {
                checkLineEnd = false
                var before: UInt8 = 0
                n = withUnsafeMutablePointer(to: &before) { b in
                    var iov = [iovec(iov_base: UnsafeMutableRawPointer(b), iov_len: 1),
                               iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)]
                    return preadv(f.fd, &iov, 2, off_t(base - 1))
                }
                if n >= 1 && before != 0x0A {
                    lineEndMissing = true
                    return false
                }
                n -= 1
            } else {
                n = pread(f.fd, buffer.baseAddress, buffer.count, off_t(base))
            }
            if n <= 0 {
                f.atEnd = true
                return false
            }
            bytesRead.add(n)
            f.lastDataAt = now
            var batch = RecordBatch(source: source, inputName: name, recordCapacity: 1024, byteCapacity: n)
            let full = n == buffer.count
            let used = scan(f, base: base, count: n, full: full, readTime: wallClockNanos(), into: &batch)
            consumed += max(used, 1)
            if used > 0 { f.atEnd = false; f.drainedSince = nil }
            emit(f, &batch)
            if used == 0 {
                // One incomplete line fills the buffer: grow it, up to max_line_bytes + 1.
                if full && buffer.count <= config.maxLineBytes {
                    grow()
                    continue
                }
                f.atEnd = true  // only an unterminated last line is left
                return false
            }
            if !full {
                f.atEnd = f.readOffset >= size
                return false
            }
        }
        return !isStopping()
    }

    /// Splits a chunk into lines and decodes them. Returns how many bytes were consumed.
    private func scan(_ f: TailedFile, base: Int64, count n: Int, full: Bool, readTime: Int64,
                      into batch: inout RecordBatch) -> Int {
        guard let p = buffer.baseAddress else { return 0 }
        var pos = 0
        if f.longLineStart != nil {
            // Skipping the rest of an over-long line.
            guard let nl = memchr(p, 0x0A, n) else {
                f.readOffset = base + Int64(n)
                return n
            }
            pos = p.distance(to: nl) + 1
            f.longLineStart = nil
        }
        while pos < n {
            guard let nl = memchr(p + pos, 0x0A, n - pos) else { break }
            let end = p.distance(to: nl)
            decode(f, UnsafeRawBufferPointer(start: p + pos, count: end - pos), at: base + Int64(pos),
                   truncated: false, readTime: readTime, into: &batch)
            pos = end + 1
        }
        if pos == 0 && full && n > config.maxLineBytes {
            // No newline in max_line_bytes + 1 bytes: ship the first max_line_bytes, flagged, skip the rest.
            decode(f, UnsafeRawBufferPointer(start: p, count: config.maxLineBytes), at: base,
                   truncated: true, readTime: readTime, into: &batch)
            f.longLineStart = base
            f.readOffset = base + Int64(n)
            logger.warning("\(f.path): line at offset \(base) is longer than max_line_bytes (\(config.maxLineBytes)); shipped cut and flagged truncated")
            return n
        }
        f.readOffset = base + Int64(pos)
        return pos
    }

    private func decode(_ f: TailedFile, _ line: UnsafeRawBufferPointer, at offset: Int64, truncated: Bool,
                        readTime: Int64, into batch: inout RecordBatch) {
        let before = batch.records.count
        f.decoder.decode(line: line, offset: offset, truncated: truncated, readTime: readTime, into: &batch)
        // Records closed by this line (a joined record it does not continue) are completed at
        // `offset` too, past all their lines: the replay rule below holds for them as it is.
        f.joiner?.join(&batch, from: before, now: readAt, line: offset)
        if batch.records.count > before, offset < f.replayUntil {
            // The last run delivered it: it completed before that run's delivered position.
            batch.records.removeLast(batch.records.count - before)
        }
    }

    /// A rotated file about to be closed: its last line has no newline and never will. Ship it.
    func readUnterminatedTail(_ f: TailedFile) {
        // A file whose only line is unterminated has no identity until now.
        guard f.longLineStart == nil, let size = f.size(), size > f.readOffset, f.establishIdentity(final: true), let source = f.source,
              let p = buffer.baseAddress else { return }
        let want = Int(min(size - f.readOffset, Int64(min(buffer.count, config.maxLineBytes))))
        let n = pread(f.fd, p, want, off_t(f.readOffset))
        guard n > 0 else { return }
        var batch = RecordBatch(source: source, inputName: name)
        readAt = monotonicSeconds()
        decode(f, UnsafeRawBufferPointer(start: p, count: n), at: f.readOffset, truncated: false,
               readTime: wallClockNanos(), into: &batch)
        f.readOffset = size
        f.readOffsetMidLine = true
        emit(f, &batch)
    }

    /// Ships a partial record whose last part never came.
    func flushPartial(_ f: TailedFile) {
        guard let source = f.source else { return }
        var batch = RecordBatch(source: source, inputName: name)
        f.decoder.flushPending(into: &batch)
        f.joiner?.join(&batch, from: 0, now: monotonicSeconds(), line: f.readOffset)
        emit(f, &batch)
    }

    /// Ships the joined records of `f` waiting longer than flush_timeout (`all`: every one, the file
    /// is closing or starting over).
    func flushJoined(_ f: TailedFile, now: Double, all: Bool = false) {
        guard f.joiner != nil, let source = f.source else { return }
        var batch = RecordBatch(source: source, inputName: name)
        f.joiner?.flush(into: &batch, now: now, all: all, pendingFrom: f.decoder.pendingStart)
        emit(f, &batch)
    }

    var hasRoom: Bool { sink.hasRoom }

    private func grow() {
        let newSize = min(buffer.count * 2, config.maxLineBytes + 1)
        guard newSize > buffer.count else { return }
        buffer.deallocate()
        buffer = .allocate(byteCount: newSize, alignment: 16)
    }

    /// Hands a batch on and registers the offset it makes safe.
    private func emit(_ f: TailedFile, _ batch: inout RecordBatch) {
        let stats = f.decoder.takeStats()
        if stats.decodeErrors > 0 { decodeErrors.add(stats.decodeErrors) }
        if let e = stats.firstError { warnDecodeError(f, e, count: stats.decodeErrors) }
        if stats.invalidTimes > 0 { invalidTimes.add(stats.invalidTimes) }
        if stats.truncated > 0 { truncatedLines.add(stats.truncated) }
        if stats.partsMerged > 0 { partsMerged.add(stats.partsMerged) }
        if let joined, let j = f.joiner?.takeStats(), j != LineJoiner.Stats() {
            if j.merged > 0 { joined.merged.add(j.merged) }
            if j.truncated > 0 { joined.truncated.add(j.truncated) }
            if j.dropped > 0 { joined.dropped.add(j.dropped) }
        }
        let position = f.position
        if batch.isEmpty && lastRegistered[f.id] == position { return }
        lastRegistered[f.id] = position
        let registration = tracker.register(fileID: f.id, position: position)
        if batch.isEmpty {
            tracker.complete(registration)
            return
        }
        recordsOut.add(batch.count)
        batch.compact()
        let tracker = self.tracker
        sink.push(batch, AckToken { tracker.complete(registration) })
        batch = RecordBatch(source: batch.source, inputName: name)
    }
}

private extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
