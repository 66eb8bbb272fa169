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
import Logging

func bootstrapLogging(level: LogLevelSetting, format: LogFormatSetting) {
    let lvl = Logger.Level(rawValue: level.rawValue) ?? .info
    LoggingSystem.bootstrap { label in
        var h: any LogHandler
        switch format {
        case .text: h = TextLogHandler(label: label)
        case .json: h = JSONLogHandler(label: label)
        }
        h.logLevel = lvl
        return h
    }
}

/// One JSON object per line on stderr, for log collectors (including Anduin itself).
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var w = JSONWriter(capacity: 256)
        w.writeRaw(#"{"time":""#)
        Timestamp.appendRFC3339Nano(wallClockNanos(), to: &w.bytes)
        w.writeRaw(#"","level":"#)
        w.writeString(event.level.rawValue)
        w.writeRaw(#","logger":"#)
        w.writeString(label)
        var all = metadata
        if let m = event.metadata { all.merge(m) { $1 } }
        for (k, v) in all.sorted(by: { $0.key < $1.key }) {
            w.writeByte(UInt8(ascii: ","))
            w.writeString(k)
            w.writeByte(UInt8(ascii: ":"))
            w.writeString("\(v)")
        }
        w.writeRaw(#","message":"#)
        w.writeString("\(event.message)")
        w.writeRaw("}\n")
        w.bytes.withUnsafeBytes { _ = writeAll(fd: 2, $0) }
    }
}

/// swift-log's stream format (`TIME LEVEL LABEL: k=v [SOURCE] MESSAGE`), with the time in UTC to the
/// millisecond (`2026-12-06T08:02:56.123Z`): whole seconds in the local zone cannot order the lines
/// of a busy second nor be compared with other machines' logs. One write per line, so lines of
/// several threads do not interleave.
struct TextLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let m = event.metadata { all.merge(m) { $1 } }
        let pretty = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0)=\($1)" }.joined(separator: " ")
        let line = "\(Self.timestamp(wallClockNanos())) \(event.level) \(label):\(pretty) [\(event.source)] \(event.message)\n"
        let bytes = Array(line.utf8)
        bytes.withUnsafeBytes { _ = writeAll(fd: 2, $0) }
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    static func timestamp(_ nanos: Int64) -> String {
        let (secs, rest) = nanos.quotientAndRemainder(dividingBy: 1_000_000_000)
        var t = time_t(secs)
        var tm = tm()
        guard gmtime_r(&t, &tm) != nil else { return "\(secs)" }
        func pad(_ n: Int32, _ width: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(max(0, rest) / 1_000_000), 3))Z"
    }
}
