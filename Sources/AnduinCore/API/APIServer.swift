import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// What the API serves; implemented by the running agent (it outlives config reloads).
public protocol APIProvider: Sendable {
    func metricsText() -> String
    /// nil when ready; otherwise why not (for `/ready`'s 503 body).
    func notReadyReasons() -> [String]
    var tap: TapHub { get }
}

/// The agent's HTTP API on SwiftNIO's HTTP/1: `GET /metrics` (Prometheus text), `GET /health`,
/// `GET /ready`, `GET /tap?component=NAME&limit=N` (a stream of NDJSON records).
public final class APIServer: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel
    /// Where it listens (the real port when the config asked for port 0).
    public let boundAddress: String

    public init(address: String, provider: any APIProvider) throws {
        let (host, port) = try APIServer.split(address)
        // One thread: the API is light, and the agent's cores are for logs.
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(APIHandler(provider: provider))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw StartupError("api: cannot listen on \(address): \(error)")
        }
        let bound = channel.localAddress
        boundAddress = "\(bound?.ipAddress ?? host):\(bound?.port ?? port)"
    }

    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    static func split(_ address: String) throws -> (String, Int) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
              (0...65535).contains(port) else {
            throw StartupError("api: address \"\(address)\" must be HOST:PORT, such as 127.0.0.1:2020")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }
}

private final class APIHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let provider: any APIProvider
    private var head: HTTPRequestHead?
    private var tapping: TapHub.Subscription?

    init(provider: any APIProvider) { self.provider = provider }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let h = head else { return }
            head = nil
            route(h, context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let t = tapping { provider.tap.cancel(t) }
        tapping = nil
        context.fireChannelInactive()
    }

    private func route(_ h: HTTPRequestHead, context: ChannelHandlerContext) {
        let parts = h.uri.split(separator: "?", maxSplits: 1)
        let path = parts.first.map(String.init) ?? "/"
        let query = parts.count > 1 ? Self.query(String(parts[1])) : [:]
        guard h.method == .GET || h.method == .HEAD else {
            return respond(context, h, .methodNotAllowed, "text/plain", "only GET\n")
        }
        switch path {
        case "/metrics":
            respond(context, h, .ok, "text/plain; version=0.0.4; charset=utf-8", provider.metricsText())
        case "/health":
            respond(context, h, .ok, "application/json", #"{"status":"ok"}"# + "\n")
        case "/ready":
            let reasons = provider.notReadyReasons()
            var w = JSONWriter()
            w.writeRaw(reasons.isEmpty ? #"{"status":"ready","reasons":["# : #"{"status":"not ready","reasons":["#)
            for (i, r) in reasons.enumerated() {
                if i > 0 { w.writeByte(UInt8(ascii: ",")) }
                w.writeString(r)
            }
            w.writeRaw("]}\n")
            respond(context, h, reasons.isEmpty ? .ok : .serviceUnavailable, "application/json",
                    String(decoding: w.bytes, as: UTF8.self))
        case "/tap":
            startTap(h, query: query, context: context)
        default:
            respond(context, h, .notFound, "text/plain", "not found: try /metrics, /health, /ready or /tap\n")
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ req: HTTPRequestHead, _ status: HTTPResponseStatus,
                         _ type: String, _ body: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        let keepAlive = req.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: req.version, status: status, headers: headers))), promise: nil)
        if req.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
            buffer.writeString(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// Streams records as chunked NDJSON until the limit, or until the client goes away.
    private func startTap(_ req: HTTPRequestHead, query: [String: String], context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/x-ndjson")
        headers.add(name: "Transfer-Encoding", value: "chunked")
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: req.version, status: .ok, headers: headers))),
                              promise: nil)
        let channel = context.channel
        let limit = Int(query["limit"] ?? "") ?? 0
        let pending = PendingCount()
        tapping = provider.tap.subscribe(
            component: query["component"].flatMap { $0.isEmpty ? nil : $0 }, limit: limit,
            deliver: { bytes in
                // A slow reader must not hold records back: past a bound, copies are dropped.
                guard pending.increment() < 256 else {
                    pending.decrement()
                    return
                }
                var buffer = channel.allocator.buffer(capacity: bytes.count)
                buffer.writeBytes(bytes)
                channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(buffer))).whenComplete { _ in
                    pending.decrement()
                }
            },
            onEnd: {
                channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in
                    channel.close(promise: nil)
                }
            })
    }

    static func query(_ q: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
            if let k = kv.first { out[k] = kv.count > 1 ? kv[1] : "" }
        }
        return out
    }
}

private final class PendingCount: Sendable {
    private let lock = Locked(0)
    func increment() -> Int { lock.withLock { $0 += 1; return $0 - 1 } }
    func decrement() { lock.withLock { $0 -= 1 } }
}
