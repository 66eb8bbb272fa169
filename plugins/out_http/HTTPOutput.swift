import AnduinCore

public enum HTTPEncoding: String, CaseIterable, Sendable { case ndjson, json_array }
public enum HTTPMethod: String, CaseIterable, Sendable { case POST, PUT }

/// The `http` output: batches of records POSTed (or PUT) as NDJSON or a JSON array.
///
/// Delivery: 2xx acknowledges the batch; 408, 429, 5xx and network errors are retried with backoff
/// (forever; the buffer holds the data); 401/403 are retried and logged as a configuration problem;
/// 413 splits the batch; any other 4xx sends the batch's records to the dead-letter file.
public struct HTTPOutputConfig: EncodedOutputConfig {
    public var uri: String
    public var method: HTTPMethod = .POST
    public var encoding: HTTPEncoding = .ndjson
    public var http = HTTPOutputOptions()
    public var delivery: DeliveryOptions

    public func makeSender(_ context: ComponentContext) throws -> any BatchSender {
        try HTTPSender(config: self)
    }
}

public enum HTTPOutputPlugin {
    public static let spec = PluginSpec.output("http", "send batches of records to an HTTP endpoint") { r in
        guard let uri = r.requiredString("uri") else { return nil }
        if !(uri.hasPrefix("http://") || uri.hasPrefix("https://")) {
            r.error("uri", "must start with http:// or https://")
        }
        var c = HTTPOutputConfig(uri: uri, delivery: DeliveryOptions.parse(r, defaultBuffer: .disk(DiskRingOptions(segmentBytes: 64 << 20))))
        c.method = r.choice("method", default: .POST)
        c.encoding = r.choice("encoding", default: .ndjson)
        c.http = HTTPOutputOptions.parse(r)
        return c
    }
}

/// One per delivery thread.
final class HTTPSender: BatchSender {
    private let config: HTTPOutputConfig
    private let client: HTTPClient
    private let auth: HTTPAuthenticator
    private var encoder: BodyEncoder
    private var raw: [UInt8] = []
    private let headers: [(String, String)]

    init(config: HTTPOutputConfig) throws {
        self.config = config
        client = try HTTPClient(options: config.http.client)
        auth = HTTPAuthenticator(config.http.auth)
        encoder = try BodyEncoder(config.http.compression, level: config.http.compressionLevel)
        var h = config.http.headers
        h.append(("Content-Type", config.encoding == .ndjson ? "application/x-ndjson" : "application/json"))
        if let ce = encoder.contentEncoding { h.append(("Content-Encoding", ce)) }
        headers = h
    }

    func send(_ batch: EncodedBatch) -> SendResult {
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
            let body = try encoder.encode(raw)
            var h = headers
            if let a = try auth.header() { h.append(a) }
            let response = try body.withUnsafeBytes {
                try client.send(method: config.method.rawValue, url: config.uri, headers: h, body: $0,
                                basicAuth: try auth.basic())
            }
            let result = HTTPStatusClass.result(status: response.status, body: response.body)
            if case .perRecord(let o) = result, o.isEmpty {
                let reason = "HTTP \(response.status): \(HTTPStatusClass.snippet(response.body))"
                return .perRecord(Array(repeating: .deadLetter(status: response.status, reason: reason), count: batch.count))
            }
            return result
        } catch {
            return .retryAll("\(error)")
        }
    }
}
