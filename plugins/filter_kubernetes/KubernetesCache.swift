import AnduinCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which namespaces' logs are kept: exact names or globs (`kube-*`); exclude wins over include,
/// an empty include keeps all.
/// Its fields are the `namespaces:` group's options (`KubernetesPlugin.namespaces`).
public struct NamespaceRules: Sendable, Equatable {
    @OptionField(.list("include", "names or globs (`kube-*`); an empty include keeps all"))
    public var include: [String] = []
    @OptionField(.list("exclude", "names or globs; exclude wins"))
    public var exclude: [String] = []
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

/// The files this process has open (their paths as the kernel resolved them, unlinked ones
/// included): the tail input keeps a file open until it has read it to its end and its records
/// were acknowledged, even after the kubelet deleted it. Tests substitute a fixed list.
enum OpenFiles {
    @Sendable static func ofThisProcess() -> [String] {
        #if os(Linux)
        guard let dir = opendir("/proc/self/fd") else { return [] }
        defer { closedir(dir) }
        var out: [String] = []
        var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard let first = name.utf8.first, first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") else { continue }
            let n = target.withUnsafeMutableBufferPointer { buf -> Int in
                guard let base = buf.baseAddress else { return -1 }
                return readlink("/proc/self/fd/" + name, base, buf.count - 1)
            }
            guard n > 0, n < target.count else { continue }
            let link = target.prefix(n).map { UInt8(bitPattern: $0) }
            if link.first == UInt8(ascii: "/") { out.append(String(decoding: link, as: UTF8.self)) }
        }
        return out
        #else
        return []
        #endif
    }
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
        /// Deleted pods: the last sign that its lines are still being read (its deletion, a record of
        /// it, one of its files open). It is forgotten `delete_grace` after that.
        var lastActive: Double = 0
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
    /// Waits that timed out spend this budget (seconds, at most `waitBudgetMax`, refilled at
    /// `waitBudgetRefill` per second): files of pods that are gone (left on the node after a deletion)
    /// must not stall an input thread `wait_for_pod` each, one after another; a pod that is only late
    /// still gets its wait after another one timed out.
    let waitBudgetMax: Double
    let waitBudgetRefill: Double
    /// A pod is waited for once; again only after this long (a pod re-created under the same name).
    let waitAgainAfter: Double = 600
    /// Path entries not used for this long are forgotten (files of pods long gone).
    let pathIdleLimit: Double = 600
    /// At most this many deleted pods are kept (the least recently active go first): memory stays
    /// bounded when many short-lived pods end while their logs cannot be shipped.
    let maxDeletedPods: Int

    private let lock = ConditionLock()
    private let clock: CacheClock
    private var pods: [String: StoredPod] = [:]
    private var byName: [PodRef: String] = [:]
    private var namespaces: [String: StoredNamespace] = [:]
    private var paths: [String: PathEntry] = [:]
    /// When each pod was waited for.
    private var waited: [PodRef: Double] = [:]
    private var generation: UInt64 = 0
    private var state: APIState
    private let startedAt: Double
    private var waitBudget: Double
    private var waitBudgetAt: Double
    private var lastSweep: Double
    private let openFiles: @Sendable () -> [String]

    /// `waitBudget` defaults to 5 × `waitForPod`, refilled at 0.1 s per second.
    init(apiEnabled: Bool, deleteGrace: Double, waitForPod: Double, options: KubernetesRender.Options,
         rules: NamespaceRules, podsGauge: Gauge?, waitBudget: Double? = nil, waitBudgetRefill: Double = 0.1,
         maxDeletedPods: Int = 1024, clock: CacheClock = .monotonic,
         openFiles: @escaping @Sendable () -> [String] = OpenFiles.ofThisProcess) {
        self.deleteGrace = deleteGrace
        self.waitForPod = waitForPod
        self.options = options
        self.rules = rules
        self.podsGauge = podsGauge
        let budget = waitBudget ?? waitForPod * 5
        self.waitBudgetMax = budget
        self.waitBudgetRefill = waitBudgetRefill
        self.maxDeletedPods = max(0, maxDeletedPods)
        self.state = apiEnabled ? .starting : .disabled
        self.clock = clock
        self.openFiles = openFiles
        self.startedAt = clock.now()
        self.waitBudget = budget
        self.waitBudgetAt = startedAt
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

            var found = lookup(info)
            if found == nil, let deadline = waitDeadline(info.pod, now) {
                // The watch may lag the file's creation by a moment: wait for it, once per pod.
                let waitStart = now
                let budgeted = state == .synced
                while found == nil && (state == .synced || state == .starting) && now < deadline {
                    clock.wait(lock, deadline - now)
                    now = clock.now()
                    found = lookup(info)
                }
                // Timed out: the pod is probably gone, not late; that time comes out of the budget.
                if found == nil && budgeted {
                    waitBudget = max(0, waitBudget - max(0, now - waitStart))
                }
            }
            if let f = found, f.deletedAt != nil, f.lastActive < now {
                // Its lines are still being read: keep its metadata for them (see `purgeLocked`).
                pods[f.meta.uid]?.lastActive = now
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

    /// Call with the lock held. A deleted pod counts until `purgeLocked` forgets it.
    private func lookup(_ info: KubernetesPathInfo) -> StoredPod? {
        if let uid = info.podUID {
            if let p = pods[uid] { return p }
            // A static pod's folder is named after its config hash; its mirror pod says which.
            if let u = byName[info.pod], let p = pods[u], p.meta.mirrorUID == uid { return p }
            return nil
        }
        if let u = byName[info.pod], let p = pods[u] { return p }
        return nil
    }

    /// Call with the lock held. nil: do not wait.
    private func waitDeadline(_ ref: PodRef, _ now: Double) -> Double? {
        guard waitForPod > 0 else { return nil }
        if let at = waited[ref], now - at < waitAgainAfter { return nil }
        let deadline: Double
        switch state {
        case .starting:
            // Before the first list: every pod is unknown, so all share one window from the start.
            deadline = startedAt + waitForPod
        case .synced:
            let elapsed = max(0, now - waitBudgetAt)
            waitBudget = min(waitBudgetMax, waitBudget + elapsed * waitBudgetRefill)
            waitBudgetAt = now
            // A wait too short to let a watch event arrive is not worth taking.
            guard waitBudget >= min(waitForPod, 0.05) else { return nil }
            deadline = now + min(waitForPod, waitBudget)
        case .disabled, .unreachable:
            return nil
        }
        guard now < deadline else { return nil }
        waited[ref] = now
        return deadline
    }

    private func sweepPaths(_ now: Double) {
        lastSweep = now
        let limit = pathIdleLimit
        paths = paths.filter { now - $0.value.lastUsed < limit }
        let again = waitAgainAfter
        waited = waited.filter { now - $0.value < again }
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
                pods[uid]?.lastActive = now
            }
            capDeletedLocked()
            podsGauge?.set(pods.count)
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
                if existing.deletedAt == nil {
                    existing.deletedAt = now
                    existing.lastActive = now
                }
                pods[p.uid] = existing
            } else {
                // Added and deleted between two looks: still worth its last lines.
                generation += 1
                pods[p.uid] = StoredPod(meta: p, generation: generation, deletedAt: now, lastActive: now)
                if byName[p.ref] == nil { byName[p.ref] = p.uid }
            }
            capDeletedLocked()
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

    /// Forgets deleted pods whose lines are no longer being read: `delete_grace` after their deletion
    /// or their last record, whichever is later, and none of their files open (an open file of a
    /// deleted pod is one the tail input has not finished: its backlog, read after an outage, still
    /// gets the pod's metadata). The watch thread calls it about once a second.
    func purgeExpired() {
        let due: Bool = lock.withLock {
            let now = clock.now()
            return pods.values.contains { $0.deletedAt != nil && now - $0.lastActive > deleteGrace }
        }
        guard due else { return }
        // Outside the lock: looking at the process's open files takes a syscall per file.
        let open = openFiles()
        lock.withLock { purgeLocked(clock.now(), openFiles: open) }
    }

    /// Call with the lock held.
    private func purgeLocked(_ now: Double, openFiles open: [String]) {
        let grace = deleteGrace
        var changed = false
        for (uid, p) in pods {
            guard p.deletedAt != nil, now - p.lastActive > grace else { continue }
            if open.contains(where: { KubernetesCache.isFile($0, of: p.meta) }) {
                pods[uid]?.lastActive = now
                continue
            }
            pods[uid] = nil
            if byName[p.meta.ref] == uid { byName[p.meta.ref] = nil }
            changed = true
        }
        if changed { podsGauge?.set(pods.count) }
    }

    /// Call with the lock held. Keeps at most `maxDeletedPods` deleted pods, the most recently active.
    private func capDeletedLocked() {
        let deleted = pods.filter { $0.value.deletedAt != nil }
        guard deleted.count > maxDeletedPods else { return }
        let oldest = deleted.sorted { $0.value.lastActive < $1.value.lastActive }.prefix(deleted.count - maxDeletedPods)
        for (uid, p) in oldest {
            pods[uid] = nil
            if byName[p.meta.ref] == uid { byName[p.meta.ref] = nil }
        }
    }

    /// Whether `path` (resolved by the kernel) is a log file of `pod`: the kubelet writes them under
    /// a folder ending in `_<uid>` (a static pod's: its config hash), and Docker's under the
    /// container id.
    static func isFile(_ path: String, of pod: PodMeta) -> Bool {
        func hasDirectory(endingWith suffix: String) -> Bool {
            !suffix.isEmpty && (path.contains("_\(suffix)/") || path.contains("/\(suffix)/"))
        }
        if hasDirectory(endingWith: pod.uid) { return true }
        if let m = pod.mirrorUID, hasDirectory(endingWith: m) { return true }
        return pod.containers.values.contains { c in
            guard let id = c.id, id.utf8.count >= 12 else { return false }
            return path.contains("/\(id)/")
        }
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
}
