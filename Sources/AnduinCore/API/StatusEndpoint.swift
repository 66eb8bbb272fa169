#if canImport(Glibc)
import Glibc
#endif

/// `GET /status`: the agent's state as JSON, for `anduin status` and scripts: per input (files
/// followed, bytes behind, records read), per filter (in, out, dropped), per output (the accounting
/// identity, buffered, retrying, lag, seconds since the last delivery), totals, and every counter and
/// gauge of every component.
public protocol StatusProvider: Sendable {
    func statusJSON() -> String
}

extension Agent: StatusProvider {
    public func statusJSON() -> String { StatusReport.json(stats, notReady: notReadyReasons()) }
}

public enum StatusReport {
    /// An output's accounting, and what is unaccounted for once nothing is pending. While records
    /// are pending the counters are read one after the other as records move (and a batch being
    /// delivered request by request is still pending until its last request), so a difference then
    /// is records in flight, not records lost: it is reported as 0 with `settled` false.
    static func settledAccounting(_ s: ComponentStats) -> (Accounting, unaccounted: Int, settled: Bool) {
        var a = Accounting(output: s)
        // A record that just moved may be seen in neither place by one read: look again.
        for _ in 0..<4 where a.unaccounted != 0 && a.pending == 0 {
            usleep(5_000)
            a = Accounting(output: s)
        }
        if a.pending > 0 && a.unaccounted != 0 { return (a, 0, false) }
        return (a, a.unaccounted, true)
    }

    /// `notReady`: `/ready`'s reasons (empty: ready), given first so `anduin status` can say the same.
    public static func json(_ registry: StatsRegistry, notReady: [String] = []) -> String {
        var w = JSONWriter(capacity: 4096)
        let components = registry.components
        func value(_ s: ComponentStats, _ name: String) -> Int {
            (s.counters.first { $0.name == name }?.current) ?? (s.gauges.first { $0.name == name }?.current) ?? 0
        }
        func member(_ key: String, _ v: Int, first: Bool = false) {
            if !first { w.writeByte(UInt8(ascii: ",")) }
            w.writeString(key)
            w.writeByte(UInt8(ascii: ":"))
            w.writeInt(Int64(v))
        }
        func head(_ s: ComponentStats) {
            w.writeRaw(#"{"name":"#)
            w.writeString(s.component)
            w.writeRaw(#","type":"#)
            w.writeString(s.type)
        }
        w.writeRaw(notReady.isEmpty ? #"{"ready":true,"not_ready":["# : #"{"ready":false,"not_ready":["#)
        for (i, r) in notReady.enumerated() {
            if i > 0 { w.writeByte(UInt8(ascii: ",")) }
            w.writeString(r)
        }
        w.writeRaw(#"],"inputs":["#)
        for (i, s) in components.filter({ $0.kind == .input }).enumerated() {
            if i > 0 { w.writeByte(UInt8(ascii: ",")) }
            head(s)
            member("files", value(s, "files_watched"))
            let behind = value(s, "bytes_behind"), rate = value(s, "acked_bytes_per_second")
            member("bytes_behind", behind)
            member("files_behind", value(s, "files_behind"))
            // Found but not open yet (max_open_files, descriptor limit): not read, so not caught up.
            member("files_waiting", value(s, "files_waiting"))
            member("acked_bytes_per_second", rate)
            // At the recent rate of reading (acknowledged); -1: behind with no progress lately.
            member("catch_up_seconds", behind == 0 ? 0 : rate > 0 ? behind / rate : -1)
            member("records", value(s, "records_out"))
            member("decode_errors", value(s, "decode_errors"))
            member("globs_matching_nothing", value(s, "globs_matching_nothing"))
            w.writeByte(UInt8(ascii: "}"))
        }
        w.writeRaw(#"],"filters":["#)
        var filtersDropped = 0
        for (i, s) in components.filter({ $0.kind == .filter }).enumerated() {
            if i > 0 { w.writeByte(UInt8(ascii: ",")) }
            // Read downstream first, so a record passing during the reads is in `in` and not yet `out`.
            let rout = value(s, "records_out"), rin = value(s, "records_in")
            // Dropped is what a filter says it dropped (grep, throttle, kubernetes exclusions, multiline
            // past max_bytes); the rest of in - out is merged (multiline), held, or passing through.
            let dropped = value(s, "records_dropped").addingSaturating(value(s, "records_excluded"))
            let inFlight = max(0, rin - rout - value(s, "records_merged") - value(s, "records_pending") - dropped)
            filtersDropped += dropped
            head(s)
            member("in", rin)
            member("out", rout)
            member("dropped", dropped)
            member("in_flight", inFlight)
            w.writeByte(UInt8(ascii: "}"))
        }
        w.writeRaw(#"],"outputs":["#)
        var total = (received: 0, recovered: 0, delivered: 0, dead: 0, oldest: 0, corrupt: 0, torn: 0, returned: 0, pending: 0,
                     unaccounted: 0)
        for (i, s) in components.filter({ $0.kind == .output }).enumerated() {
            if i > 0 { w.writeByte(UInt8(ascii: ",")) }
            let (a, unaccounted, settled) = settledAccounting(s)
            total.received += a.received
            total.recovered += a.recovered
            total.delivered += a.delivered
            total.dead += a.deadLettered
            total.oldest += a.droppedOldest
            total.corrupt += a.droppedCorrupt
            total.torn += a.torn
            total.returned += a.returned
            total.pending += a.pending
            total.unaccounted += unaccounted
            head(s)
            member("in", a.received)
            member("recovered", a.recovered)
            member("delivered", a.delivered)
            member("dead_lettered", a.deadLettered)
            w.writeRaw(#","dropped":{"#)
            member("drop_oldest", a.droppedOldest, first: true)
            member("corrupt", a.droppedCorrupt)
            w.writeByte(UInt8(ascii: "}"))
            // Not dropped: read again from their files (see `Accounting.torn`).
            member("torn", a.torn)
            member("returned", a.returned)
            member("pending", a.pending)
            member("unaccounted", unaccounted)
            member("buffered", value(s, "buffer_records") + value(s, "queued_records"))
            member("retrying", value(s, "retry_lane_records"))
            member("lag_seconds", value(s, "oldest_undelivered_age_seconds"))
            member("seconds_since_last_delivery", value(s, "seconds_since_last_delivery"))
            member("dead_letter_dropped", value(s, "dead_letter_dropped_records"))
            w.writeRaw(#","settled":"#)
            w.writeRaw(settled ? "true" : "false")
            member("errors", value(s, "request_failures").addingSaturating(value(s, "auth_failures")).addingSaturating(value(s, "write_errors")))
            member("auth_failures", value(s, "auth_failures"))
            w.writeRaw(#","last_error":"#)
            if let e = s.notes.first(where: { $0.name == "last_error" })?.current {
                w.writeString(e.text)
                member("last_error_age_seconds", Int(saturating: e.age))
            } else {
                w.writeRaw(#"null,"last_error_age_seconds":null"#)
            }
            w.writeByte(UInt8(ascii: "}"))
        }
        w.writeRaw(#"],"totals":{"#)
        member("in", total.received, first: true)
        member("recovered", total.recovered)
        member("delivered", total.delivered)
        member("dead_lettered", total.dead)
        w.writeRaw(#","dropped":{"#)
        member("drop_oldest", total.oldest, first: true)
        member("corrupt", total.corrupt)
        member("filters", filtersDropped)
        w.writeByte(UInt8(ascii: "}"))
        member("torn", total.torn)
        member("returned", total.returned)
        member("pending", total.pending)
        member("unaccounted", total.unaccounted)
        w.writeRaw(#"},"components":["#)
        for (i, s) in components.enumerated() {
            if i > 0 { w.writeByte(UInt8(ascii: ",")) }
            head(s)
            w.writeRaw(#","kind":"#)
            w.writeString(s.kind.rawValue)
            w.writeRaw(#","counters":{"#)
            for (j, c) in s.counters.enumerated() { member(c.name, c.current, first: j == 0) }
            w.writeRaw(#"},"gauges":{"#)
            for (j, g) in s.gauges.enumerated() { member(g.name, g.current, first: j == 0) }
            w.writeRaw("}}")
        }
        w.writeRaw("]}\n")
        return String(decoding: w.bytes, as: UTF8.self)
    }
}
