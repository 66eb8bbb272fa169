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
    static let table = OptionTable(fields: KubernetesConfig(), check: check)

    static let namespaces = OptionTable(fields: NamespaceRules(), check: { r, rules, _ in
        for p in rules.include + rules.exclude where p.isEmpty {
            r.error(nil, "an empty namespace name or pattern")
        }
    })

    static let retry = OptionTable(fields: KubernetesConfig.Retry(), check: { r, retry, _ in
        if retry.max < retry.initial { r.error("max", "must be at least initial") }
    })

    public static let spec: PluginSpec = .filter(
        "kubernetes", "add pod metadata (namespace, pod, container, image, labels, owner) to container logs", table)

    /// `node_name`, which must not be empty when written.
    @Sendable static func checkNodeName(_ r: ConfigReader, _ name: String?) -> String? {
        if let name, name.isEmpty {
            r.error("node_name", "is empty (is NODE_NAME set? In a DaemonSet set it from fieldRef spec.nodeName)")
        }
        return name
    }

    /// The checks between options: where the API is, then the credentials that way uses.
    @Sendable static func check(_ reader: ConfigReader, _ c: inout KubernetesConfig, _ fieldsClean: Bool) {
        readAPI(reader, &c)
        checkCredentials(reader, &c, fieldsClean)
    }

    /// `api`, `kubeconfig` or `api_url`: at most one says where the API is.
    @Sendable static func readAPI(_ reader: ConfigReader, _ c: inout KubernetesConfig) {
        let apiWord = c.apiWord
        let kubeconfig = c.kubeconfig
        let apiURL = c.apiURL
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
    }

    /// The credential options each way of reaching the API uses.
    @Sendable static func checkCredentials(_ reader: ConfigReader, _ c: inout KubernetesConfig, _: Bool) {
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

    /// Where the API is: the table's check reads it from `api`, `kubeconfig` and `api_url` together.
    public var api: API = .auto
    /// `api:` as written (`in_cluster` or `off`).
    @OptionField(.text("api", "in_cluster | off", "`in_cluster`: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` with the pod's service-account token and CA | `off`", defaultText: "`in_cluster` when `KUBERNETES_SERVICE_HOST` is set, else path metadata only"))
    var apiWord: String? = nil
    @OptionField(.path("kubeconfig", "the current context's server, CA, token/token file/client certificate (inline `-data` written under `data_dir`, mode 0600); `exec` plugins are not supported"))
    var kubeconfig: String? = nil
    @OptionField(.text("api_url", "URL", "a plain URL (`kubectl proxy`, tests)"))
    var apiURL: String? = nil
    @OptionField(.path("token_file", "re-read when it changes (bound tokens rotate) and after a 401", defaultText: "service-account `token`"))
    public var tokenFile: String? = nil
    @OptionField(.path("ca_file", "CA bundle of the API server", defaultText: "service-account `ca.crt`"))
    public var caFile: String? = nil
    @OptionField(.bool("insecure_skip_verify", "`api_url` only; TLS is verified otherwise"))
    public var insecureSkipVerify = false
    /// nil: $NODE_NAME at start.
    @OptionField(.string("node_name", "the node whose pods are watched (DaemonSet: `fieldRef: spec.nodeName`)", defaultText: "`$NODE_NAME`"),
                 adjust: KubernetesPlugin.checkNodeName)
    public var nodeName: String? = nil
    @OptionField(.bool("annotations", "add `annotations`"))
    public var annotations = false
    @OptionField(.bool("namespace_labels", "also watch namespaces and add `namespace_labels`"))
    public var namespaceLabels = false
    @OptionField(group: "namespaces", "which namespaces' records get metadata", KubernetesPlugin.namespaces)
    public var namespaces = NamespaceRules()
    @OptionField(.duration("delete_grace", 0...86_400, "a deleted pod's metadata is kept for its last lines: while the agent has one of its files open, and this long after that and after its last record (at most 1,024 deleted pods, the least recently active go first)"))
    public var deleteGrace = 60.0
    @OptionField(.duration("wait_for_pod", 0...60, "a batch from a pod the watch has not shown yet waits up to this, once per pod; never while the API is unreachable. Waits that time out (pods long gone) draw on a budget of 5 × this, refilled at 0.1 s a second, so they cannot stall an input"))
    public var waitForPod = 2.0
    /// Seconds.
    @OptionField(.duration("watch_timeout", 1...3600, "each watch's `timeoutSeconds`; then it is re-opened from the last resourceVersion"),
                 declared: { Double($0) }, adjust: { _, t in max(1, Int(t.rounded())) })
    public var watchTimeout = 300
    @OptionField(.duration("connect_timeout", 0.001...3600, "API requests: connecting"))
    public var connectTimeout = 10.0
    @OptionField(.duration("request_timeout", 0.001...86_400, "API requests: a whole list request"))
    public var requestTimeout = 60.0
    /// Reconnect backoff.
    @OptionField(group: "retry", "reconnect backoff (exponential, full jitter)", KubernetesPlugin.retry)
    public var retry = Retry()

    /// The rendering options (`annotations`, `namespace_labels`) together.
    public var render: KubernetesRender.Options {
        get { KubernetesRender.Options(annotations: annotations, namespaceLabels: namespaceLabels) }
        set {
            annotations = newValue.annotations
            namespaceLabels = newValue.namespaceLabels
        }
    }

    public struct Retry: Sendable {
        @OptionField(.duration("initial", 0.001...3600, "first reconnect delay"))
        public var initial = 0.5
        @OptionField(.duration("max", 0.001...86_400, "longest reconnect delay (at least `initial`)"))
        public var max = 30.0
    }

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
            settings.retryInitial = retry.initial
            settings.retryMax = retry.max
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
