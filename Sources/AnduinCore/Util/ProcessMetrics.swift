#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// What this build is, for `anduin version` and `anduin_build_info`.
public enum BuildInfo {
    public static let version = "0.1.0"
    /// The source commit, when the build stamped one into the environment (`ANDUIN_COMMIT`, set by
    /// the image); `unknown` otherwise.
    public static let commit: String = {
        let c = ProcessInfo.processInfo.environment["ANDUIN_COMMIT"] ?? ""
        let ok = !c.isEmpty && c.count <= 64 && c.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }
        return ok ? c : "unknown"
    }()
}

/// The standard `process_*` metrics (Prometheus client libraries' names) and `anduin_build_info`,
/// read from /proc at each scrape. A value that cannot be read is left out, never made up.
enum ProcessMetrics {
    static func text() -> String {
        var out = "# HELP anduin_build_info the agent's version and source commit\n# TYPE anduin_build_info gauge\n"
        out += "anduin_build_info{version=\"\(BuildInfo.version)\",commit=\"\(BuildInfo.commit)\"} 1\n"
        let ticks = Double(max(1, sysconf(Int32(_SC_CLK_TCK))))
        if let stat = statFields() {
            // Fields after the command name: index 0 is field 3 (state); utime 14, stime 15, starttime 22.
            if stat.count > 19, let utime = Double(stat[11]), let stime = Double(stat[12]) {
                out += "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\n"
                out += "process_cpu_seconds_total \(format((utime + stime) / ticks))\n"
            }
            if stat.count > 19, let start = Double(stat[19]), let boot = bootTime() {
                out += "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\n"
                out += "process_start_time_seconds \(format(boot + start / ticks))\n"
            }
        }
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
           let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) {
            let page = max(1, sysconf(Int32(_SC_PAGESIZE)))
            out += "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\n"
            out += "process_resident_memory_bytes \(pages.multipliedSaturating(by: page))\n"
        }
        if let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            out += "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\n"
            out += "process_open_fds \(fds.count)\n"
        }
        var rl = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0, rl.rlim_cur != rlim_t.max {
            out += "# HELP process_max_fds Maximum number of open file descriptors.\n# TYPE process_max_fds gauge\n"
            let limit: UInt64 = min(UInt64(rl.rlim_cur), UInt64(Int.max))
            out += "process_max_fds \(limit)\n"
        }
        return out
    }

    /// /proc/self/stat from the state field on (the command name, in parentheses, may hold spaces).
    private static func statFields() -> [Substring]? {
        guard let s = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = s.lastIndex(of: ")") else { return nil }
        return s[s.index(after: close)...].split(separator: " ")
    }

    private static func bootTime() -> Double? {
        guard let s = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmed(.whitespaces))
        }
        return nil
    }

    private static func format(_ v: Double) -> String { formatFixed(v, decimals: 3) }
}

/// The process's file descriptors: how many are free under the soft limit.
public enum ProcessDescriptors {
    /// The soft RLIMIT_NOFILE, nil when unlimited or unknown.
    public static var limit: Int? {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0, rl.rlim_cur != rlim_t.max else { return nil }
        return Int(min(rl.rlim_cur, 1 << 30))
    }

    /// Descriptors free under the soft limit (0 when even listing them fails for want of one), nil
    /// when there is no limit or /proc cannot tell.
    public static func free() -> Int? {
        guard let limit else { return nil }
        guard let dir = opendir("/proc/self/fd") else { return errno == EMFILE || errno == ENFILE ? 0 : nil }
        defer { closedir(dir) }
        var open = -1  // the listing's own descriptor
        while let e = readdir(dir) {
            if UInt8(bitPattern: e.pointee.d_name.0) != UInt8(ascii: ".") { open += 1 }
        }
        return max(0, limit - max(0, open))
    }
}
