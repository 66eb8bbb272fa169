import AnduinCore

/// The built-in text formats: a PCRE2 pattern each, whose groups are written under ECS names
/// (README "Built-in formats" lists every field). `-` and empty captures are left out.
enum BuiltInFormats {
    /// A quoted access-log field: nginx escapes `"` as `\x22`, Apache as `\"`.
    static let quoted = #"(?:[^"\\]|\\.)*"#

    static let request = #""(?:(?<method>[A-Z]+) (?<url>\S+)(?: HTTP/(?<ver>[0-9.]+))?|(?<req>"# + quoted + #"))""#

    static let accessFields: [String: (String, FieldKind)] = [
        "addr": ("source.address", .value(.string)),
        "ident": ("apache.access.identity", .value(.string)),
        "user": ("user.name", .value(.string)),
        "time": ("time", .value(.string)),
        "method": ("http.request.method", .value(.string)),
        "url": ("url.original", .value(.string)),
        "ver": ("http.version", .value(.string)),
        "req": ("http.request.line", .value(.string)),
        "status": ("http.response.status_code", .value(.int)),
        "bytes": ("http.response.body.bytes", .value(.int)),
        "ref": ("http.request.referrer", .value(.string)),
        "ua": ("user_agent.original", .value(.string)),
        "reqlen": ("http.request.bytes", .value(.int)),
        "reqtime": ("nginx.request_time", .value(.float)),
        "upname": ("nginx.ingress_controller.upstream.name", .value(.string)),
        "upalt": ("nginx.ingress_controller.upstream.alternative_name", .value(.string)),
        "upaddr": ("nginx.ingress_controller.upstream.address", .value(.string)),
        "uplen": ("nginx.ingress_controller.upstream.response.length", .value(.string)),
        "uptime": ("nginx.ingress_controller.upstream.response.time", .value(.string)),
        "upstatus": ("nginx.ingress_controller.upstream.response.status_code", .value(.string)),
        "reqid": ("http.request.id", .value(.string)),
    ]

    /// One value or a `, `-separated list (ingress-nginx writes one per upstream tried).
    static let list = #"[^ ,]+(?:, [^ ,]+)*"#

    /// nginx `combined`, optionally followed by ingress-nginx's default `log-format-upstream` fields.
    static let nginx = CaptureFormat(builtIn:
        #"^(?<addr>\S+) - (?<user>\S+) \[(?<time>[^\]]+)\] "# + request
        + #" (?<status>\d{3}) (?<bytes>\d+|-) "(?<ref>"# + quoted + #")" "(?<ua>"# + quoted + #")""#
        + #"(?: (?<reqlen>\d+) (?<reqtime>[0-9.]+|-) \[(?<upname>[^\]]*)\] \[(?<upalt>[^\]]*)\] (?<upaddr>"#
        + list + #") (?<uplen>"# + list + #") (?<uptime>"# + list + #") (?<upstatus>"# + list + #") (?<reqid>\S+))?"#,
        accessFields)

    /// Apache `combined` (`%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"`), or `common`
    /// without the last two.
    static let apacheCombined = CaptureFormat(builtIn:
        #"^(?<addr>\S+) (?<ident>\S+) (?<user>\S+) \[(?<time>[^\]]+)\] "# + request
        + #" (?<status>\d{3}) (?<bytes>\d+|-)(?: "(?<ref>"# + quoted + #")" "(?<ua>"# + quoted + #")")?"#,
        accessFields)

    /// klog: `I1206 12:00:00.123456    1 controller.go:42] message`.
    static let klog = CaptureFormat(builtIn:
        #"(?s)^(?<lvl>[IWEF])(?<time>\d{4} \d{2}:\d{2}:\d{2}\.\d{1,9})\s+(?<tid>\d+) (?<file>[^:\]\s]+):(?<line>\d+)\] ?(?<msg>.*)$"#,
        [
            "lvl": ("log.level", .klogLevel),
            "time": ("time", .value(.string)),
            "tid": ("process.thread.id", .value(.int)),
            "file": ("log.origin.file.name", .value(.string)),
            "line": ("log.origin.file.line", .value(.int)),
            "msg": ("message", .klogMessage),
        ])

    static let syslogFields: [String: (String, FieldKind)] = [
        "pri": ("log.syslog.priority", .syslogPriority),
        "ver": ("log.syslog.version", .value(.string)),
        "time": ("time", .value(.string)),
        "host": ("log.syslog.hostname", .value(.string)),
        "app": ("log.syslog.appname", .value(.string)),
        "procid": ("log.syslog.procid", .value(.string)),
        "msgid": ("log.syslog.msgid", .value(.string)),
        "sd": ("syslog.structured_data", .value(.string)),
        "msg": ("message", .value(.string)),
    ]

    /// RFC 5424: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG` (a BOM before MSG is dropped).
    static let syslogRFC5424 = CaptureFormat(builtIn:
        #"(?s)^<(?<pri>\d{1,3})>(?<ver>\d{1,2}) (?<time>\S+) (?<host>\S+) (?<app>\S+) (?<procid>\S+) (?<msgid>\S+) "#
        + #"(?<sd>-|(?:\[(?:[^\]"\\]|\\.|"(?:[^"\\]|\\.)*")*\])+)(?: (?:\xEF\xBB\xBF)?(?<msg>.*))?$"#,
        syslogFields)

    /// RFC 3164 as rsyslog writes it: `[<PRI>]Dec  6 12:00:00 host app[pid]: msg`, or with an RFC 3339
    /// time (rsyslog's `RSYSLOG_FileFormat`, Debian's default).
    static let syslogRFC3164 = CaptureFormat(builtIn:
        #"(?s)^(?:<(?<pri>\d{1,3})>)?(?<time>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}T\S+) (?<host>\S+) "#
        + #"(?<app>[^\s:\[\]]+)(?:\[(?<procid>[^\]]*)\])?: ?(?<msg>.*)$"#,
        syslogFields)
}
