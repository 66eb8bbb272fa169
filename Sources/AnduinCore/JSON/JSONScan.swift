/// Byte-level JSON scanning for the hot path: lifting an object into record fields, unescaping
/// strings, finding members. No Foundation, no String, no allocation in the common case.
///
/// Everything is bounds-checked against the buffer: garbage input fails (nil / false), never traps,
/// and every loop advances, so it cannot spin.
public enum JSONScan {
    /// Deepest nesting `liftObject` accepts (the lifted object itself is level 1). Bounds the
    /// recursion, so hostile input cannot exhaust the stack.
    public static let maxDepth = 64

    // MARK: lifting

    /// If `src` (ignoring surrounding whitespace) is exactly one JSON object, appends its members to
    /// `out` as compact, valid JSON without the braces (`"a":1,"b":[true]`) and returns how many
    /// there were (0 for `{}`, nothing appended). Strings are re-escaped (invalid UTF-8 becomes
    /// U+FFFD), numbers are validated and copied verbatim, whitespace is dropped. A key for which
    /// `renameKey(decodedKey)` is true is written as `"_" + key` (only top-level keys).
    ///
    /// No object written has a key twice (`MemberKeys`): a key repeated in the input keeps its last
    /// value, at any depth; a renamed key takes more leading underscores (`__log`) when `_log` is
    /// another key of the object or one of `keys`' outside names. The top-level keys that equal an
    /// outside name are left in `keys.overridden`.
    /// On failure returns nil and leaves `out` as it was.
    public static func liftObject(_ src: UnsafeRawBufferPointer, into out: inout [UInt8],
                                  renameKey: (UnsafeRawBufferPointer) -> Bool) -> Int? {
        var keys = MemberKeys()
        return liftObject(src, into: &out, keys: &keys, renameKey: renameKey)
    }

    /// As above, with working memory reused from line to line (`keys`).
    public static func liftObject(_ src: UnsafeRawBufferPointer, into out: inout [UInt8], keys: inout MemberKeys,
                                  renameKey: (UnsafeRawBufferPointer) -> Bool) -> Int? {
        let n = src.count
        guard n > 0, let p = src.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
        let mark = out.count
        var i = skipWS(p, 0, n)
        guard i < n, p[i] == 0x7B else { return nil }
        i += 1
        var count = 0
        // Decoded key bytes, only needed for keys with escapes (rare): empty arrays don't allocate.
        var keyScratch: [UInt8] = []
        var ok = false
        var frame = keys.begin(at: out.count, top: true)
        members: while true {
            i = skipWS(p, i, n)
            guard i < n else { break }
            if count == 0 && p[i] == 0x7D {
                i += 1
                ok = true
                break
            }
            guard p[i] == 0x22 else { break }
            let keyStart = i + 1
            var k = keyStart
            guard let hasEscape = scanString(p, &k, n) else { break }
            let rename: Bool
            if hasEscape {
                keyScratch.removeAll(keepingCapacity: true)
                var j = keyStart
                guard appendUnescaped(p, &j, n, &keyScratch) else { break }
                rename = keyScratch.withUnsafeBytes { renameKey($0) }
            } else {
                rename = renameKey(UnsafeRawBufferPointer(start: p + keyStart, count: k - 1 - keyStart))
            }
            if count > 0 { out.append(0x2C) }
            let member = out.count
            out.append(0x22)
            if rename { out.append(0x5F) }
            var j = keyStart
            guard appendReescaped(p, &j, n, &out) else { break }
            keys.note(&frame, member: member, keyEnd: out.count, renamed: rename, in: &out)
            out.append(0x22)
            i = skipWS(p, k, n)
            guard i < n, p[i] == 0x3A else { break }
            out.append(0x3A)
            i = skipWS(p, i + 1, n)
            guard copyValue(p, &i, n, &out, depth: 1, keys: &keys) else { break }
            count += 1
            i = skipWS(p, i, n)
            guard i < n else { break }
            if p[i] == 0x2C { i += 1; continue }
            if p[i] == 0x7D { i += 1; ok = true }
            break
        }
        if ok && skipWS(p, i, n) == n { return keys.finish(frame, &out) }
        keys.abandon(frame)
        out.removeLast(out.count - mark)
        return nil
    }

    /// Copies the JSON value at `p[i]` to `out` in compact form; `depth` is the level of the
    /// container holding it.
    static func copyValue(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ n: Int, _ out: inout [UInt8],
                          depth: Int, keys: inout MemberKeys) -> Bool {
        guard i < n else { return false }
        switch p[i] {
        case 0x22:
            i += 1
            out.append(0x22)
            guard appendReescaped(p, &i, n, &out) else { return false }
            out.append(0x22)
            return true
        case 0x7B:
            guard depth < maxDepth else { return false }
            out.append(0x7B)
            i = skipWS(p, i + 1, n)
            if i < n && p[i] == 0x7D { i += 1; out.append(0x7D); return true }
            var frame = keys.begin(at: out.count, top: false)
            while true {
                guard i < n, p[i] == 0x22 else { return false }
                i += 1
                let member = out.count
                out.append(0x22)
                guard appendReescaped(p, &i, n, &out) else { return false }
                keys.note(&frame, member: member, keyEnd: out.count, renamed: false, in: &out)
                out.append(0x22)
                i = skipWS(p, i, n)
                guard i < n, p[i] == 0x3A else { return false }
                out.append(0x3A)
                i = skipWS(p, i + 1, n)
                guard copyValue(p, &i, n, &out, depth: depth + 1, keys: &keys) else { return false }
                i = skipWS(p, i, n)
                guard i < n else { return false }
                if p[i] == 0x7D {
                    i += 1
                    _ = keys.finish(frame, &out)
                    out.append(0x7D)
                    return true
                }
                guard p[i] == 0x2C else { return false }
                out.append(0x2C)
                i = skipWS(p, i + 1, n)
            }
        case 0x5B:
            guard depth < maxDepth else { return false }
            out.append(0x5B)
            i = skipWS(p, i + 1, n)
            if i < n && p[i] == 0x5D { i += 1; out.append(0x5D); return true }
            while true {
                guard copyValue(p, &i, n, &out, depth: depth + 1, keys: &keys) else { return false }
                i = skipWS(p, i, n)
                guard i < n else { return false }
                if p[i] == 0x5D { i += 1; out.append(0x5D); return true }
                guard p[i] == 0x2C else { return false }
                out.append(0x2C)
                i = skipWS(p, i + 1, n)
            }
        case 0x74: return copyLiteral(p, &i, n, &out, "true")
        case 0x66: return copyLiteral(p, &i, n, &out, "false")
        case 0x6E: return copyLiteral(p, &i, n, &out, "null")
        default:
            let start = i
            guard scanNumber(p, &i, n) else { return false }
            out.append(contentsOf: UnsafeRawBufferPointer(start: p + start, count: i - start))
            return true
        }
    }

    @inline(__always)
    static func copyLiteral(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ n: Int, _ out: inout [UInt8],
                            _ lit: StaticString) -> Bool {
        let len = lit.utf8CodeUnitCount
        guard n - i >= len else { return false }
        let lp = lit.utf8Start
        for k in 0..<len where p[i + k] != lp[k] { return false }
        out.append(contentsOf: UnsafeRawBufferPointer(start: lp, count: len))
        i += len
        return true
    }

    /// Validates a number per the JSON grammar, `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`,
    /// and moves `i` past it. What may follow is the caller's concern (`01` fails there).
    static func scanNumber(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ n: Int) -> Bool {
        var j = i
        if j < n && p[j] == 0x2D { j += 1 }
        guard j < n else { return false }
        if p[j] == 0x30 {
            j += 1
        } else if p[j] >= 0x31 && p[j] <= 0x39 {
            j += 1
            while j < n && p[j] &- 0x30 < 10 { j += 1 }
        } else {
            return false
        }
        if j < n && p[j] == 0x2E {
            j += 1
            let d = j
            while j < n && p[j] &- 0x30 < 10 { j += 1 }
            guard j > d else { return false }
        }
        if j < n && (p[j] == 0x65 || p[j] == 0x45) {
            j += 1
            if j < n && (p[j] == 0x2B || p[j] == 0x2D) { j += 1 }
            let d = j
            while j < n && p[j] &- 0x30 < 10 { j += 1 }
            guard j > d else { return false }
        }
        i = j
        return true
    }

    // MARK: strings

    /// Decodes the JSON string body at `p[i]` (just after the opening quote) onto `out`; on success
    /// `i` is just after the closing quote. Handles every JSON escape; `\u` surrogate pairs are
    /// combined and a lone surrogate becomes U+FFFD. Raw bytes (including invalid UTF-8 and control
    /// characters, which strict JSON forbids but log writers emit) are copied unchanged.
    /// Returns false (with `out` partly written) on a bad escape or a missing closing quote.
    public static func appendUnescapedString(_ p: UnsafeRawBufferPointer, from i: inout Int,
                                             to out: inout [UInt8]) -> Bool {
        guard i >= 0, i <= p.count, let base = p.baseAddress?.assumingMemoryBound(to: UInt8.self)
        else { return false }
        return appendUnescaped(base, &i, p.count, &out)
    }

    /// Pointer form of `appendUnescapedString`: `p[0..<n]` is the buffer.
    public static func appendUnescaped(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ n: Int,
                                       _ out: inout [UInt8]) -> Bool {
        var j = i
        while true {
            let stop = findQuoteOrBackslash(p, j, n)
            if stop > j { out.append(contentsOf: UnsafeRawBufferPointer(start: p + j, count: stop - j)) }
            guard stop < n else { return false }
            if p[stop] == 0x22 {
                i = stop + 1
                return true
            }
            j = stop
            guard decodeEscape(p, &j, n, &out, reescape: false) else { return false }
        }
    }

    /// Like `appendUnescaped`, but writes a valid JSON string body: as if decoded then written with
    /// `JSONWriter.appendEscaped`, without the intermediate buffer. Equivalent because an escape
    /// always yields whole characters, so it can't complete or break a raw UTF-8 sequence around it.
    static func appendReescaped(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ n: Int,
                                _ out: inout [UInt8]) -> Bool {
        var j = i
        while true {
            let stop = findQuoteOrBackslash(p, j, n)
            if stop > j { JSONWriter.appendEscaped(UnsafeRawBufferPointer(start: p + j, count: stop - j), to: &out) }
            guard stop < n else { return false }
            if p[stop] == 0x22 {
                i = stop + 1
                return true
            }
            j = stop
            guard decodeEscape(p, &j, n, &out, reescape: true) else { return false }
        }
    }

    /// Decodes the escape at `p[i]` (a backslash) onto `out`, moving `i` past it. With `reescape`
    /// the result is written back as canonical JSON string content instead of raw bytes.
    static func decodeEscape(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ n: Int, _ out: inout [UInt8],
                             reescape: Bool) -> Bool {
        guard n - i >= 2 else { return false }
        let c = p[i + 1]
        let simple: UInt8
        switch c {
        case 0x22: simple = 0x22
        case 0x5C: simple = 0x5C
        case 0x2F: simple = 0x2F
        case 0x62: simple = 0x08
        case 0x66: simple = 0x0C
        case 0x6E: simple = 0x0A
        case 0x72: simple = 0x0D
        case 0x74: simple = 0x09
        case 0x75:
            guard let u = hex4(p, i + 2, n) else { return false }
            i += 6
            var cp = u
            if u >= 0xD800 && u <= 0xDBFF {
                // A high surrogate counts only when a low one follows; otherwise it stands alone.
                if n - i >= 6, p[i] == 0x5C, p[i + 1] == 0x75, let lo = hex4(p, i + 2, n),
                   lo >= 0xDC00 && lo <= 0xDFFF {
                    cp = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
                    i += 6
                } else {
                    cp = 0xFFFD
                }
            } else if u >= 0xDC00 && u <= 0xDFFF {
                cp = 0xFFFD
            }
            if reescape && cp < 0x80 {
                writeEscapedASCII(UInt8(cp), &out)
            } else {
                appendUTF8(cp, &out)
            }
            return true
        default:
            return false
        }
        i += 2
        if reescape {
            writeEscapedASCII(simple, &out)
        } else {
            out.append(simple)
        }
        return true
    }

    /// Writes one ASCII byte as JSON string content (the same escapes `JSONWriter` uses).
    @inline(__always)
    static func writeEscapedASCII(_ b: UInt8, _ out: inout [UInt8]) {
        withUnsafeBytes(of: b) { JSONWriter.appendEscaped($0, to: &out) }
    }

    @inline(__always)
    static func hex4(_ p: UnsafePointer<UInt8>, _ i: Int, _ n: Int) -> UInt32? {
        guard n - i >= 4 else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = p[i + k]
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x41...0x46: d = c - 0x41 + 10
            case 0x61...0x66: d = c - 0x61 + 10
            default: return nil
            }
            v = v << 4 | UInt32(d)
        }
        return v
    }

    @inline(__always)
    static func appendUTF8(_ cp: UInt32, _ out: inout [UInt8]) {
        switch cp {
        case 0..<0x80:
            out.append(UInt8(cp))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | cp >> 6))
            out.append(UInt8(0x80 | cp & 0x3F))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | cp >> 12))
            out.append(UInt8(0x80 | cp >> 6 & 0x3F))
            out.append(UInt8(0x80 | cp & 0x3F))
        default:
            out.append(UInt8(0xF0 | cp >> 18))
            out.append(UInt8(0x80 | cp >> 12 & 0x3F))
            out.append(UInt8(0x80 | cp >> 6 & 0x3F))
            out.append(UInt8(0x80 | cp & 0x3F))
        }
    }

    /// Index of the first `"` or `\` at or after `i`, or `n`. Eight bytes per step (SWAR): log text
    /// is long runs without either, so this is the inner loop of every decode.
    @inlinable
    public static func findQuoteOrBackslash(_ p: UnsafePointer<UInt8>, _ i: Int, _ n: Int) -> Int {
        var j = i
        let raw = UnsafeRawPointer(p)
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        while n - j >= 8 {
            let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: j, as: UInt64.self))
            let q = w ^ (ones &* 0x22)
            let b = w ^ (ones &* 0x5C)
            // A byte of `q`/`b` is zero where `w` has a quote/backslash; the classic zero-byte test
            // flags exactly the lowest such byte (higher flags may be false positives, unused).
            let hit = ((q &- ones) & ~q | (b &- ones) & ~b) & highs
            if hit != 0 { return j + hit.trailingZeroBitCount >> 3 }
            j += 8
        }
        while j < n {
            let c = p[j]
            if c == 0x22 || c == 0x5C { return j }
            j += 1
        }
        return n
    }

    /// Moves `i` past the string body starting at `p[i]` (just after the opening quote) to just after
    /// the closing quote. Returns whether the body had escapes, nil if unterminated. Escapes are not
    /// validated here.
    @inlinable
    public static func scanString(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ n: Int) -> Bool? {
        var j = i
        var escaped = false
        while true {
            j = findQuoteOrBackslash(p, j, n)
            guard j < n else { return nil }
            if p[j] == 0x22 {
                i = j + 1
                return escaped
            }
            escaped = true
            j += 2
            guard j <= n else { return nil }
        }
    }
}
