import AnduinCore
import Foundation
import Logging

func bootstrapLogging(level: LogLevelSetting, format: LogFormatSetting) {
    let lvl = Logger.Level(rawValue: level.rawValue) ?? .info
    LoggingSystem.bootstrap { label in
        var h: any LogHandler
        switch format {
        case .text: h = StreamLogHandler.standardError(label: label)
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
