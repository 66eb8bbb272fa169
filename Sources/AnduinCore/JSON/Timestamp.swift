/// RFC 3339 timestamps <-> nanoseconds since the Unix epoch, on bytes (hot path: every record).
public enum Timestamp {
    /// Parses `2024-01-02T03:04:05.123456789Z` or with an offset `+01:00`; fraction optional (up to 9
    /// digits kept). Returns nil for anything else.
    public static func parseRFC3339(_ s: UnsafeRawBufferPointer) -> Int64? {
        // Placeholder until the decoding work lands: see Tests for the contract.
        return nil
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
        @inline(__always) func two(_ v: Int64) {
            out.append(UInt8(truncatingIfNeeded: v / 10) + 48)
            out.append(UInt8(truncatingIfNeeded: v % 10) + 48)
        }
        two(y / 100); two(y % 100)
        out.append(UInt8(ascii: "-")); two(m)
        out.append(UInt8(ascii: "-")); two(d)
        out.append(UInt8(ascii: "T")); two(rem / 3600)
        out.append(UInt8(ascii: ":")); two(rem / 60 % 60)
        out.append(UInt8(ascii: ":")); two(rem % 60)
        out.append(UInt8(ascii: "."))
        var div: Int64 = 100_000_000
        while div > 0 {
            out.append(UInt8(truncatingIfNeeded: frac / div % 10) + 48)
            div /= 10
        }
        out.append(UInt8(ascii: "Z"))
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
