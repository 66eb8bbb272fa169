#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Edits JSON object members (a record's `fields` or a batch's `sharedFields`) at a path of keys,
/// writing the result into a separate buffer. Members that are not touched are copied byte for byte.
public enum FieldEdit {
    public enum Op {
        /// Replace or create the value (raw JSON). An intermediate value that is not an object is replaced.
        case set(UnsafeRawBufferPointer)
        /// Create the value only when the path is absent (an intermediate non-object is left alone).
        case add(UnsafeRawBufferPointer)
        case remove
    }

    public enum Outcome: Equatable { case unchanged, changed, invalid }

    /// Writes `members` with `op` applied at `keys` to `out` (appending; on `.unchanged` or
    /// `.invalid` `out` is restored to what it was).
    public static func apply(_ op: Op, at keys: ArraySlice<[UInt8]>, in members: UnsafeRawBufferPointer,
                             to out: inout [UInt8]) -> Outcome {
        let mark = out.count
        guard !keys.isEmpty else { return .unchanged }
        let result: Outcome
        if let p = members.baseAddress?.assumingMemoryBound(to: UInt8.self) {
            result = rewrite(p, members.count, keys, op, &out)
        } else {
            result = rewrite(nil, 0, keys, op, &out)
        }
        if result != .changed { out.removeLast(out.count - mark) }
        return result
    }

    private static func rewrite(_ p: UnsafePointer<UInt8>?, _ n: Int, _ keys: ArraySlice<[UInt8]>, _ op: Op,
                                _ out: inout [UInt8]) -> Outcome {
        guard let want = keys.first else { return .unchanged }
        var changed = false
        var found = false
        var wrote = 0
        var scratch: [UInt8] = []
        func separator(_ out: inout [UInt8]) {
            if wrote > 0 { out.append(UInt8(ascii: ",")) }
            wrote += 1
        }
        if let p {
            var i = JSONScan.skipWS(p, 0, n)
            while i < n {
                guard p[i] == 0x22 else { return .invalid }
                let memberStart = i
                let keyStart = i + 1
                var k = keyStart
                guard let hasEscape = JSONScan.scanString(p, &k, n) else { return .invalid }
                let keyEnd = k - 1
                var match = false
                if !found {
                    if hasEscape {
                        scratch.removeAll(keepingCapacity: true)
                        var j = keyStart
                        guard JSONScan.appendUnescaped(p, &j, n, &scratch) else { return .invalid }
                        match = scratch == want
                    } else {
                        match = keyEnd - keyStart == want.count
                            && want.withUnsafeBytes { w in memcmp(p + keyStart, w.baseAddress ?? UnsafeRawPointer(p), want.count) == 0 }
                    }
                }
                i = JSONScan.skipWS(p, k, n)
                guard i < n, p[i] == 0x3A else { return .invalid }
                let valueStart = JSONScan.skipWS(p, i + 1, n)
                var valueEnd = valueStart
                guard JSONScan.skipValue(p, &valueEnd, n) else { return .invalid }
                let rawKey = UnsafeRawBufferPointer(start: p + memberStart, count: k - memberStart)
                if match {
                    found = true
                    if keys.count == 1 {
                        switch op {
                        case .set(let v):
                            separator(&out)
                            out.append(contentsOf: rawKey)
                            out.append(0x3A)
                            out.append(contentsOf: v)
                            changed = true
                        case .add:
                            separator(&out)
                            out.append(contentsOf: UnsafeRawBufferPointer(start: p + memberStart, count: valueEnd - memberStart))
                        case .remove:
                            changed = true
                        }
                    } else if p[valueStart] == 0x7B {
                        // Descend into the object: its members are between the braces.
                        separator(&out)
                        out.append(contentsOf: rawKey)
                        out.append(contentsOf: [0x3A, 0x7B])
                        let innerMark = out.count
                        let inner = rewrite(p + valueStart + 1, valueEnd - valueStart - 2, keys.dropFirst(), op, &out)
                        switch inner {
                        case .invalid: return .invalid
                        case .changed: changed = true
                        case .unchanged:
                            out.removeLast(out.count - innerMark)
                            out.append(contentsOf: UnsafeRawBufferPointer(start: p + valueStart + 1, count: valueEnd - valueStart - 2))
                        }
                        out.append(0x7D)
                    } else if case .set(let v) = op {
                        separator(&out)
                        out.append(contentsOf: rawKey)
                        out.append(0x3A)
                        appendNested(keys.dropFirst(), v, &out)
                        changed = true
                    } else {
                        separator(&out)
                        out.append(contentsOf: UnsafeRawBufferPointer(start: p + memberStart, count: valueEnd - memberStart))
                    }
                } else {
                    separator(&out)
                    out.append(contentsOf: UnsafeRawBufferPointer(start: p + memberStart, count: valueEnd - memberStart))
                }
                i = JSONScan.skipWS(p, valueEnd, n)
                guard i < n else { break }
                guard p[i] == 0x2C else { return .invalid }
                i = JSONScan.skipWS(p, i + 1, n)
                guard i < n else { return .invalid }
            }
        }
        if !found {
            switch op {
            case .set(let v), .add(let v):
                separator(&out)
                out.append(0x22)
                want.withUnsafeBytes { JSONWriter.appendEscaped($0, to: &out) }
                out.append(contentsOf: [0x22, 0x3A])
                appendNested(keys.dropFirst(), v, &out)
                changed = true
            case .remove:
                break
            }
        }
        return changed ? .changed : .unchanged
    }

    /// `{"b":{"c":v}}` for keys `[b, c]`; `v` for no keys.
    private static func appendNested(_ keys: ArraySlice<[UInt8]>, _ v: UnsafeRawBufferPointer, _ out: inout [UInt8]) {
        for k in keys {
            out.append(contentsOf: [0x7B, 0x22])
            k.withUnsafeBytes { JSONWriter.appendEscaped($0, to: &out) }
            out.append(contentsOf: [0x22, 0x3A])
        }
        out.append(contentsOf: v)
        for _ in keys { out.append(0x7D) }
    }

    /// The JSON a config value means: `true`, `false` and JSON numbers as themselves, anything else
    /// (including `null`) as a string.
    public static func jsonLiteral(_ value: String) -> [UInt8] {
        let b = Array(value.utf8)
        if value == "true" || value == "false" { return b }
        let isNumber = b.withUnsafeBufferPointer { buf -> Bool in
            guard let p = buf.baseAddress, !buf.isEmpty else { return false }
            var i = 0
            return JSONScan.scanNumber(p, &i, buf.count) && i == buf.count
        }
        if isNumber { return b }
        var w = JSONWriter()
        w.writeString(b)
        return w.bytes
    }
}
