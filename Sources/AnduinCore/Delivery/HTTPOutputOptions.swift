import Foundation

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
    public var compressionLevel: Int32 = 6

    public init() {}

    public static func parse(_ r: ConfigReader) -> HTTPOutputOptions {
        typealias K = HTTPKeys
        var o = HTTPOutputOptions()
        o.client.connectTimeout = r.get(K.connectTimeout)
        o.client.requestTimeout = r.get(K.requestTimeout)
        o.client.http2 = r.get(K.http2)
        o.client.proxy = r.get(K.proxy)
        if let t = r.group(K.tls) {
            o.client.tls.caFile = t.get(K.caFile)
            o.client.tls.certFile = t.get(K.certFile)
            o.client.tls.keyFile = t.get(K.keyFile)
            o.client.tls.insecureSkipVerify = t.get(K.insecureSkipVerify)
            if (o.client.tls.certFile == nil) != (o.client.tls.keyFile == nil) {
                t.error(o.client.tls.certFile == nil ? "key_file" : "cert_file", "cert_file and key_file go together (client certificate)")
            }
            for (key, path) in [("ca_file", o.client.tls.caFile), ("cert_file", o.client.tls.certFile),
                                ("key_file", o.client.tls.keyFile)] {
                if let path, !FileManager.default.isReadableFile(atPath: path) {
                    t.error(key, "cannot read \(path)")
                }
            }
        }
        o.auth.user = r.get(K.user)
        o.auth.password = r.get(K.password)
        o.auth.passwordFile = r.get(K.passwordFile)
        o.auth.apiKey = r.get(K.apiKey)
        o.auth.tokenFile = r.get(K.tokenFile)
        if o.auth.password != nil && o.auth.passwordFile != nil {
            r.error("password_file", "give password or password_file, not both")
        }
        if (o.auth.password != nil || o.auth.passwordFile != nil) && o.auth.user == nil {
            r.error(nil, "a password needs a user")
        }
        let schemes = [o.auth.user != nil, o.auth.apiKey != nil, o.auth.tokenFile != nil].filter { $0 }.count
        if schemes > 1 { r.error(nil, "choose one of user/password, api_key and token_file") }
        o.headers = r.stringMap(K.headers.key).map { ($0.0, Secret($0.1)) }
        o.compression = r.get(K.compression)
        o.compressionLevel = Int32(r.get(K.compressionLevel))
        return o
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
