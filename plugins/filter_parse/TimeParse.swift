import AnduinCore
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How `time_format` reads an event's time. Every parser works on bytes and returns nanoseconds
/// since the Unix epoch, clamped to what Int64 holds (years 0001 and 9999 parse, see
/// `Timestamp.parseRFC3339`), or nil when the text is not in the format.
public enum TimeFormat: Sendable, Equatable {
    /// The matched format's own time (`nginx` for nginx and Apache lines, `klog` for klog, RFC 3339
    /// for RFC 5424, `syslog` for RFC 3164); for json, logfmt and regex: an RFC 3339 string, or a
    /// number read as epoch seconds, milliseconds, microseconds or nanoseconds by its size.
    case auto
    /// RFC 3339; without a zone (`2026-12-06T12:00:00.5`) the time is in `time_zone`.
    case rfc3339
    case epochSeconds, epochMillis, epochMicros, epochNanos
    /// `06/Dec/2026:12:00:00 +0000` (nginx `$time_local`, Apache `%t`).
    case nginx
    /// klog's year-less `MMDD hh:mm:ss.uuuuuu`, resolved to the latest year not after the reference.
    case klog
    /// RFC 3164's year-less `Dec  6 12:00:00`, resolved like `klog`.
    case syslog
    /// A strftime-like pattern (`%Y-%m-%d %H:%M:%S`); see `TimePattern`.
    case pattern(TimePattern)

    public static let names = ["auto", "rfc3339", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns", "nginx", "klog", "syslog"]

    /// nil, with a reason, for a text that is neither a name nor a valid pattern.
    public static func parse(_ text: String) -> Result<TimeFormat, TimeFormatError> {
        switch text {
        case "auto": return .success(.auto)
        case "rfc3339": return .success(.rfc3339)
        case "epoch_s": return .success(.epochSeconds)
        case "epoch_ms": return .success(.epochMillis)
        case "epoch_us": return .success(.epochMicros)
        case "epoch_ns": return .success(.epochNanos)
        case "nginx": return .success(.nginx)
        case "klog": return .success(.klog)
        case "syslog": return .success(.syslog)
        default:
            guard text.contains("%") else {
                return .failure(TimeFormatError(message: "unknown time format \"\(text)\"; expected one of \(names.joined(separator: ", ")) or a pattern with % directives"))
            }
            return TimePattern.compile(text).map { .pattern($0) }
        }
    }
}

public struct TimeFormatError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// The zone of times written without one: UTC, a fixed offset, or a tz database zone read once
/// (at config load) into a table of offset changes.
public struct TimeZoneRule: Sendable, Equatable {
    /// UTC instants (seconds) from which `offsets[i]` applies; `offsets[0]` applies before the first.
    let starts: [Int64]
    let offsets: [Int64]

    public static let utc = TimeZoneRule(starts: [], offsets: [0])

    /// `UTC`, `+02:00`/`-0530`, or a zone name such as `Europe/Berlin`.
    public static func parse(_ text: String) -> TimeZoneRule? {
        if text == "UTC" || text == "Z" || text == "Etc/UTC" { return .utc }
        let b = Array(text.utf8)
        if let first = b.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "-") {
            let digits = b.dropFirst().filter { $0 != UInt8(ascii: ":") }
            guard digits.count == 4, digits.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
            let d = digits.map { Int64($0 - 48) }
            let h = d[0] * 10 + d[1], m = d[2] * 10 + d[3]
            guard h <= 23, m <= 59 else { return nil }
            let off = (h * 3600 + m * 60) * (first == UInt8(ascii: "-") ? -1 : 1)
            return TimeZoneRule(starts: [], offsets: [off])
        }
        // The changes from 1900 to 2200, enough for any log; outside, the nearest known offset holds.
        guard let zone = ZoneInfo.changes(zone: text, from: -2_208_988_800, to: 7_258_118_400) else { return nil }
        let changes = zone.changes.prefix(4000)
        return TimeZoneRule(starts: changes.map(\.0), offsets: [zone.initial] + changes.map(\.1))
    }

    /// The offset (seconds east of UTC) at the UTC instant `utc` (seconds).
    func offset(atUTC utc: Int64) -> Int64 {
        if starts.isEmpty { return offsets[0] }
        var lo = 0, hi = starts.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if starts[mid] <= utc { lo = mid + 1 } else { hi = mid }
        }
        return offsets[lo]
    }

    /// The UTC instant (seconds) of the wall-clock time `local` (seconds, as if it were UTC). A time
    /// that happens twice (clocks set back) is the first; one skipped (clocks set forward) is read
    /// with the offset before the change.
    func utc(fromLocal local: Int64) -> Int64 {
        if starts.isEmpty { return local.subtractingSaturating(offsets[0]) }
        let before = offset(atUTC: local.subtractingSaturating(86_400))
        let after = offset(atUTC: local.addingSaturating(86_400))
        let a = local.subtractingSaturating(before)
        let b = local.subtractingSaturating(after)
        let aValid = offset(atUTC: a) == before
        let bValid = offset(atUTC: b) == after
        switch (aValid, bValid) {
        case (true, true): return min(a, b)
        case (false, true): return b
        default: return a
        }
    }
}

/// A compiled strftime-like pattern. Directives: `%Y` (4-digit year), `%m`, `%d`, `%e` (day,
/// space-padded), `%H`, `%M`, `%S`, `%f` (fraction, 1-9 digits, more ignored), `%b` (`Jan`…), `%z`
/// (`Z`, `+hhmm`, `+hh:mm`), `%s` (epoch seconds), `%T` (`%H:%M:%S`), `%%`; other bytes must match as
/// written. Fields not in the pattern default to 1970-01-01 00:00:00; without `%z` the time is in
/// `time_zone`.
public struct TimePattern: Sendable, Equatable {
    enum Item: Sendable, Equatable {
        case literal(UInt8)
        case year, month, day, dayPadded, hour, minute, second, fraction, monthName, zone, epoch
    }
    let items: [Item]
    public let hasZone: Bool
    public let hasYear: Bool

    static func compile(_ text: String) -> Result<TimePattern, TimeFormatError> {
        let b = Array(text.utf8)
        var items: [Item] = []
        var i = 0
        while i < b.count {
            if b[i] != UInt8(ascii: "%") { items.append(.literal(b[i])); i += 1; continue }
            guard i + 1 < b.count else { return .failure(TimeFormatError(message: "time_format ends with a lone %")) }
            switch b[i + 1] {
            case UInt8(ascii: "Y"): items.append(.year)
            case UInt8(ascii: "m"): items.append(.month)
            case UInt8(ascii: "d"): items.append(.day)
            case UInt8(ascii: "e"): items.append(.dayPadded)
            case UInt8(ascii: "H"): items.append(.hour)
            case UInt8(ascii: "M"): items.append(.minute)
            case UInt8(ascii: "S"): items.append(.second)
            case UInt8(ascii: "f"): items.append(.fraction)
            case UInt8(ascii: "b"): items.append(.monthName)
            case UInt8(ascii: "z"): items.append(.zone)
            case UInt8(ascii: "s"): items.append(.epoch)
            case UInt8(ascii: "T"): items += [.hour, .literal(UInt8(ascii: ":")), .minute, .literal(UInt8(ascii: ":")), .second]
            case UInt8(ascii: "%"): items.append(.literal(UInt8(ascii: "%")))
            default:
                return .failure(TimeFormatError(message: "time_format: unsupported directive %\(Character(UnicodeScalar(b[i + 1]))); use %Y %m %d %e %H %M %S %f %b %z %s %T %%"))
            }
            i += 2
        }
        return .success(TimePattern(items: items, hasZone: items.contains(.zone) || items.contains(.epoch),
                                    hasYear: items.contains(.year) || items.contains(.epoch)))
    }
}

/// Parses times; all arithmetic saturates (the text is input).
public enum TimeParse {
    static let monthNames: [[UInt8]] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"].map { Array($0.utf8) }

    /// The wall-clock fields of a time, before its zone is applied.
    struct Fields {
        var year: Int64 = 1970, month: Int64 = 1, day: Int64 = 1
        var hour: Int64 = 0, minute: Int64 = 0, second: Int64 = 0, nanos: Int64 = 0
        /// Seconds east of UTC when the text gave a zone.
        var offset: Int64? = nil
        var valid: Bool {
            month >= 1 && month <= 12 && day >= 1 && day <= daysIn(year, month)
                && hour <= 23 && minute <= 59 && second <= 60 && year >= 0 && year <= 9999
        }
    }

    /// Parses `text` (a JSON value's bytes: a string without its quotes, or a number) in `format`.
    /// `isNumber` says the value was a JSON number. `reference` (ns) is the runtime's time, which
    /// year-less formats resolve against; `zone` applies to times written without a zone.
    public static func parse(_ text: UnsafeRawBufferPointer, format: TimeFormat, isNumber: Bool = false,
                             zone: TimeZoneRule = .utc, reference: Int64, maxFuture: Int64 = 3_600_000_000_000) -> Int64? {
        switch format {
        case .auto:
            if isNumber || (text.count > 0 && text.allSatisfy({ ($0 >= 48 && $0 <= 57) || $0 == 0x2E || $0 == 0x2D })) {
                return epochAuto(text)
            }
            return rfc3339(text, zone: zone)
        case .rfc3339: return rfc3339(text, zone: zone)
        case .epochSeconds: return epoch(text, unitNanos: 1_000_000_000)
        case .epochMillis: return epoch(text, unitNanos: 1_000_000)
        case .epochMicros: return epoch(text, unitNanos: 1_000)
        case .epochNanos: return epoch(text, unitNanos: 1)
        case .nginx: return nginx(text)
        case .klog: return klog(text, zone: zone, reference: reference, maxFuture: maxFuture)
        case .syslog: return syslog(text, zone: zone, reference: reference, maxFuture: maxFuture)
        case .pattern(let p): return pattern(p, text, zone: zone, reference: reference, maxFuture: maxFuture)
        }
    }

    @inline(__always) static func daysIn(_ y: Int64, _ m: Int64) -> Int64 {
        switch m {
        case 2: return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Nanoseconds of `f` (valid fields), in `zone` unless the fields carry an offset; clamped.
    static func instant(_ f: Fields, zone: TimeZoneRule) -> Int64 {
        let days = Timestamp.daysFromCivil(f.year, f.month, f.day)
        // |local| <= ~2.6e11 for years 0-9999: no overflow here.
        let local = days * 86_400 + f.hour * 3600 + f.minute * 60 + f.second
        let secs = f.offset.map { local - $0 } ?? zone.utc(fromLocal: local)
        return secs.multipliedSaturating(by: 1_000_000_000).addingSaturating(f.nanos)
    }

    /// A year-less time: the latest year (from the reference's year + 1 down) whose instant is at most
    /// `maxFuture` after `reference`; Feb 29 looks back to a leap year.
    static func resolveYear(_ f0: Fields, zone: TimeZoneRule, reference: Int64, maxFuture: Int64) -> Int64? {
        let refSecs = reference / 1_000_000_000
        let refDays = refSecs / 86_400 - (refSecs % 86_400 < 0 ? 1 : 0)
        let refYear = Timestamp.civilFromDays(refDays).0
        let limit = reference.addingSaturating(maxFuture)
        var f = f0
        var year = min(refYear + 1, 9999)
        let last = max(year - 8, 0)
        while year >= last {
            f.year = year
            if f.valid {
                let t = instant(f, zone: zone)
                if t <= limit { return t }
            }
            year -= 1
        }
        return nil
    }

    // MARK: formats

    static func rfc3339(_ s: UnsafeRawBufferPointer, zone: TimeZoneRule) -> Int64? {
        if let t = Timestamp.parseRFC3339(s) { return t }
        // Without a zone: `YYYY-MM-DDTHH:MM:SS[.frac]` in `zone`.
        var i = 0
        guard var f = dateTime(s, &i), i == s.count else { return nil }
        f.offset = nil
        return instant(f, zone: zone)
    }

    /// `YYYY-MM-DD[T ]HH:MM:SS[.frac]` from `i`; nil when not that or out of range.
    static func dateTime(_ s: UnsafeRawBufferPointer, _ i: inout Int) -> Fields? {
        var f = Fields()
        guard let y = digits(s, &i, 4), lit(s, &i, 0x2D), let mo = digits(s, &i, 2), lit(s, &i, 0x2D),
              let d = digits(s, &i, 2) else { return nil }
        guard i < s.count, s[i] == 0x54 || s[i] == 0x74 || s[i] == 0x20 else { return nil }
        i += 1
        guard let h = digits(s, &i, 2), lit(s, &i, 0x3A), let mi = digits(s, &i, 2), lit(s, &i, 0x3A),
              let se = digits(s, &i, 2) else { return nil }
        f.year = y; f.month = mo; f.day = d; f.hour = h; f.minute = mi; f.second = se
        if i < s.count, s[i] == 0x2E || s[i] == 0x2C {
            i += 1
            guard let ns = fraction(s, &i) else { return nil }
            f.nanos = ns
        }
        return f.valid ? f : nil
    }

    /// Epoch in units of `unitNanos`, integer or with a fraction (`1733486400.123`), optionally negative.
    static func epoch(_ s: UnsafeRawBufferPointer, unitNanos: Int64) -> Int64? {
        var i = 0
        let negative = i < s.count && s[i] == 0x2D
        if negative { i += 1 }
        let start = i
        var whole: Int64 = 0
        while i < s.count, s[i] >= 48, s[i] <= 57 {
            whole = whole.multipliedSaturating(by: 10).addingSaturating(Int64(s[i] - 48))
            i += 1
        }
        guard i > start else { return nil }
        var frac: Int64 = 0
        if i < s.count, s[i] == 0x2E {
            i += 1
            var scale = unitNanos
            let fracStart = i
            while i < s.count, s[i] >= 48, s[i] <= 57 {
                scale /= 10
                frac = frac.addingSaturating(Int64(s[i] - 48).multipliedSaturating(by: scale))
                i += 1
            }
            guard i > fracStart else { return nil }
        }
        guard i == s.count else { return nil }
        let ns = whole.multipliedSaturating(by: unitNanos).addingSaturating(frac)
        return negative ? (ns == .max ? .min : -ns) : ns
    }

    /// A number whose unit is guessed from its size: below 1e11 seconds (until year 5138), below 1e14
    /// milliseconds, below 1e17 microseconds, else nanoseconds.
    static func epochAuto(_ s: UnsafeRawBufferPointer) -> Int64? {
        var digitsBeforePoint = 0
        for c in s {
            if c == 0x2E { break }
            if c >= 48 && c <= 57 { digitsBeforePoint += 1 }
        }
        switch digitsBeforePoint {
        case 0...11: return epoch(s, unitNanos: 1_000_000_000)
        case 12...14: return epoch(s, unitNanos: 1_000_000)
        case 15...17: return epoch(s, unitNanos: 1_000)
        default: return epoch(s, unitNanos: 1)
        }
    }

    /// `06/Dec/2026:12:00:00 +0000` (a fraction after the seconds is accepted).
    static func nginx(_ s: UnsafeRawBufferPointer) -> Int64? {
        var i = 0
        var f = Fields()
        guard let d = digits(s, &i, 2), lit(s, &i, 0x2F), let mo = month(s, &i), lit(s, &i, 0x2F),
              let y = digits(s, &i, 4), lit(s, &i, 0x3A), let h = digits(s, &i, 2), lit(s, &i, 0x3A),
              let mi = digits(s, &i, 2), lit(s, &i, 0x3A), let se = digits(s, &i, 2) else { return nil }
        f.year = y; f.month = mo; f.day = d; f.hour = h; f.minute = mi; f.second = se
        if i < s.count, s[i] == 0x2E {
            i += 1
            guard let ns = fraction(s, &i) else { return nil }
            f.nanos = ns
        }
        guard lit(s, &i, 0x20), let off = zoneOffset(s, &i), i == s.count, f.valid else { return nil }
        f.offset = off
        return instant(f, zone: .utc)
    }

    /// `MMDD hh:mm:ss[.frac]` (klog's header after the level letter).
    static func klog(_ s: UnsafeRawBufferPointer, zone: TimeZoneRule, reference: Int64, maxFuture: Int64) -> Int64? {
        var i = 0
        var f = Fields()
        guard let mo = digits(s, &i, 2), let d = digits(s, &i, 2), lit(s, &i, 0x20),
              let h = digits(s, &i, 2), lit(s, &i, 0x3A), let mi = digits(s, &i, 2), lit(s, &i, 0x3A),
              let se = digits(s, &i, 2) else { return nil }
        f.month = mo; f.day = d; f.hour = h; f.minute = mi; f.second = se
        if i < s.count, s[i] == 0x2E {
            i += 1
            guard let ns = fraction(s, &i) else { return nil }
            f.nanos = ns
        }
        guard i == s.count else { return nil }
        return resolveYear(f, zone: zone, reference: reference, maxFuture: maxFuture)
    }

    /// `Dec  6 12:00:00` or `Dec 06 12:00:00` (RFC 3164), year-less.
    static func syslog(_ s: UnsafeRawBufferPointer, zone: TimeZoneRule, reference: Int64, maxFuture: Int64) -> Int64? {
        var i = 0
        var f = Fields()
        guard let mo = month(s, &i), lit(s, &i, 0x20) else { return nil }
        if i < s.count, s[i] == 0x20 { i += 1 }
        guard let d = digitsUpTo(s, &i, 2), lit(s, &i, 0x20), let h = digits(s, &i, 2), lit(s, &i, 0x3A),
              let mi = digits(s, &i, 2), lit(s, &i, 0x3A), let se = digits(s, &i, 2), i == s.count else { return nil }
        f.month = mo; f.day = d; f.hour = h; f.minute = mi; f.second = se
        return resolveYear(f, zone: zone, reference: reference, maxFuture: maxFuture)
    }

    static func pattern(_ p: TimePattern, _ s: UnsafeRawBufferPointer, zone: TimeZoneRule, reference: Int64, maxFuture: Int64) -> Int64? {
        var i = 0
        var f = Fields()
        var epochValue: Int64? = nil
        for item in p.items {
            switch item {
            case .literal(let c): guard lit(s, &i, c) else { return nil }
            case .year: guard let v = digits(s, &i, 4) else { return nil }; f.year = v
            case .month: guard let v = digits(s, &i, 2) else { return nil }; f.month = v
            case .day: guard let v = digits(s, &i, 2) else { return nil }; f.day = v
            case .dayPadded:
                if i < s.count, s[i] == 0x20 { i += 1 }
                guard let v = digitsUpTo(s, &i, 2) else { return nil }; f.day = v
            case .hour: guard let v = digits(s, &i, 2) else { return nil }; f.hour = v
            case .minute: guard let v = digits(s, &i, 2) else { return nil }; f.minute = v
            case .second: guard let v = digits(s, &i, 2) else { return nil }; f.second = v
            case .fraction: guard let v = fraction(s, &i) else { return nil }; f.nanos = v
            case .monthName: guard let v = month(s, &i) else { return nil }; f.month = v
            case .zone: guard let v = zoneOffset(s, &i) else { return nil }; f.offset = v
            case .epoch:
                var v: Int64 = 0
                let start = i
                while i < s.count, s[i] >= 48, s[i] <= 57 {
                    v = v.multipliedSaturating(by: 10).addingSaturating(Int64(s[i] - 48))
                    i += 1
                }
                guard i > start else { return nil }
                epochValue = v
            }
        }
        guard i == s.count else { return nil }
        if let e = epochValue { return e.multipliedSaturating(by: 1_000_000_000).addingSaturating(f.nanos) }
        guard f.valid else {
            // A pattern without a year may name Feb 29: the year is resolved below.
            if !p.hasYear, f.month == 2, f.day == 29 {
                return resolveYear(f, zone: zone, reference: reference, maxFuture: maxFuture)
            }
            return nil
        }
        if !p.hasYear { return resolveYear(f, zone: zone, reference: reference, maxFuture: maxFuture) }
        return instant(f, zone: zone)
    }

    // MARK: pieces

    @inline(__always) static func lit(_ s: UnsafeRawBufferPointer, _ i: inout Int, _ c: UInt8) -> Bool {
        guard i < s.count, s[i] == c else { return false }
        i += 1
        return true
    }

    /// Exactly `n` digits.
    @inline(__always) static func digits(_ s: UnsafeRawBufferPointer, _ i: inout Int, _ n: Int) -> Int64? {
        guard s.count - i >= n else { return nil }
        var v: Int64 = 0
        for k in 0..<n {
            let d = s[i + k] &- 48
            guard d <= 9 else { return nil }
            v = v * 10 + Int64(d)
        }
        i += n
        return v
    }

    /// One to `n` digits.
    static func digitsUpTo(_ s: UnsafeRawBufferPointer, _ i: inout Int, _ n: Int) -> Int64? {
        var v: Int64 = 0
        var k = 0
        while k < n, i < s.count, s[i] >= 48, s[i] <= 57 {
            v = v * 10 + Int64(s[i] - 48)
            i += 1
            k += 1
        }
        return k > 0 ? v : nil
    }

    /// 1 or more digits after a decimal point, as nanoseconds (digits past the ninth are ignored).
    static func fraction(_ s: UnsafeRawBufferPointer, _ i: inout Int) -> Int64? {
        var v: Int64 = 0
        var n = 0
        while i < s.count, s[i] >= 48, s[i] <= 57 {
            if n < 9 { v = v * 10 + Int64(s[i] - 48) }
            n += 1
            i += 1
        }
        guard n > 0 else { return nil }
        while n < 9 { v *= 10; n += 1 }
        return v
    }

    static func month(_ s: UnsafeRawBufferPointer, _ i: inout Int) -> Int64? {
        guard s.count - i >= 3 else { return nil }
        for (k, name) in monthNames.enumerated() where s[i] == name[0] && s[i + 1] == name[1] && s[i + 2] == name[2] {
            i += 3
            return Int64(k + 1)
        }
        return nil
    }

    /// `Z`, `+hhmm` or `+hh:mm` as seconds east of UTC.
    static func zoneOffset(_ s: UnsafeRawBufferPointer, _ i: inout Int) -> Int64? {
        guard i < s.count else { return nil }
        if s[i] == 0x5A || s[i] == 0x7A { i += 1; return 0 }
        guard s[i] == 0x2B || s[i] == 0x2D else { return nil }
        let sign: Int64 = s[i] == 0x2D ? -1 : 1
        i += 1
        guard let h = digits(s, &i, 2) else { return nil }
        if i < s.count, s[i] == 0x3A { i += 1 }
        guard let m = digits(s, &i, 2), h <= 23, m <= 59 else { return nil }
        return sign * (h * 3600 + m * 60)
    }
}
