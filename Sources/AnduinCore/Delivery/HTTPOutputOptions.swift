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

/// Options every network output (`elasticsearch`, `http`) shares, declared once by these fields:
/// concurrency, connection, TLS, credentials, headers, compression and `metadata:`; buffering,
/// batching and retries are `DeliveryOptions`.
public struct HTTPOutputOptions: Sendable {
    @OptionField(.int("concurrency", 1...64, "requests in flight; acknowledgements still advance in order"))
    public var concurrency = DeliveryOptions(buffer: DeliveryOptions.defaultBuffer).concurrency
    @OptionField(.duration("connect_timeout", 0.001...3600, "a connection that takes longer is abandoned and retried"))
    public var connectTimeout = HTTPClientOptions().connectTimeout
    @OptionField(.duration("request_timeout", 0.001...86_400, "a request that takes longer is abandoned and retried"))
    public var requestTimeout = HTTPClientOptions().requestTimeout
    @OptionField(.bool("http2", "HTTP/2 when the TLS server offers it, else HTTP/1.1; connections are kept alive"))
    public var http2 = HTTPClientOptions().http2
    @OptionField(.text("proxy", "URL", "`http_proxy`/`https_proxy`/`no_proxy` are honoured; `\"\"` turns proxies off", defaultText: "(environment)"))
    public var proxy: String? = nil
    @OptionField(group: "tls", "verification is on by default", tlsTable)
    public var tls = TLSOptions()
    @OptionField(.string("user", "basic auth, with `password` or `password_file`"))
    public var user: String? = nil
    @OptionField(.secret("password", "basic auth password (a secret: shown as `***`)"))
    public var password: Secret? = nil
    @OptionField(.path("password_file", "basic auth password, re-read for every request"))
    public var passwordFile: String? = nil
    /// Elasticsearch API key (the base64 `id:key`), sent as `Authorization: ApiKey …`.
    @OptionField(.secret("api_key", "`Authorization: ApiKey <key>` (Elasticsearch; a secret)"))
    public var apiKey: Secret? = nil
    /// Bearer token file, re-read whenever it changes (Kubernetes rotates projected tokens).
    @OptionField(.path("token_file", "`Authorization: Bearer <token>`, re-read when the file changes (rotated tokens)"))
    public var tokenFile: String? = nil
    /// Extra headers. Every value is a `Secret`: values such as `Authorization`, `X-Api-Key` or a
    /// tenant token are credentials, and telling them from harmless ones by name would miss some.
    @OptionField(.free("headers", "mapping: name → secret", "extra request headers; every value is a secret (shown as `***`)", defaultText: "{}"),
                 read: { r in r.stringMap("headers").map { ($0.0, Secret($0.1)) } })
    public var headers: [(String, Secret)] = []
    @OptionField(.choice("compression", "request bodies, sent as `Content-Encoding: gzip`"))
    public var compression = Compression.gzip
    @OptionField(.int("compression_level", 1...12, "gzip level (libdeflate, on zlib's scale: 1 fastest, 12 smallest; what each costs: *Performance*)"))
    public var compressionLevel = 5
    @OptionField(group: DocumentMetadata.self)
    public var metadata = DocumentMetadata()

    public init() {}

    /// The connection options libcurl is set up with.
    public var client: HTTPClientOptions {
        var c = HTTPClientOptions()
        c.connectTimeout = connectTimeout
        c.requestTimeout = requestTimeout
        c.http2 = http2
        c.proxy = proxy
        c.tls = tls
        return c
    }

    public var auth: HTTPAuthOptions {
        var a = HTTPAuthOptions()
        a.user = user
        a.password = password
        a.passwordFile = passwordFile
        a.apiKey = apiKey
        a.tokenFile = tokenFile
        return a
    }

    public static let table = OptionTable(fields: HTTPOutputOptions(), check: checkAuth)

    static let tlsTable = OptionTable(fields: TLSOptions(), check: checkTLS)

    /// The options every network output shares, read from its options: these and `DeliveryOptions`
    /// (a disk buffer by default), with `concurrency` and `metadata` passed on to the delivery.
    public static func parseShared(_ r: ConfigReader) -> (http: HTTPOutputOptions, delivery: DeliveryOptions) {
        var http = table.defaults
        table.read(r, into: &http)
        var delivery = DeliveryOptions.table.defaults
        DeliveryOptions.table.read(r, into: &delivery)
        delivery.concurrency = http.concurrency
        delivery.metadata = http.metadata
        return (http, delivery)
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
        if o.password != nil && o.passwordFile != nil {
            r.error("password_file", "give password or password_file, not both")
        }
        if (o.password != nil || o.passwordFile != nil) && o.user == nil {
            r.error(nil, "a password needs a user")
        }
        let schemes = [o.user != nil, o.apiKey != nil, o.tokenFile != nil].filter { $0 }.count
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
        if user != nil || apiKey != nil || tokenFile != nil || passwordFile != nil {
            r.error(key, "credentials in the URL and user/password, api_key or token_file: give one of them")
        } else if withInfo.count != parts.count || withInfo.contains(where: { $0.user != first.user || $0.password != first.password }) {
            r.error(key, "the hosts carry different credentials in their URLs: give user and password once instead")
        } else {
            user = first.user
            password = first.password
        }
        return parts.map(\.url)
    }
}
