import AnduinCore
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

public enum ESOpType: String, CaseIterable, Sendable { case create, index }
public enum ESIDMode: String, CaseIterable, Sendable { case event, none }

/// The `elasticsearch` output: the Bulk API, exact about every item.
///
/// Each record is sent with `_id` = its `event.id` (file identity + offset) and `op_type: create`, so
/// a replay after a crash or a retry answers 409 for what is already there: counted as delivered,
/// never a duplicate document. Per item: 2xx and 409 are delivered; 429 and 5xx are retried (only
/// those items); other errors (mapping conflicts, bad index names) go to the dead-letter file with
/// their type and reason.
public struct ElasticsearchConfig: EncodedOutputConfig {
    public var hosts: [String]
    var index: IndexPattern
    public var opType: ESOpType = .create
    public var id: ESIDMode = .event
    public var pipeline: String?
    public var http = HTTPOutputOptions()
    public var delivery: DeliveryOptions

    public func makeSender(_ context: ComponentContext) throws -> any BatchSender {
        try ElasticsearchSender(config: self, abort: context.requestAbort, responses: ResponseCounters(context.stats))
    }

    /// Appends the `_bulk` NDJSON body for `batch`: an action line (index, and `_id` = event.id unless
    /// `id: none`) and the document, each ending in a newline.
    public func appendBulkBody(_ batch: EncodedBatch, into raw: inout [UInt8]) {
        for i in batch.records.indices {
            raw.append(contentsOf: #"{""#.utf8)
            raw.append(contentsOf: opType.rawValue.utf8)
            raw.append(contentsOf: #"":{"_index":""#.utf8)
            index.render(batch, i, into: &raw)
            raw.append(UInt8(ascii: "\""))
            if id == .event {
                raw.append(contentsOf: #","_id":""#.utf8)
                batch.records[i].appendEventID(to: &raw)
                raw.append(UInt8(ascii: "\""))
            }
            raw.append(contentsOf: "}}\n".utf8)
            batch.withDocument(i) { raw.append(contentsOf: $0) }
            raw.append(UInt8(ascii: "\n"))
        }
    }
}

public enum ElasticsearchPlugin {
    static let table = OptionTable(fields: ElasticsearchOptions())

    public static let spec = PluginSpec.output("elasticsearch", "index records with the Elasticsearch/OpenSearch Bulk API",
                                               options: table.options, shared: networkOutputOptions) { r in
        let errorsBefore = r.diagnostics.items.count
        var o = table.defaults
        table.read(r, into: &o)
        return config(o, r, errorsBefore: errorsBefore)
    }

    /// The options as written, checked together, with the shared ones; nil when anything was
    /// reported since `errorsBefore`.
    static func config(_ o: ElasticsearchOptions, _ r: ConfigReader, errorsBefore: Int) -> ElasticsearchConfig? {
        var hosts = o.hosts
        if hosts.isEmpty, let h = o.host { hosts = [h] }
        if hosts.isEmpty { r.error(r.has("hosts") ? "hosts" : nil, "needs hosts: [\"http://127.0.0.1:9200\"] (or host: \"http://127.0.0.1:9200\")") }
        if r.has("hosts") && r.has("host") { r.error("host", "give hosts or host, not both") }
        var (http, delivery) = HTTPOutputOptions.parseShared(r)
        // user:password@ is taken out of the hosts before anything may show them.
        hosts = http.takeUserinfo(hosts, key: "hosts", r)
        for h in hosts where !(h.hasPrefix("http://") || h.hasPrefix("https://")) {
            r.error("hosts", "\(HTTPClient.redactedURL(h)): must start with http:// or https://")
        }
        hosts = hosts.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        var indexText = o.index
        var opType = o.opType
        if let ds = o.dataStream {
            if r.has("index") { r.error("data_stream", "give index or data_stream, not both") }
            indexText = "logs-\(ds.dataset)-\(ds.namespace)"
            if r.has("op_type") && opType != .create { r.error("op_type", "data streams take only op_type: create") }
            opType = .create
        }
        let pattern: IndexPattern
        switch IndexPattern.parse(indexText) {
        case .success(let p): pattern = p
        case .failure(let e):
            r.error("index", "\(indexText): \(e.message)")
            return nil
        }
        var c = ElasticsearchConfig(hosts: hosts, index: pattern, delivery: delivery)
        c.opType = opType
        c.id = o.id
        c.pipeline = o.pipeline
        c.http = http
        guard r.diagnostics.items.count == errorsBefore else { return nil }
        return c
    }
}

/// The `elasticsearch` output's own options as written (`ElasticsearchPlugin.table`);
/// `ElasticsearchPlugin.config` checks them together into an `ElasticsearchConfig`.
struct ElasticsearchOptions: Sendable {
    @OptionField(.list("hosts", "`[\"https://es-0:9200\", \"https://es-1:9200\"]`: a failed host hands over to the next; `https://user:pass@host` gives Basic credentials", defaultText: "(required, or `host`)"))
    var hosts: [String] = []
    @OptionField(.text("host", "URL", "one host: the same as `hosts: [host]`"))
    var host: String? = nil
    @OptionField(.string("index", "literal text, the record's time (`%Y %m %d %H`, UTC) and fields (`logs-{kubernetes.namespace_name}`); field values are lowercased, a missing field gives `unknown`"))
    var index = "logs-%Y.%m.%d"
    @OptionField(group: "data_stream", "write to the data stream `logs-<dataset>-<namespace>` with `op_type: create` (instead of `index`)", DataStream.table)
    var dataStream: DataStream? = nil
    @OptionField(.choice("op_type", "`create` makes a replayed record a 409, counted as delivered"))
    var opType = ESOpType.create
    @OptionField(.choice("id", "`event`: `_id` = the record's `event.id`; `none` lets the server choose"))
    var id = ESIDMode.event
    @OptionField(.string("pipeline", "ingest pipeline name"))
    var pipeline: String? = nil

    struct DataStream: Sendable {
        @OptionField(.string("dataset", "the `<dataset>` of `logs-<dataset>-<namespace>`"))
        var dataset = "generic"
        @OptionField(.string("namespace", "the `<namespace>` of `logs-<dataset>-<namespace>`"))
        var namespace = "default"
        static let table = OptionTable(fields: DataStream())
    }
}

extension ElasticsearchPlugin {
    /// A config with the defaults (index `logs-%Y.%m.%d`, `_id` from event.id), for benchmarks.
    public static func testConfig(index: String = "logs-%Y.%m.%d") throws -> ElasticsearchConfig {
        let pattern = try IndexPattern.parse(index).get()
        return ElasticsearchConfig(hosts: ["http://127.0.0.1:9200"], index: pattern, delivery: DeliveryOptions(buffer: .memory(maxRecords: 1)))
    }
}

/// One per delivery thread.
final class ElasticsearchSender: BatchSender {
    private let config: ElasticsearchConfig
    private let requester: HTTPRequester
    private var raw: [UInt8] = []
    private var host = 0
    private let responses: ResponseCounters

    init(config: ElasticsearchConfig, abort: RequestAbort, responses: ResponseCounters) throws {
        self.config = config
        self.responses = responses
        // Plain x-ndjson: OpenSearch refuses Elasticsearch 8's vendor media type.
        requester = try HTTPRequester(config.http, contentType: "application/x-ndjson", abort: abort)
        host = Int.random(in: 0..<max(1, config.hosts.count))
    }

    /// Of a 429/503 answer, and of a 200 whose items were refused 429: the runner applies it to them.
    var retryAfter: String? { requester.retryAfter }

    private var url: String {
        var u = config.hosts[host % config.hosts.count] + "/_bulk"
        if let p = config.pipeline { u += "?pipeline=" + p.percentEncodedForQuery }
        return u
    }

    /// Every text in the result went through the scrubber of the request's credentials.
    func send(_ batch: EncodedBatch) -> SendResult {
        requester.scrubber.scrub(sendUnscrubbed(batch))
    }

    private func sendUnscrubbed(_ batch: EncodedBatch) -> SendResult {
        raw.removeAll(keepingCapacity: true)
        config.appendBulkBody(batch, into: &raw)
        let response: HTTPResponse
        do {
            response = try requester.send(method: "POST", url: url, body: raw)
            responses.answered(response.status)
            responses.sent(requester.lastBody)
        } catch {
            responses.noAnswer()
            failOver()
            // The host as written may carry user:password@: shown without it.
            let why = "\(HTTPClient.redactedURL(config.hosts[host % config.hosts.count])): \(error)"
            if case HTTPClientError.timeout = error { return .timedOut(why) }
            return .unreachable(why)
        }
        let whole = HTTPStatusClass.result(status: response.status, body: response.body, count: batch.count)
        switch whole {
        case .delivered:
            // HTTP 200 says nothing about the items: every one is read.
            return BulkResponse.read(response.body, actions: batch.count,
                                     conflictIsDelivered: config.id == .event && config.opType == .create,
                                     scrubber: requester.scrubber)
        case .retryAll:
            if response.status >= 500 { failOver() }
            return whole
        default:
            return whole
        }
    }

    private func failOver() {
        if config.hosts.count > 1 { host = (host + 1) % config.hosts.count }
    }
}

/// Entry point of the bulk response fuzz target (Tests/Fuzz): reads `body` as the answer to a bulk
/// request of `count` records. If the reader moves, re-point this one function.
public enum BulkResponseFuzzing {
    @discardableResult
    public static func read(_ body: [UInt8], count: Int) -> SendResult {
        BulkResponse.read(body, actions: count, conflictIsDelivered: count % 2 == 0)
    }
}
