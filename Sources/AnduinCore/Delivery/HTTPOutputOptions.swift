import Foundation

public enum Compression: String, CaseIterable, Sendable { case gzip, none }

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

/// Produces the auth part of each request; used by one delivery thread.
public final class HTTPAuthenticator {
    private let options: HTTPAuthOptions
    private var tokenFile: SecretFile?
    private var password: String?

    public init(_ options: HTTPAuthOptions) {
        self.options = options
        password = options.password?.reveal()
    }

    /// Basic credentials for libcurl (never put in the URL), or nil.
    public func basic() throws -> (String, String)? {
        guard let user = options.user else { return nil }
        if let file = options.passwordFile {
            // Re-read each time: cheap, and a rotated secret is picked up without a restart.
            guard let data = FileManager.default.contents(atPath: file) else {
                throw HTTPAuthError("cannot read password_file \(file)")
            }
            password = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
        }
        return (user, password ?? "")
    }

    /// Extra `Authorization` header for api_key / bearer token.
    public func header() throws -> (String, String)? {
        if let key = options.apiKey { return ("Authorization", "ApiKey " + key.reveal()) }
        guard let file = options.tokenFile else { return nil }
        let reader = tokenFile ?? SecretFile(path: file)
        tokenFile = reader
        do {
            return ("Authorization", "Bearer " + (try reader.current()).reveal())
        } catch {
            throw HTTPAuthError("cannot read token_file \(error)")
        }
    }
}

public struct HTTPAuthError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ d: String) { description = d }
}

/// Compresses request bodies with a reused libdeflate compressor (`GzipEncoder`); used by one
/// delivery thread.
public struct BodyEncoder {
    private var gzip: GzipEncoder?
    public private(set) var body: [UInt8] = []

    public init(_ compression: Compression, level: Int32) throws {
        if compression == .gzip { gzip = try GzipEncoder(level: level) }
    }

    public var contentEncoding: String? { gzip == nil ? nil : "gzip" }

    /// Calls `send` with the bytes to send for `raw`: itself, or its gzip (in a buffer reused for
    /// every request).
    public mutating func withEncoded<R>(_ raw: UnsafeRawBufferPointer,
                                        _ send: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard gzip != nil else { return try send(raw) }
        body.removeAll(keepingCapacity: true)
        try gzip?.compress(raw, into: &body)
        return try body.withUnsafeBytes(send)
    }
}

/// What an HTTP-based sender needs for each request: the client (one kept-alive connection), the
/// body compression, the auth headers and the fixed headers. One per delivery thread.
public final class HTTPRequester {
    private let client: HTTPClient
    private let auth: HTTPAuthenticator
    private var encoder: BodyEncoder
    private let headers: [(String, String)]
    private let abort: RequestAbort?
    /// The `Retry-After` header of the last response, if it had one.
    public private(set) var retryAfter: String?
    /// The last request's body: its size before compression, and as sent.
    public private(set) var lastBody: (uncompressed: Int, sent: Int) = (0, 0)

    /// `abort`: the output's stop signal (`ComponentContext.requestAbort`), nil for requests that
    /// always run to their end or timeout.
    public init(_ options: HTTPOutputOptions, contentType: String, abort: RequestAbort? = nil) throws {
        self.abort = abort
        client = try HTTPClient(options: options.client)
        auth = HTTPAuthenticator(options.auth)
        encoder = try BodyEncoder(options.compression, level: options.compressionLevel)
        // Revealed here, once: this list goes to libcurl with every request.
        var h = options.headers.map { ($0.0, $0.1.reveal()) }
        h.append(("Content-Type", contentType))
        if let ce = encoder.contentEncoding { h.append(("Content-Encoding", ce)) }
        headers = h
    }

    /// The scrubber for the credentials of the last request sent: a sender passes every text it
    /// builds from the answer through it (per-item reasons come from 2xx bodies too).
    public private(set) var scrubber = CredentialScrubber.none
    /// What `scrubber` was built from: rebuilt only when the credentials change (a rotated token).
    private var scrubberKey: [String]?

    /// Compresses `raw` as configured and sends it with the credentials of the moment.
    ///
    /// The body of a response that is not 2xx is scrubbed of every credential this request carried
    /// (see `CredentialScrubber`): receivers echo requests into their error bodies, and those bodies
    /// end up in logs, errors and dead-letter files. A 2xx body is left as it is (scanning every
    /// bulk receipt would cost more than the rare text taken from it): a sender scrubs what it takes
    /// from one (per-item reasons) with `scrubber`.
    public func send(method: String, url: String, body raw: [UInt8]) throws -> HTTPResponse {
        try raw.withUnsafeBytes { try send(method: method, url: url, body: $0) }
    }

    /// As above, for a body that is not an array of its own (a run of an `EncodedBatch`).
    public func send(method: String, url: String, body raw: UnsafeRawBufferPointer) throws -> HTTPResponse {
        var h = headers
        if let a = try auth.header() { h.append(a) }
        let basic = try auth.basic()
        retryAfter = nil
        let started = monotonicSeconds()
        let shouldAbort = abort.map { a in { a.shouldAbort(startedAt: started) } }
        let key = [url, basic?.0 ?? "", basic?.1 ?? ""] + h.map(\.1)
        if key != scrubberKey {
            scrubber = CredentialScrubber(url: url, headers: h, basicAuth: basic)
            scrubberKey = key
        }
        lastBody = (raw.count, raw.count)
        var response = try encoder.withEncoded(raw) {
            lastBody.sent = $0.count
            return try client.send(method: method, url: url, headers: h, body: $0, basicAuth: basic, shouldAbort: shouldAbort)
        }
        retryAfter = response.header("retry-after")
        if !(200..<300).contains(response.status), !response.body.isEmpty {
            response.body = scrubber.scrub(response.body)
        }
        return response
    }
}

/// `scheme://user:password@host/...`: the credentials a URL carries, taken out of it so the URL can be
/// shown and logged, and the password held as a `Secret`.
public struct URLUserinfo: Sendable, Equatable {
    /// The URL without its userinfo.
    public var url: String
    public var user: String?
    public var password: Secret?

    public init(_ url: String) {
        self.url = url
        guard let schemeEnd = url.range(of: "://") else { return }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return }
        let info = rest[..<at]
        self.url = String(url[..<schemeEnd.upperBound]) + rest[rest.index(after: at)...]
        if let colon = info.firstIndex(of: ":") {
            user = Self.decode(info[..<colon])
            password = Secret(Self.decode(info[info.index(after: colon)...]))
        } else {
            user = Self.decode(info)
        }
    }

    private static func decode(_ s: Substring) -> String { String(s).removingPercentEncoding ?? String(s) }
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
