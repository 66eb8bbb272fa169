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
import Logging

/// The watch thread's side of a `KubernetesWatcher`: the HTTP client, the resourceVersion and the
/// health of the connection. Not Sendable: it is created by the watcher and moved to its thread,
/// which alone uses it; the only shared parts are the cache and the stop signal (both Sendable).
final class KubernetesWatchSession {
    let resource: KubernetesWatcher.Resource
    let endpoint: KubeEndpoint
    let cache: KubernetesCache
    let logger: Logger
    let counters: KubernetesWatcher.Counters
    let settings: KubernetesWatcher.Settings
    /// Whether this watcher's health drives the cache's API state (the pods watcher does).
    let drivesState: Bool

    // Watch-thread state.
    private let client: HTTPClient
    private let tokenReader: SecretFile?
    private var resourceVersion = ""
    private var watchCount = 0
    private var listCount = 0
    /// nil until the first success or failure.
    private var healthy: Bool?
    private var outageSince = 0.0
    private var lastPurge = 0.0

    private let stop: StopSignal

    init(resource: KubernetesWatcher.Resource, endpoint: KubeEndpoint, cache: KubernetesCache, logger: Logger, counters: KubernetesWatcher.Counters,
         settings: KubernetesWatcher.Settings, clientOptions: HTTPClientOptions, drivesState: Bool, stop: StopSignal) throws(KubernetesSetupError) {
        self.stop = stop
        self.resource = resource
        self.endpoint = endpoint
        self.cache = cache
        self.logger = logger
        self.counters = counters
        self.settings = settings
        self.drivesState = drivesState
        var o = clientOptions
        o.tls.caFile = endpoint.caFile
        o.tls.certFile = endpoint.certFile
        o.tls.keyFile = endpoint.keyFile
        o.tls.insecureSkipVerify = endpoint.insecureSkipVerify
        // A node's pod list is a few MiB; a body cut at the limit would fail to parse, not mislead.
        o.maxResponseBodyBytes = 256 << 20
        do {
            client = try HTTPClient(options: o)
        } catch {
            throw .client(error)
        }
        if case .file(let path) = endpoint.token { tokenReader = SecretFile(path: path) } else { tokenReader = nil }
    }

    private var isStopping: Bool { stop.isSet }

    // MARK: the loop

    private enum WatchEnd {
        case ended(events: Int, seconds: Double)
        case stopped
    }

    func run() {
        var needList = true
        var failures = 0
        var quickEnds = 0
        var lastGone = -Double.infinity
        var goneStreak = 0
        while !isStopping {
            do throws(KubernetesAPIError) {
                if needList {
                    try list()
                    needList = false
                    markHealthy()
                }
                switch try watch() {
                case .stopped:
                    return
                case .ended(let events, let seconds):
                    failures = 0
                    // A server that ends every watch at once must not make us spin.
                    if events == 0 && seconds < 1 {
                        quickEnds += 1
                        pause(backoff(quickEnds))
                    } else {
                        quickEnds = 0
                    }
                }
            } catch {
                if isStopping { return }
                if case .gone = error {
                    logger.info("resourceVersion \(resourceVersion) expired (410 Gone): listing \(resource.name) again")
                    needList = true
                    // A server that answers 410 to every fresh list's resourceVersion must not make us spin.
                    let now = monotonicSeconds()
                    goneStreak = now - lastGone < 1 ? goneStreak + 1 : 0
                    lastGone = now
                    if goneStreak > 0 { pause(backoff(goneStreak)) }
                    continue
                }
                markFailed(error)
                failures += 1
                pause(backoff(failures))
            }
        }
    }

    /// Exponential, capped, with jitter in the upper half so many agents do not retry in step.
    private func backoff(_ attempt: Int) -> Double {
        Backoff(initial: settings.retryInitial, max: settings.retryMax, jitter: .equal).delay(attempt: attempt)
    }

    private func pause(_ seconds: Double) {
        stop.sleep(seconds: seconds)
    }

    private func markHealthy() {
        if healthy == false {
            let down = monotonicSeconds() - outageSince
            logger.notice("Kubernetes API \(endpoint.server) is reachable again (\(resource.name)) after \(formatFixed(down, decimals: 1)) s")
        }
        healthy = true
        if drivesState { cache.setState(.synced) }
    }

    /// Logs once per outage, not once per retry.
    private func markFailed(_ error: KubernetesAPIError) {
        if healthy != false {
            outageSince = monotonicSeconds()
            logger.warning("Kubernetes API unreachable (\(resource.name)): \(error); records get path metadata only until it is back, retrying with backoff")
        } else {
            logger.debug("Kubernetes API still unreachable (\(resource.name)): \(error)")
        }
        healthy = false
        if drivesState { cache.setState(.unreachable) }
    }

    // MARK: requests

    private func headers() throws(KubernetesAPIError) -> [(String, String)] {
        var h = [("Accept", "application/json")]
        switch endpoint.token {
        case .none: break
        case .literal(let t): h.append(("Authorization", "Bearer \(t)"))
        case .file:
            guard let tokenReader else { break }
            do {
                h.append(("Authorization", "Bearer " + (try tokenReader.current()).reveal()))
            } catch {
                throw .token(path: error.path, detail: error.detail)
            }
        }
        return h
    }

    private func url(_ params: [(String, String)]) -> String {
        var q: [(String, String)] = []
        if case .pods(let node) = resource { q.append(("fieldSelector", "spec.nodeName=\(node)")) }
        q += params
        return endpoint.server + resource.path + "?" + q.map { "\($0.0)=\(percentEncode($0.1))" }.joined(separator: "&")
    }

    /// Lists every object (in pages of 500), then replaces the cache's view with it.
    private func list() throws(KubernetesAPIError) {
        var objects: [JSONValue] = []
        var next = ""
        var restarted = false
        var rv = ""
        repeat {
            var params = [("limit", "500")]
            if !next.isEmpty { params.append(("continue", next)) }
            let u = url(params)
            counters.apiRequests.add()
            let response: HTTPResponse
            do {
                response = try client.send(method: "GET", url: u, headers: try headers())
            } catch let e as HTTPClientError {
                throw .transport(e)
            } catch let e as KubernetesAPIError {
                throw e
            } catch {
                throw .badResponse(what: "list", detail: "\(error)")
            }
            if response.status == 410 && !next.isEmpty && !restarted {
                // The continue token expired between pages: start the list over, once.
                restarted = true
                objects = []
                next = ""
                continue
            }
            try check(status: response.status, body: response.body, url: u)
            guard let obj = try? JSONValue.parse(response.body), obj.members != nil else {
                throw .badResponse(what: "\(resource.name) list", detail: "not a JSON object (\(response.body.count) bytes)")
            }
            let meta = obj["metadata"]
            rv = meta?["resourceVersion"]?.string ?? ""
            next = meta?["continue"]?.string ?? ""
            objects += obj["items"]?.array ?? []
        } while !next.isEmpty
        guard !rv.isEmpty else {
            throw .badResponse(what: "\(resource.name) list", detail: "metadata.resourceVersion missing")
        }

        listCount += 1
        if listCount > 1 { counters.relists.add() }
        switch resource {
        case .pods:
            var pods: [PodMeta] = []
            pods.reserveCapacity(objects.count)
            for o in objects {
                do { pods.append(try PodMeta.parse(o)) } catch { logger.warning("skipping a pod in the list: \(error)") }
            }
            cache.replacePods(pods)
            logger.info("listed \(pods.count) pod(s) at resourceVersion \(rv)")
        case .namespaces:
            var namespaces: [NamespaceMeta] = []
            for o in objects {
                do { namespaces.append(try NamespaceMeta.parse(o)) } catch { logger.warning("skipping a namespace in the list: \(error)") }
            }
            cache.replaceNamespaces(namespaces)
            logger.info("listed \(namespaces.count) namespace(s) at resourceVersion \(rv)")
        }
        resourceVersion = rv
    }

    private func check(status: Int, body: [UInt8], url: String) throws(KubernetesAPIError) {
        let shown = HTTPClient.redactedURL(url)
        switch status {
        case 200..<300: return
        case 410: throw .gone(url: shown)
        case 401, 403:
            let message = scrubbed(statusMessage(body), url: url)
            // The file may have been replaced within one mtime tick: read it again next time.
            tokenReader?.invalidate()
            throw .unauthorized(url: shown, status: status, message: message)
        default:
            throw .status(url: shown, status: status, message: scrubbed(statusMessage(body), url: url))
        }
    }

    /// An error body may quote the request (a proxy echoing its headers): the token never reaches
    /// the log.
    private func scrubbed(_ message: String, url: String) -> String {
        CredentialScrubber(url: url, headers: (try? headers()) ?? [], basicAuth: nil).scrub(message)
    }

    /// The `message` of a Kubernetes `Status` body, else the start of the body.
    private func statusMessage(_ body: [UInt8]) -> String {
        if let m = (try? JSONValue.parse(body))?["message"]?.string { return m }
        return String(decoding: body.prefix(200), as: UTF8.self)
    }

    private enum EventOutcome {
        case ok
        case gone
        case failed(KubernetesAPIError)
    }

    /// One watch request, until the server ends it, an ERROR event, or a stop.
    private func watch() throws(KubernetesAPIError) -> WatchEnd {
        let u = url([("watch", "true"), ("resourceVersion", resourceVersion), ("allowWatchBookmarks", "true"),
                     ("timeoutSeconds", String(settings.watchTimeout))])
        watchCount += 1
        if watchCount > 1 { counters.reconnects.add() }
        counters.apiRequests.add()
        let started = monotonicSeconds()
        var buffer: [UInt8] = []
        buffer.reserveCapacity(64 << 10)
        var errorBody: [UInt8] = []
        var outcome = EventOutcome.ok
        var events = 0
        let result: HTTPStreamResult
        do {
            let h = try headers()
            result = try client.stream(
                url: u, headers: h, timeout: Double(settings.watchTimeout) + 30,
                shouldAbort: { [self] in
                    let now = monotonicSeconds()
                    if now - lastPurge >= 1 {
                        // The watch thread's idle tick: forget pods past their grace.
                        lastPurge = now
                        cache.purgeExpired()
                    }
                    return isStopping
                },
                onHeaders: { [self] status in
                    if status == 200 { markHealthy() }
                },
                onData: { [self] status, chunk in
                    guard status == 200 else {
                        if errorBody.count < 64 << 10 { errorBody.append(contentsOf: chunk.prefix(64 << 10)) }
                        return true
                    }
                    buffer.append(contentsOf: chunk)
                    var start = 0
                    while let nl = buffer[start...].firstIndex(of: 0x0A) {
                        let line = buffer[start..<nl]
                        start = nl + 1
                        if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) { continue }
                        events += 1
                        outcome = handleEvent(line, url: u)
                        if case .ok = outcome { continue }
                        return false
                    }
                    if start > 0 { buffer.removeSubrange(0..<start) }
                    if buffer.count > settings.maxEventBytes {
                        outcome = .failed(.badResponse(what: "watch event",
                                                       detail: "more than \(settings.maxEventBytes) bytes without a newline"))
                        return false
                    }
                    return true
                })
        } catch let e as HTTPClientError {
            throw .transport(e)
        } catch let e as KubernetesAPIError {
            throw e
        } catch {
            throw .badResponse(what: "watch", detail: "\(error)")
        }
        if isStopping || result.end == .aborted { return .stopped }
        switch outcome {
        case .ok: break
        case .gone: throw .gone(url: HTTPClient.redactedURL(u))
        case .failed(let e): throw e
        }
        try check(status: result.status, body: errorBody, url: u)
        return .ended(events: events, seconds: monotonicSeconds() - started)
    }

    private func handleEvent(_ line: ArraySlice<UInt8>, url: String) -> EventOutcome {
        guard let obj = try? JSONValue.parse(line),
              let type = obj["type"]?.string, let object = obj["object"], object.members != nil else {
            return .failed(.badResponse(what: "watch event", detail: "not {\"type\",\"object\"} JSON: "
                + String(decoding: line.prefix(120), as: UTF8.self)))
        }
        let rv = object["metadata"]?["resourceVersion"]?.string
        switch type {
        case "ADDED", "MODIFIED", "DELETED":
            do {
                switch resource {
                case .pods:
                    let pod = try PodMeta.parse(object)
                    if type == "DELETED" { cache.deletePod(pod) } else { cache.upsertPod(pod) }
                case .namespaces:
                    let ns = try NamespaceMeta.parse(object)
                    if type == "DELETED" { cache.deleteNamespace(ns) } else { cache.upsertNamespace(ns) }
                }
            } catch {
                logger.warning("skipping a \(type) event: \(error)")
            }
            if let rv, !rv.isEmpty { resourceVersion = rv }
        case "BOOKMARK":
            // Only moves the resourceVersion, so the next watch resumes past events of other nodes.
            if let rv, !rv.isEmpty { resourceVersion = rv }
        case "ERROR":
            let code = object["code"]?.int ?? 0
            if code == 410 { return .gone }
            return .failed(.status(url: HTTPClient.redactedURL(url), status: code,
                                   message: object["message"]?.string ?? "ERROR event"))
        default:
            logger.debug("ignoring watch event of type \(type)")
        }
        return .ok
    }
}

/// Query values: everything but unreserved characters percent-encoded (`=` in a field selector too).
func percentEncode(_ s: String) -> String {
    var out = ""
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
             UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(b))
        default:
            let hex = Array("0123456789ABCDEF".utf8)
            out += "%"
            out.unicodeScalars.append(Unicode.Scalar(hex[Int(b >> 4)]))
            out.unicodeScalars.append(Unicode.Scalar(hex[Int(b & 0xF)]))
        }
    }
    return out
}
