import CCurl
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Collects a response body into the client's `ResponseSink` (the default write callback; `stream`
/// swaps it out for the duration of a streamed transfer).
let sinkWriteCallback: curl_write_callback = { data, size, count, ctx in
    let n = size * count
    guard let data, let ctx else { return n }
    let sink = Unmanaged<ResponseSink>.fromOpaque(ctx).takeUnretainedValue()
    let room = sink.limit - sink.body.count
    if room > 0 {
        sink.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: min(n, room)))
    }
    // Report everything as taken: a short count would abort the transfer.
    return n
}

/// Collects response headers into the client's `ResponseSink`.
let sinkHeaderCallback: curl_write_callback = { data, size, count, ctx in
    let n = size * count
    guard let data, let ctx else { return n }
    let sink = Unmanaged<ResponseSink>.fromOpaque(ctx).takeUnretainedValue()
    sink.headerLine(UnsafeRawBufferPointer(start: data, count: n))
    return n
}

func millis(_ seconds: Double) -> Int {
    // Sub-millisecond values would become 0, which curl reads as "no timeout".
    // Capped at ~24 days (the largest value curl's int timers hold) so Int() cannot trap.
    max(1, Int((min(clampedSeconds(seconds), 2_000_000) * 1000).rounded(.up)))
}

/// RFC 9110 token characters (methods, header names).
func isTokenByte(_ b: UInt8) -> Bool {
    switch b {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
         UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    default:
        return "!#$%&'*+-.^_`|~".utf8.contains(b)
    }
}

/// Collects one response; reached from the C callbacks through an unretained pointer, and
/// owned by the client so it outlives every transfer.
final class ResponseSink {
    let limit: Int
    var body: [UInt8] = []
    var headers: [(String, String)] = []

    init(limit: Int) { self.limit = limit }

    func reset() {
        body = []
        headers = []
    }

    func headerLine(_ raw: UnsafeRawBufferPointer) {
        var bytes = raw[...]
        while let last = bytes.last, last == 0x0A || last == 0x0D { bytes = bytes.dropLast() }
        if bytes.isEmpty { return }
        // A status line starts a new header block (after 100 Continue, proxy CONNECT, or a
        // retried request); only the final response's headers are kept.
        if bytes.starts(with: "HTTP/".utf8) {
            headers.removeAll(keepingCapacity: true)
            return
        }
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else { return }
        let name = String(decoding: bytes[..<colon], as: UTF8.self).lowercased()
        let value = String(decoding: bytes[(colon + 1)...], as: UTF8.self)
        headers.append((trimmed(name), trimmed(value)))
    }
}

func trimmed(_ s: String) -> String {
    var sub = Substring(s)
    while let f = sub.first, f == " " || f == "\t" { sub = sub.dropFirst() }
    while let l = sub.last, l == " " || l == "\t" { sub = sub.dropLast() }
    return String(sub)
}

/// State of one `stream` call, reached from the C callbacks through an unretained pointer; it lives
/// on the caller's stack frame for the whole transfer.
final class StreamContext {
    let handle: UnsafeMutableRawPointer
    let sink: ResponseSink
    let onData: (Int, UnsafeRawBufferPointer) -> Bool
    let shouldAbort: () -> Bool
    let onHeaders: (Int) -> Void
    var status = 0
    var stoppedByCaller = false
    var aborted = false
    var headersReported = false

    init(handle: UnsafeMutableRawPointer, sink: ResponseSink, onData: @escaping (Int, UnsafeRawBufferPointer) -> Bool,
         shouldAbort: @escaping () -> Bool, onHeaders: @escaping (Int) -> Void) {
        self.handle = handle
        self.sink = sink
        self.onData = onData
        self.shouldAbort = shouldAbort
        self.onHeaders = onHeaders
    }
}

let streamHeaderCallback: curl_write_callback = { data, size, count, ctx in
    let n = size * count
    guard let data, let ctx else { return n }
    let c = Unmanaged<StreamContext>.fromOpaque(ctx).takeUnretainedValue()
    let line = UnsafeRawBufferPointer(start: data, count: n)
    c.sink.headerLine(line)
    // The blank line ends a header block; 1xx blocks (100 Continue) are followed by the real one.
    if !c.headersReported, line.allSatisfy({ $0 == 0x0D || $0 == 0x0A }) {
        var s = 0
        _ = anduin_getinfo_long(c.handle, CURLINFO_RESPONSE_CODE, &s)
        if s >= 200 {
            c.headersReported = true
            c.status = s
            c.onHeaders(s)
        }
    }
    return n
}

let streamWriteCallback: curl_write_callback = { data, size, count, ctx in
    let n = size * count
    guard let ctx else { return n }
    let c = Unmanaged<StreamContext>.fromOpaque(ctx).takeUnretainedValue()
    if c.shouldAbort() {
        c.aborted = true
        return 0
    }
    guard let data, n > 0 else { return n }
    if c.status == 0 {
        // Known once the headers are in, which is before any body byte.
        var s = 0
        _ = anduin_getinfo_long(c.handle, CURLINFO_RESPONSE_CODE, &s)
        c.status = s
    }
    if !c.onData(c.status, UnsafeRawBufferPointer(start: data, count: n)) {
        c.stoppedByCaller = true
        // A short count makes curl end the transfer with CURLE_WRITE_ERROR.
        return 0
    }
    return n
}

/// What `send`'s progress callback asks, reached through an unretained pointer; lives on the
/// caller's stack frame for the whole transfer.
final class AbortContext {
    let shouldAbort: () -> Bool
    var aborted = false
    init(_ shouldAbort: @escaping () -> Bool) { self.shouldAbort = shouldAbort }
}

/// libcurl calls this about once a second or more often, also while no byte moves (a server that
/// never answers): returning non-zero ends the transfer with CURLE_ABORTED_BY_CALLBACK.
let sendProgressCallback: curl_xferinfo_callback = { ctx, _, _, _, _ in
    guard let ctx else { return 0 }
    let c = Unmanaged<AbortContext>.fromOpaque(ctx).takeUnretainedValue()
    if c.shouldAbort() {
        c.aborted = true
        return 1
    }
    return 0
}

let streamProgressCallback: curl_xferinfo_callback = { ctx, _, _, _, _ in
    guard let ctx else { return 0 }
    let c = Unmanaged<StreamContext>.fromOpaque(ctx).takeUnretainedValue()
    if c.shouldAbort() {
        c.aborted = true
        return 1
    }
    return 0
}
