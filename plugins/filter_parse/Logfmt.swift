import AnduinCore

/// Reusable working memory for `Logfmt.lift`, so lifting a line allocates nothing once the buffers
/// have grown to the batch's largest line.
struct LogfmtScratch {
    enum Kind: UInt8 { case bare, unquoted, quoted }

    struct Pair {
        var key: Range<Int>
        /// For `quoted`, the bytes between the quotes, escapes not yet decoded.
        var value: Range<Int>
        var kind: Kind
        /// Written as `_key` (a reserved root name).
        var renamed: Bool
        /// A later pair has the same output key (last one wins).
        var dropped: Bool
    }

    var pairs: [Pair] = []
    /// Open-addressing table of pair indices (-1 = empty), used only for lines with many pairs.
    var table: [Int] = []

    init() {}
}

/// logfmt (`level=info msg="a b" dur=1.2ms debug`) to JSON object members.
///
/// Rules:
/// - tokens are separated by spaces and tabs; `key=value`, `key="quoted \" value"`, `key=` (empty
///   string) and a bare `key` (`true`) are accepted;
/// - a key is one or more bytes other than space, tab, `=`, `"` and control characters, and must be
///   valid UTF-8 (so that two different keys can never be written as the same JSON key);
/// - an unquoted value runs to the next space or tab;
/// - the first token must be `key=…`, so prose like `user logged in id=5` is not logfmt;
/// - values are always written as JSON strings (bare keys as `true`): guessing numbers would give
///   one field different types from line to line, which Elasticsearch mappings reject;
/// - duplicate keys: the last one wins (as when decoding into a map); no key is written twice, and a
///   renamed reserved key never takes the name of another (`_stream` stays, `stream` becomes `__stream`).
enum Logfmt {
    /// Appends the members of `src` to `out` and returns how many were written, or returns nil and
    /// leaves `out` untouched when `src` is not logfmt. Keys for which `renameKey` returns true are
    /// written with a `_` prefix.
    static func lift(_ src: UnsafeRawBufferPointer, into out: inout [UInt8], scratch: inout LogfmtScratch,
                     renameKey: (UnsafeRawBufferPointer) -> Bool) -> Int? {
        var keys = MemberKeys()
        var errors = 0
        return lift(src, into: &out, scratch: &scratch, keys: &keys, renameKey: renameKey, typeErrors: &errors)
    }

    /// As above; `keys` also keeps a renamed key clear of the other keys and of its outside names
    /// (`MemberKeys`), and reports the keys that equal an outside name.
    static func lift(_ src: UnsafeRawBufferPointer, into out: inout [UInt8], scratch: inout LogfmtScratch,
                     keys: inout MemberKeys, renameKey: (UnsafeRawBufferPointer) -> Bool,
                     types: [([UInt8], ValueType)] = [], typeErrors: inout Int) -> Int? {
        guard tokenize(src, &scratch.pairs) else { return nil }
        let pairs = scratch.pairs.count
        for i in 0..<pairs {
            let k = UnsafeRawBufferPointer(rebasing: src[scratch.pairs[i].key])
            scratch.pairs[i].renamed = renameKey(k)
        }
        markDuplicates(src, &scratch)

        var written = 0
        var frame = keys.begin(at: out.count, top: true)
        for p in scratch.pairs where !p.dropped {
            if written > 0 { out.append(UInt8(ascii: ",")) }
            let member = out.count
            out.append(UInt8(ascii: "\""))
            if p.renamed { out.append(UInt8(ascii: "_")) }
            JSONWriter.appendEscaped(UnsafeRawBufferPointer(rebasing: src[p.key]), to: &out)
            keys.note(&frame, member: member, keyEnd: out.count, renamed: p.renamed, in: &out)
            out.append(contentsOf: #"":"#.utf8)
            // `types:` applies to values written as they are (unquoted, or quoted without escapes).
            if !types.isEmpty, p.kind != .bare, let type = type(of: UnsafeRawBufferPointer(rebasing: src[p.key]), in: types),
               p.kind == .unquoted || !src[p.value].contains(UInt8(ascii: "\\")) {
                if !Captures.writeTyped(UnsafeRawBufferPointer(rebasing: src[p.value]), type, to: &out) { typeErrors += 1 }
                written += 1
                continue
            }
            switch p.kind {
            case .bare:
                out.append(contentsOf: "true".utf8)
            case .unquoted:
                out.append(UInt8(ascii: "\""))
                JSONWriter.appendEscaped(UnsafeRawBufferPointer(rebasing: src[p.value]), to: &out)
                out.append(UInt8(ascii: "\""))
            case .quoted:
                out.append(UInt8(ascii: "\""))
                appendUnquoted(UnsafeRawBufferPointer(rebasing: src[p.value]), to: &out)
                out.append(UInt8(ascii: "\""))
            }
            written += 1
        }
        return keys.finish(frame, &out)
    }

    static func type(of key: UnsafeRawBufferPointer, in types: [([UInt8], ValueType)]) -> ValueType? {
        for (k, t) in types where k.count == key.count && k.withUnsafeBytes({ $0.elementsEqual(key) }) { return t }
        return nil
    }

    // MARK: tokens

    @inline(__always) static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }

    /// Splits `src` into pairs; false when it is not logfmt (nothing else is decided here).
    static func tokenize(_ s: UnsafeRawBufferPointer, _ pairs: inout [LogfmtScratch.Pair]) -> Bool {
        pairs.removeAll(keepingCapacity: true)
        let n = s.count
        var i = 0
        while true {
            while i < n && isSpace(s[i]) { i += 1 }
            if i == n { break }
            let keyStart = i
            var ascii = true
            while i < n {
                let c = s[i]
                if isSpace(c) || c == UInt8(ascii: "=") { break }
                if c < 0x20 || c == 0x7F || c == UInt8(ascii: "\"") { return false }
                if c >= 0x80 { ascii = false }
                i += 1
            }
            let key = keyStart..<i
            if key.isEmpty { return false }   // `=value` with no key
            if !ascii && !isValidUTF8(UnsafeRawBufferPointer(rebasing: s[key])) { return false }
            if i == n || isSpace(s[i]) {
                // Bare key; not allowed first, so that ordinary sentences are not taken for logfmt.
                if pairs.isEmpty { return false }
                pairs.append(.init(key: key, value: i..<i, kind: .bare, renamed: false, dropped: false))
                continue
            }
            i += 1   // `=`
            if i < n && s[i] == UInt8(ascii: "\"") {
                i += 1
                let valueStart = i
                var closed = false
                while i < n {
                    let c = s[i]
                    if c == UInt8(ascii: "\\") { i += 2; continue }
                    if c == UInt8(ascii: "\"") { closed = true; break }
                    i += 1
                }
                // `i` may step past `n` after a trailing backslash: that is unterminated too.
                guard closed else { return false }
                pairs.append(.init(key: key, value: valueStart..<i, kind: .quoted, renamed: false, dropped: false))
                i += 1   // closing quote
                // `a="x"y` is malformed rather than two tokens.
                if i < n && !isSpace(s[i]) { return false }
            } else {
                let valueStart = i
                while i < n && !isSpace(s[i]) { i += 1 }
                pairs.append(.init(key: key, value: valueStart..<i, kind: .unquoted, renamed: false, dropped: false))
            }
        }
        return !pairs.isEmpty
    }

    static func isValidUTF8(_ s: UnsafeRawBufferPointer) -> Bool {
        var it = s.makeIterator()
        var decoder = Unicode.UTF8.ForwardParser()
        while true {
            switch decoder.parseScalar(from: &it) {
            case .valid: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }

    // MARK: duplicates

    /// Marks every pair whose output key appears again later as dropped.
    static func markDuplicates(_ src: UnsafeRawBufferPointer, _ scratch: inout LogfmtScratch) {
        let n = scratch.pairs.count
        if n < 2 { return }
        if n <= 16 {
            // Few keys (the usual case): comparing them all is cheaper than hashing.
            for i in 0..<(n - 1) {
                for j in (i + 1)..<n where sameKey(src, scratch.pairs[i], scratch.pairs[j]) {
                    scratch.pairs[i].dropped = true
                    break
                }
            }
            return
        }
        // Many keys: a hash table keeps a hostile line of thousands of keys linear, not quadratic.
        var size = 32
        while size < n * 2 { size <<= 1 }
        let mask = size - 1
        scratch.table.removeAll(keepingCapacity: true)
        scratch.table.append(contentsOf: repeatElement(-1, count: size))
        for i in 0..<n {
            // Hasher is seeded per process, so a line cannot be crafted to make every key collide.
            var h = Hasher()
            let p = scratch.pairs[i]
            if p.renamed { h.combine(UInt8(ascii: "_")) }
            for b in UnsafeRawBufferPointer(rebasing: src[p.key]) { h.combine(b) }
            var slot = h.finalize() & mask
            while true {
                let j = scratch.table[slot]
                if j < 0 {
                    scratch.table[slot] = i
                    break
                }
                if sameKey(src, scratch.pairs[j], p) {
                    scratch.pairs[j].dropped = true
                    scratch.table[slot] = i
                    break
                }
                slot = (slot + 1) & mask
            }
        }
    }

    /// Whether two pairs are the same key (a renamed `stream` and a literal `_stream` are not: the
    /// renamed one takes another underscore, see `MemberKeys`).
    static func sameKey(_ src: UnsafeRawBufferPointer, _ a: LogfmtScratch.Pair, _ b: LogfmtScratch.Pair) -> Bool {
        if a.renamed != b.renamed { return false }
        let la = a.key.count + (a.renamed ? 1 : 0)
        let lb = b.key.count + (b.renamed ? 1 : 0)
        if la != lb { return false }
        @inline(__always) func byte(_ p: LogfmtScratch.Pair, _ k: Int) -> UInt8 {
            if p.renamed { return k == 0 ? UInt8(ascii: "_") : src[p.key.lowerBound + k - 1] }
            return src[p.key.lowerBound + k]
        }
        for k in 0..<la where byte(a, k) != byte(b, k) { return false }
        return true
    }

    // MARK: quoted values

    /// Writes the body of a quoted logfmt value (escapes as in Go's `strconv.Quote`, which logfmt
    /// writers use) as the body of a JSON string. Unknown escapes are kept literally.
    static func appendUnquoted(_ s: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        let n = s.count
        var run = 0
        var i = 0
        while i < n {
            guard s[i] == UInt8(ascii: "\\") else { i += 1; continue }
            if i > run { JSONWriter.appendEscaped(UnsafeRawBufferPointer(rebasing: s[run..<i]), to: &out) }
            // The tokenizer guarantees a byte after every backslash inside a closed quote.
            let e = i + 1 < n ? s[i + 1] : UInt8(ascii: "\\")
            var next = i + 2
            switch e {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case UInt8(ascii: "/"): out.append(UInt8(ascii: "/"))
            case UInt8(ascii: "n"): out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case UInt8(ascii: "t"): out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case UInt8(ascii: "r"): out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case UInt8(ascii: "b"): out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case UInt8(ascii: "f"): out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case UInt8(ascii: "u"):
                if let (scalar, used) = unicodeEscape(s, i) {
                    appendScalar(scalar, to: &out)
                    next = i + used
                } else {
                    out.append(contentsOf: [0x5C, 0x5C, UInt8(ascii: "u")])
                }
            default:
                // Unknown escape: keep both characters as written.
                out.append(contentsOf: [0x5C, 0x5C])
                next = i + 1
            }
            i = next
            run = i
        }
        if n > run { JSONWriter.appendEscaped(UnsafeRawBufferPointer(rebasing: s[run..<n]), to: &out) }
    }

    /// Decodes `\uXXXX` (or a surrogate pair `\uD83D\uDE00`) at `s[i]`; a lone surrogate becomes
    /// U+FFFD so the output stays valid UTF-8. Returns the scalar and the bytes consumed.
    static func unicodeEscape(_ s: UnsafeRawBufferPointer, _ i: Int) -> (Unicode.Scalar, Int)? {
        guard let hi = hex4(s, i + 2) else { return nil }
        if (0xD800...0xDBFF).contains(hi) {
            if i + 7 < s.count, s[i + 6] == UInt8(ascii: "\\"), s[i + 7] == UInt8(ascii: "u"),
               let lo = hex4(s, i + 8), (0xDC00...0xDFFF).contains(lo),
               let v = Unicode.Scalar(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)) {
                return (v, 12)
            }
            return ("\u{FFFD}", 6)
        }
        return (Unicode.Scalar(hi) ?? "\u{FFFD}", 6)
    }

    static func hex4(_ s: UnsafeRawBufferPointer, _ at: Int) -> UInt32? {
        guard at + 4 <= s.count else { return nil }
        var v: UInt32 = 0
        for k in at..<(at + 4) {
            let c = s[k]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: return nil
            }
            v = v << 4 | UInt32(d)
        }
        return v
    }

    /// Writes one scalar as JSON string content (escaping quotes, backslashes and controls).
    static func appendScalar(_ v: Unicode.Scalar, to out: inout [UInt8]) {
        var buf: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
        var len = 0
        withUnsafeMutableBytes(of: &buf) { b in
            UTF8.encode(v) { unit in
                b[len] = unit
                len += 1
            }
            JSONWriter.appendEscaped(UnsafeRawBufferPointer(rebasing: b[0..<len]), to: &out)
        }
    }
}
