import AnduinCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tz database zone read from its TZif file (RFC 8536) under /usr/share/zoneinfo (or `TZDIR`):
/// the offset changes from `from` to `to` (UTC seconds). Past the file's last transition, its
/// footer's POSIX TZ rule gives the yearly changes.
enum ZoneInfo {
    /// (offset at `from`, [(UTC instant, new offset)]), or nil when the zone is unknown or its file
    /// cannot be read.
    static func changes(zone name: String, from: Int64, to: Int64) -> (initial: Int64, changes: [(Int64, Int64)])? {
        // A name, not a path: letters, digits, `_+-`, and `/` between parts.
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard !name.isEmpty, name.utf8.count < 256, parts.allSatisfy({ part in
            !part.isEmpty && part != "." && part != ".." && part.utf8.allSatisfy {
                ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 122) || $0 == 95 || $0 == 43 || $0 == 45 || $0 == 46
            }
        }) else { return nil }
        let dir = getenv("TZDIR").map { String(cString: $0) } ?? "/usr/share/zoneinfo"
        guard case .success(let data?) = readWholeFile(dir + "/" + name, maxBytes: 1 << 20), let tz = TZif(Array(data)) else {
            return nil
        }
        return tz.changes(from: from, to: to)
    }

}

/// The parts of a TZif file a zone's offsets need.
struct TZif {
    var times: [Int64] = []
    var offsets: [Int64] = []  // the UTC offset after each transition
    var initial: Int64 = 0  // before the first transition: local time type 0
    var rule: PosixTZ?

    init?(_ b: [UInt8]) {
        func u32(_ at: Int) -> UInt32? {
            guard at >= 0, at + 4 <= b.count else { return nil }
            return b[at..<at + 4].reduce(0) { $0 << 8 | UInt32($1) }
        }
        func i64(_ at: Int) -> Int64? {
            guard at >= 0, at + 8 <= b.count else { return nil }
            return Int64(bitPattern: b[at..<at + 8].reduce(0) { $0 << 8 | UInt64($1) })
        }
        guard b.count >= 44, b[0] == 0x54, b[1] == 0x5A, b[2] == 0x69, b[3] == 0x66 else { return nil }
        let version = b[4]
        // Header: six counts (isut, isstd, leap, time, type, char) from byte 20.
        func counts(_ at: Int) -> [Int]? {
            var c: [Int] = []
            for i in 0..<6 {
                guard let v = u32(at + 20 + 4 * i), v < 1 << 20 else { return nil }
                c.append(Int(v))
            }
            return c
        }
        guard var c = counts(0) else { return nil }
        var at = 44
        var timeSize = 4
        if version >= 0x32 {  // '2' or later: skip the 32-bit block, read the 64-bit one
            at += c[3] * 4 + c[3] + c[4] * 6 + c[5] + c[2] * 8 + c[1] + c[0]
            guard let c2 = counts(at) else { return nil }
            c = c2
            at += 44
            timeSize = 8
        }
        let (isut, isstd, leap, timecnt, typecnt, charcnt) = (c[0], c[1], c[2], c[3], c[4], c[5])
        guard typecnt > 0 else { return nil }
        let idxAt = at + timecnt * timeSize, typeAt = idxAt + timecnt
        let end = typeAt + typecnt * 6 + charcnt + leap * (timeSize + 4) + isstd + isut
        guard end <= b.count else { return nil }
        var typeOffsets: [Int64] = []
        for t in 0..<typecnt {
            guard let v = u32(typeAt + 6 * t) else { return nil }
            typeOffsets.append(Int64(Int32(bitPattern: v)))
        }
        for i in 0..<timecnt {
            let t: Int64?
            if timeSize == 8 { t = i64(at + 8 * i) } else { t = u32(at + 4 * i).map { Int64(Int32(bitPattern: $0)) } }
            let idx = Int(b[idxAt + i])
            guard let t, idx < typecnt else { return nil }
            times.append(t)
            offsets.append(typeOffsets[idx])
        }
        initial = typeOffsets[0]
        if timeSize == 8, end < b.count, b[end] == 0x0A, let close = b[(end + 1)...].firstIndex(of: 0x0A) {
            rule = PosixTZ(String(decoding: b[(end + 1)..<close], as: UTF8.self))
        }
    }

    func changes(from: Int64, to: Int64) -> (initial: Int64, changes: [(Int64, Int64)]) {
        var all: [(Int64, Int64)] = zip(times, offsets).map { ($0, $1) }
        if let rule {
            let last = times.last ?? from
            // Years within [from, to] only: a damaged file's transition times may be anywhere in Int64.
            let firstYear = max(civilYear(of: min(max(last, from), to)) - 1, 1800)
            let lastYear = civilYear(of: to) + 1
            var extra: [(Int64, Int64)] = []
            if rule.dst == nil {
                if times.isEmpty { return (rule.std, []) }
                extra.append((last &+ 1, rule.std))
            } else {
                for y in firstYear...max(firstYear, lastYear) { extra += rule.transitions(year: y) }
            }
            all += extra.filter { $0.0 > last }.sorted { $0.0 < $1.0 }
        }
        var current = initial
        var out: [(Int64, Int64)] = []
        for change in all where change.0 <= from { current = change.1 }
        for (t, off) in all where t > from && t < to && off != (out.last?.1 ?? current) {
            out.append((t, off))
        }
        return (current, out)
    }
}

/// A POSIX TZ string as TZif footers hold it: `CET-1CEST,M3.5.0,M10.5.0/3`.
struct PosixTZ {
    var std: Int64 = 0  // UTC offset, seconds east
    var dst: Int64?
    var start: (date: DateRule, time: Int64) = (.m(3, 2, 0), 7200)
    var end: (date: DateRule, time: Int64) = (.m(11, 1, 0), 7200)

    enum DateRule {
        case j(Int)  // Jn: day 1...365, February 29 never counted
        case n(Int)  // n: day 0...365, February 29 counted
        case m(Int, Int, Int)  // Mm.w.d
    }

    init?(_ text: String) {
        var s = Substring(text)
        func name() -> Bool {
            if s.first == "<" {
                guard let close = s.firstIndex(of: ">") else { return false }
                s = s[s.index(after: close)...]
                return true
            }
            let n = s.prefix { $0.isLetter }
            guard n.count >= 3 else { return false }
            s = s.dropFirst(n.count)
            return true
        }
        func number() -> Int? {
            let d = s.prefix { $0.isASCII && $0.isNumber }
            guard !d.isEmpty, d.count < 6, let v = Int(d) else { return nil }
            s = s.dropFirst(d.count)
            return v
        }
        /// [+-]hh[:mm[:ss]] in seconds.
        func time() -> Int64? {
            var sign: Int64 = 1
            if s.first == "-" { sign = -1; s = s.dropFirst() } else if s.first == "+" { s = s.dropFirst() }
            guard let h = number() else { return nil }
            var total = Int64(h) * 3600
            if s.first == ":" {
                s = s.dropFirst()
                guard let m = number() else { return nil }
                total += Int64(m) * 60
                if s.first == ":" {
                    s = s.dropFirst()
                    guard let sec = number() else { return nil }
                    total += Int64(sec)
                }
            }
            return sign * total
        }
        func date() -> DateRule? {
            if s.first == "J" {
                s = s.dropFirst()
                guard let n = number(), (1...365).contains(n) else { return nil }
                return .j(n)
            }
            if s.first == "M" {
                s = s.dropFirst()
                guard let m = number(), s.first == "." else { return nil }
                s = s.dropFirst()
                guard let w = number(), s.first == "." else { return nil }
                s = s.dropFirst()
                guard let d = number(), (1...12).contains(m), (1...5).contains(w), (0...6).contains(d) else { return nil }
                return .m(m, w, d)
            }
            guard let n = number(), (0...365).contains(n) else { return nil }
            return .n(n)
        }
        guard name(), let stdOffset = time() else { return nil }
        std = -stdOffset  // POSIX offsets are west of UTC
        guard !s.isEmpty else { return }
        guard name() else { return nil }
        if s.first != ",", !s.isEmpty {
            guard let d = time() else { return nil }
            dst = -d
        } else {
            dst = std + 3600
        }
        guard s.first == "," else { return nil }
        s = s.dropFirst()
        guard let d1 = date() else { return nil }
        var t1: Int64 = 7200
        if s.first == "/" { s = s.dropFirst(); guard let t = time() else { return nil }; t1 = t }
        guard s.first == "," else { return nil }
        s = s.dropFirst()
        guard let d2 = date() else { return nil }
        var t2: Int64 = 7200
        if s.first == "/" { s = s.dropFirst(); guard let t = time() else { return nil }; t2 = t }
        guard s.isEmpty else { return nil }
        start = (d1, t1)
        end = (d2, t2)
    }

    /// The year's two changes (UTC instant, new offset).
    func transitions(year: Int) -> [(Int64, Int64)] {
        guard let dst else { return [] }
        let startLocal = Int64(day(start.date, year: year)) * 86400 + start.time
        let endLocal = Int64(day(end.date, year: year)) * 86400 + end.time
        return [(startLocal - std, dst), (endLocal - dst, std)]
    }

    /// Days since 1970-01-01 of the rule's date in `year`.
    func day(_ rule: DateRule, year: Int) -> Int {
        let jan1 = daysFromCivil(year, 1, 1)
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        switch rule {
        case .j(let n): return jan1 + n - 1 + (leap && n >= 60 ? 1 : 0)
        case .n(let n): return jan1 + n
        case .m(let m, let w, let d):
            let first = daysFromCivil(year, m, 1)
            let weekday = ((first % 7) + 11) % 7  // 1970-01-01 was a Thursday (4)
            var day = first + (d - weekday + 7) % 7 + (w - 1) * 7
            let next = m == 12 ? daysFromCivil(year + 1, 1, 1) : daysFromCivil(year, m + 1, 1)
            while day >= next { day -= 7 }
            return day
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
    let y = m <= 2 ? y0 - 1 : y0
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146097 + doe - 719468
}

/// The year of a UTC instant (seconds).
func civilYear(of t: Int64) -> Int {
    let days = Int(t >= 0 ? t / 86400 : (t - 86399) / 86400)
    var y = 1970 + days / 366
    while daysFromCivil(y + 1, 1, 1) <= days { y += 1 }
    while daysFromCivil(y, 1, 1) > days { y -= 1 }
    return y
}
