import CCurl
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs curl_global_init once per process; Swift initialises a `static let` exactly once,
/// thread-safely.
enum CurlGlobal {
    static let initCode: UInt32 = curl_global_init(anduin_curl_global_default()).rawValue
}

/// A blocking HTTP/1.1 and HTTP/2 client on one libcurl easy handle, so consecutive requests
/// reuse the connection (keep-alive).
///
/// Not Sendable: a libcurl easy handle must not be used by two threads at once, so a client belongs
/// to one owner (an output's delivery thread, a watch thread) and the compiler keeps it there.
public final class HTTPClient {
    public let options: HTTPClientOptions
    private let handle: UnsafeMutableRawPointer
    private let errorBuffer: UnsafeMutablePointer<CChar>
    private let sink: ResponseSink
    // POSTFIELDS with a NULL pointer would make curl read the body from stdin; empty bodies
    // point here instead.
    private let emptyBody: UnsafeMutableRawPointer

    public init(options: HTTPClientOptions) throws(HTTPClientError) {
        let g = CurlGlobal.initCode
        guard g == CURLE_OK.rawValue else {
            throw .setup(detail: "curl_global_init: \(String(cString: curl_easy_strerror(CURLcode(rawValue: g))))")
        }
        for (what, t) in [("connect", options.connectTimeout), ("request", options.requestTimeout)]
        where !(t > 0) {  // huge or infinite is fine: millis() clamps it
            throw .setup(detail: "\(what) timeout must be a positive number of seconds, got \(t)")
        }
        for (what, path) in [("CA file", options.tls.caFile), ("client certificate", options.tls.certFile),
                             ("client key", options.tls.keyFile)] {
            // Checked now so a wrong path fails at startup, not on the first flush.
            if let path, access(path, R_OK) != 0 {
                throw .setup(detail: "TLS \(what) \(path) is not readable: \(String(cString: strerror(errno)))")
            }
        }
        if options.tls.keyFile != nil && options.tls.certFile == nil {
            throw .setup(detail: "a TLS client key is set without a client certificate; set both or neither")
        }
        guard let h = curl_easy_init() else { throw .setup(detail: "curl_easy_init failed (out of memory?)") }
        self.options = options
        self.handle = h
        self.errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        self.errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
        self.emptyBody = .allocate(byteCount: 1, alignment: 1)
        self.sink = ResponseSink(limit: max(0, options.maxResponseBodyBytes))
        // All properties are set, so a throw here still runs deinit, which frees the handle.
        try configure()
    }

    deinit {
        curl_easy_cleanup(handle)
        errorBuffer.deallocate()
        emptyBody.deallocate()
    }

    private func configure() throws(HTTPClientError) {
        let ctx = Unmanaged.passUnretained(sink).toOpaque()
        var failed: (String, CURLcode)?
        func check(_ name: String, _ rc: CURLcode) {
            if rc != CURLE_OK && failed == nil { failed = (name, rc) }
        }
        check("ERRORBUFFER", anduin_setopt_ptr(handle, CURLOPT_ERRORBUFFER, errorBuffer))
        // Threads: no SIGALRM-based DNS timeouts.
        check("NOSIGNAL", anduin_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
        check("TCP_KEEPALIVE", anduin_setopt_long(handle, CURLOPT_TCP_KEEPALIVE, 1))
        // Probe idle connections sooner than curl's 60 s so NAT/LB drops are noticed.
        check("TCP_KEEPIDLE", anduin_setopt_long(handle, CURLOPT_TCP_KEEPIDLE, 30))
        check("TCP_KEEPINTVL", anduin_setopt_long(handle, CURLOPT_TCP_KEEPINTVL, 15))
        check("CONNECTTIMEOUT_MS", anduin_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, millis(options.connectTimeout)))
        check("TIMEOUT_MS", anduin_setopt_long(handle, CURLOPT_TIMEOUT_MS, millis(options.requestTimeout)))
        check("WRITEFUNCTION", anduin_setopt_datafn(handle, CURLOPT_WRITEFUNCTION, sinkWriteCallback))
        check("WRITEDATA", anduin_setopt_ptr(handle, CURLOPT_WRITEDATA, ctx))
        check("HEADERFUNCTION", anduin_setopt_datafn(handle, CURLOPT_HEADERFUNCTION, sinkHeaderCallback))
        check("HEADERDATA", anduin_setopt_ptr(handle, CURLOPT_HEADERDATA, ctx))
        check("USERAGENT", anduin_setopt_str(handle, CURLOPT_USERAGENT, "anduin"))
        if options.http2 {
            // Not built with nghttp2: HTTP/1.1 is a fine fallback, so the result is ignored.
            if anduin_setopt_long(handle, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS)) != CURLE_OK {
                check("HTTP_VERSION", anduin_setopt_long(handle, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1)))
            }
        } else {
            check("HTTP_VERSION", anduin_setopt_long(handle, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1)))
        }
        if let proxy = options.proxy {
            check("PROXY", anduin_setopt_str(handle, CURLOPT_PROXY, proxy))
        }
        let tls = options.tls
        if let ca = tls.caFile { check("CAINFO", anduin_setopt_str(handle, CURLOPT_CAINFO, ca)) }
        if let cert = tls.certFile { check("SSLCERT", anduin_setopt_str(handle, CURLOPT_SSLCERT, cert)) }
        if let key = tls.keyFile { check("SSLKEY", anduin_setopt_str(handle, CURLOPT_SSLKEY, key)) }
        if tls.insecureSkipVerify {
            check("SSL_VERIFYPEER", anduin_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 0))
            check("SSL_VERIFYHOST", anduin_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 0))
        }
        if case let (name, rc)? = failed {
            // Option values may be secrets (proxy credentials), so only the option name is shown.
            throw .setup(detail: "libcurl rejected option \(name): \(String(cString: curl_easy_strerror(rc)))")
        }
    }

    /// Sends one request and waits for the whole response.
    ///
    /// - `body` is sent as-is and must stay valid until this returns (curl reads it in place).
    ///   Set `Content-Encoding: gzip` yourself when it is gzipped, and `Content-Type` (curl
    ///   otherwise labels a body `application/x-www-form-urlencoded`).
    /// - GET and HEAD send no body; any other method sends `body` (possibly empty).
    /// - `basicAuth` (user, password) is sent as HTTP Basic auth, never via the URL.
    /// - Redirects are not followed; 3xx, 4xx and 5xx come back as responses.
    /// - `shouldAbort` is polled about once a second (more often while data moves) until the response
    ///   is complete; returning true ends the request at once with `.aborted` (a stop must not wait
    ///   for a server that never answers).
    public func send(method: String, url: String, headers: [(String, String)],
                     body: UnsafeRawBufferPointer, basicAuth: (String, String)?,
                     shouldAbort: (() -> Bool)? = nil) throws(HTTPClientError) -> HTTPResponse {
        let shownURL = HTTPClient.redactedURL(url)
        try validate(method: method, url: url, shownURL: shownURL, headers: headers, body: body)

        var list: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(list) }
        // An empty Expect: stops curl from waiting for "100 Continue" before large bodies.
        if !headers.contains(where: { $0.0.lowercased() == "expect" }) {
            list = curl_slist_append(list, "Expect:")
        }
        try appendHeaders(headers, to: &list)

        sink.reset()
        errorBuffer[0] = 0
        var failed: (String, CURLcode)?
        func check(_ name: String, _ rc: CURLcode) {
            if rc != CURLE_OK && failed == nil { failed = (name, rc) }
        }
        setRequest(method: method, url: url, headers: list, body: body, basicAuth: basicAuth, check)
        let abort = shouldAbort.map(AbortContext.init)
        if let abort {
            check("XFERINFOFUNCTION", anduin_setopt_xferinfofn(handle, CURLOPT_XFERINFOFUNCTION, sendProgressCallback))
            check("XFERINFODATA", anduin_setopt_ptr(handle, CURLOPT_XFERINFODATA, Unmanaged.passUnretained(abort).toOpaque()))
            check("NOPROGRESS", anduin_setopt_long(handle, CURLOPT_NOPROGRESS, 0))
        }
        defer {
            // Drop pointers to memory that is freed or owned by the caller once we return.
            _ = anduin_setopt_slist(handle, CURLOPT_HTTPHEADER, nil)
            _ = anduin_setopt_ptr(handle, CURLOPT_POSTFIELDS, emptyBody)
            _ = anduin_setopt_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, 0)
            if abort != nil {
                _ = anduin_setopt_long(handle, CURLOPT_NOPROGRESS, 1)
                _ = anduin_setopt_ptr(handle, CURLOPT_XFERINFODATA, nil)
            }
        }
        if case let (name, rc)? = failed {
            throw .invalidRequest(url: shownURL,
                                  detail: "libcurl rejected \(name): \(String(cString: curl_easy_strerror(rc)))")
        }

        let started = monotonicSeconds()
        let rc = withExtendedLifetime(abort) { curl_easy_perform(handle) }
        let elapsed = monotonicSeconds() - started
        guard rc == CURLE_OK else {
            if rc == CURLE_ABORTED_BY_CALLBACK, abort?.aborted == true {
                sink.reset()
                throw .aborted(url: shownURL)
            }
            var secrets: [String] = []
            if case let (_, password)? = basicAuth, !password.isEmpty { secrets.append(password) }
            throw mapError(rc, url: url, shownURL: shownURL, elapsed: elapsed, secrets: secrets)
        }
        var status = 0
        _ = anduin_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        let response = HTTPResponse(status: status, body: sink.body, headers: sink.headers)
        sink.reset()
        return response
    }

    /// Convenience for `[UInt8]` bodies.
    public func send(method: String, url: String, headers: [(String, String)] = [],
                     body: [UInt8] = [], basicAuth: (String, String)? = nil) throws(HTTPClientError) -> HTTPResponse {
        let r: Result<HTTPResponse, HTTPClientError> = body.withUnsafeBytes { b in
            do throws(HTTPClientError) {
                return .success(try send(method: method, url: url, headers: headers, body: b, basicAuth: basicAuth))
            } catch {
                return .failure(error)
            }
        }
        return try r.get()
    }

    // MARK: streaming

    /// Sends a GET and hands the response body to `onData` as it arrives, for long-lived responses
    /// such as Kubernetes watches (newline-delimited events over minutes).
    ///
    /// - `onData(status, chunk)` runs on the calling thread for each piece of the body, with the
    ///   final response's status code. Return false to end the transfer (`.stoppedByCaller`).
    /// - `shouldAbort` is polled about once a second even while no data flows (and before each
    ///   chunk); returning true ends the transfer (`.aborted`). Use it for shutdown.
    /// - `onHeaders(status)` runs once the final response's headers are in, before any body byte
    ///   (a watch may then send nothing for minutes: this is how the caller knows it is connected).
    /// - `timeout` bounds the whole transfer, connect included; reaching it throws `.timeout`.
    /// - Redirects are not followed. Status codes are not errors: check `status` (4xx/5xx bodies
    ///   are passed to `onData` too, so the caller can read a Kubernetes `Status` object).
    ///
    /// The result carries the status and headers; the body is only what `onData` kept.
    public func stream(method: String = "GET", url: String, headers: [(String, String)] = [],
                       timeout: Double, shouldAbort: () -> Bool = { false },
                       onHeaders: (_ status: Int) -> Void = { _ in },
                       onData: (_ status: Int, _ chunk: UnsafeRawBufferPointer) -> Bool) throws(HTTPClientError) -> HTTPStreamResult {
        let shownURL = HTTPClient.redactedURL(url)
        guard method == "GET" else {
            throw .invalidRequest(url: shownURL, detail: "stream supports GET only, not \(method)")
        }
        guard timeout > 0 else {
            throw .invalidRequest(url: shownURL, detail: "stream timeout must be a positive number of seconds, got \(timeout)")
        }
        try validate(method: method, url: url, shownURL: shownURL, headers: headers, body: UnsafeRawBufferPointer(start: nil, count: 0))
        let r: Result<HTTPStreamResult, HTTPClientError> = withoutActuallyEscaping(onData) { onData in
            withoutActuallyEscaping(shouldAbort) { shouldAbort in
                withoutActuallyEscaping(onHeaders) { onHeaders in
                    let ctx = StreamContext(handle: handle, sink: sink, onData: onData, shouldAbort: shouldAbort,
                                            onHeaders: onHeaders)
                    do throws(HTTPClientError) {
                        return .success(try performStream(url: url, shownURL: shownURL, headers: headers,
                                                          timeout: timeout, context: ctx))
                    } catch {
                        return .failure(error)
                    }
                }
            }
        }
        return try r.get()
    }

    /// Sets the options of one request, reporting each result to `check`. The handle keeps options
    /// between requests, so every method-related one and the credentials are set each time (nil
    /// credentials clear an earlier request's).
    private func setRequest(method: String, url: String, headers list: UnsafeMutablePointer<curl_slist>?,
                            body: UnsafeRawBufferPointer, basicAuth: (String, String)?,
                            _ check: (String, CURLcode) -> Void) {
        check("URL", anduin_setopt_str(handle, CURLOPT_URL, url))
        check("HTTPHEADER", anduin_setopt_slist(handle, CURLOPT_HTTPHEADER, list))
        check("NOBODY", anduin_setopt_long(handle, CURLOPT_NOBODY, 0))
        switch method {
        case "GET":
            check("HTTPGET", anduin_setopt_long(handle, CURLOPT_HTTPGET, 1))
            check("CUSTOMREQUEST", anduin_setopt_str(handle, CURLOPT_CUSTOMREQUEST, nil))
        case "HEAD":
            check("CUSTOMREQUEST", anduin_setopt_str(handle, CURLOPT_CUSTOMREQUEST, nil))
            check("NOBODY", anduin_setopt_long(handle, CURLOPT_NOBODY, 1))
        default:
            check("POSTFIELDSIZE_LARGE", anduin_setopt_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)))
            // POSTFIELDS (not COPYPOSTFIELDS): curl reads the caller's bytes in place, no copy.
            let ptr = body.baseAddress.map { UnsafeMutableRawPointer(mutating: $0) } ?? emptyBody
            check("POSTFIELDS", anduin_setopt_ptr(handle, CURLOPT_POSTFIELDS, ptr))
            check("CUSTOMREQUEST", anduin_setopt_str(handle, CURLOPT_CUSTOMREQUEST, method == "POST" ? nil : method))
        }
        let (user, password) = basicAuth.map { ($0.0 as String?, $0.1 as String?) } ?? (nil, nil)
        check("USERNAME", anduin_setopt_str(handle, CURLOPT_USERNAME, user))
        check("PASSWORD", anduin_setopt_str(handle, CURLOPT_PASSWORD, password))
    }

    private func appendHeaders(_ headers: [(String, String)],
                               to list: inout UnsafeMutablePointer<curl_slist>?) throws(HTTPClientError) {
        for (name, value) in headers {
            // "Name:" would tell curl to drop the header; "Name;" sends it with an empty value.
            let line = value.isEmpty ? "\(name);" : "\(name): \(value)"
            guard let next = curl_slist_append(list, line) else {
                throw .setup(detail: "out of memory building request headers")
            }
            list = next
        }
    }

    private func performStream(url: String, shownURL: String, headers: [(String, String)], timeout: Double,
                               context: StreamContext) throws(HTTPClientError) -> HTTPStreamResult {
        var list: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(list) }
        try appendHeaders(headers, to: &list)
        sink.reset()
        errorBuffer[0] = 0
        let ctx = Unmanaged.passUnretained(context).toOpaque()
        var failed: (String, CURLcode)?
        func check(_ name: String, _ rc: CURLcode) {
            if rc != CURLE_OK && failed == nil { failed = (name, rc) }
        }
        setRequest(method: "GET", url: url, headers: list, body: UnsafeRawBufferPointer(start: nil, count: 0), basicAuth: nil, check)
        check("TIMEOUT_MS", anduin_setopt_long(handle, CURLOPT_TIMEOUT_MS, millis(timeout)))
        check("WRITEFUNCTION", anduin_setopt_datafn(handle, CURLOPT_WRITEFUNCTION, streamWriteCallback))
        check("WRITEDATA", anduin_setopt_ptr(handle, CURLOPT_WRITEDATA, ctx))
        check("HEADERFUNCTION", anduin_setopt_datafn(handle, CURLOPT_HEADERFUNCTION, streamHeaderCallback))
        check("HEADERDATA", anduin_setopt_ptr(handle, CURLOPT_HEADERDATA, ctx))
        check("XFERINFOFUNCTION", anduin_setopt_xferinfofn(handle, CURLOPT_XFERINFOFUNCTION, streamProgressCallback))
        check("XFERINFODATA", anduin_setopt_ptr(handle, CURLOPT_XFERINFODATA, ctx))
        check("NOPROGRESS", anduin_setopt_long(handle, CURLOPT_NOPROGRESS, 0))
        defer {
            // Back to what `send` expects: the sink, no progress calls, the request timeout.
            _ = anduin_setopt_slist(handle, CURLOPT_HTTPHEADER, nil)
            _ = anduin_setopt_long(handle, CURLOPT_NOPROGRESS, 1)
            _ = anduin_setopt_ptr(handle, CURLOPT_XFERINFODATA, nil)
            _ = anduin_setopt_datafn(handle, CURLOPT_WRITEFUNCTION, sinkWriteCallback)
            _ = anduin_setopt_ptr(handle, CURLOPT_WRITEDATA, Unmanaged.passUnretained(sink).toOpaque())
            _ = anduin_setopt_datafn(handle, CURLOPT_HEADERFUNCTION, sinkHeaderCallback)
            _ = anduin_setopt_ptr(handle, CURLOPT_HEADERDATA, Unmanaged.passUnretained(sink).toOpaque())
            _ = anduin_setopt_long(handle, CURLOPT_TIMEOUT_MS, millis(options.requestTimeout))
        }
        if case let (name, rc)? = failed {
            throw .invalidRequest(url: shownURL,
                                  detail: "libcurl rejected \(name): \(String(cString: curl_easy_strerror(rc)))")
        }

        let started = monotonicSeconds()
        let rc = curl_easy_perform(handle)
        let elapsed = monotonicSeconds() - started
        var status = 0
        _ = anduin_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        let headers = sink.headers
        sink.reset()
        switch rc {
        case CURLE_OK:
            return HTTPStreamResult(status: status, headers: headers, end: .complete)
        case CURLE_WRITE_ERROR where context.stoppedByCaller:
            return HTTPStreamResult(status: status, headers: headers, end: .stoppedByCaller)
        case CURLE_ABORTED_BY_CALLBACK where context.aborted, CURLE_WRITE_ERROR where context.aborted:
            return HTTPStreamResult(status: status, headers: headers, end: .aborted)
        case CURLE_OPERATION_TIMEDOUT:
            // One code for both deadlines; a stop well before the stream deadline is the connect one.
            if options.connectTimeout < timeout && elapsed < timeout * 0.95 {
                throw mapError(rc, url: url, shownURL: shownURL, elapsed: elapsed, secrets: [])
            }
            throw .timeout(url: shownURL, seconds: timeout)
        default:
            throw mapError(rc, url: url, shownURL: shownURL, elapsed: elapsed, secrets: [])
        }
    }

    private func validate(method: String, url: String, shownURL: String, headers: [(String, String)],
                          body: UnsafeRawBufferPointer) throws(HTTPClientError) {
        let lower = url.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else {
            throw .invalidRequest(url: shownURL, detail: "the URL must start with http:// or https://")
        }
        guard !method.isEmpty, method.utf8.allSatisfy(isTokenByte) else {
            throw .invalidRequest(url: shownURL, detail: "method \"\(method)\" is not a valid HTTP method")
        }
        if (method == "GET" || method == "HEAD") && !body.isEmpty {
            throw .invalidRequest(url: shownURL, detail: "\(method) requests cannot carry a body")
        }
        for (name, value) in headers {
            guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte) else {
                throw .invalidRequest(url: shownURL, detail: "header name \"\(name)\" is not a valid token")
            }
            // Values are not shown: they may be API keys.
            guard !value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) else {
                throw .invalidRequest(url: shownURL, detail: "value of header \(name) contains a line break or NUL")
            }
        }
    }

    private func mapError(_ rc: CURLcode, url: String, shownURL: String, elapsed: Double,
                          secrets: [String]) -> HTTPClientError {
        var detail = String(cString: curl_easy_strerror(rc))
        let extra = String(cString: errorBuffer)
        // The error buffer is usually more specific (host, port, elapsed ms) and often already
        // ends with the generic text.
        if !extra.isEmpty { detail = extra.contains(detail) ? extra : "\(extra) (\(detail))" }
        // curl messages rarely echo input, but the raw URL or a password must never leak.
        if url != shownURL { detail = detail.replacing(url, with: shownURL) }
        for s in secrets { detail = detail.replacing(s, with: "***") }

        // Out of descriptors, curl cannot open a socket and says only "Couldn't connect" (its
        // OS errno stays 0): the cause is here, not at the destination. Probed with one open.
        if rc == CURLE_COULDNT_CONNECT {
            let probe = open("/dev/null", O_RDONLY | O_CLOEXEC)
            let why = errno
            if probe >= 0 {
                close(probe)
            } else if why == EMFILE || why == ENFILE {
                return .transport(url: shownURL, detail: "the agent is out of file descriptors (\(why == EMFILE ? "EMFILE" : "ENFILE")): "
                    + "raise its descriptor limit (ulimit -n, the container's nofile) or lower the tail's max_open_files")
            }
        }
        switch rc {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT:
            return .connect(url: shownURL, detail: detail)
        case CURLE_OPERATION_TIMEDOUT:
            // curl reports both deadlines with one code; a stop well before the request
            // deadline can only be the connect timeout.
            let o = options
            if o.connectTimeout < o.requestTimeout && elapsed < o.requestTimeout * 0.95 {
                return .connect(url: shownURL, detail: detail)
            }
            return .timeout(url: shownURL, seconds: o.requestTimeout)
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM,
             CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CRL_BADFILE, CURLE_SSL_ISSUER_ERROR,
             CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_ENGINE_NOTFOUND,
             CURLE_SSL_ENGINE_SETFAILED, CURLE_SSL_ENGINE_INITFAILED, CURLE_USE_SSL_FAILED,
             CURLE_SSL_SHUTDOWN_FAILED, CURLE_SSL_CLIENTCERT:
            return .tls(url: shownURL, detail: detail)
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL, CURLE_BAD_FUNCTION_ARGUMENT:
            return .invalidRequest(url: shownURL, detail: detail)
        default:
            return .transport(url: shownURL, detail: detail)
        }
    }

    /// `url` for messages: userinfo removed, query values replaced by `***`, fragment dropped.
    public static func redactedURL(_ url: String) -> String {
        var rest = Substring(url)
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        var query: Substring?
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        var result: String
        if let schemeEnd = rest.firstRange(of: "://") {
            let afterScheme = rest[schemeEnd.upperBound...]
            let authEnd = afterScheme.firstIndex(of: "/") ?? afterScheme.endIndex
            var authority = afterScheme[..<authEnd]
            if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
            result = String(rest[..<schemeEnd.upperBound]) + authority + afterScheme[authEnd...]
        } else {
            // Not a URL we understand; do not risk showing credentials in it.
            result = rest.contains("@") ? "<url>" : String(rest)
        }
        if let query, !query.isEmpty {
            let parts = query.split(separator: "&", omittingEmptySubsequences: false).map { p -> String in
                if let eq = p.firstIndex(of: "=") { return p[..<eq] + "=***" }
                return String(p)
            }
            result += "?" + parts.joined(separator: "&")
        }
        return result
    }
}
