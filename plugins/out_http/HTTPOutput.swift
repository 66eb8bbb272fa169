import AnduinCore

public enum HTTPEncoding: String, CaseIterable, Sendable { case ndjson, json_array }
public enum HTTPMethod: String, CaseIterable, Sendable { case POST, PUT }

/// The `http` output: batches of records POSTed (or PUT) as NDJSON or a JSON array.
///
/// Delivery: 2xx acknowledges the batch; network errors are retried with backoff for as long as they
/// last (the buffer holds the data); 408, 429 and 5xx are retried within the retry budget; 401/403 are retried and logged as a configuration problem;
/// 413 splits the batch; any other 4xx sends the batch's records to the dead-letter file.
public struct HTTPOutputConfig: EncodedOutputConfig {
    @OptionField(.text("uri", "URL", required: true, "`http://` or `https://`; `https://user:pass@host/...` gives Basic credentials"), adjust: { _, u in u })
    public var uri = ""
    @OptionField(.choice("method", "request method"))
    public var method = HTTPMethod.POST
    @OptionField(.choice("encoding", "`ndjson` (one record a line) | `json_array`"))
    public var encoding = HTTPEncoding.ndjson
    /// The shared options (`networkOutputOptions`), read by the table's check.
    public var http = HTTPOutputOptions()
    public var delivery = DeliveryOptions(buffer: DeliveryOptions.defaultBuffer)

    public init(uri: String) { self.uri = uri }

    public func makeSender(_ context: ComponentContext) throws -> any BatchSender {
        try HTTPSender(config: self, abort: context.requestAbort, responses: ResponseCounters(context.stats))
    }
}

public enum HTTPOutputPlugin {
    static let table = OptionTable(fields: HTTPOutputConfig(uri: ""), check: readShared)

    public static let spec = PluginSpec.output("http", "send batches of records to an HTTP endpoint", table, shared: networkOutputOptions)

    /// The options every network output shares (`networkOutputOptions`), and the URI's credentials.
    @Sendable static func readShared(_ r: ConfigReader, _ c: inout HTTPOutputConfig, _: Bool) {
        (c.http, c.delivery) = HTTPOutputOptions.parseShared(r)
        if r.has("uri") {
            // user:password@ is taken out of the URI before anything may show it.
            c.uri = c.http.takeUserinfo([c.uri], key: "uri", r)[0]
            if !(c.uri.hasPrefix("http://") || c.uri.hasPrefix("https://")) {
                r.error("uri", "must start with http:// or https://")
            }
        }
    }
}

/// One per delivery thread.
final class HTTPSender: BatchSender {
    private let config: HTTPOutputConfig
    private let requester: HTTPRequester
    private var raw: [UInt8] = []
    private let responses: ResponseCounters

    init(config: HTTPOutputConfig, abort: RequestAbort, responses: ResponseCounters) throws {
        self.config = config
        self.responses = responses
        requester = try HTTPRequester(config.http,
                                      contentType: config.encoding == .ndjson ? "application/x-ndjson" : "application/json",
                                      abort: abort)
    }

    var retryAfter: String? { requester.retryAfter }

    /// Every text in the result went through the scrubber of the request's credentials.
    func send(_ batch: EncodedBatch) -> SendResult {
        requester.scrubber.scrub(sendUnscrubbed(batch))
    }

    private func sendUnscrubbed(_ batch: EncodedBatch) -> SendResult {
        do {
            if config.encoding == .ndjson, let response = try batch.withNDJSON({
                try requester.send(method: config.method.rawValue, url: config.uri, body: $0)
            }) {
                responses.answered(response.status)
                responses.sent(requester.lastBody)
                return HTTPStatusClass.result(status: response.status, body: response.body, count: batch.count)
            }
        } catch {
            responses.noAnswer()
            if case HTTPClientError.timeout = error { return .timedOut("\(error)") }
            return .unreachable("\(error)")
        }
        raw.removeAll(keepingCapacity: true)
        switch config.encoding {
        case .ndjson:
            for i in batch.records.indices {
                batch.withDocument(i) { raw.append(contentsOf: $0) }
                raw.append(UInt8(ascii: "\n"))
            }
        case .json_array:
            raw.append(UInt8(ascii: "["))
            for i in batch.records.indices {
                if i > 0 { raw.append(UInt8(ascii: ",")) }
                batch.withDocument(i) { raw.append(contentsOf: $0) }
            }
            raw.append(UInt8(ascii: "]"))
        }
        do {
            let response = try requester.send(method: config.method.rawValue, url: config.uri, body: raw)
            responses.answered(response.status)
            responses.sent(requester.lastBody)
            return HTTPStatusClass.result(status: response.status, body: response.body, count: batch.count)
        } catch {
            responses.noAnswer()
            if case HTTPClientError.timeout = error { return .timedOut("\(error)") }
            return .unreachable("\(error)")
        }
    }
}
