#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Keeps the keys of the JSON object members a writer appends to a buffer unique, so that no
/// document carries a key twice (Elasticsearch refuses those with a 400).
///
/// The writer calls `begin` at an object's first member, `note` after writing each key (the key is
/// in the writer's canonical escaping, so equal keys are equal bytes) and `finish` after the last
/// value. The rules `finish` applies:
/// - a key written twice keeps its last value, at the place of the last one;
/// - a renamed key (a reserved top-level name written with a leading `_`) never takes the name of
///   another key of the object, nor of an outside name (`setOutsideNames`, the record's other
///   fields): it gets as many leading underscores as needed, the fewest from one up (`_log`, else
///   `__log`, …), so the result does not depend on the order of the keys;
/// - a key that is not renamed and equals an outside name is reported in `overridden` (the caller
///   drops the older value: the last writer wins).
///
/// Cost when nothing collides: a short hash of each key (length and three bytes) into a 64-bit
/// filter per object, and one entry per key in an array reused for every line; on a filter hit the
/// earlier keys' hashes are compared; the exact checks run only when two keys have the same hash,
/// or an object has more keys than the filter can tell apart.
///
/// Reusable working memory: one per thread of work (a batch), not shared.
public struct MemberKeys {
    struct Entry {
        /// Offset of the member's opening quote in the buffer.
        var member: Int
        /// Offset of the key's closing quote.
        var keyEnd: Int
        var hash: UInt64
        var renamed: Bool
    }

    /// An object being written.
    public struct Frame {
        let first: Int
        /// Offset of the first member in the buffer.
        let start: Int
        var filter: UInt64
        var suspect = false
        let top: Bool
    }

    /// The keys of the objects being written, innermost last: `entries[0..<used]` (the array is
    /// reused, never shrunk).
    var entries: [Entry] = []
    var used = 0
    /// Outside names, back to back in `nameBytes`: (start, length, hash).
    var names: [(start: Int, count: Int, hash: UInt64)] = []
    var nameBytes: [UInt8] = []
    var namesFilter: UInt64 = 0
    /// Indices into the outside names that a written key (not renamed) equals, after `finish` of a
    /// top-level object.
    public private(set) var overridden: [Int] = []
    /// Whether `overridden` has any (checked for every line: no array access).
    @inlinable public var hasOverridden: Bool { !overridden.isEmpty }
    /// Slow-path working memory.
    var dropped: [Bool] = []
    var extra: [Int] = []
    var table: [Int] = []
    var rebuilt: [UInt8] = []
    let seed: UInt64

    public init() { seed = MemberKeys.processSeed }

    /// Taken once: a `MemberKeys` is made for every batch a parse filter lifts, and each random seed
    /// cost a `getrandom` call.
    static let processSeed = UInt64.random(in: 1...UInt64.max)

    /// Objects with more keys than this are checked exactly with a hash table (the filter is full).
    static let filterLimit = 24

    // MARK: outside names

    /// Forgets the outside names.
    public mutating func clearOutsideNames() {
        names.removeAll(keepingCapacity: true)
        nameBytes.removeAll(keepingCapacity: true)
        namesFilter = 0
    }

    /// The number of outside names (a mark for `removeOutsideNames(from:)`).
    public var outsideNameCount: Int { names.count }

    /// Forgets the outside names added after `mark`.
    public mutating func removeOutsideNames(from mark: Int) {
        guard mark < names.count, mark >= 0 else { return }
        nameBytes.removeLast(nameBytes.count - names[mark].start)
        names.removeLast(names.count - mark)
        namesFilter = 0
        for n in names { namesFilter |= Self.bit(n.hash) }
    }

    /// Adds the top-level keys of `members` (a members fragment, `"a":1,"b":{}`, canonical keys) as
    /// outside names. Returns false, adding none, when `members` is not a valid fragment.
    @discardableResult
    public mutating func addOutsideNames(of members: UnsafeRawBufferPointer) -> Bool {
        guard let p = members.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return true }
        let n = members.count
        let mark = names.count
        var i = JSONScan.skipWS(p, 0, n)
        while i < n {
            guard p[i] == 0x22 else { removeOutsideNames(from: mark); return false }
            var k = i + 1
            guard JSONScan.scanString(p, &k, n) != nil else { removeOutsideNames(from: mark); return false }
            addOutsideName(UnsafeRawBufferPointer(start: p + i + 1, count: k - 1 - (i + 1)))
            i = JSONScan.skipWS(p, k, n)
            guard i < n, p[i] == 0x3A else { removeOutsideNames(from: mark); return false }
            i = JSONScan.skipWS(p, i + 1, n)
            guard JSONScan.skipValue(p, &i, n) else { removeOutsideNames(from: mark); return false }
            i = JSONScan.skipWS(p, i, n)
            guard i < n else { break }
            guard p[i] == 0x2C else { removeOutsideNames(from: mark); return false }
            i = JSONScan.skipWS(p, i + 1, n)
        }
        return true
    }

    /// Adds one outside name (its JSON string body, canonical escaping).
    public mutating func addOutsideName(_ key: UnsafeRawBufferPointer) {
        let h = key.withMemoryRebound(to: UInt8.self) { b in
            b.baseAddress.map { Self.quickHash($0, b.count) } ?? Self.quickHash(nil, 0)
        }
        names.append((nameBytes.count, key.count, h))
        nameBytes.append(contentsOf: key)
        namesFilter |= Self.bit(h)
    }

    /// The bytes of outside name `i`.
    public func outsideName(_ i: Int) -> ArraySlice<UInt8> {
        nameBytes[names[i].start..<(names[i].start + names[i].count)]
    }

    // MARK: writing

    /// Starts an object whose first member will be at `offset`. `top`: the object whose keys are
    /// checked against the outside names (and may be renamed).
    @inline(__always)
    public mutating func begin(at offset: Int, top: Bool) -> Frame {
        if top && !overridden.isEmpty { overridden.removeAll(keepingCapacity: true) }
        return Frame(first: used, start: offset, filter: top ? namesFilter : 0, top: top)
    }

    /// Records the key just written: `out[member]` is its opening quote, `out[keyEnd]` its closing one.
    @inline(__always)
    public mutating func note(_ f: inout Frame, member: Int, keyEnd: Int, renamed: Bool, in out: inout [UInt8]) {
        let h = out.withUnsafeBufferPointer { b in
            Self.quickHash(b.baseAddress.map { $0 + member + 1 }, keyEnd - member - 1)
        }
        let bit = Self.bit(h)
        if f.filter & bit != 0 && !f.suspect && used - f.first <= Self.filterLimit { f.suspect = sameHash(h, f) }
        f.filter |= bit
        let e = Entry(member: member, keyEnd: keyEnd, hash: h, renamed: renamed)
        if used < entries.count { entries[used] = e } else { entries.append(e) }
        used += 1
    }

    /// Whether an earlier key of the object (or an outside name) has the same hash: a filter hit is
    /// most often two different keys in the same bit, which this tells apart without the slow path.
    private func sameHash(_ h: UInt64, _ f: Frame) -> Bool {
        for j in f.first..<used where entries[j].hash == h { return true }
        if f.top { return names.contains { $0.hash == h } }
        return false
    }

    /// Ends the object whose members run from the frame's start to the end of `out`: applies the
    /// rules (rewriting the members in place when a key is dropped or renamed further) and returns
    /// how many members remain.
    public mutating func finish(_ f: Frame, _ out: inout [UInt8]) -> Int {
        let n = used - f.first
        let kept = n > Self.filterLimit || f.suspect ? resolve(f, &out) : n
        used = f.first
        return kept
    }

    /// Forgets a frame (and any inside it) whose writing failed.
    public mutating func abandon(_ f: Frame) {
        used = min(used, f.first)
    }

    // MARK: slow path

    private mutating func resolve(_ f: Frame, _ out: inout [UInt8]) -> Int {
        let n = used - f.first
        dropped.removeAll(keepingCapacity: true)
        dropped.append(contentsOf: repeatElement(false, count: n))
        extra.removeAll(keepingCapacity: true)
        extra.append(contentsOf: repeatElement(0, count: n))
        var changed = false
        out.withUnsafeBufferPointer { b in
            guard let p = b.baseAddress else { return }
            // 1. Equal keys (a renamed key and a written one are never equal): the last one stays.
            if n <= Self.filterLimit {
                for i in 0..<n {
                    for j in (i + 1)..<max(i + 1, n) where sameKey(p, f.first + i, f.first + j) {
                        dropped[i] = true
                        changed = true
                        break
                    }
                }
            } else {
                var size = 64
                while size < n * 2 { size <<= 1 }
                let mask = size - 1
                table.removeAll(keepingCapacity: true)
                table.append(contentsOf: repeatElement(-1, count: size))
                for i in 0..<n {
                    let e = entries[f.first + i]
                    var slot = Int(truncatingIfNeeded: fullHash(p + e.member + 1, e.keyEnd - e.member - 1, e.renamed)) & mask
                    while true {
                        let j = table[slot]
                        if j < 0 { table[slot] = i; break }
                        if sameKey(p, f.first + j, f.first + i) {
                            dropped[j] = true
                            changed = true
                            table[slot] = i
                            break
                        }
                        slot = (slot + 1) & mask
                    }
                }
            }
            guard f.top else { return }
            // 2. Written keys equal to outside names replace them.
            if !names.isEmpty {
                for i in 0..<n where !dropped[i] && !entries[f.first + i].renamed {
                    let e = entries[f.first + i]
                    for (k, name) in names.enumerated() where name.hash == e.hash && name.count == e.keyEnd - e.member - 1 {
                        let same = nameBytes.withUnsafeBufferPointer { nb in
                            memcmp(p + e.member + 1, nb.baseAddress.map { $0 + name.start } ?? p, name.count) == 0
                        }
                        if same && !overridden.contains(k) { overridden.append(k) }
                    }
                }
            }
            // 3. A renamed key takes the fewest extra underscores that no other key or outside name has.
            for i in 0..<n where !dropped[i] && entries[f.first + i].renamed {
                let e = entries[f.first + i]
                let key = UnsafeBufferPointer(start: p + e.member + 1, count: e.keyEnd - e.member - 1)
                while taken(p, f, key, underscores: extra[i], except: i) {
                    extra[i] += 1
                    changed = true
                }
            }
        }
        var kept = 0
        for i in 0..<n where !dropped[i] { kept += 1 }
        guard changed else { return kept }
        // Rewrite the members: without the dropped ones, with the extra underscores.
        rebuilt.removeAll(keepingCapacity: true)
        var first = true
        for i in 0..<n where !dropped[i] {
            let e = entries[f.first + i]
            // A member ends at the comma before the next one (dropped or not), or at the end.
            let end = i + 1 < n ? entries[f.first + i + 1].member - 1 : out.count
            if !first { rebuilt.append(0x2C) }
            first = false
            rebuilt.append(0x22)
            rebuilt.append(contentsOf: repeatElement(0x5F, count: extra[i]))
            rebuilt.append(contentsOf: out[(e.member + 1)..<end])
        }
        out.replaceSubrange(f.start..<out.count, with: rebuilt)
        return kept
    }

    /// Whether `underscores` × `_` + `key` is the final name of another member kept (or an outside
    /// name, at the top level).
    private func taken(_ p: UnsafePointer<UInt8>, _ f: Frame, _ key: UnsafeBufferPointer<UInt8>,
                       underscores: Int, except: Int) -> Bool {
        let n = used - f.first
        for j in 0..<n where j != except && !dropped[j] {
            let e = entries[f.first + j]
            let other = UnsafeBufferPointer(start: p + e.member + 1, count: e.keyEnd - e.member - 1)
            if Self.sameName(underscores, key, e.renamed ? extra[j] : 0, other) { return true }
        }
        if f.top {
            return nameBytes.withUnsafeBufferPointer { nb in
                guard let base = nb.baseAddress else { return false }
                return names.contains { Self.sameName(underscores, key, 0, UnsafeBufferPointer(start: base + $0.start, count: $0.count)) }
            }
        }
        return false
    }

    /// Whether `u1` underscores + `k1` and `u2` underscores + `k2` are the same bytes.
    static func sameName(_ u1: Int, _ k1: UnsafeBufferPointer<UInt8>, _ u2: Int, _ k2: UnsafeBufferPointer<UInt8>) -> Bool {
        let len = u1 + k1.count
        guard len == u2 + k2.count else { return false }
        for t in 0..<len {
            let a = t < u1 ? 0x5F : k1[t - u1]
            let b = t < u2 ? 0x5F : k2[t - u2]
            if a != b { return false }
        }
        return true
    }

    private func sameKey(_ p: UnsafePointer<UInt8>, _ a: Int, _ b: Int) -> Bool {
        let x = entries[a], y = entries[b]
        let lx = x.keyEnd - x.member, ly = y.keyEnd - y.member
        guard x.hash == y.hash, x.renamed == y.renamed, lx == ly else { return false }
        return memcmp(p + x.member, p + y.member, lx) == 0
    }

    // MARK: hashes

    @inline(__always)
    static func bit(_ h: UInt64) -> UInt64 { 1 &<< (h >> 58) }

    /// Length, first and last bytes: enough to tell most keys of one object apart, at no cost.
    @inline(__always)
    static func quickHash(_ p: UnsafePointer<UInt8>?, _ n: Int) -> UInt64 {
        guard let p, n > 0 else { return 0 }
        let v = UInt64(truncatingIfNeeded: n) &* 0x9E37_79B9 ^ UInt64(p[0]) &<< 8 ^ UInt64(p[n - 1]) &<< 16
            ^ UInt64(p[n >> 1]) &<< 24
        return v &* 0xFF51_AFD7_ED55_8CCD
    }

    /// Every byte, seeded per process, so a line cannot be made to put every key in one slot.
    private func fullHash(_ p: UnsafePointer<UInt8>, _ n: Int, _ renamed: Bool) -> UInt64 {
        var h = seed ^ (renamed ? 0x5F : 0)
        for k in 0..<n { h = (h ^ UInt64(p[k])) &* 0x0000_0100_0000_01B3 }
        return h ^ (h >> 29)
    }
}
