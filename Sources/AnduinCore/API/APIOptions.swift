import Foundation

/// The `api:` section. The API is split by risk: `/metrics`, `/health` and `/ready` carry no log
/// content and may listen on the pod IP; `/tap` streams every record passing a component, so it is
/// off unless enabled, listens on loopback unless told otherwise, and off loopback needs a bearer
/// token.
public struct APIOptions: Sendable, Equatable {
    /// `address`: /metrics, /health, /ready (and /tap when enabled without its own `tap_address`).
    public var address = "127.0.0.1:2020"
    /// `tap: true` serves /tap.
    public var tapEnabled = false
    /// `tap_address`: a separate listener for /tap only (e.g. loopback while `address` is the pod IP).
    public var tapAddress: String?
    /// `tap_token_file`: /tap requires `Authorization: Bearer <the file's content>`. Required when
    /// /tap listens off loopback.
    public var tapTokenFile: String?
    /// `max_connections`: open connections per listener; more are closed as soon as accepted.
    public var maxConnections = 64
    /// `idle_timeout`: a kept-alive connection without a new request is closed after this long.
    public var idleTimeout: Double = 60
    /// `header_timeout`: a request whose head has not fully arrived after this long is dropped.
    public var headerTimeout: Double = 10
    /// `tap_queue_bytes` / `tap_queue_records`: what one /tap client may have queued, unsent; past
    /// either it is disconnected with a last line saying how many records it missed.
    public var tapQueueBytes = 1 << 20
    public var tapQueueRecords = 10_000

    public init() {}

    /// Where /tap is served, when enabled.
    public var tapListenAddress: String? { tapEnabled ? (tapAddress ?? address) : nil }

    public static func parse(_ r: ConfigReader) -> APIOptions {
        var o = APIOptions()
        o.address = r.string("address", default: o.address)
        o.tapEnabled = r.bool("tap", default: false)
        o.tapAddress = r.string("tap_address")
        o.tapTokenFile = r.path("tap_token_file")
        o.maxConnections = r.int("max_connections", default: o.maxConnections, range: 1...10_000)
        o.idleTimeout = r.duration("idle_timeout", default: o.idleTimeout)
        o.headerTimeout = r.duration("header_timeout", default: o.headerTimeout)
        o.tapQueueBytes = r.size("tap_queue_bytes", default: o.tapQueueBytes, minimum: 4096)
        o.tapQueueRecords = r.int("tap_queue_records", default: o.tapQueueRecords, range: 1...10_000_000)
        for (key, a) in [("address", Optional(o.address)), ("tap_address", o.tapAddress)] {
            if let a, (try? APIServer.split(a)) == nil {
                r.error(key, "\"\(a)\" must be HOST:PORT, such as 127.0.0.1:2020 (port 0 picks a free port)")
            }
        }
        for key in ["idle_timeout", "header_timeout"] where r.has(key) {
            let v = key == "idle_timeout" ? o.idleTimeout : o.headerTimeout
            if !(v > 0) { r.error(key, "must be more than 0") }
        }
        if let tap = o.tapListenAddress, !APIOptions.isLoopback(tap) {
            if o.tapTokenFile == nil {
                r.error(o.tapAddress == nil ? "tap" : "tap_address",
                        "/tap streams every record; on \(tap) (not loopback) it needs tap_token_file, "
                            + "or set tap_address: 127.0.0.1:2021 and reach it with kubectl port-forward or exec")
            }
        }
        if let file = o.tapTokenFile {
            if !o.tapEnabled {
                r.error("tap_token_file", "is set but /tap is off (tap: true turns it on)")
            } else {
                switch APIOptions.readToken(file) {
                case .success: break
                case .failure(let p): r.error("tap_token_file", p.message)
                }
            }
        }
        return o
    }

    /// The token in `file` (surrounding whitespace removed), which must not be empty.
    public static func readToken(_ file: String) -> Result<Secret, ConfigProblem> {
        guard let data = FileManager.default.contents(atPath: file) else {
            return .failure(ConfigProblem("cannot read \(file)"))
        }
        let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard token.count >= 16 else {
            return .failure(ConfigProblem("the token in \(file) must be at least 16 characters"))
        }
        return .success(Secret(token))
    }

    /// 127.0.0.0/8, ::1 and localhost. `0.0.0.0`, `::` and an empty host are every interface.
    public static func isLoopback(_ address: String) -> Bool {
        guard let (host, _) = try? APIServer.split(address) else { return false }
        return host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}
