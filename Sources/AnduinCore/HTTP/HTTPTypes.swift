import CCurl
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// TLS settings for outgoing HTTPS. Paths are PEM files.
public struct TLSOptions: Sendable {
    /// CA bundle to verify the server with; nil uses the system store.
    @OptionField(.path("ca_file", "CA bundle that verifies the server"))
    public var caFile: String? = nil
    /// Client certificate for mutual TLS.
    @OptionField(.path("cert_file", "client certificate (with `key_file`)"))
    public var certFile: String? = nil
    /// Private key for `certFile` (unencrypted).
    @OptionField(.path("key_file", "client key (with `cert_file`)"))
    public var keyFile: String? = nil
    /// Turns off certificate and host name checks. For testing only.
    @OptionField(.bool("insecure_skip_verify", "do not verify the server (tests only)"))
    public var insecureSkipVerify = false
    public init() {}
}

public struct HTTPClientOptions: Sendable {
    /// Seconds allowed to establish the connection (TCP, proxy and TLS handshake).
    public var connectTimeout: Double = 10
    /// Seconds allowed for a whole request, connect included.
    public var requestTimeout: Double = 60
    public var tls = TLSOptions()
    /// Offer HTTP/2 on TLS connections (plain http stays HTTP/1.1). Falls back to HTTP/1.1 when
    /// the server or the local libcurl does not support it.
    public var http2 = true
    /// Proxy URL. nil: libcurl reads http_proxy / https_proxy / no_proxy from the environment.
    /// "": no proxy, whatever the environment says.
    public var proxy: String?
    /// Response bodies beyond this many bytes are dropped (the request still succeeds), so a
    /// misbehaving server cannot exhaust memory.
    public var maxResponseBodyBytes = 16 << 20
    public init() {}
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var body: [UInt8]
    /// Headers of the final response, names lowercased, in arrival order.
    public var headers: [(String, String)]

    public init(status: Int, body: [UInt8], headers: [(String, String)]) {
        self.status = status
        self.body = body
        self.headers = headers
    }

    /// First value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.0 == n }?.1
    }
}

/// How a streamed response (`HTTPClient.stream`) ended.
public struct HTTPStreamResult: Sendable {
    public enum End: Sendable, Equatable {
        /// The server finished the body.
        case complete
        /// `onData` returned false.
        case stoppedByCaller
        /// `shouldAbort` returned true.
        case aborted
    }
    /// Status code of the final response (0 when aborted before any response arrived).
    public var status: Int
    /// Headers of the final response, names lowercased, in arrival order.
    public var headers: [(String, String)]
    public var end: End
}

/// Why a request produced no HTTP response. Any status code (incl. 4xx/5xx) is a response, not
/// an error. URLs are shown without credentials or query values; passwords never appear.
public enum HTTPClientError: Error, CustomStringConvertible, Sendable {
    /// No connection: DNS, refused, unreachable, proxy, or the connect timeout passed.
    case connect(url: String, detail: String)
    /// The whole request took longer than `seconds`.
    case timeout(url: String, seconds: Double)
    /// TLS handshake or certificate problem.
    case tls(url: String, detail: String)
    /// Connected, but sending or receiving failed (reset, server closed early, bad response).
    case transport(url: String, detail: String)
    /// The request cannot be sent as given (bad URL, method or header).
    case invalidRequest(url: String, detail: String)
    /// The client could not be created (libcurl init, unreadable TLS files).
    case setup(detail: String)
    /// `shouldAbort` said to give up before the response was complete (the agent is stopping).
    case aborted(url: String)

    public var description: String {
        switch self {
        case .connect(let url, let detail):
            return "cannot connect to \(url): \(detail) (check host, port, DNS, firewall and proxy settings)"
        case .timeout(let url, let seconds):
            return "no complete response from \(url) within \(formatSeconds(seconds)) s "
                + "(the endpoint may be overloaded; check it or raise the request timeout)"
        case .tls(let url, let detail):
            return "TLS with \(url) failed: \(detail) (check the CA, client certificate and key files, "
                + "and the server certificate's host name)"
        case .transport(let url, let detail):
            return "HTTP request to \(url) failed: \(detail)"
        case .invalidRequest(let url, let detail):
            return "invalid HTTP request to \(url): \(detail)"
        case .setup(let detail):
            return "HTTP client setup failed: \(detail)"
        case .aborted(let url):
            return "request to \(url) abandoned: the output is stopping"
        }
    }
}

func formatSeconds(_ s: Double) -> String {
    s == s.rounded() && abs(s) < 1e15 ? String(Int(s)) : String(s)  // the bound keeps Int() safe
}
