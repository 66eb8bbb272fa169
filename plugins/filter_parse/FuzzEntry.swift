import AnduinCore

/// Entry point of the logfmt fuzz target (Tests/Fuzz): lifts `bytes` as logfmt and checks that
/// what it wrote, if anything, is a JSON object body the scanner accepts.
public enum LogfmtFuzzing {
    public static func lift(_ bytes: UnsafeRawBufferPointer) {
        var out: [UInt8] = [UInt8(ascii: "{")]
        var scratch = LogfmtScratch()
        let written = Logfmt.lift(bytes, into: &out, scratch: &scratch, renameKey: { $0.first == UInt8(ascii: "@") })
        guard let written, written > 0 else { return }
        out.append(UInt8(ascii: "}"))
        var again: [UInt8] = []
        let members = out.withUnsafeBytes { JSONScan.liftObject($0, into: &again, renameKey: { _ in false }) }
        precondition(members == written, "logfmt produced JSON the scanner reads differently: \(String(decoding: out, as: UTF8.self))")
    }
}

/// Entry point of the capture fuzz target: matches `bytes` against every built-in format and a
/// user-style regex with typed groups, and checks that what was written, if anything, is a JSON
/// object body the scanner accepts with as many members as reported.
public enum CaptureFuzzing {
    static let userRegex: CaptureFormat? = {
        guard let re = try? CaptureRegex(#"^(?<level>\w+)[ :]+(?<n>-?[\d.e+]+)? ?(?<ok>\w+)? ?(?<message>.*)$"#) else { return nil }
        return CaptureFormat(regex: re, types: ["n": .float, "ok": .bool, "level": .int])
    }()

    /// Every format with its layout and match state, built once (libFuzzer runs one input at a time).
    nonisolated(unsafe) static let formats: [(CaptureFormat, CaptureLayout, CaptureRegex.Scratch)] = {
        var formats = ParseFormat.allCases.compactMap(\.builtIn)
        if let userRegex { formats.append(userRegex) }
        return formats.map { ($0, CaptureLayout($0, keepDotted: [Array("log".utf8)]), CaptureRegex.Scratch(for: $0.regex)) }
    }()

    public static func lift(_ bytes: UnsafeRawBufferPointer) {
        var ranges: [Range<Int>?] = []
        var present: [Bool] = []
        for (format, layout, scratch) in formats {
            var out: [UInt8] = [UInt8(ascii: "{")]
            var keys = MemberKeys()
            var typeErrors = 0
            let written = Captures.lift(bytes, format: format, layout: layout, match: scratch, ranges: &ranges, present: &present,
                                        into: &out, keys: &keys,
                                        renameKey: { $0.first == UInt8(ascii: "m") }, typeErrors: &typeErrors)
            guard let written else {
                precondition(out.count == 1, "a line that does not match must leave the output as it was")
                continue
            }
            out.append(UInt8(ascii: "}"))
            var again: [UInt8] = []
            let members = out.withUnsafeBytes { JSONScan.liftObject($0, into: &again, renameKey: { _ in false }) }
            precondition(members == written, "captures produced JSON the scanner reads differently: \(String(decoding: out, as: UTF8.self))")
        }
    }
}

/// Entry point of the time fuzz target: the first 8 bytes are the reference time, the next one picks
/// a format, the rest is the text. Every parser must return without trapping, and a year-less time
/// never lands more than `maxFuture` after the reference.
public enum TimeFuzzing {
    static let formats: [TimeFormat] = {
        var f: [TimeFormat] = [.auto, .rfc3339, .epochSeconds, .epochMillis, .epochMicros, .epochNanos, .nginx, .klog, .syslog]
        for p in ["%Y-%m-%dT%H:%M:%S.%f%z", "%b %e %T", "%d/%b/%Y:%T %z", "@%s.%f", "%m%d %H:%M:%S"] {
            if case .success(let t) = TimeFormat.parse(p) { f.append(t) }
        }
        return f
    }()
    static let zones: [TimeZoneRule] = [.utc, TimeZoneRule.parse("Europe/Berlin") ?? .utc, TimeZoneRule.parse("-09:30") ?? .utc]

    public static func parse(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= 10 else { return }
        var reference: Int64 = 0
        for i in 0..<8 { reference = reference << 8 | Int64(bytes[i]) }
        let format = formats[Int(bytes[8]) % formats.count]
        let zone = zones[Int(bytes[9] >> 4) % zones.count]
        let maxFuture: Int64 = bytes[9] & 1 == 0 ? 3_600_000_000_000 : Int64(bytes[9]) << 40
        let text = UnsafeRawBufferPointer(rebasing: bytes[10...])
        let t = TimeParse.parse(text, format: format, isNumber: bytes[9] & 2 != 0, zone: zone,
                                reference: reference, maxFuture: maxFuture)
        if let t {
            switch format {
            case .klog, .syslog:
                precondition(t <= reference.addingSaturating(maxFuture), "year-less time after the reference")
            default: break
            }
        }
    }
}
