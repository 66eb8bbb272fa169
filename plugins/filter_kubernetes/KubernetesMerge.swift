import AnduinCore

/// Adds the rendered `"kubernetes":{…}` member to a batch's shared fields without writing the key
/// twice (a document with a key twice is refused by Elasticsearch): an earlier `kubernetes` member,
/// from a `modify` placed before this filter or a second kubernetes filter, is merged into the new
/// one. The rendering's keys win; the earlier object's other keys are kept; an earlier value that is
/// not an object is replaced.
enum KubernetesMerge {
    static func adding(_ rendered: [UInt8], to shared: [UInt8]) -> [UInt8] {
        let found: (member: Range<Int>, inner: Range<Int>?)? = shared.withUnsafeBytes { s in
            guard let members = Self.members(s) else { return nil }
            guard let m = members.first(where: { s[$0.key].elementsEqual(Self.key) }) else { return nil }
            return (m.member, Self.objectInner(s, m.value))
        }
        guard let found else { return shared + [UInt8(ascii: ",")] + rendered }
        var out: [UInt8] = []
        out.reserveCapacity(shared.count + rendered.count)
        // The shared fields without the earlier member (and the comma that joined it).
        var before = shared[..<found.member.lowerBound]
        var after = shared[found.member.upperBound...]
        if before.last == UInt8(ascii: ",") { before = before.dropLast() } else if after.first == UInt8(ascii: ",") { after = after.dropFirst() }
        out.append(contentsOf: before)
        out.append(contentsOf: after)
        if !out.isEmpty { out.append(UInt8(ascii: ",")) }
        let renderedInner = rendered.withUnsafeBytes { r in Self.members(r).flatMap { $0.first }.flatMap { Self.objectInner(r, $0.value) } }
        guard let renderedInner, let earlierInner = found.inner else {
            out.append(contentsOf: rendered)
            return out
        }
        out.append(contentsOf: Self.key)
        out.append(contentsOf: Array(":{".utf8))
        out.append(contentsOf: rendered[renderedInner])
        let kept: [Range<Int>] = shared.withUnsafeBytes { s in
            rendered.withUnsafeBytes { r in
                let theirs = Self.members(UnsafeRawBufferPointer(rebasing: r[renderedInner])) ?? []
                let base = renderedInner.lowerBound
                let taken = Set(theirs.map { Array(r[($0.key.lowerBound + base)..<($0.key.upperBound + base)]) })
                let earlier = Self.members(UnsafeRawBufferPointer(rebasing: s[earlierInner])) ?? []
                let eb = earlierInner.lowerBound
                return earlier.filter { !taken.contains(Array(s[($0.key.lowerBound + eb)..<($0.key.upperBound + eb)])) }
                    .map { ($0.member.lowerBound + eb)..<($0.member.upperBound + eb) }
            }
        }
        for m in kept {
            if out.last != UInt8(ascii: "{") { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: shared[m])
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    private static let key = Array("\"kubernetes\"".utf8)

    /// The members of a fragment `"a":1,"b":{…}` (key with its quotes, whole member, value), nil if
    /// it is not one.
    static func members(_ p: UnsafeRawBufferPointer) -> [(key: Range<Int>, member: Range<Int>, value: Range<Int>)]? {
        var out: [(key: Range<Int>, member: Range<Int>, value: Range<Int>)] = []
        var i = JSONScan.skipWhitespace(p, 0)
        while i < p.count {
            guard p[i] == UInt8(ascii: "\"") else { return nil }
            let start = i
            guard JSONScan.skipValue(p, from: &i) else { return nil }
            let key = start..<i
            i = JSONScan.skipWhitespace(p, i)
            guard i < p.count, p[i] == UInt8(ascii: ":") else { return nil }
            i = JSONScan.skipWhitespace(p, i + 1)
            let valueStart = i
            guard JSONScan.skipValue(p, from: &i) else { return nil }
            out.append((key, start..<i, valueStart..<i))
            i = JSONScan.skipWhitespace(p, i)
            if i < p.count {
                guard p[i] == UInt8(ascii: ",") else { return nil }
                i = JSONScan.skipWhitespace(p, i + 1)
            }
        }
        return out
    }

    /// The bytes between the braces of an object value, nil if the value is not an object.
    private static func objectInner(_ p: UnsafeRawBufferPointer, _ value: Range<Int>) -> Range<Int>? {
        guard value.count >= 2, p[value.lowerBound] == UInt8(ascii: "{"), p[value.upperBound - 1] == UInt8(ascii: "}") else { return nil }
        return (value.lowerBound + 1)..<(value.upperBound - 1)
    }
}
