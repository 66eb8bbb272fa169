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

/// The `api:` section. The API is split by risk: `/metrics`, `/health` and `/ready` carry no log
/// content and may listen on the pod IP; `/tap` streams every record passing a component, so it is
/// off unless enabled, listens on loopback unless told otherwise, and off loopback needs a bearer
/// token.
public struct APIOptions: Sendable, Equatable {
    /// `address`: /metrics, /health, /ready (and /tap when enabled without its own `tap_address`).
    @OptionField(.string("address", "HOST:PORT of `/metrics`, `/health`, `/ready` (and `/tap` without `tap_address`); `0.0.0.0:2020` in the DaemonSet; port 0 picks a free port"))
    public var address = "127.0.0.1:2020"
    /// `tap: true` serves /tap.
    @OptionField(.bool("tap", "serve `/tap` (every record passing a component)"))
    public var tapEnabled = false
    /// `tap_address`: a separate listener for /tap only (e.g. loopback while `address` is the pod IP).
    @OptionField(.text("tap_address", "HOST:PORT", "a separate listener for `/tap` only (loopback while `address` is the pod IP)"))
    public var tapAddress: String? = nil
    /// `tap_token_file`: /tap requires `Authorization: Bearer <the file's content>`. Required when
    /// /tap listens off loopback.
    @OptionField(.path("tap_token_file", "`/tap` requires `Authorization: Bearer <the file's content>` (at least 16 characters); required when `/tap` listens off loopback"))
    public var tapTokenFile: String? = nil
    /// `max_connections`: open connections per listener; more are closed as soon as accepted.
    @OptionField(.int("max_connections", 1...10_000, "open connections per listener; more are closed at once"))
    public var maxConnections = 64
    /// `idle_timeout`: a kept-alive connection without a new request is closed after this long.
    @OptionField(.duration("idle_timeout", 0.001...86_400, "a kept-alive connection without a new request is closed after this long"))
    public var idleTimeout = 60.0
    /// `header_timeout`: a request whose head has not fully arrived after this long is dropped.
    @OptionField(.duration("header_timeout", 0.001...3600, "a request whose head has not arrived after this long is dropped"))
    public var headerTimeout = 10.0
    /// `tap_queue_bytes` / `tap_queue_records`: what one /tap client may have queued, unsent; past
    /// either it is disconnected with a last line saying how many records it missed.
    @OptionField(.size("tap_queue_bytes", 4096...(1 << 30), "what one `/tap` client may have queued; past it, it is disconnected with a line saying how many records it missed"))
    public var tapQueueBytes = 1 << 20
    @OptionField(.int("tap_queue_records", 1...10_000_000, "the same, in records"))
    public var tapQueueRecords = 10_000

    public init() {}

    /// Where /tap is served, when enabled.
    public var tapListenAddress: String? { tapEnabled ? (tapAddress ?? address) : nil }

    /// The `api:` options, declared once (by the fields).
    public static let table = OptionTable(fields: APIOptions(), check: check)

    /// Listen addresses, and what `/tap` needs off loopback.
    @Sendable static func check(_ r: ConfigReader, _ o: inout APIOptions, _: Bool) {
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
    }

    /// The token in `file` (surrounding whitespace removed), which must not be empty.
    public static func readToken(_ file: String) -> Result<Secret, ConfigProblem> {
        guard let data = FileManager.default.contents(atPath: file) else {
            return .failure(ConfigProblem("cannot read \(file)"))
        }
        let token = String(decoding: data, as: UTF8.self).trimmed(.whitespacesAndNewlines)
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
