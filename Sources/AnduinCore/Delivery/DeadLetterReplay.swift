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

/// One dead letter as stored by `DeadLetterStore`, read back for `anduin dead-letter list|replay`.
public struct DeadLetter: Sendable {
    /// Which file (its sequence number) and where in it: the entry's identity for replay marks.
    public var seq: UInt64
    public var offset: Int
    public var time: String
    public var timeNanos: Int64
    public var status: Int
    public var attempts: Int
    public var reason: String
    public var eventID: String
    public var timestampNanos: Int64
    public var document: [UInt8]
    public var replayed: Bool
}

/// Reads an output's dead-letter store and re-submits it through the output (`anduin dead-letter`).
///
/// A replayed entry is remembered in `<store>/replayed` (`<seq> <offset>` a line), so a second replay
/// does not send it again; entries refused again stay, to be replayed once the cause is fixed. The
/// Elasticsearch output sends each record with its `_id` (= event.id) and `op_type: create`, so a
/// record the destination already has answers 409, counted as delivered: a replay never duplicates.
public enum DeadLetterReplay {
    /// The stored dead letters (written at or after `since`, wall-clock ns). A line that cannot be
    /// read (torn by a crash mid-write, or damaged) is passed to `unreadable` with its file and
    /// offset, and skipped.
    public static func read(directory: String, since: Int64? = nil,
                            unreadable: (_ path: String, _ offset: Int) -> Void = { _, _ in }) -> [DeadLetter] {
        let marks = replayedMarks(directory)
        var out: [DeadLetter] = []
        for f in DeadLetterStore.files(directory) {
            guard let data = FileManager.default.contents(atPath: f.path) else { continue }
            let bytes = [UInt8](data)
            var start = 0
            while start < bytes.count {
                guard let nl = bytes[start...].firstIndex(of: 0x0A) else {
                    unreadable(f.path, start)  // a torn last line
                    break
                }
                if var d = parse(Array(bytes[start..<nl]), seq: f.seq, offset: start) {
                    d.replayed = marks.contains(Mark(seq: f.seq, offset: start))
                    if since.map({ d.timeNanos >= $0 }) ?? true { out.append(d) }
                } else {
                    unreadable(f.path, start)
                }
                start = nl + 1
            }
        }
        return out
    }

    struct Mark: Hashable {
        let seq: UInt64
        let offset: Int
    }

    static func replayedMarks(_ directory: String) -> Set<Mark> {
        guard let data = FileManager.default.contents(atPath: directory + "/replayed") else { return [] }
        var out = Set<Mark>()
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let p = line.split(separator: " ")
            if p.count == 2, let s = UInt64(p[0]), let o = Int(p[1]) { out.insert(Mark(seq: s, offset: o)) }
        }
        return out
    }

    static func markReplayed(_ directory: String, _ entries: [DeadLetter]) -> Bool {
        guard !entries.isEmpty else { return true }
        let text = entries.map { "\($0.seq) \($0.offset)\n" }.joined()
        let fd = open(directory + "/replayed", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let ok = Array(text.utf8).withUnsafeBytes { writeAll(fd: fd, $0) }
        return ok && fsync(fd) == 0
    }

    /// One stored line: `{"time","output","status","reason","attempts","event_id","timestamp_ns","record"}`.
    static func parse(_ line: [UInt8], seq: UInt64, offset: Int) -> DeadLetter? {
        line.withUnsafeBytes { raw -> DeadLetter? in
            guard raw.count >= 2, raw[0] == 0x7B, raw[raw.count - 1] == 0x7D else { return nil }
            let m = UnsafeRawBufferPointer(rebasing: raw[1..<(raw.count - 1)])
            func range(_ key: String) -> Range<Int>? { JSONScan.lookup(m, path: [Array(key.utf8)]) }
            func string(_ key: String) -> String? {
                guard let r = range(key), r.count >= 2, m[r.lowerBound] == 0x22 else { return nil }
                var out: [UInt8] = []
                var k = 1
                guard JSONScan.appendUnescapedString(UnsafeRawBufferPointer(rebasing: m[r]), from: &k, to: &out) else { return nil }
                return String(decoding: out, as: UTF8.self)
            }
            func int(_ key: String) -> Int64? { range(key).flatMap { Int64(String(decoding: m[$0], as: UTF8.self)) } }
            guard let record = range("record"), let id = string("event_id"), id.count == 32,
                  UInt64(id.prefix(16), radix: 16) != nil, UInt64(id.suffix(16), radix: 16) != nil else { return nil }
            let time = string("time") ?? ""
            let timeNanos = Array(time.utf8).withUnsafeBytes { Timestamp.parseRFC3339($0) } ?? 0
            return DeadLetter(seq: seq, offset: offset, time: time, timeNanos: timeNanos,
                              status: Int(int("status") ?? 0), attempts: Int(int("attempts") ?? 0),
                              reason: string("reason") ?? "", eventID: id, timestampNanos: int("timestamp_ns") ?? 0,
                              document: Array(m[record]), replayed: false)
        }
    }

    public struct Report: Sendable {
        public var delivered = 0
        /// Refused again (kept, not marked): the cause is not fixed yet.
        public var refused: [String] = []
        /// Why the replay stopped early (the destination failing as a whole), if it did.
        public var stopped: String?
    }

    /// Sends every not-yet-replayed entry (at or after `since`) through `sender`, in batches of
    /// `batchRecords`, and marks those the destination took.
    public static func replay(directory: String, since: Int64?, sender: any BatchSender, batchRecords: Int) -> Report {
        let pending = read(directory: directory, since: since).filter { !$0.replayed }
        var report = Report()
        var start = 0
        while start < pending.count {
            let slice = Array(pending[start..<min(pending.count, start + max(1, batchRecords))])
            start += slice.count
            var batch = EncodedBatch()
            for d in slice {
                let source = UInt64(d.eventID.prefix(16), radix: 16) ?? 0
                let offset = Int64(bitPattern: UInt64(d.eventID.suffix(16), radix: 16) ?? 0)
                d.document.withUnsafeBytes { batch.append(document: $0, timestamp: d.timestampNanos, sourceID: source, offset: offset) }
            }
            var done: [DeadLetter] = []
            switch sender.send(batch) {
            case .delivered:
                done = slice
            case .perRecord(let outcomes):
                for (i, d) in slice.enumerated() {
                    let o = i < outcomes.count ? outcomes[i] : .retry(status: 0, reason: "no answer for this item")
                    switch o {
                    case .delivered: done.append(d)
                    case .retry(let status, let why), .deadLetter(let status, let why):
                        report.refused.append("\(d.eventID): HTTP \(status): \(why)")
                    }
                }
            case .tooLarge:
                report.stopped = "HTTP 413: request too large; replay with a smaller batch.max_records"
            case .retryAll(let status, let why):
                report.stopped = "HTTP \(status): \(why)"
            case .unreachable(let why), .timedOut(let why), .authFailure(let why):
                report.stopped = why
            }
            guard markReplayed(directory, done) else {
                report.stopped = "cannot write \(directory)/replayed (\(String(cString: strerror(errno))))"
                return report
            }
            report.delivered += done.count
            if report.stopped != nil { return report }
        }
        return report
    }

    /// The sender of output `name` of `config` (a network output), and its batch size.
    /// The outputs of `config` that have a dead-letter store (elasticsearch, http), in config order.
    public static func outputsWithStore(_ config: AgentConfig) -> [String] {
        config.components(.output).compactMap { decl in
            guard case .output(let oc) = decl.config, let ec = oc as? any EncodedOutputConfig, ec.refusesRecords else { return nil }
            return decl.name
        }
    }

    public static func sender(config: AgentConfig, output name: String) throws -> (any BatchSender, Int) {
        guard let decl = config.components(.output).first(where: { $0.name == name }) else {
            throw StartupError("no output named \"\(name)\" in \(config.file)")
        }
        guard case .output(let oc) = decl.config, let ec = oc as? any EncodedOutputConfig, ec.refusesRecords else {
            throw StartupError("output \"\(name)\" (\(decl.type)) has no dead-letter store: only elasticsearch and http outputs have one")
        }
        let ctx = ComponentContext(name: name, kind: .output, dataDirectory: config.dataDirectory,
                                   logger: Logger(label: "anduin"), stats: ComponentStats(component: name, kind: .output, type: decl.type))
        return (try ec.makeSender(ctx), ec.delivery.batch.maxRecords)
    }
}
