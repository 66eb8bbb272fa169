import AnduinCore
import Logging

/// Keeps the cache in step with the API server for one resource: one list, then a watch from the
/// list's resourceVersion, re-watched from the last seen resourceVersion when it ends (normally
/// after `timeoutSeconds`), re-listed on 410 Gone, reconnected with backoff on failures. It owns
/// one thread, which owns the session (`KubernetesWatchSession`: the HTTP client and the watch
/// state); nothing here runs on the record path.
final class KubernetesWatcher: Sendable {
    enum Resource: Sendable {
        case pods(node: String)
        case namespaces

        var path: String {
            switch self {
            case .pods: return "/api/v1/pods"
            case .namespaces: return "/api/v1/namespaces"
            }
        }

        var name: String {
            switch self {
            case .pods: return "pods"
            case .namespaces: return "namespaces"
            }
        }
    }

    struct Settings: Sendable {
        var watchTimeout: Int = 300
        var retryInitial: Double = 0.5
        var retryMax: Double = 30
        /// Bounds a single watch event (and a line of garbage without newline).
        var maxEventBytes = 16 << 20
    }

    struct Counters: Sendable {
        var apiRequests: Counter
        var reconnects: Counter
        var relists: Counter
    }

    let resource: Resource
    private let session: TakeOnceSlot<KubernetesWatchSession>
    private let stopSignal = StopSignal()
    private let thread = Locked<ThreadHandle?>(nil)

    init(resource: Resource, endpoint: KubeEndpoint, cache: KubernetesCache, logger: Logger, counters: Counters,
         settings: Settings, clientOptions: HTTPClientOptions, drivesState: Bool) throws(KubernetesSetupError) {
        self.resource = resource
        session = TakeOnceSlot(try KubernetesWatchSession(
            resource: resource, endpoint: endpoint, cache: cache, logger: logger, counters: counters,
            settings: settings, clientOptions: clientOptions, drivesState: drivesState, stop: stopSignal))
    }

    func start() {
        guard let session = session.take() else { return }  // started already
        let h = startThread(name: "k8s-\(resource.name)") { session.run() }
        thread.withLock { $0 = h }
    }

    func stop(wait: Double = 5) {
        stopSignal.set()
        thread.current?.join(timeout: wait)
    }

    var isStopping: Bool { stopSignal.isSet }
}
