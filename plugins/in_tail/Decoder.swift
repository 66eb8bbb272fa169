import AnduinCore

/// How the lines of a file are framed.
public enum LogFormat: String, CaseIterable, Sendable {
    case auto, docker, cri, raw
}

public struct DecodeStats: Sendable {
    /// Lines decoded (empty docker/CRI lines are not counted: they carry nothing).
    public var lines = 0
    /// Lines invalid for their format, emitted as raw records.
    public var decodeErrors = 0
    /// Lines decoded whose time was not valid RFC 3339: they carry the read time instead.
    public var invalidTimes = 0
    /// Records emitted with the `.truncated` flag (cut by the reader or by the record cap).
    public var truncated = 0
    /// Partial parts appended to a record begun by an earlier line.
    public var partsMerged = 0
    /// The first line invalid for its format since the last `takeStats()`: its offset, first bytes
    /// and why, for the one warning per file that says so.
    public var firstError: DecodeError?
    public init() {}
}

public struct DecodeError: Sendable, Equatable {
    public var offset: Int64
    public var head: [UInt8]
    public var format: LogFormat
    /// The format was found by `format: auto` from the file's first line.
    public var detected: Bool

    /// What the line should have looked like.
    public var reason: String {
        switch format {
        case .docker: return "not a Docker json-file line ({\"log\":\"…\",\"stream\":\"…\",\"time\":\"…\"})"
        case .cri: return "not a CRI line (TIME STREAM P|F MESSAGE)"
        case .raw, .auto: return "not a line"
        }
    }
}

/// Decodes the lines of one file. One per tailed file, used by one thread.
public struct LineDecoder: Sendable {
    public let format: LogFormat
    public private(set) var resolvedFormat: LogFormat
    public let maxRecordBytes: Int

    /// A record being assembled from partial parts (Docker and CRI split long lines at 16 KiB).
    struct Pending: Sendable {
        var bytes: [UInt8] = []
        var active = false
        /// The cap was reached: later parts are dropped, not appended, so no gap appears mid-record.
        var full = false
        var offset: Int64 = 0
        var timestamp: Int64 = 0
        var since: Double = 0
        var flags: RecordFlags = []
    }

    /// Pending records by `LogStream.rawValue`: stdout and stderr interleave, each merges alone.
    var pending: [Pending]
    var stats = DecodeStats()

    /// Pending buffers larger than this are released after use, so thousands of idle files don't
    /// each pin a record-sized buffer.
    static let keepCapacity = 64 * 1024

    public init(format: LogFormat, maxRecordBytes: Int) {
        self.format = format
        self.resolvedFormat = format
        self.maxRecordBytes = max(1, maxRecordBytes)
        self.pending = [Pending(), Pending(), Pending()]
    }

    /// `line`: one complete line without its trailing "\n". `offset`: file offset of its first byte.
    /// `truncated`: the reader already cut this line at max_line_bytes. `readTime`: wall-clock ns
    /// (timestamp for raw lines and for lines whose time can't be parsed).
    /// Appends zero or one record to `batch` (zero when the line is a partial part kept pending).
    public mutating func decode(line: UnsafeRawBufferPointer, offset: Int64, truncated: Bool,
                                readTime: Int64, into batch: inout RecordBatch) {
        var fmt = resolvedFormat
        if fmt == .auto {
            // Blank lines say nothing about the format; skip them until one does.
            if Self.isBlank(line) { return }
            fmt = Self.detect(line)
            resolvedFormat = fmt
        }
        let flags: RecordFlags = truncated ? .truncated : []
        switch fmt {
        case .raw, .auto:
            stats.lines += 1
            emitRaw(line, offset: offset, flags: flags, readTime: readTime, into: &batch)
        case .docker:
            if Self.isBlank(line) { return }
            stats.lines += 1
            if !decodeDocker(line, offset: offset, flags: flags, readTime: readTime, into: &batch) {
                noteError(line, offset: offset, format: .docker)
                emitRaw(line, offset: offset, flags: flags, readTime: readTime, into: &batch)
            }
        case .cri:
            if Self.isBlank(line) { return }
            stats.lines += 1
            if !decodeCRI(line, offset: offset, flags: flags, readTime: readTime, into: &batch) {
                noteError(line, offset: offset, format: .cri)
                emitRaw(line, offset: offset, flags: flags, readTime: readTime, into: &batch)
            }
        }
    }

    private mutating func noteError(_ line: UnsafeRawBufferPointer, offset: Int64, format fmt: LogFormat) {
        stats.decodeErrors += 1
        if stats.firstError == nil {
            stats.firstError = DecodeError(offset: offset, head: Array(line.prefix(64)), format: fmt, detected: format == .auto)
        }
    }

    /// File offset of the first byte of the oldest pending partial record (min over streams), nil
    /// if none. Checkpoints must not pass it.
    public var pendingStart: Int64? {
        var best: Int64?
        for p in pending where p.active { best = min(best ?? p.offset, p.offset) }
        return best
    }

    /// Monotonic seconds (AnduinCore.monotonicSeconds()) when the oldest pending part arrived.
    public var pendingSince: Double? {
        var best: Double?
        for p in pending where p.active { best = min(best ?? p.since, p.since) }
        return best
    }

    /// Emits every pending partial record as it is (at rotation, stop, or after a timeout), oldest
    /// first.
    public mutating func flushPending(into batch: inout RecordBatch) {
        while true {
            var next = -1
            for s in pending.indices where pending[s].active {
                if next < 0 || pending[s].offset < pending[next].offset { next = s }
            }
            if next < 0 { return }
            emitPending(next, complete: false, into: &batch)
        }
    }

    /// `format: auto` goes on with the format an earlier run detected on this file (nil: detect it
    /// from the next line, as for a new file).
    public mutating func assumeDetected(_ detected: LogFormat?) {
        guard format == .auto, let detected, detected != .auto else { return }
        resolvedFormat = detected
    }

    /// Forget all state (the file was truncated and is re-read from 0). `auto` is detected again.
    public mutating func reset() {
        for s in pending.indices { clearPending(s) }
        resolvedFormat = format
    }

    /// Counts since the last `takeStats()`.
    public mutating func takeStats() -> DecodeStats {
        let s = stats
        stats = DecodeStats()
        return s
    }

    // MARK: detection

    @inline(__always)
    static func isBlank(_ line: UnsafeRawBufferPointer) -> Bool {
        line.isEmpty || (line.count == 1 && line[0] == 0x0D)
    }

    /// `{` => docker; a valid CRI header => cri; else raw.
    static func detect(_ line: UnsafeRawBufferPointer) -> LogFormat {
        guard let p = line.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return .raw }
        if p[0] == 0x7B { return .docker }
        if parseCRIHeader(p, line.count) != nil { return .cri }
        return .raw
    }

    // MARK: emitting

    /// A line emitted as it is: raw format, or a line invalid for its format.
    mutating func emitRaw(_ line: UnsafeRawBufferPointer, offset: Int64, flags: RecordFlags,
                          readTime: Int64, into batch: inout RecordBatch) {
        var body = line
        // A cut line's last byte is not a line ending.
        if !flags.contains(.truncated), let last = body.last, last == 0x0D {
            body = UnsafeRawBufferPointer(rebasing: body.dropLast())
        }
        let start = batch.bytes.count
        var f = flags
        if !Self.appendCapped(body, to: &batch.bytes, start: start, cap: maxRecordBytes) { f.insert(.truncated) }
        addRecord(start: start, timestamp: readTime, offset: offset, stream: .none, flags: f, into: &batch)
    }

    /// A complete single-part record whose bytes are `batch.bytes[start...]`: caps it, strips a
    /// final "\r" (unless the line was cut: then it is not a line ending), and adds it.
    mutating func finishInArena(start: Int, timestamp: Int64, offset: Int64, stream: LogStream,
                                flags: RecordFlags, into batch: inout RecordBatch) {
        var f = flags
        if batch.bytes.count - start > maxRecordBytes {
            batch.bytes.removeLast(batch.bytes.count - start - maxRecordBytes)
            Self.trimPartialUTF8(&batch.bytes, from: start)
            f.insert(.truncated)
        } else if !f.contains(.truncated), batch.bytes.count > start, batch.bytes[batch.bytes.count - 1] == 0x0D {
            batch.bytes.removeLast()
        }
        addRecord(start: start, timestamp: timestamp, offset: offset, stream: stream, flags: f, into: &batch)
    }

    @inline(__always)
    mutating func addRecord(start: Int, timestamp: Int64, offset: Int64, stream: LogStream,
                            flags: RecordFlags, into batch: inout RecordBatch) {
        if flags.contains(.truncated) { stats.truncated += 1 }
        batch.records.append(Record(timestamp: timestamp, offset: offset, message: start..<batch.bytes.count,
                                    stream: stream, flags: flags))
    }

    /// Adds one part to the pending record of stream `s`, starting it if there is none.
    mutating func addPart(_ s: Int, _ part: UnsafeRawBufferPointer, timestamp: Int64, offset: Int64,
                          flags: RecordFlags) {
        if pending[s].active {
            stats.partsMerged += 1
        } else {
            pending[s].active = true
            pending[s].offset = offset
            pending[s].timestamp = timestamp
            pending[s].since = monotonicSeconds()
        }
        pending[s].flags.formUnion(flags)
        guard !pending[s].full else { return }
        if !Self.appendCapped(part, to: &pending[s].bytes, start: 0, cap: maxRecordBytes) {
            pending[s].full = true
            pending[s].flags.insert(.truncated)
        }
    }

    /// Emits the pending record of stream `s`; `complete` when its last part ended the line.
    mutating func emitPending(_ s: Int, complete: Bool, into batch: inout RecordBatch) {
        if complete && !pending[s].full, pending[s].bytes.last == 0x0D { pending[s].bytes.removeLast() }
        let start = batch.bytes.count
        batch.bytes.append(contentsOf: pending[s].bytes)
        addRecord(start: start, timestamp: pending[s].timestamp, offset: pending[s].offset,
                  stream: LogStream(rawValue: UInt8(s)) ?? .none, flags: pending[s].flags, into: &batch)
        clearPending(s)
    }

    mutating func clearPending(_ s: Int) {
        pending[s].bytes.removeAll(keepingCapacity: pending[s].bytes.capacity <= Self.keepCapacity)
        pending[s].active = false
        pending[s].full = false
        pending[s].flags = []
    }

    /// Appends as much of `src` as fits in `cap` bytes counted from `buf[start]`. Returns false when
    /// bytes were dropped; the kept part then ends on a character boundary.
    @inline(__always)
    static func appendCapped(_ src: UnsafeRawBufferPointer, to buf: inout [UInt8], start: Int, cap: Int) -> Bool {
        let room = cap - (buf.count - start)
        if src.count <= room {
            buf.append(contentsOf: src)
            return true
        }
        if room > 0 { buf.append(contentsOf: UnsafeRawBufferPointer(rebasing: src[..<room])) }
        trimPartialUTF8(&buf, from: start)
        return false
    }

    /// Drops a UTF-8 sequence cut short at the end of `buf[from...]`, so a cap never leaves half a
    /// character (it would become U+FFFD on output).
    static func trimPartialUTF8(_ buf: inout [UInt8], from lower: Int) {
        let end = buf.count
        var i = end - 1
        // A sequence is at most 4 bytes: look back at most 3 continuation bytes for its lead.
        while i >= lower && i >= end - 4 {
            let c = buf[i]
            if c & 0xC0 != 0x80 {
                let need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1
                if end - i < need { buf.removeLast(end - i) }
                return
            }
            i -= 1
        }
    }
}
