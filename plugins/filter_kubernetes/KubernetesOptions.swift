import AnduinCore

/// The `kubernetes` filter's options, declared once (parsing, defaults, validation and the README).
public enum KubernetesOptions {
    static let api = ConfigKey<String?>.text("api", "in_cluster | off", "`in_cluster`: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` with the pod's service-account token and CA | `off`", defaultText: "`in_cluster` when `KUBERNETES_SERVICE_HOST` is set, else path metadata only")
    static let kubeconfig = ConfigKey<String?>.path("kubeconfig", "the current context's server, CA, token/token file/client certificate (inline `-data` written under `data_dir`, mode 0600); `exec` plugins are not supported")
    static let apiURL = ConfigKey<String?>.text("api_url", "URL", "a plain URL (`kubectl proxy`, tests)")
    static let tokenFile = ConfigKey<String?>.path("token_file", "re-read when it changes (bound tokens rotate) and after a 401", defaultText: "service-account `token`")
    static let caFile = ConfigKey<String?>.path("ca_file", "CA bundle of the API server", defaultText: "service-account `ca.crt`")
    static let insecureSkipVerify = ConfigKey<Bool>.bool("insecure_skip_verify", default: false, "`api_url` only; TLS is verified otherwise")
    static let nodeName = ConfigKey<String?>.string("node_name", "the node whose pods are watched (DaemonSet: `fieldRef: spec.nodeName`)", defaultText: "`$NODE_NAME`")
    static let annotations = ConfigKey<Bool>.bool("annotations", default: false, "add `annotations`")
    static let namespaceLabels = ConfigKey<Bool>.bool("namespace_labels", default: false, "also watch namespaces and add `namespace_labels`")
    static let include = ConfigKey<[String]>.list("include", "names or globs (`kube-*`); an empty include keeps all")
    static let exclude = ConfigKey<[String]>.list("exclude", "names or globs; exclude wins")
    static let namespaces = ConfigGroup("namespaces", "which namespaces' records get metadata", [include.spec, exclude.spec])
    static let deleteGrace = ConfigKey<Double>.duration("delete_grace", default: 60, 0...86_400, "a deleted pod's metadata is kept for its last lines: while the agent has one of its files open, and this long after that and after its last record (at most 1,024 deleted pods, the least recently active go first)")
    static let waitForPod = ConfigKey<Double>.duration("wait_for_pod", default: 2, 0...60, "a batch from a pod the watch has not shown yet waits up to this, once per pod; never while the API is unreachable. Waits that time out (pods long gone) draw on a budget of 5 × this, refilled at 0.1 s a second, so they cannot stall an input")
    static let watchTimeout = ConfigKey<Double>.duration("watch_timeout", default: 300, 1...3600, "each watch's `timeoutSeconds`; then it is re-opened from the last resourceVersion")
    static let connectTimeout = ConfigKey<Double>.duration("connect_timeout", default: 10, 0.001...3600, "API requests: connecting")
    static let requestTimeout = ConfigKey<Double>.duration("request_timeout", default: 60, 0.001...86_400, "API requests: a whole list request")
    static let retryInitial = ConfigKey<Double>.duration("initial", default: 0.5, 0.001...3600, "first reconnect delay")
    static let retryMax = ConfigKey<Double>.duration("max", default: 30, 0.001...86_400, "longest reconnect delay (at least `initial`)")
    static let retry = ConfigGroup("retry", "reconnect backoff (exponential, full jitter)", [retryInitial.spec, retryMax.spec])

    public static let all = [api.spec, kubeconfig.spec, apiURL.spec, tokenFile.spec, caFile.spec, insecureSkipVerify.spec,
                             nodeName.spec, annotations.spec, namespaceLabels.spec, namespaces.spec, deleteGrace.spec,
                             waitForPod.spec, watchTimeout.spec, connectTimeout.spec, requestTimeout.spec, retry.spec]
}
