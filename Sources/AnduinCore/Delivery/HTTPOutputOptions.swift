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

/// Credentials of an HTTP-based output. Secrets are read from the config or from files and held as
/// `Secret` (printed as `***`); they are revealed only for libcurl.
public struct HTTPAuthOptions: Sendable {
    public var user: String?
    public var password: Secret?
    public var passwordFile: String?
    /// Elasticsearch API key (the base64 `id:key`), sent as `Authorization: ApiKey …`.
    public var apiKey: Secret?
    /// Bearer token file, re-read whenever it changes (Kubernetes rotates projected tokens).
    public var tokenFile: String?
    public init() {}
}

/// Options every HTTP-based output shares: connection, TLS, auth, headers, compression.
public struct HTTPOutputOptions: Sendable {
    public var client = HTTPClientOptions()
    public var auth = HTTPAuthOptions()
    /// Extra headers. Every value is a `Secret`: values such as `Authorization`, `X-Api-Key` or a
    /// tenant token are credentials, and telling them from harmless ones by name would miss some.
    public var headers: [(String, Secret)] = []
    public var compression: Compression = .gzip
    public var compressionLevel: Int32 = 5

    public init() {}

    /// The options every network output (`elasticsearch`, `http`) shares, declared once: connection,
    /// TLS, credentials, headers and compression here; buffering, batching and retries in `DeliveryOptions.table`.
    public static let table = OptionTable(HTTPOutputOptions(), check: checkAuth) { d in [
        .key(.duration("connect_timeout", default: d.client.connectTimeout, 0.001...3600, "a connection that takes longer is abandoned and retried"), \.client.connectTimeout),
        .key(.duration("request_timeout", default: d.client.requestTimeout, 0.001...86_400, "a request that takes longer is abandoned and retried"), \.client.requestTimeout),
        .key(.bool("http2", default: d.client.http2, "HTTP/2 when the TLS server offers it, else HTTP/1.1; connections are kept alive"), \.client.http2),
        .key(.text("proxy", "URL", "`http_proxy`/`https_proxy`/`no_proxy` are honoured; `\"\"` turns proxies off", defaultText: "(environment)"), \.client.proxy),
        .group("tls", "verification is on by default", tls, \.client.tls),
        .key(.string("user", "basic auth, with `password` or `password_file`"), \.auth.user),
        .key(.secret("password", "basic auth password (a secret: shown as `***`)"), \.auth.password),
        .key(.path("password_file", "basic auth password, re-read for every request"), \.auth.passwordFile),
        .key(.secret("api_key", "`Authorization: ApiKey <key>` (Elasticsearch; a secret)"), \.auth.apiKey),
        .key(.path("token_file", "`Authorization: Bearer <token>`, re-read when the file changes (rotated tokens)"), \.auth.tokenFile),
        .custom(ConfigKey<ConfigValue?>.free("headers", "mapping: name → secret", "extra request headers; every value is a secret (shown as `***`)", defaultText: "{}").spec) { r, o in
            o.headers = r.stringMap("headers").map { ($0.0, Secret($0.1)) }
        },
        .key(ConfigKey<Compression>.choice("compression", default: d.compression, "request bodies, sent as `Content-Encoding: gzip`"), \.compression),
        .key(.int("compression_level", default: Int(d.compressionLevel), 1...12, "gzip level (libdeflate, on zlib's scale: 1 fastest, 12 smallest; what each costs: *Performance*)"), \.compressionLevel) { _, level in Int32(level) },
    ]}

    static let tls = OptionTable(TLSOptions(), check: checkTLS) { d in [
        .key(.path("ca_file", "CA bundle that verifies the server"), \.caFile),
        .key(.path("cert_file", "client certificate (with `key_file`)"), \.certFile),
        .key(.path("key_file", "client key (with `cert_file`)"), \.keyFile),
        .key(.bool("insecure_skip_verify", default: d.insecureSkipVerify, "do not verify the server (tests only)"), \.insecureSkipVerify),
    ]}

    public static func parse(_ r: ConfigReader) -> HTTPOutputOptions {
        var o = table.defaults
        table.read(r, into: &o)
        return o
    }

    @Sendable static func checkTLS(_ t: ConfigReader, _ tls: inout TLSOptions, _: Bool) {
        if (tls.certFile == nil) != (tls.keyFile == nil) {
            t.error(tls.certFile == nil ? "key_file" : "cert_file", "cert_file and key_file go together (client certificate)")
        }
        for (key, path) in [("ca_file", tls.caFile), ("cert_file", tls.certFile), ("key_file", tls.keyFile)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) {
                t.error(key, "cannot read \(path)")
            }
        }
    }

    @Sendable static func checkAuth(_ r: ConfigReader, _ o: inout HTTPOutputOptions, _: Bool) {
        if o.auth.password != nil && o.auth.passwordFile != nil {
            r.error("password_file", "give password or password_file, not both")
        }
        if (o.auth.password != nil || o.auth.passwordFile != nil) && o.auth.user == nil {
            r.error(nil, "a password needs a user")
        }
        let schemes = [o.auth.user != nil, o.auth.apiKey != nil, o.auth.tokenFile != nil].filter { $0 }.count
        if schemes > 1 { r.error(nil, "choose one of user/password, api_key and token_file") }
    }
}

extension HTTPOutputOptions {
    /// Takes the userinfo out of `urls` (ES `hosts`, HTTP `uri`) into Basic credentials. Returns the
    /// URLs without it. Reports (without showing them) credentials that conflict with `user:` or
    /// differ between hosts.
    public mutating func takeUserinfo(_ urls: [String], key: String, _ r: ConfigReader) -> [String] {
        let parts = urls.map(URLUserinfo.init)
        let withInfo = parts.filter { $0.user != nil || $0.password != nil }
        guard let first = withInfo.first else { return urls }
        if auth.user != nil || auth.apiKey != nil || auth.tokenFile != nil || auth.passwordFile != nil {
            r.error(key, "credentials in the URL and user/password, api_key or token_file: give one of them")
        } else if withInfo.count != parts.count || withInfo.contains(where: { $0.user != first.user || $0.password != first.password }) {
            r.error(key, "the hosts carry different credentials in their URLs: give user and password once instead")
        } else {
            auth.user = first.user
            auth.password = first.password
        }
        return parts.map(\.url)
    }
}
