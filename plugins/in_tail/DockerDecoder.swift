import AnduinCore

// Docker json-file: `{"log":"...\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`.
// Docker splits lines at 16 KiB; a part whose `log` lacks the final "\n" continues in the next line
// of the same stream.

extension LineDecoder {
    /// Decodes one docker line; false (nothing appended, arena as before) when it is not valid.
    /// Keys may come in any order; others are skipped. A missing or invalid `time` falls back to
    /// `readTime` (an invalid one is counted in `stats.invalidTimes`); a `stream` other than
    /// stdout/stderr gives `.none`.
    mutating func decodeDocker(_ line: UnsafeRawBufferPointer, offset: Int64, flags: RecordFlags,
                               readTime: Int64, into batch: inout RecordBatch) -> Bool {
        let n = line.count
        guard let p = line.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return false }
        // `log` is unescaped straight into the arena: a full line (the common case) is then done
        // without a copy. The stream is often known only later, so parts move to `pending` after.
        let mark = batch.bytes.count
        var haveLog = false
        var stream = LogStream.none
        var timestamp = readTime
        var badTime = false
        var ok = false
        var i = JSONScan.skipWS(p, 0, n)
        if i < n && p[i] == 0x7B {
            i = JSONScan.skipWS(p, i + 1, n)
            if i < n && p[i] == 0x7D {
                i += 1
                ok = true
            }
            members: while !ok && i < n && p[i] == 0x22 {
                let keyStart = i + 1
                var k = keyStart
                guard let keyEscaped = JSONScan.scanString(p, &k, n) else { break }
                // Docker never escapes these keys; an escaped key is just some other key.
                let keyLen = keyEscaped ? -1 : k - 1 - keyStart
                i = JSONScan.skipWS(p, k, n)
                guard i < n, p[i] == 0x3A else { break }
                i = JSONScan.skipWS(p, i + 1, n)
                guard i < n else { break }
                if keyLen == 3 && Self.bytesEqual(p + keyStart, "log") {
                    guard p[i] == 0x22 else { break }
                    // A repeated key: the last one wins, as in common JSON parsers.
                    if haveLog { batch.bytes.removeLast(batch.bytes.count - mark) }
                    i += 1
                    guard JSONScan.appendUnescaped(p, &i, n, &batch.bytes) else { break }
                    haveLog = true
                } else if keyLen == 6 && Self.bytesEqual(p + keyStart, "stream") {
                    guard p[i] == 0x22 else { break }
                    let vs = i + 1
                    var e = vs
                    guard JSONScan.scanString(p, &e, n) != nil else { break }
                    stream = Self.streamNamed(p + vs, e - 1 - vs)
                    i = e
                } else if keyLen == 4 && Self.bytesEqual(p + keyStart, "time") {
                    // A time that is not RFC 3339 (or not a string) must not cost the line: it keeps
                    // its message and stream and gets the read time (counted). Shipping the raw
                    // envelope instead would leak its `time` into the document as a field.
                    timestamp = readTime
                    badTime = true
                    if p[i] == 0x22 {
                        let vs = i + 1
                        var e = vs
                        guard let escaped = JSONScan.scanString(p, &e, n) else { break }
                        if !escaped, let t = Timestamp.parseRFC3339(UnsafeRawBufferPointer(start: p + vs, count: e - 1 - vs)) {
                            timestamp = t
                            badTime = false
                        }
                        i = e
                    } else {
                        guard JSONScan.skipValue(p, &i, n) else { break }
                    }
                } else {
                    guard JSONScan.skipValue(p, &i, n) else { break }
                }
                i = JSONScan.skipWS(p, i, n)
                guard i < n else { break }
                if p[i] == 0x2C {
                    i = JSONScan.skipWS(p, i + 1, n)
                    continue
                }
                if p[i] == 0x7D {
                    i += 1
                    ok = true
                }
                break
            }
        }
        guard ok && haveLog && JSONScan.skipWS(p, i, n) == n else {
            batch.bytes.removeLast(batch.bytes.count - mark)
            return false
        }
        if badTime { stats.invalidTimes += 1 }

        let complete = batch.bytes.count > mark && batch.bytes[batch.bytes.count - 1] == 0x0A
        if complete { batch.bytes.removeLast() }
        let s = Int(stream.rawValue)
        if complete && !pending[s].active {
            finishInArena(start: mark, timestamp: timestamp, offset: offset, stream: stream, flags: flags, into: &batch)
            return true
        }
        batch.bytes.withUnsafeBytes { arena in
            addPart(s, UnsafeRawBufferPointer(rebasing: arena[mark...]), timestamp: timestamp, offset: offset,
                    flags: flags)
        }
        batch.bytes.removeLast(batch.bytes.count - mark)
        if complete { emitPending(s, complete: true, into: &batch) }
        return true
    }

    @inline(__always)
    static func bytesEqual(_ a: UnsafePointer<UInt8>, _ b: StaticString) -> Bool {
        let bp = b.utf8Start
        for k in 0..<b.utf8CodeUnitCount where a[k] != bp[k] { return false }
        return true
    }

    /// `stdout` / `stderr` (as bytes), anything else `.none`.
    @inline(__always)
    static func streamNamed(_ p: UnsafePointer<UInt8>, _ len: Int) -> LogStream {
        guard len == 6 else { return .none }
        if bytesEqual(p, "stdout") { return .stdout }
        if bytesEqual(p, "stderr") { return .stderr }
        return .none
    }
}
