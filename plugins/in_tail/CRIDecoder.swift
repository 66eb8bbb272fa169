import AnduinCore

// CRI (containerd, CRI-O): `<RFC3339Nano> <stdout|stderr> <tag> <message>`, single spaces. The
// tag's first letter says `P`artial (continued by the next line of the stream) or `F`ull; more
// flags may follow after `:`. The message may be empty (with or without the space before it).

extension LineDecoder {
    struct CRIHeader {
        var timestamp: Int64
        var stream: LogStream
        var partial: Bool
        var messageStart: Int
        var invalidTime = false
    }

    /// Parses the header of a CRI line, nil if it isn't one. With `readTime`, a header whose time is
    /// not RFC 3339 but is otherwise valid is accepted with that time (`invalidTime` set); without it
    /// (format detection) the time must be valid.
    static func parseCRIHeader(_ p: UnsafePointer<UInt8>, _ n: Int, readTime: Int64? = nil) -> CRIHeader? {
        // A timestamp is at most ~35 bytes (more fraction digits are allowed, but not unbounded):
        // don't scan a long raw line looking for a space.
        var sp = 0
        let limit = min(n, 64)
        while sp < limit && p[sp] != 0x20 { sp += 1 }
        guard sp < limit else { return nil }
        let ts: Int64
        var invalidTime = false
        if let t = Timestamp.parseRFC3339(UnsafeRawBufferPointer(start: p, count: sp)) {
            ts = t
        } else if let readTime, sp > 0 {
            ts = readTime
            invalidTime = true
        } else {
            return nil
        }
        var i = sp + 1
        guard n - i >= 7, p[i + 6] == 0x20 else { return nil }
        let stream = streamNamed(p + i, 6)
        guard stream != .none else { return nil }
        i += 7
        let tagStart = i
        while i < n && p[i] != 0x20 { i += 1 }
        guard i > tagStart else { return nil }
        let partial: Bool
        switch p[tagStart] {
        case 0x50: partial = true
        case 0x46: partial = false
        default: return nil
        }
        return CRIHeader(timestamp: ts, stream: stream, partial: partial, messageStart: i < n ? i + 1 : n,
                         invalidTime: invalidTime)
    }

    /// Decodes one CRI line; false (nothing appended) when the header is invalid.
    /// An invalid time keeps the line (message and stream) with `readTime`, counted in
    /// `stats.invalidTimes`.
    mutating func decodeCRI(_ line: UnsafeRawBufferPointer, offset: Int64, flags: RecordFlags,
                            readTime: Int64, into batch: inout RecordBatch) -> Bool {
        guard let p = line.baseAddress?.assumingMemoryBound(to: UInt8.self),
              let h = Self.parseCRIHeader(p, line.count, readTime: readTime) else { return false }
        if h.invalidTime { stats.invalidTimes += 1 }
        let message = UnsafeRawBufferPointer(start: p + h.messageStart, count: line.count - h.messageStart)
        let s = Int(h.stream.rawValue)
        if !h.partial && !pending[s].active {
            let start = batch.bytes.count
            var f = flags
            if !Self.appendCapped(message, to: &batch.bytes, start: start, cap: maxRecordBytes) { f.insert(.truncated) }
            finishInArena(start: start, timestamp: h.timestamp, offset: offset, stream: h.stream, flags: f, into: &batch)
            return true
        }
        addPart(s, message, timestamp: h.timestamp, offset: offset, flags: flags)
        if !h.partial { emitPending(s, complete: true, into: &batch) }
        return true
    }
}
