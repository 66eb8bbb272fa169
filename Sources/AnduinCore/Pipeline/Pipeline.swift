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

/// Could not start the pipeline; the message says what to fix.
public struct StartupError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The running agent: inputs on their own threads, filters run on the thread of the input that
/// feeds them, each output on its own thread behind its own bounded queue.
public final class Pipeline: Sendable {
    private enum Consumer: Sendable {
        case filter(name: String, filter: any Filter, recordsIn: Counter, recordsOut: Counter)
        /// A filter that may hold records across batches; what it emits is routed from its name.
        case stateful(name: String, filter: any StatefulFilter, recordsIn: Counter, recordsOut: Counter)
        case output(any OutputStage, recordsIn: Counter, entering: Gauge)
    }

    public let config: AgentConfig
    public let stats: StatsRegistry
    private let logger: Logger
    /// Each input lives on its own thread (`run`, then `finish` when `stop` says so).
    private let inputs: [InputThread]
    private let outputs: [any OutputStage]
    /// Every filter, to close at stop (background work such as the Kubernetes watch).
    private let filters: [any Filter]
    /// Stateful filters in topological order (upstream first), each with the route from it.
    private let statefulFilters: [(filter: any StatefulFilter, emit: @Sendable (RecordBatch, AckToken) -> Void)]
    private let ticker = Ticker()

    private let tap: TapHub

    /// `stats` and `tap` belong to the agent and outlive a reload; a pipeline on its own gets new ones.
    public init(config: AgentConfig, logger: Logger, stats: StatsRegistry = StatsRegistry(), tap: TapHub = TapHub()) throws {
        self.config = config
        self.logger = logger
        self.stats = stats
        self.tap = tap
        try Pipeline.prepareDataDirectory(config.dataDirectory)

        let stats = self.stats
        func context(_ d: ComponentDecl) -> ComponentContext {
            var l = logger
            l[metadataKey: "component"] = "\(d.name)"
            return ComponentContext(name: d.name, kind: d.kind, dataDirectory: config.dataDirectory,
                                    logger: l, stats: stats.stats(for: d.name, kind: d.kind, type: d.type))
        }

        var consumers: [String: [Consumer]] = [:]
        var outputs: [any OutputStage] = []
        for d in config.components {
            let ctx = context(d)
            let consumer: Consumer
            switch d.config {
            case .input: continue
            case .filter(let fc):
                let f: any Filter
                do { f = try fc.build(ctx) } catch { throw StartupError("filter \"\(d.name)\": \(error)") }
                let rin = ctx.stats.counter("records_in", "records received")
                let rout = ctx.stats.counter("records_out", "records passed on")
                if let sf = f as? any StatefulFilter {
                    consumer = .stateful(name: d.name, filter: sf, recordsIn: rin, recordsOut: rout)
                } else {
                    consumer = .filter(name: d.name, filter: f, recordsIn: rin, recordsOut: rout)
                }
            case .output(let oc):
                let runner: any OutputStage
                do {
                    if let ec = oc as? any EncodedOutputConfig {
                        runner = try DeliveryRunner(name: d.name, options: ec.delivery, context: ctx) { try ec.makeSender(ctx) }
                    } else {
                        throw StartupError("unsupported output kind")
                    }
                } catch {
                    throw StartupError("output \"\(d.name)\": \(error)")
                }
                outputs.append(runner)
                consumer = .output(runner, recordsIn: ctx.stats.counter("records_in", "records received"),
                                   entering: ctx.stats.gauge("entering_records", "records received and waiting for room in the output's queue (backpressure)"))
            }
            for upstream in d.from { consumers[upstream, default: []].append(consumer) }
        }
        let routes = consumers

        @Sendable func route(_ batch: RecordBatch, _ ack: AckToken, from name: String) {
            tap.publish(component: name, batch)  // one atomic load unless someone taps
            guard let next = routes[name] else { return }
            for c in next {
                switch c {
                case .filter(let fname, let filter, let rin, let rout):
                    var b = batch
                    rin.add(b.count)
                    filter.process(&b)
                    rout.add(b.count)
                    route(b, ack, from: fname)
                case .stateful(let fname, let filter, let rin, let rout):
                    rin.add(batch.count)
                    filter.process(batch, ack: ack) { b, t in
                        rout.add(b.count)
                        route(b, t, from: fname)
                    }
                case .output(let runner, let rin, let entering):
                    // Received records wait here while the queue is full: pending, not unaccounted.
                    entering.add(batch.count)
                    rin.add(batch.count)
                    tap.publish(component: runner.name, batch)
                    runner.enqueue(batch, ack)
                    entering.add(-batch.count)
                }
            }
        }

        var ins: [InputThread] = []
        for d in config.components {
            guard case .input(let ic) = d.config else { continue }
            // Config validation refuses this; a pipeline built some other way must not read such an
            // input either: its records would be dropped and their checkpoints advanced.
            if !Pipeline.reachesOutput(d.name, in: config.components) {
                throw StartupError("input \"\(d.name)\": no output receives its records; add it (or a filter it feeds) to the from: of an output")
            }
            let i: any Input
            do { i = try ic.build(context(d)) } catch { throw StartupError("input \"\(d.name)\": \(error)") }
            let name = d.name
            ins.append(InputThread(name: name, input: i,
                                   control: InputControl(name: name) { batch, ack in route(batch, ack, from: name) }))
        }
        self.inputs = ins
        self.outputs = outputs
        self.filters = consumers.values.flatMap { $0 }.compactMap { c -> (any Filter)? in
            switch c {
            case .filter(_, let f, _, _): return f
            case .stateful(_, let f, _, _): return f
            case .output: return nil
            }
        }.reduce(into: [any Filter]()) { list, f in
            if !list.contains(where: { $0 === f }) { list.append(f) }  // a filter feeding several consumers appears once
        }

        // Flushing at stop goes upstream first, so what an upstream filter flushes can still be
        // merged or flushed by a stateful filter below it.
        var stateful: [String: (any StatefulFilter, Counter)] = [:]
        for cs in consumers.values {
            for c in cs { if case .stateful(let n, let f, _, let rout) = c { stateful[n] = (f, rout) } }
        }
        var ordered: [(filter: any StatefulFilter, emit: @Sendable (RecordBatch, AckToken) -> Void)] = []
        for name in Pipeline.topologicalOrder(config.components) {
            guard let (f, rout) = stateful[name] else { continue }
            ordered.append((f, { b, t in
                rout.add(b.count)
                route(b, t, from: name)
            }))
        }
        self.statefulFilters = ordered
    }

    /// Whether records of `name` reach at least one output through the `from:` graph.
    static func reachesOutput(_ name: String, in components: [ComponentDecl]) -> Bool {
        var next: [String: [ComponentDecl]] = [:]
        for d in components { for u in d.from { next[u, default: []].append(d) } }
        var seen: Set<String> = [name]
        var todo = [name]
        while let n = todo.popLast() {
            for d in next[n] ?? [] {
                if d.kind == .output { return true }
                if seen.insert(d.name).inserted { todo.append(d.name) }
            }
        }
        return false
    }

    /// Component names, each after every component in its `from:` (the config has no cycles).
    static func topologicalOrder(_ components: [ComponentDecl]) -> [String] {
        var done = Set<String>()
        var order: [String] = []
        let byName = Dictionary(components.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        func visit(_ name: String, depth: Int) {
            // The depth bound only guards against a cycle that validation somehow let through.
            guard !done.contains(name), depth <= byName.count, let d = byName[name] else { return }
            for u in d.from { visit(u, depth: depth + 1) }
            if done.insert(name).inserted { order.append(name) }
        }
        for d in components { visit(d.name, depth: 0) }
        return order
    }

    static func prepareDataDirectory(_ dir: String) throws {
        if let problem = DataDirectory.problem(dir) { throw StartupError("data_dir \(dir): \(problem)") }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw StartupError("data_dir \(dir): cannot create it: \(describeFileError(error))")
        }
        DataDirectory.tighten(dir)
        let probe = dir + "/.write-test"
        let fd = open(probe, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        if fd < 0 {
            throw StartupError("data_dir \(dir) is not writable (\(String(cString: strerror(errno)))): checkpoints and buffers live there; give the agent write access or set data_dir")
        }
        close(fd)
        unlink(probe)
    }

    /// `reloading`: the start is part of a reload, which logs one line of its own.
    public func start(reloading: Bool = false) {
        for o in outputs { o.start() }
        if !statefulFilters.isEmpty {
            let filters = statefulFilters
            let ticker = self.ticker
            ticker.handle = startThread(name: "filter-tick") {
                while ticker.sleep(0.1) {
                    let now = monotonicSeconds()
                    for (f, emit) in filters { f.tick(now: now) { b, t in emit(b, t) } }
                }
            }
        }
        for input in inputs { input.start() }
        if !reloading { checkDescriptorLimit() }
        let started = "anduin started: \(inputs.count) input(s), \(outputs.count) output(s), data_dir \(config.dataDirectory)"
        if reloading { logger.debug("\(started)") } else { logger.info("\(started)") }
    }

    /// Descriptors the agent needs besides the files it follows: standard streams, the log, the
    /// data_dir lock, event and inotify descriptors, checkpoints.
    static let baseDescriptors = 16

    /// Says at start when the descriptor limit cannot hold what the outputs and the API need with a
    /// few files open: the agent would then stall on an open that cannot succeed (a buffer segment,
    /// a connection), with only a retry warning to show for it.
    private func checkDescriptorLimit() {
        guard let limit = ProcessDescriptors.limit else { return }
        let outputsNeed = outputs.reduce(0) { $0.addingSaturating($1.descriptorsNeeded) }
        // The listener and a few connections (more are refused when descriptors run short).
        let apiNeeds = config.api.map { 2 + min(4, $0.maxConnections) } ?? 0
        let needed = Self.baseDescriptors + outputsNeed + apiNeeds + 8  // and a few files
        guard limit < needed else { return }
        logger.error("the file descriptor limit (\(limit)) is below what this config needs with a few files open (about \(needed): \(outputsNeed) for the outputs' connections and buffers\(apiNeeds > 0 ? ", \(apiNeeds) for the API" : "")): delivery may stall; raise it (ulimit -n, LimitNOFILE= in the systemd unit, the container runtime's nofile) or lower the outputs' concurrency")
    }

    /// Stops reading, delivers what was read (up to `shutdownTimeout`), then persists checkpoints.
    /// `reloading`: the stop is part of a reload, which logs one line of its own.
    public func stop(reloading: Bool = false) {
        let deadline = monotonicSeconds() + config.shutdownTimeout
        for input in inputs { input.control.requestStop() }
        for o in outputs { o.inputsStopping() }
        var inputsDone = true
        for input in inputs where !input.waitReturned(until: deadline) { inputsDone = false }
        // Records held by stateful filters (a pending multiline trace) go out before the outputs close.
        // On a thread of its own: a flush blocked on a full output queue must not stop the shutdown
        // (the abandon below releases it). Skipped when an input or the ticker is still stuck inside a
        // filter: what it holds was not checkpointed and is read again at the next start.
        let tickerDone = ticker.stop(timeout: max(0, deadline - monotonicSeconds()))
        if !statefulFilters.isEmpty {
            if inputsDone && tickerDone {
                let filters = statefulFilters
                let flush = startThread(name: "filter-flush") {
                    for (f, emit) in filters { f.flushAll { b, t in emit(b, t) } }
                }
                if !flush.join(timeout: max(0, deadline - monotonicSeconds())) {
                    logger.warning("filters could not flush their pending records within shutdown_timeout; they were not checkpointed and will be read again at the next start")
                }
            } else {
                logger.warning("pending filter records not flushed (inputs still blocked); they were not checkpointed and will be read again at the next start")
            }
        }
        for o in outputs { o.close() }
        for o in outputs {
            if o.join(timeout: max(0, deadline - monotonicSeconds())) {
                let kept = o.keptRecords
                if kept > 0 { logger.info("output \(o.name): \(kept) undelivered record(s) kept in the disk buffer for the next start") }
                continue
            }
            // Records in a disk buffer are safe there; only those not yet in it are read again.
            let kept = o.keptRecords
            let lost = max(0, o.pendingRecords - kept)
            var text = "output \(o.name): "
            // Requests cut short here may have been stored by the destination: sent again later.
            if kept > 0 { text += "\(kept) undelivered record(s) kept in the disk buffer for the next start (requests cut short at shutdown_timeout are sent again)" }
            if lost > 0 || kept == 0 {
                text += (kept > 0 ? "; " : "") + "\(lost) record(s) not delivered within shutdown_timeout; they were not checkpointed and will be read again at the next start"
            }
            logger.warning("\(text)")
            o.abandon()
        }
        if !inputsDone {
            // Inputs blocked on a full queue are released by the abandon above.
            let grace = monotonicSeconds() + 5
            for input in inputs { _ = input.waitReturned(until: grace) }
        }
        // What a stateful filter still holds was not delivered: abandon its tokens before any input
        // writes its final checkpoint (dropped tokens would count as done). Skipped if an input is
        // still stuck inside a filter (it holds the filter's lock); that input writes no checkpoint.
        let returned = inputs.map(\.hasReturned)
        if returned.allSatisfy({ $0 }) {
            for (f, _) in statefulFilters { f.discardAll() }
        }
        for (input, returned) in zip(inputs, returned) {
            guard returned else {
                input.settle(finish: false, timeout: 0)
                logger.error("input \(input.name) did not stop: its final checkpoint is not written; it resumes from the previous one")
                continue
            }
            if !input.settle(finish: true, timeout: 30) {
                logger.error("input \(input.name): its final checkpoint took over 30 s; it may resume from the previous one")
            }
        }
        for f in filters { f.close() }
        if reloading { logger.debug("pipeline stopped for a reload: \(summary())") } else { logger.info("anduin stopped: \(summary())") }
    }

    /// The thread that calls `StatefulFilter.tick`, and its stop signal.
    private final class Ticker: Sendable {
        private struct State {
            var stopped = false
            var handle: ThreadHandle?
        }
        private let state = Locked(State())

        var handle: ThreadHandle? {
            get { state.withLock { $0.handle } }
            set { state.withLock { $0.handle = newValue } }
        }

        /// Sleeps `seconds`; false once stopped.
        func sleep(_ seconds: Double) -> Bool {
            let deadline = monotonicSeconds() + seconds
            return state.withLock(waitingUntil: deadline) { $0.stopped ? true : nil } == nil
        }

        /// Stops the thread; true once it ended (or never started) within `timeout`.
        func stop(timeout: Double) -> Bool {
            let h: ThreadHandle? = state.withLock {
                $0.stopped = true
                return $0.handle
            }
            state.broadcast()
            return h?.join(timeout: timeout) ?? true
        }
    }

    /// Why the agent is not ready, or nothing: an output that stalls (see each runner's rule).
    public func notReadyReasons() -> [String] {
        outputs.compactMap(\.notReadyReason)
    }

    /// One line of the main counters, for the stop log.
    public func summary() -> String {
        stats.components.map { s in
            let parts = s.counters.filter { $0.current > 0 }.map { "\($0.name)=\($0.current)" }
            return "\(s.kind.rawValue) \(s.component): " + (parts.isEmpty ? "idle" : parts.joined(separator: " "))
        }.joined(separator: "; ")
    }
}
