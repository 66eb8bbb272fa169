import AnduinCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which namespaces' logs are kept: exact names or globs (`kube-*`); exclude wins over include,
/// an empty include keeps all.
public struct NamespaceRules: Sendable, Equatable {
    public var include: [String]
    public var exclude: [String]
    public init(include: [String] = [], exclude: [String] = []) {
        self.include = include
        self.exclude = exclude
    }

    public func allows(_ namespace: String) -> Bool {
        if exclude.contains(where: { NamespaceRules.matches($0, namespace) }) { return false }
        return include.isEmpty || include.contains { NamespaceRules.matches($0, namespace) }
    }

    static func matches(_ pattern: String, _ name: String) -> Bool {
        pattern == name || fnmatch(pattern, name, 0) == 0
    }
}

/// What the filter does with one batch.
enum KubernetesDecision {
    /// The path is not a container log path: the batch passes unchanged.
    case notKubernetes
    case drop
    /// Add `fields` (the rendered `"kubernetes":{...}` member); `fromAPI` when pod metadata was known.
    case enrich(fields: [UInt8], fromAPI: Bool)
}

/// State of the API connection, as far as waiting for a pod is concerned.
enum APIState: Sendable, Equatable {
    /// `api: off`: path metadata only, never wait.
    case disabled
    /// The first list has not completed, nor failed, yet.
    case starting
    /// Listed and watching (or re-watching after a normal end).
    case synced
    /// The last attempt failed: never wait for a pod meanwhile.
    case unreachable
}

/// The cache's time: its clock, and the bounded wait for a late pod (woken early by an update).
/// Tests drive both by hand; the agent uses the monotonic clock and the condition variable.
struct CacheClock: Sendable {
    var now: @Sendable () -> Double
    /// Waits on `lock` (held by the caller) until it is signalled or `seconds` pass.
    var wait: @Sendable (_ lock: ConditionLock, _ seconds: Double) -> Void

    static let monotonic = CacheClock(now: { monotonicSeconds() }, wait: { lock, seconds in lock.wait(seconds: seconds) })
}

/// Pods (and namespaces) known from the API, and per source path the parsed path and the rendered
/// metadata. Shared by the input threads (`resolve`, once per batch) and the watch thread(s)
/// (updates); one lock guards it all, held for a few dictionary lookups per batch.
///
/// Why the Sendable conformance is unchecked: every `var` (and each `PathEntry`, a class for in-place updates) is touched
/// only inside `lock.withLock`; `clock.wait` releases and re-takes that same lock.
final class KubernetesCache: @unchecked Sendable {
    struct StoredPod {
        var meta: PodMeta
        /// Unique across every change of every pod: a path's rendered bytes are valid while it matches.
        var generation: UInt64
        var deletedAt: Double?
    }

    struct StoredNamespace {
        var meta: NamespaceMeta
        var generation: UInt64
    }

    /// A class so the per-batch update of `lastUsed` and `rendered` happens in place (no re-hash).
    final class PathEntry {
        let info: KubernetesPathInfo?
        let namespaceAllowed: Bool
        var renderedPod: UInt64 = .max
        var renderedNamespace: UInt64 = .max
        var rendered: [UInt8] = []
        var lastUsed: Double

        init(info: KubernetesPathInfo?, namespaceAllowed: Bool, now: Double) {
            self.info = info
            self.namespaceAllowed = namespaceAllowed
            self.lastUsed = now
        }
    }

    let deleteGrace: Double
    let waitForPod: Double
    let options: KubernetesRender.Options
    let rules: NamespaceRules
    let podsGauge: Gauge?
    /// After a wait that timed out, no new waits for this long: files of pods that are gone (left on
    /// the node after a deletion) must not stall an input thread wait_for_pod each, one after another.
    let waitCooldown: Double
    /// Path entries not used for this long are forgotten (files of pods long gone).
    let pathIdleLimit: Double = 600

    private let lock = ConditionLock()
    private let clock: CacheClock
    private var pods: [String: StoredPod] = [:]
    private var byName: [PodRef: String] = [:]
    private var namespaces: [String: StoredNamespace] = [:]
    private var paths: [String: PathEntry] = [:]
    private var waited: Set<PodRef> = []
    private var generation: UInt64 = 0
    private var state: APIState
    private let startedAt: Double
    private var cooldownUntil: Double = 0
    private var lastSweep: Double

    init(apiEnabled: Bool, deleteGrace: Double, waitForPod: Double, options: KubernetesRender.Options,
         rules: NamespaceRules, podsGauge: Gauge?, waitCooldown: Double = 30, clock: CacheClock = .monotonic) {
        self.deleteGrace = deleteGrace
        self.waitForPod = waitForPod
        self.options = options
        self.rules = rules
        self.podsGauge = podsGauge
        self.waitCooldown = waitCooldown
        self.state = apiEnabled ? .starting : .disabled
        self.clock = clock
        self.startedAt = clock.now()
        self.lastSweep = startedAt
    }

    // MARK: the record path (input threads)

    /// Once per batch: what to do with records of `path`. May wait up to `wait_for_pod` (once per
    /// pod) for a pod the API has not shown yet.
    func resolve(path: String) -> KubernetesDecision {
        lock.withLock {
            var now = clock.now()
            if now - lastSweep > 60 { sweepPaths(now) }
            let entry: PathEntry
            if let e = paths[path] {
                entry = e
            } else {
                let info = KubernetesPathInfo.parse(path)
                entry = PathEntry(info: info, namespaceAllowed: info.map { rules.allows($0.namespace) } ?? true, now: now)
                paths[path] = entry
            }
            entry.lastUsed = now
            guard let info = entry.info else { return .notKubernetes }
            guard entry.namespaceAllowed else { return .drop }

            var found = lookup(info, now)
            if found == nil, let deadline = waitDeadline(info.pod, now) {
                // The watch may lag the file's creation by a moment: wait for it, once per pod.
                while found == nil && (state == .synced || state == .starting) && now < deadline {
                    clock.wait(lock, deadline - now)
                    now = clock.now()
                    found = lookup(info, now)
                }
                // Timed out while the API was fine: the pod is probably gone, not late.
                if found == nil && state == .synced { cooldownUntil = now + waitCooldown }
            }
            if let pod = found?.meta {
                if pod.excluded || pod.excludedContainers.contains(info.containerName) { return .drop }
            }
            let podGen = found?.generation ?? 0
            let nsStored = options.namespaceLabels ? namespaces[info.namespace] : nil
            let nsGen = nsStored?.generation ?? 0
            if entry.renderedPod != podGen || entry.renderedNamespace != nsGen {
                entry.rendered = KubernetesRender.render(path: info, pod: found?.meta,
                                                         namespaceLabels: nsStored?.meta.labels, options: options)
                entry.renderedPod = podGen
                entry.renderedNamespace = nsGen
            }
            return .enrich(fields: entry.rendered, fromAPI: found != nil)
        }
    }

    /// Call with the lock held.
    private func lookup(_ info: KubernetesPathInfo, _ now: Double) -> StoredPod? {
        func alive(_ p: StoredPod) -> Bool {
            guard let d = p.deletedAt else { return true }
            return now - d <= deleteGrace
        }
        if let uid = info.podUID {
            if let p = pods[uid], alive(p) { return p }
            // A static pod's folder is named after its config hash; its mirror pod says which.
            if let u = byName[info.pod], let p = pods[u], p.meta.mirrorUID == uid, alive(p) { return p }
            return nil
        }
        if let u = byName[info.pod], let p = pods[u], alive(p) { return p }
        return nil
    }

    /// Call with the lock held. nil: do not wait.
    private func waitDeadline(_ ref: PodRef, _ now: Double) -> Double? {
        guard waitForPod > 0, !waited.contains(ref) else { return nil }
        let deadline: Double
        switch state {
        case .starting:
            // Before the first list: every pod is unknown, so all share one window from the start.
            deadline = startedAt + waitForPod
        case .synced:
            guard now >= cooldownUntil else { return nil }
            deadline = now + waitForPod
        case .disabled, .unreachable:
            return nil
        }
        guard now < deadline else { return nil }
        waited.insert(ref)
        return deadline
    }

    private func sweepPaths(_ now: Double) {
        lastSweep = now
        let limit = pathIdleLimit
        paths = paths.filter { now - $0.value.lastUsed < limit }
        if waited.count > 10_000 { waited.removeAll() }
    }

    // MARK: updates (watch threads)

    func setState(_ s: APIState) {
        lock.withLock {
            guard state != .disabled, state != s else { return }
            state = s
            lock.broadcast()
        }
    }

    var currentState: APIState { lock.withLock { state } }

    /// After a (re)list: the list is the truth; pods no longer in it count as deleted now (their
    /// last lines keep metadata for `delete_grace`).
    func replacePods(_ list: [PodMeta]) {
        lock.withLock {
            let now = clock.now()
            var seen = Set<String>()
            seen.reserveCapacity(list.count)
            for p in list {
                upsertLocked(p)
                seen.insert(p.uid)
            }
            for (uid, p) in pods where p.deletedAt == nil && !seen.contains(uid) {
                pods[uid]?.deletedAt = now
            }
            purgeLocked(now)
            lock.broadcast()
        }
    }

    func upsertPod(_ p: PodMeta) {
        lock.withLock {
            upsertLocked(p)
            lock.broadcast()
        }
    }

    func deletePod(_ p: PodMeta) {
        lock.withLock {
            let now = clock.now()
            if var existing = pods[p.uid] {
                if existing.meta.resourceVersion != p.resourceVersion {
                    generation += 1
                    existing.meta = p
                    existing.generation = generation
                }
                if existing.deletedAt == nil { existing.deletedAt = now }
                pods[p.uid] = existing
            } else {
                // Added and deleted between two looks: still worth its last lines.
                generation += 1
                pods[p.uid] = StoredPod(meta: p, generation: generation, deletedAt: now)
                if byName[p.ref] == nil { byName[p.ref] = p.uid }
            }
            podsGauge?.set(pods.count)
            lock.broadcast()
        }
    }

    private func upsertLocked(_ p: PodMeta) {
        if let existing = pods[p.uid], existing.deletedAt == nil, !p.resourceVersion.isEmpty,
           existing.meta.resourceVersion == p.resourceVersion {
            return
        }
        generation += 1
        pods[p.uid] = StoredPod(meta: p, generation: generation, deletedAt: nil)
        byName[p.ref] = p.uid
        podsGauge?.set(pods.count)
    }

    /// Forgets pods deleted longer than `delete_grace` ago.
    func purgeExpired() {
        lock.withLock { purgeLocked(clock.now()) }
    }

    private func purgeLocked(_ now: Double) {
        let grace = deleteGrace
        let expired = pods.filter { if let d = $0.value.deletedAt { return now - d > grace } else { return false } }
        guard !expired.isEmpty else { return }
        for (uid, p) in expired {
            pods[uid] = nil
            if byName[p.meta.ref] == uid { byName[p.meta.ref] = nil }
        }
        podsGauge?.set(pods.count)
    }

    func replaceNamespaces(_ list: [NamespaceMeta]) {
        lock.withLock {
            var next: [String: StoredNamespace] = [:]
            for n in list {
                if let old = namespaces[n.name], old.meta.resourceVersion == n.resourceVersion, !n.resourceVersion.isEmpty {
                    next[n.name] = old
                } else {
                    generation += 1
                    next[n.name] = StoredNamespace(meta: n, generation: generation)
                }
            }
            namespaces = next
            lock.broadcast()
        }
    }

    func upsertNamespace(_ n: NamespaceMeta) {
        lock.withLock {
            generation += 1
            namespaces[n.name] = StoredNamespace(meta: n, generation: generation)
        }
    }

    func deleteNamespace(_ n: NamespaceMeta) {
        lock.withLock { namespaces[n.name] = nil }
    }

    // MARK: for tests

    var podCount: Int { lock.withLock { pods.count } }
    var pathCount: Int { lock.withLock { paths.count } }
}
