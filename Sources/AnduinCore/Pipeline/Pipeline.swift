import Foundation
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
        case output(any OutputStage, recordsIn: Counter)
    }

    public let config: AgentConfig
    public let stats: StatsRegistry
    private let logger: Logger
    private let inputs: [(name: String, input: any Input, control: InputControl)]
    private let outputs: [any OutputStage]
    private let threads = Locked<[ThreadHandle]>([])

    public init(config: AgentConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        self.stats = StatsRegistry()
        try Pipeline.prepareDataDirectory(config.dataDirectory)

        let stats = self.stats
        func context(_ d: ComponentDecl) -> ComponentContext {
            var l = logger
            l[metadataKey: "component"] = "\(d.name)"
            return ComponentContext(name: d.name, kind: d.kind, dataDirectory: config.dataDirectory,
                                    logger: l, stats: stats.stats(for: d.name, kind: d.kind))
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
                consumer = .filter(name: d.name, filter: f,
                                   recordsIn: ctx.stats.counter("records_in", "records received"),
                                   recordsOut: ctx.stats.counter("records_out", "records passed on"))
            case .output(let oc):
                let runner: any OutputStage
                do {
                    if let rc = oc as? any RecordOutputConfig {
                        runner = OutputRunner(name: d.name, output: try rc.build(ctx), capacity: rc.queueRecords, context: ctx)
                    } else if let ec = oc as? any EncodedOutputConfig {
                        runner = try DeliveryRunner(name: d.name, options: ec.delivery, context: ctx) { try ec.makeSender(ctx) }
                    } else {
                        throw StartupError("unsupported output kind")
                    }
                } catch {
                    throw StartupError("output \"\(d.name)\": \(error)")
                }
                outputs.append(runner)
                consumer = .output(runner, recordsIn: ctx.stats.counter("records_in", "records received"))
            }
            for upstream in d.from { consumers[upstream, default: []].append(consumer) }
        }
        let routes = consumers

        @Sendable func route(_ batch: RecordBatch, _ ack: AckToken, from name: String) {
            guard let next = routes[name] else { return }
            for c in next {
                switch c {
                case .filter(let fname, let filter, let rin, let rout):
                    var b = batch
                    rin.add(b.count)
                    filter.process(&b)
                    rout.add(b.count)
                    route(b, ack, from: fname)
                case .output(let runner, let rin):
                    rin.add(batch.count)
                    ack.retain()
                    runner.enqueue(batch, ack)
                }
            }
        }

        var ins: [(String, any Input, InputControl)] = []
        for d in config.components {
            guard case .input(let ic) = d.config else { continue }
            if routes[d.name] == nil {
                logger.warning("input \(d.name) feeds no filter or output: its records go nowhere")
            }
            let i: any Input
            do { i = try ic.build(context(d)) } catch { throw StartupError("input \"\(d.name)\": \(error)") }
            let name = d.name
            ins.append((name, i, InputControl(name: name) { batch, ack in route(batch, ack, from: name) }))
        }
        self.inputs = ins
        self.outputs = outputs
    }

    static func prepareDataDirectory(_ dir: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw StartupError("data_dir \(dir): cannot create it: \(describeFileError(error))")
        }
        let probe = dir + "/.write-test"
        let fd = open(probe, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        if fd < 0 {
            throw StartupError("data_dir \(dir) is not writable (\(String(cString: strerror(errno)))): checkpoints and buffers live there; give the agent write access or set data_dir")
        }
        close(fd)
        unlink(probe)
    }

    public func start() {
        for o in outputs { o.start() }
        for (name, input, control) in inputs {
            let h = startThread(name: "in-\(name)") { input.run(control) }
            threads.withLock { $0.append(h) }
        }
        logger.info("anduin started: \(inputs.count) input(s), \(outputs.count) output(s), data_dir \(config.dataDirectory)")
    }

    /// Stops reading, delivers what was read (up to `shutdownTimeout`), then persists checkpoints.
    public func stop() {
        let deadline = monotonicSeconds() + config.shutdownTimeout
        for (_, _, control) in inputs { control.requestStop() }
        var inputsDone = true
        for h in threads.current where !h.join(timeout: max(0, deadline - monotonicSeconds())) { inputsDone = false }
        for o in outputs { o.close() }
        for o in outputs where !o.join(timeout: max(0, deadline - monotonicSeconds())) {
            logger.warning("output \(o.name): \(o.pendingRecords) record(s) not delivered within shutdown_timeout; they were not checkpointed and will be read again at the next start")
            o.abandon()
        }
        if !inputsDone {
            // Inputs blocked on a full queue are released by the abandon above.
            for h in threads.current { h.join(timeout: 5) }
        }
        for (_, input, _) in inputs { input.finish() }
        logger.info("anduin stopped: \(summary())")
    }

    /// One line of the main counters, for the stop log.
    public func summary() -> String {
        stats.components.map { s in
            let parts = s.counters.filter { $0.current > 0 }.map { "\($0.name)=\($0.current)" }
            return "\(s.kind.rawValue) \(s.component): " + (parts.isEmpty ? "idle" : parts.joined(separator: " "))
        }.joined(separator: "; ")
    }
}
