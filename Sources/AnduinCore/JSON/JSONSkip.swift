/// Skipping values and finding members without building anything.
extension JSONScan {
    /// Index of the first non-whitespace byte of `p[i..<n]`, or `n`.
    @inlinable
    public static func skipWS(_ p: UnsafePointer<UInt8>, _ i: Int, _ n: Int) -> Int {
        var j = i
        while j < n {
            let c = p[j]
            guard c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 else { break }
            j += 1
        }
        return j
    }

    /// Index of the first non-whitespace byte at or after `i` (or `p.count`).
    public static func skipWhitespace(_ p: UnsafeRawBufferPointer, _ i: Int) -> Int {
        guard let base = p.baseAddress?.assumingMemoryBound(to: UInt8.self), i >= 0 else { return max(i, 0) }
        return skipWS(base, i, p.count)
    }

    /// Moves `i` past the JSON value starting at `p[i]` (strings, containers with nested strings
    /// skipped correctly, scalars up to the next delimiter). Structural only: it checks bracket
    /// balance and string termination, not the full grammar. False if the value is unterminated.
    public static func skipValue(_ p: UnsafeRawBufferPointer, from i: inout Int) -> Bool {
        guard let base = p.baseAddress?.assumingMemoryBound(to: UInt8.self), i >= 0 else { return false }
        return skipValue(base, &i, p.count)
    }

    /// Pointer form of `skipValue(_:from:)`.
    public static func skipValue(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ n: Int) -> Bool {
        var j = i
        guard j < n else { return false }
        switch p[j] {
        case 0x22:
            j += 1
            guard scanString(p, &j, n) != nil else { return false }
        case 0x7B, 0x5B:
            // Iterative with a depth count, so nesting costs no stack.
            var depth = 0
            repeat {
                guard j < n else { return false }
                switch p[j] {
                case 0x7B, 0x5B: depth += 1; j += 1
                case 0x7D, 0x5D: depth -= 1; j += 1
                case 0x22:
                    j += 1
                    guard scanString(p, &j, n) != nil else { return false }
                default: j += 1
                }
            } while depth > 0
        default:
            let start = j
            while j < n {
                let c = p[j]
                if c == 0x2C || c == 0x7D || c == 0x5D || c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { break }
                j += 1
            }
            guard j > start else { return false }
        }
        i = j
        return true
    }

    /// Finds the raw value of the member at `path` (keys, outermost first, already split at dots)
    /// inside `members`, a members fragment as `liftObject` writes it (`"a":1,"b":{"c":2}`).
    /// Returns the value's byte range in `members` (strings include their quotes), nil when absent or
    /// when an intermediate value is not an object. With duplicate keys the first one wins.
    public static func lookup(_ members: UnsafeRawBufferPointer, path: [[UInt8]]) -> Range<Int>? {
        guard !path.isEmpty, let p = members.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
        let n = members.count
        var i = 0
        var level = 0
        var scratch: [UInt8] = []
        while true {
            // `i` is at the start of a members list (after `{` for nested levels).
            i = skipWS(p, i, n)
            guard i < n, p[i] == 0x22 else { return nil }
            let keyStart = i + 1
            var k = keyStart
            guard let hasEscape = scanString(p, &k, n) else { return nil }
            let match = path[level].withUnsafeBytes { want -> Bool in
                if !hasEscape {
                    return k - 1 - keyStart == want.count
                        && (want.isEmpty || memEqual(p + keyStart, want, want.count))
                }
                scratch.removeAll(keepingCapacity: true)
                var j = keyStart
                guard appendUnescaped(p, &j, n, &scratch) else { return false }
                return scratch.withUnsafeBytes { $0.elementsEqual(want) }
            }
            i = skipWS(p, k, n)
            guard i < n, p[i] == 0x3A else { return nil }
            i = skipWS(p, i + 1, n)
            let valueStart = i
            guard skipValue(p, &i, n) else { return nil }
            if match {
                if level == path.count - 1 { return valueStart..<i }
                // Descend: only an object can hold the next key.
                guard p[valueStart] == 0x7B else { return nil }
                level += 1
                let inner = skipWS(p, valueStart + 1, n)
                guard inner < n, p[inner] != 0x7D else { return nil }
                i = valueStart + 1
                continue
            }
            i = skipWS(p, i, n)
            guard i < n, p[i] == 0x2C else { return nil }
            i += 1
        }
    }

    @inline(__always)
    static func memEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafeRawBufferPointer, _ count: Int) -> Bool {
        guard let bb = b.baseAddress else { return count == 0 }
        for k in 0..<count where a[k] != bb.load(fromByteOffset: k, as: UInt8.self) { return false }
        return true
    }
}
