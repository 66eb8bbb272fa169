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

/// Adds `"kubernetes":{...}` to every record of container log files: from the path always, from
/// the API server's pods (a list+watch of this node's pods kept in memory) when it is reachable.
///
/// Per batch (a batch comes from one file, so one container): one locked lookup of the path's
/// cached rendering. No API request and no allocation per record: the rendered bytes are shared
/// by every batch of the file until the pod changes.
public final class KubernetesFilter: Filter {
    let cache: KubernetesCache
    let watchers: [KubernetesWatcher]

    let enrichedAPI: Counter
    let enrichedPathOnly: Counter
    let excluded: Counter
    let notKubernetes: Counter

    init(cache: KubernetesCache, watchers: [KubernetesWatcher], stats: ComponentStats) {
        self.cache = cache
        self.watchers = watchers
        enrichedAPI = stats.counter("records_enriched_api", "records given pod metadata from the API")
        enrichedPathOnly = stats.counter("records_enriched_path_only",
                                         "records given only what their file path says (pod unknown or API off)")
        excluded = stats.counter("records_excluded", "records dropped by anduin.io/exclude annotations or namespace rules")
        notKubernetes = stats.counter("records_not_kubernetes", "records whose file path is not a container log path (passed unchanged)")
        for w in watchers { w.start() }
    }

    deinit {
        // `close()` is the normal way; this covers tests and embedders that just drop the filter.
        for w in watchers { w.stop(wait: 0) }
    }

    /// Stops the watch threads: the pipeline calls it at shutdown and when a reload replaces it.
    public func close() {
        for w in watchers { w.stop() }
    }

    public func process(_ batch: inout RecordBatch) {
        if batch.isEmpty { return }
        switch cache.resolve(path: batch.source.path) {
        case .notKubernetes:
            notKubernetes.add(batch.count)
        case .drop:
            excluded.add(batch.count)
            // Fresh empty arrays, not removeAll: the buffers may be shared with other consumers of
            // the batch, and clearing those in place would copy them first.
            batch.records = []
            batch.bytes = []
        case .enrich(let fields, let fromAPI):
            if batch.sharedFields.isEmpty {
                // Shares the cached array (copy-on-write): no copy, no allocation.
                batch.sharedFields = fields
            } else {
                batch.sharedFields = KubernetesMerge.adding(fields, to: batch.sharedFields)
            }
            (fromAPI ? enrichedAPI : enrichedPathOnly).add(batch.count)
        }
    }
}
