/// Appends JSON text to a reusable byte buffer.
///
/// Strings are written from raw bytes: valid UTF-8 passes through, control characters, `"` and `\`
/// are escaped, and every invalid UTF-8 sequence becomes U+FFFD, so the output is valid JSON
/// whatever the input (a log line may hold any bytes).
public struct JSONWriter: Sendable {
    public var bytes: [UInt8]

    public init(capacity: Int = 0) {
        bytes = []
        if capacity > 0 { bytes.reserveCapacity(capacity) }
    }

    @inlinable public mutating func writeRaw(_ s: StaticString) {
        s.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    @inlinable public mutating func writeRaw(_ s: UnsafeRawBufferPointer) { bytes.append(contentsOf: s) }
    @inlinable public mutating func writeRaw(_ s: [UInt8]) { bytes.append(contentsOf: s) }
    @inlinable public mutating func writeByte(_ b: UInt8) { bytes.append(b) }

    public mutating func writeString(_ s: [UInt8]) {
        s.withUnsafeBytes { writeString($0) }
    }

    public mutating func writeString(_ s: String) {
        var s = s
        s.withUTF8 { writeString(UnsafeRawBufferPointer($0)) }
    }

    /// Writes `s` as a quoted JSON string.
    public mutating func writeString(_ s: UnsafeRawBufferPointer) {
        bytes.append(UInt8(ascii: "\""))
        JSONWriter.appendEscaped(s, to: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    public mutating func writeInt(_ v: Int64) { JSONWriter.appendInt(v, to: &bytes) }

    /// Appends the decimal digits of `v`.
    public static func appendInt(_ v: Int64, to out: inout [UInt8]) {
        if v == 0 { out.append(UInt8(ascii: "0")); return }
        var m = v.magnitude
        if v < 0 { out.append(UInt8(ascii: "-")) }
        var tmp: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                  UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = 0
        withUnsafeMutableBytes(of: &tmp) { t in
            while m > 0 {
                t[19 - n] = UInt8(truncatingIfNeeded: m % 10) + UInt8(ascii: "0")
                m /= 10
                n += 1
            }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: t[(20 - n)...]))
        }
    }

    /// Appends the escaped body of a JSON string (no quotes).
    ///
    /// Runs of bytes that need no escaping are copied in one append; this keeps the common case
    /// (ASCII log text) at memcpy speed. They are found 8 bytes at a time: a word with no quote,
    /// backslash, control byte or byte >= 0x80 is skipped whole.
    public static func appendEscaped(_ s: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        let n = s.count
        guard n > 0, let base = s.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let raw = UnsafeRawPointer(base)
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        var runStart = 0
        var i = 0
        while i < n {
            if n - i >= 8 {
                let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                let q = w ^ (ones &* 0x22), b = w ^ (ones &* 0x5C)
                // Zero-byte tests for quote and backslash, "less than 0x20", and the high bit. Each
                // term's lowest flag is exact (only borrows from a real hit below make false ones
                // above it), so the lowest flag of all is the first byte that needs a look.
                let hit = ((q &- ones) & ~q | (b &- ones) & ~b | (w &- ones &* 0x20) & ~w | w) & highs
                if hit == 0 {
                    i += 8
                    continue
                }
                i += hit.trailingZeroBitCount >> 3
            }
            let c = base[i]
            if c >= 0x20 && c != 0x22 && c != 0x5C && c < 0x80 {
                i += 1
                continue
            }
            if c >= 0x80 {
                let len = validUTF8Length(base, i, n)
                if len > 0 {
                    i += len
                    continue
                }
                // Invalid sequence: flush the run, write U+FFFD, skip one byte.
                if i > runStart { out.append(contentsOf: UnsafeRawBufferPointer(start: base + runStart, count: i - runStart)) }
                out.append(contentsOf: [0xEF, 0xBF, 0xBD])
                i += 1
                runStart = i
                continue
            }
            if i > runStart { out.append(contentsOf: UnsafeRawBufferPointer(start: base + runStart, count: i - runStart)) }
            switch c {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            default:
                let hex: StaticString = "0123456789abcdef"
                hex.withUTF8Buffer { h in
                    out.append(contentsOf: [0x5C, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                            h[Int(c >> 4)], h[Int(c & 0xF)]])
                }
            }
            i += 1
            runStart = i
        }
        if n > runStart { out.append(contentsOf: UnsafeRawBufferPointer(start: base + runStart, count: n - runStart)) }
    }

    /// Length of the valid UTF-8 sequence starting at `p[i]` (a byte >= 0x80), or 0 if invalid.
    /// Rejects overlong forms, surrogates and code points above U+10FFFF, as RFC 3629 requires.
    @inline(__always)
    static func validUTF8Length(_ p: UnsafePointer<UInt8>, _ i: Int, _ n: Int) -> Int {
        let c0 = p[i]
        @inline(__always) func cont(_ k: Int) -> Bool { i + k < n && p[i + k] & 0xC0 == 0x80 }
        switch c0 {
        case 0xC2...0xDF:
            return cont(1) ? 2 : 0
        case 0xE0:
            return cont(1) && cont(2) && p[i + 1] >= 0xA0 ? 3 : 0
        case 0xE1...0xEC, 0xEE...0xEF:
            return cont(1) && cont(2) ? 3 : 0
        case 0xED:
            return cont(1) && cont(2) && p[i + 1] < 0xA0 ? 3 : 0
        case 0xF0:
            return cont(1) && cont(2) && cont(3) && p[i + 1] >= 0x90 ? 4 : 0
        case 0xF1...0xF3:
            return cont(1) && cont(2) && cont(3) ? 4 : 0
        case 0xF4:
            return cont(1) && cont(2) && cont(3) && p[i + 1] < 0x90 ? 4 : 0
        default:
            return 0
        }
    }
}
