/// RFC 3339 timestamps <-> nanoseconds since the Unix epoch, on bytes (hot path: every record).
public enum Timestamp {
    /// Parses `2024-01-02T03:04:05.123456789Z` or with an offset `+01:00`; fraction optional (digits
    /// beyond 9 are ignored); `t` or a space may replace `T`, `z` may replace `Z`. Returns nil for
    /// anything else (out-of-range fields included). Every valid year (0000-9999) parses: instants
    /// outside what Int64 nanoseconds hold (before 1677-09-21T00:12:43.145224192Z, after
    /// 2262-04-11T23:47:16.854775807Z) are clamped to those limits rather than refused, so one odd
    /// line never loses its message.
    public static func parseRFC3339(_ s: UnsafeRawBufferPointer) -> Int64? {
        let n = s.count
        // Shortest valid form: `YYYY-MM-DDTHH:MM:SSZ`.
        guard n >= 20, let p = s.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
        // Digits are validated together: `bad` collects every digit's value, any >= 10 fails.
        var bad: UInt8 = 0
        @inline(__always) func dig(_ i: Int) -> Int64 {
            let v = p[i] &- 48
            bad |= v > 9 ? 0x80 : 0
            return Int64(v)
        }
        let year = dig(0) * 1000 + dig(1) * 100 + dig(2) * 10 + dig(3)
        let month = dig(5) * 10 + dig(6)
        let day = dig(8) * 10 + dig(9)
        let hour = dig(11) * 10 + dig(12)
        let minute = dig(14) * 10 + dig(15)
        let second = dig(17) * 10 + dig(18)
        let sep = p[10]
        guard bad == 0, p[4] == 0x2D, p[7] == 0x2D, p[13] == 0x3A, p[16] == 0x3A,
              sep == 0x54 || sep == 0x74 || sep == 0x20,
              month >= 1, month <= 12, day >= 1, day <= daysInMonth(year, month),
              hour <= 23, minute <= 59, second <= 60
        else { return nil }

        var i = 19
        var frac: Int64 = 0
        if p[i] == 0x2E {
            i += 1
            var digits = 0
            while i < n {
                let v = p[i] &- 48
                if v > 9 { break }
                if digits < 9 { frac = frac * 10 + Int64(v) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            while digits < 9 { frac *= 10; digits += 1 }
        }
        guard i < n else { return nil }
        var offsetSeconds: Int64 = 0
        let z = p[i]
        if z == 0x5A || z == 0x7A {
            i += 1
        } else if z == 0x2B || z == 0x2D {
            guard n - i >= 6 else { return nil }
            let oh = dig(i + 1) * 10 + dig(i + 2)
            let om = dig(i + 4) * 10 + dig(i + 5)
            guard bad == 0, p[i + 3] == 0x3A, oh <= 23, om <= 59 else { return nil }
            offsetSeconds = (oh * 3600 + om * 60) * (z == 0x2D ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        guard i == n else { return nil }

        let days = daysFromCivil(year, month, day)
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        // Int64 nanoseconds cover only ~292 years around 1970; years 0000-9999 parse, so clamp.
        // (secs is at most ~2.5e11 in magnitude: this arithmetic cannot overflow.)
        let (ns, o1) = secs.multipliedReportingOverflow(by: 1_000_000_000)
        let (total, o2) = ns.addingReportingOverflow(frac)
        if o1 || o2 { return secs < 0 ? Int64.min : Int64.max }
        return total
    }

    @inline(__always)
    static func daysInMonth(_ y: Int64, _ m: Int64) -> Int64 {
        switch m {
        case 2: return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Appends `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (always 9 fraction digits, UTC).
    public static func appendRFC3339Nano(_ ns: Int64, to out: inout [UInt8]) {
        var secs = ns / 1_000_000_000
        var frac = ns % 1_000_000_000
        if frac < 0 { frac += 1_000_000_000; secs -= 1 }
        var days = secs / 86_400
        var rem = secs % 86_400
        if rem < 0 { rem += 86_400; days -= 1 }
        let (y, m, d) = civilFromDays(days)
        // The 30 bytes are written on the stack and appended at once: a byte-at-a-time append costs
        // a uniqueness and capacity check per byte, on every record.
        var tmp: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &tmp) { b in
            var i = 0
            @inline(__always) func put(_ c: UInt8) { b[i] = c; i += 1 }
            @inline(__always) func two(_ v: Int64) {
                put(UInt8(truncatingIfNeeded: v / 10) + 48)
                put(UInt8(truncatingIfNeeded: v % 10) + 48)
            }
            two(y / 100); two(y % 100)
            put(UInt8(ascii: "-")); two(m)
            put(UInt8(ascii: "-")); two(d)
            put(UInt8(ascii: "T")); two(rem / 3600)
            put(UInt8(ascii: ":")); two(rem / 60 % 60)
            put(UInt8(ascii: ":")); two(rem % 60)
            put(UInt8(ascii: "."))
            var div: Int64 = 100_000_000
            while div > 0 {
                put(UInt8(truncatingIfNeeded: frac / div % 10) + 48)
                div /= 10
            }
            put(UInt8(ascii: "Z"))
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[0..<i]))
        }
    }

    /// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
    @inlinable
    public static func civilFromDays(_ z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    /// (year, month, day) -> days since 1970-01-01.
    @inlinable
    public static func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
