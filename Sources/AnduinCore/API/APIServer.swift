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

/// Which endpoints a listener serves.
public struct APIRoutes: Sendable, Equatable {
    /// `/metrics`, `/health`, `/ready`: no log content.
    public var probes: Bool
    /// `/tap`: every record passing a component.
    public var tap: Bool
    public init(probes: Bool, tap: Bool) {
        self.probes = probes
        self.tap = tap
    }
}

/// One listener of the agent's HTTP API on SwiftNIO's HTTP/1: `GET /metrics` (Prometheus text),
/// `GET /health`, `GET /ready`, `GET /tap?component=NAME&limit=N` (a stream of NDJSON records).
///
/// It can never take memory or file descriptors from the pipeline: at most `max_connections` are
/// open (more are closed as soon as accepted), a request head must arrive within `header_timeout`
/// and the next one within `idle_timeout`, and each /tap client has a bounded queue (`TapStream`).
public final class APIServer: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel
    private let connections: ConnectionCount
    /// Where it listens (the real port when the config asked for port 0).
    public let boundAddress: String

    public init(address: String, routes: APIRoutes, options: APIOptions, tapToken: Secret?,
                provider: any APIProvider) throws {
        let (host, port) = try APIServer.split(address)
        // One thread: the API is light, and the agent's cores are for logs.
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let connections = ConnectionCount(limit: options.maxConnections)
        self.connections = connections
        let settings = HandlerSettings(routes: routes, options: options, tapToken: tapToken)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                // Over the limit: a failed initializer makes NIO close the connection at once.
                guard connections.acquire() else {
                    return channel.eventLoop.makeFailedFuture(TooManyConnections())
                }
                channel.closeFuture.whenComplete { _ in connections.release() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(APIHandler(provider: provider, settings: settings))
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

private struct TooManyConnections: Error {}

private struct HandlerSettings: Sendable {
    let routes: APIRoutes
    let options: APIOptions
    let tapToken: Secret?
}

private final class APIHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let provider: any APIProvider
    private let settings: HandlerSettings
    private var head: HTTPRequestHead?
    private var tapping: TapHub.Subscription?
    /// Closes the connection when the client is too slow to send a request head, or idle too long.
    private var deadline: Scheduled<Void>?

    init(provider: any APIProvider, settings: HandlerSettings) {
        self.provider = provider
        self.settings = settings
    }

    private func closeAfter(_ seconds: Double, _ context: ChannelHandlerContext) {
        deadline?.cancel()
        let channel = context.channel
        let ns = Int64(clampedSeconds(seconds) * 1e9)
        deadline = context.eventLoop.scheduleTask(in: .nanoseconds(ns)) { channel.close(promise: nil) }
    }

    func channelActive(context: ChannelHandlerContext) {
        closeAfter(settings.options.headerTimeout, context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            deadline?.cancel()
            deadline = nil
            head = h
        case .body: break
        case .end:
            guard let h = head else { return }
            head = nil
            route(h, context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
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
        let routes = settings.routes
        switch path {
        case "/metrics" where routes.probes:
            respond(context, h, .ok, "text/plain; version=0.0.4; charset=utf-8", provider.metricsText())
        case "/health" where routes.probes:
            respond(context, h, .ok, "application/json", #"{"status":"ok"}"# + "\n")
        case "/ready" where routes.probes:
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
        case "/status" where routes.probes: respond(context, h, .ok, "application/json", (provider as? any StatusProvider)?.statusJSON() ?? "{}\n")
        case "/tap" where routes.tap:
            guard authorized(h) else {
                var extra = HTTPHeaders()
                extra.add(name: "WWW-Authenticate", value: "Bearer")
                return respond(context, h, .unauthorized, "text/plain",
                               "/tap needs Authorization: Bearer <the token in api.tap_token_file>\n", extra: extra)
            }
            startTap(h, query: query, context: context)
        default:
            var known: [String] = []
            if routes.probes { known += ["/metrics", "/health", "/ready", "/status"] }
            if routes.tap { known.append("/tap") }
            respond(context, h, .notFound, "text/plain", "not found: try \(known.joined(separator: ", "))\n")
        }
    }

    private func authorized(_ h: HTTPRequestHead) -> Bool {
        guard let token = settings.tapToken else { return true }
        let given = h.headers["authorization"].first ?? ""
        return constantTimeEqual(given, "Bearer " + token.reveal())
    }

    private func respond(_ context: ChannelHandlerContext, _ req: HTTPRequestHead, _ status: HTTPResponseStatus,
                         _ type: String, _ body: String, extra: HTTPHeaders = HTTPHeaders()) {
        var headers = extra
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
        } else {
            // The next request must come within the idle timeout (a response the client does not read
            // is covered too: the timer runs whether or not the write completes).
            closeAfter(settings.options.idleTimeout, context)
        }
    }

    /// Streams records as chunked NDJSON until the limit, or until the client goes away or falls
    /// behind (then a last line says how many records it missed).
    private func startTap(_ req: HTTPRequestHead, query: [String: String], context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/x-ndjson")
        headers.add(name: "Transfer-Encoding", value: "chunked")
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: req.version, status: .ok, headers: headers))),
                              promise: nil)
        let limit = Int(query["limit"] ?? "") ?? 0
        let stream = TapStream(channel: context.channel, maxBytes: settings.options.tapQueueBytes,
                               maxRecords: settings.options.tapQueueRecords,
                               lingerSeconds: settings.options.idleTimeout)
        let hub = provider.tap
        let box = SubscriptionBox()
        let subscription = hub.subscribe(
            component: query["component"].flatMap { $0.isEmpty ? nil : $0 }, limit: limit,
            deliver: { bytes, records in
                if !stream.offer(bytes, records: records) {
                    if let s = box.value { hub.cancel(s) }
                    stream.drop()
                }
            },
            onEnd: { stream.finish() })
        box.value = subscription
        tapping = subscription
    }

    static func query(_ q: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map { $0.percentDecoded ?? String($0) }
            if let k = kv.first { out[k] = kv.count > 1 ? kv[1] : "" }
        }
        return out
    }
}

/// The subscription, known only after `subscribe` returns, for the delivery closure to cancel it.
private final class SubscriptionBox: Sendable {
    private let lock = Locked<TapHub.Subscription?>(nil)
    var value: TapHub.Subscription? {
        get { lock.current }
        set { lock.withLock { $0 = newValue } }
    }
}
