/// The `Retry-After` header of a refusal (RFC 9110 §10.2.3): how long the server asks the client to
/// wait, as delay-seconds (`120`) or an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`, and the obsolete
/// RFC 850 and asctime forms recipients must accept).
///
/// The server is not trusted: the result is clamped to `0...max` (a date in the past is 0, a huge
/// number or a far date is `max`), and anything that is neither form is ignored (nil), so a broken
/// header never stalls or crashes delivery.
public enum RetryAfter {
    /// Seconds to wait, in `0...max`; nil when `value` is not a valid Retry-After.
    /// `nowSeconds`: the wall clock (Unix seconds) the answer arrived at, for the date form.
    public static func seconds(_ value: String, nowSeconds: Int64, max: Double) -> Double? {
        let limit = Swift.max(0, max.isFinite ? max : 0)
        let text = value.utf8.drop { $0 == 0x20 || $0 == 0x09 }
        let trimmed = text.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed()
        guard !trimmed.isEmpty, trimmed.count <= 64 else { return nil }
        if trimmed.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            // delay-seconds: saturates instead of overflowing.
            var n: Int64 = 0
            for d in trimmed {
                let (m, o1) = n.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int64(d - 0x30))
                if o1 || o2 { return limit }
                n = a
            }
            return Swift.min(Double(n), limit)
        }
        guard let at = httpDate(Array(trimmed)) else { return nil }
        let (delta, overflow) = at.subtractingReportingOverflow(nowSeconds)
        if overflow { return at > nowSeconds ? limit : 0 }
        return Swift.min(Double(Swift.max(0, delta)), limit)
    }

    /// Unix seconds of an HTTP-date in any of its three forms, nil if it is not one.
    static func httpDate(_ bytes: [UInt8]) -> Int64? {
        // Tokens split on space, comma and dash (RFC 850 writes 06-Nov-94): the weekday and "GMT" are
        // skipped; the rest are a day, a month name, a year and hh:mm:ss, in any of the forms' orders.
        var tokens: [ArraySlice<UInt8>] = []
        var start: Int?
        for (i, b) in bytes.enumerated() {
            if b == 0x20 || b == 0x2C || b == 0x2D || b == 0x09 {
                if let s = start { tokens.append(bytes[s..<i]) }
                start = nil
            } else if start == nil {
                start = i
            }
        }
        if let s = start { tokens.append(bytes[s..<bytes.count]) }
        guard tokens.count >= 4, tokens.count <= 6 else { return nil }
        var day: Int64?, month: Int64?, year: Int64?, clock: (Int64, Int64, Int64)?
        for t in tokens {
            if t.contains(0x3A) {
                guard clock == nil, let c = timeOfDay(t) else { return nil }
                clock = c
            } else if let n = number(t) {
                if t.count <= 2 && day == nil {
                    day = n
                } else if (t.count == 2 || t.count == 4) && year == nil {
                    // RFC 850's two-digit year: the most recent past century reading (RFC 9110).
                    year = t.count == 4 ? n : (n < 70 ? 2000 + n : 1900 + n)
                } else {
                    return nil
                }
            } else if let m = monthNumber(t) {
                guard month == nil else { return nil }
                month = m
            } else if !(isWeekday(t) || (t.count == 3 && ["gmt", "utc"].contains(lower(t)))) {
                return nil
            }
        }
        guard let day, let month, let year, let (h, m, s) = clock,
              day >= 1, day <= 31, h <= 23, m <= 59, s <= 60 else { return nil }
        // Four digits at most, so the arithmetic below cannot overflow.
        let days = Timestamp.daysFromCivil(year, month, day)
        return days * 86_400 + h * 3600 + m * 60 + s
    }

    private static func number(_ t: ArraySlice<UInt8>) -> Int64? {
        guard !t.isEmpty, t.count <= 4, t.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return t.reduce(Int64(0)) { $0 * 10 + Int64($1 - 0x30) }
    }

    private static func timeOfDay(_ t: ArraySlice<UInt8>) -> (Int64, Int64, Int64)? {
        let parts = t.split(separator: 0x3A, omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ $0.count == 2 }),
              let h = number(parts[0]), let m = number(parts[1]), let s = number(parts[2]) else { return nil }
        return (h, m, s)
    }

    private static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    private static let weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun",
                                   "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

    private static func lower(_ t: ArraySlice<UInt8>) -> String {
        String(decoding: t.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self)
    }

    private static func monthNumber(_ t: ArraySlice<UInt8>) -> Int64? {
        guard t.count == 3, let i = months.firstIndex(of: lower(t)) else { return nil }
        return Int64(i + 1)
    }

    private static func isWeekday(_ t: ArraySlice<UInt8>) -> Bool {
        t.count <= 9 && weekdays.contains(lower(t))
    }
}
