import Foundation

/// The `api:` section. The API is split by risk: `/metrics`, `/health` and `/ready` carry no log
/// content and may listen on the pod IP; `/tap` streams every record passing a component, so it is
/// off unless enabled, listens on loopback unless told otherwise, and off loopback needs a bearer
/// token.
public struct APIOptions: Sendable, Equatable {
    /// `address`: /metrics, /health, /ready (and /tap when enabled without its own `tap_address`).
    public var address = APIKeys.address.defaultValue
    /// `tap: true` serves /tap.
    public var tapEnabled = APIKeys.tap.defaultValue
    /// `tap_address`: a separate listener for /tap only (e.g. loopback while `address` is the pod IP).
    public var tapAddress: String?
    /// `tap_token_file`: /tap requires `Authorization: Bearer <the file's content>`. Required when
    /// /tap listens off loopback.
    public var tapTokenFile: String?
    /// `max_connections`: open connections per listener; more are closed as soon as accepted.
    public var maxConnections = APIKeys.maxConnections.defaultValue
    /// `idle_timeout`: a kept-alive connection without a new request is closed after this long.
    public var idleTimeout = APIKeys.idleTimeout.defaultValue
    /// `header_timeout`: a request whose head has not fully arrived after this long is dropped.
    public var headerTimeout = APIKeys.headerTimeout.defaultValue
    /// `tap_queue_bytes` / `tap_queue_records`: what one /tap client may have queued, unsent; past
    /// either it is disconnected with a last line saying how many records it missed.
    public var tapQueueBytes = APIKeys.tapQueueBytes.defaultValue
    public var tapQueueRecords = APIKeys.tapQueueRecords.defaultValue

    public init() {}

    /// Where /tap is served, when enabled.
    public var tapListenAddress: String? { tapEnabled ? (tapAddress ?? address) : nil }

    public static func parse(_ r: ConfigReader) -> APIOptions {
        typealias K = APIKeys
        var o = APIOptions()
        o.address = r.get(K.address)
        o.tapEnabled = r.get(K.tap)
        o.tapAddress = r.get(K.tapAddress)
        o.tapTokenFile = r.get(K.tapTokenFile)
        o.maxConnections = r.get(K.maxConnections)
        o.idleTimeout = r.get(K.idleTimeout)
        o.headerTimeout = r.get(K.headerTimeout)
        o.tapQueueBytes = r.get(K.tapQueueBytes)
        o.tapQueueRecords = r.get(K.tapQueueRecords)
        for (key, a) in [("address", Optional(o.address)), ("tap_address", o.tapAddress)] {
            if let a, (try? APIServer.split(a)) == nil {
                r.error(key, "\"\(a)\" must be HOST:PORT, such as 127.0.0.1:2020 (port 0 picks a free port)")
            }
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

/// The `api:` options, declared once.
public enum APIKeys {
    public static let address = ConfigKey<String>.string("address", default: "127.0.0.1:2020", "HOST:PORT of `/metrics`, `/health`, `/ready` (and `/tap` without `tap_address`); `0.0.0.0:2020` in the DaemonSet; port 0 picks a free port")
    public static let tap = ConfigKey<Bool>.bool("tap", default: false, "serve `/tap` (every record passing a component)")
    public static let tapAddress = ConfigKey<String?>.text("tap_address", "HOST:PORT", "a separate listener for `/tap` only (loopback while `address` is the pod IP)")
    public static let tapTokenFile = ConfigKey<String?>.path("tap_token_file", "`/tap` requires `Authorization: Bearer <the file's content>` (at least 16 characters); required when `/tap` listens off loopback")
    public static let maxConnections = ConfigKey<Int>.int("max_connections", default: 64, 1...10_000, "open connections per listener; more are closed at once")
    public static let idleTimeout = ConfigKey<Double>.duration("idle_timeout", default: 60, 0.001...86_400, "a kept-alive connection without a new request is closed after this long")
    public static let headerTimeout = ConfigKey<Double>.duration("header_timeout", default: 10, 0.001...3600, "a request whose head has not arrived after this long is dropped")
    public static let tapQueueBytes = ConfigKey<Int>.size("tap_queue_bytes", default: 1 << 20, 4096...(1 << 30), "what one `/tap` client may have queued; past it, it is disconnected with a line saying how many records it missed")
    public static let tapQueueRecords = ConfigKey<Int>.int("tap_queue_records", default: 10_000, 1...10_000_000, "the same, in records")
    public static let group = ConfigGroup("api", "the HTTP API; off when absent", [address.spec, tap.spec, tapAddress.spec, tapTokenFile.spec, maxConnections.spec,
                                                                             idleTimeout.spec, headerTimeout.spec, tapQueueBytes.spec, tapQueueRecords.spec])
}
