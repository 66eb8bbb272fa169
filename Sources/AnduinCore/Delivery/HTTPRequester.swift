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
        encoder = try BodyEncoder(options.compression, level: Int32(clamping: options.compressionLevel))
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
