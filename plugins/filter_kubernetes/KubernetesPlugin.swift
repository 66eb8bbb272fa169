import AnduinCore
import Foundation

/// The `kubernetes` filter:
///
///     filters:
///       k8s:
///         type: kubernetes
///         from: [containers]
///         # API connection, one of (default: in_cluster when KUBERNETES_SERVICE_HOST is set, else off):
///         api: in_cluster            # or off
///         kubeconfig: /etc/anduin/kubeconfig
///         api_url: http://127.0.0.1:8001
///         token_file: ...            # in_cluster / api_url
///         ca_file: ...               # in_cluster / api_url
///         insecure_skip_verify: false  # api_url only
///         node_name: ${NODE_NAME}    # default: $NODE_NAME
///         annotations: false
///         namespace_labels: false
///         namespaces: {include: [], exclude: ["kube-*"]}
///         delete_grace: 60s
///         wait_for_pod: 2s
///         watch_timeout: 5m
///         connect_timeout: 10s
///         request_timeout: 60s
///         retry: {initial: 500ms, max: 30s}
public enum KubernetesPlugin {
    public static let spec: PluginSpec = .filter(
        "kubernetes", "add pod metadata (namespace, pod, container, image, labels, owner) to container logs",
        options: KubernetesOptions.all
    ) { reader in
        typealias O = KubernetesOptions
        let errorsBefore = reader.diagnostics.items.count
        var c = KubernetesConfig()

        let apiWord = reader.get(O.api)
        let kubeconfig = reader.get(O.kubeconfig)
        let apiURL = reader.get(O.apiURL)
        c.tokenFile = reader.get(O.tokenFile)
        c.caFile = reader.get(O.caFile)
        c.insecureSkipVerify = reader.get(O.insecureSkipVerify)

        if kubeconfig != nil && apiURL != nil {
            reader.error("api_url", "set either kubeconfig or api_url, not both")
        }
        if let apiWord {
            switch apiWord {
            case "in_cluster":
                c.api = .inCluster
            case "off":
                c.api = .off
            default:
                reader.error("api", "unknown value \"\(apiWord)\"; expected in_cluster or off (use kubeconfig: or api_url: for the others)")
            }
            if kubeconfig != nil || apiURL != nil {
                reader.error("api", "api: \(apiWord) cannot be combined with kubeconfig or api_url")
            }
        }
        if let kubeconfig { c.api = .kubeconfig(kubeconfig) }
        if let apiURL {
            let lower = apiURL.lowercased()
            if !(lower.hasPrefix("http://") || lower.hasPrefix("https://")) {
                reader.error("api_url", "\"\(URLUserinfo(apiURL).url)\" must start with http:// or https://")
            }
            c.api = .url(apiURL)
        }
        switch c.api {
        case .kubeconfig:
            for key in ["token_file", "ca_file", "insecure_skip_verify"] where reader.has(key) {
                reader.error(key, "not used with kubeconfig: set it in the kubeconfig file")
            }
        case .off:
            for key in ["token_file", "ca_file", "insecure_skip_verify"] where reader.has(key) {
                reader.error(key, "not used with api: off")
            }
        case .inCluster, .auto:
            if reader.has("insecure_skip_verify") {
                reader.error("insecure_skip_verify", "only with api_url (for tests); in a cluster the service account CA verifies the API")
            }
        case .url:
            break
        }

        c.nodeName = reader.get(O.nodeName)
        if let n = c.nodeName, n.isEmpty {
            reader.error("node_name", "is empty (is NODE_NAME set? In a DaemonSet set it from fieldRef spec.nodeName)")
        }
        c.render.annotations = reader.get(O.annotations)
        c.render.namespaceLabels = reader.get(O.namespaceLabels)
        if let ns = reader.group(O.namespaces) {
            c.namespaces = NamespaceRules(include: ns.get(O.include), exclude: ns.get(O.exclude))
            for p in c.namespaces.include + c.namespaces.exclude where p.isEmpty {
                ns.error(nil, "an empty namespace name or pattern")
            }
        }
        c.deleteGrace = reader.get(O.deleteGrace)
        c.waitForPod = reader.get(O.waitForPod)
        c.watchTimeout = max(1, Int(reader.get(O.watchTimeout).rounded()))
        c.connectTimeout = reader.get(O.connectTimeout)
        c.requestTimeout = reader.get(O.requestTimeout)
        if let r = reader.group(O.retry) {
            c.retryInitial = r.get(O.retryInitial)
            c.retryMax = r.get(O.retryMax)
            if c.retryMax < c.retryInitial { r.error("max", "must be at least initial") }
        }

        guard reader.diagnostics.items.count == errorsBefore else { return nil }
        return c
    }
}

public struct KubernetesConfig: FilterConfig {
    public enum API: Sendable, Equatable {
        /// in_cluster when KUBERNETES_SERVICE_HOST is set at start, else off (with a warning); a
        /// broken in-cluster setup (no token, no NODE_NAME) is logged as an error and also gives off.
        case auto
        case inCluster
        case off
        case kubeconfig(String)
        case url(String)
    }

    public var api: API = .auto
    public var tokenFile: String?
    public var caFile: String?
    public var insecureSkipVerify = false
    /// nil: $NODE_NAME at start.
    public var nodeName: String?
    public var render = KubernetesRender.Options()
    public var namespaces = NamespaceRules()
    public var deleteGrace = KubernetesOptions.deleteGrace.defaultValue
    public var waitForPod = KubernetesOptions.waitForPod.defaultValue
    public var watchTimeout = Int(KubernetesOptions.watchTimeout.defaultValue)
    public var connectTimeout = KubernetesOptions.connectTimeout.defaultValue
    public var requestTimeout = KubernetesOptions.requestTimeout.defaultValue
    public var retryInitial = KubernetesOptions.retryInitial.defaultValue
    public var retryMax = KubernetesOptions.retryMax.defaultValue

    public init() {}

    public func build(_ context: ComponentContext) throws -> any Filter {
        try build(context, environment: ProcessInfo.processInfo.environment)
    }

    /// The endpoint to use, or nil for path metadata only.
    func endpoint(_ context: ComponentContext, environment: [String: String]) throws(KubernetesSetupError) -> KubeEndpoint? {
        switch api {
        case .off:
            return nil
        case .auto:
            guard let h = environment["KUBERNETES_SERVICE_HOST"], !h.isEmpty else {
                context.logger.warning("kubernetes: not running in a pod (KUBERNETES_SERVICE_HOST unset) and no kubeconfig or api_url: records get path metadata only")
                return nil
            }
            return try KubeEndpoint.inCluster(environment: environment, tokenFile: tokenFile, caFile: caFile)
        case .inCluster:
            return try KubeEndpoint.inCluster(environment: environment, tokenFile: tokenFile, caFile: caFile)
        case .kubeconfig(let path):
            let dir = context.dataDirectory + "/kubernetes/" + context.name
            return try Kubeconfig.load(path: path, dataDirectory: dir)
        case .url(let u):
            return KubeEndpoint(server: u, token: tokenFile.map { .file($0) } ?? .none, caFile: caFile,
                                insecureSkipVerify: insecureSkipVerify)
        }
    }

    func build(_ context: ComponentContext, environment: [String: String]) throws(KubernetesSetupError) -> KubernetesFilter {
        let stats = context.stats
        let gauge = stats.gauge("cache_pods", "pods in the metadata cache (deleted ones still kept for their last lines included)")
        do throws(KubernetesSetupError) {
            guard let ep = try endpoint(context, environment: environment) else {
                return KubernetesFilter(cache: pathOnlyCache(gauge), watchers: [], stats: stats)
            }
            guard let node = nodeName ?? environment["NODE_NAME"], !node.isEmpty else { throw .missingNodeName }
            let cache = KubernetesCache(apiEnabled: true, deleteGrace: deleteGrace, waitForPod: waitForPod,
                                        options: render, rules: namespaces, podsGauge: gauge)
            let counters = KubernetesWatcher.Counters(
                apiRequests: stats.counter("api_requests", "requests to the Kubernetes API (lists and watches)"),
                reconnects: stats.counter("watch_reconnects", "watches started after the first (server timeouts, failures)"),
                relists: stats.counter("watch_relists", "lists after the first (410 Gone, failures)"))
            var settings = KubernetesWatcher.Settings()
            settings.watchTimeout = watchTimeout
            settings.retryInitial = retryInitial
            settings.retryMax = retryMax
            var o = HTTPClientOptions()
            o.connectTimeout = connectTimeout
            o.requestTimeout = requestTimeout
            var watchers = [try KubernetesWatcher(resource: .pods(node: node), endpoint: ep, cache: cache,
                                                  logger: context.logger, counters: counters, settings: settings,
                                                  clientOptions: o, drivesState: true)]
            if render.namespaceLabels {
                // A second thread: one blocking libcurl transfer cannot carry two watches.
                watchers.append(try KubernetesWatcher(resource: .namespaces, endpoint: ep, cache: cache,
                                                      logger: context.logger, counters: counters, settings: settings,
                                                      clientOptions: o, drivesState: false))
            }
            context.logger.info("kubernetes: watching pods of node \(node) at \(HTTPClient.redactedURL(ep.server))")
            return KubernetesFilter(cache: cache, watchers: watchers, stats: stats)
        } catch {
            // Chosen by default (not written in the config): ship with path metadata rather than
            // refuse to start a log shipper over a missing service account or NODE_NAME. Loudly.
            guard api == .auto else { throw error }
            context.logger.error("kubernetes: the API cannot be used, records get path metadata only: \(error)")
            return KubernetesFilter(cache: pathOnlyCache(gauge), watchers: [], stats: stats)
        }
    }

    private func pathOnlyCache(_ gauge: Gauge) -> KubernetesCache {
        KubernetesCache(apiEnabled: false, deleteGrace: deleteGrace, waitForPod: 0, options: render, rules: namespaces,
                        podsGauge: gauge)
    }
}
