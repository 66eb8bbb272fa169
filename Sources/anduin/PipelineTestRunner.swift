import AnduinCore
import filter_kubernetes
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
import in_tail
import Logging

/// Runs `anduin test` cases in-process: the config's filters are built afresh for each test and wired as
/// the pipeline wires them; lines are decoded as the tail input decodes them; outputs are not started,
/// nothing is read from or written to files, and the kubernetes filter uses path metadata only (no API
/// server). Single-threaded: a test feeds its lines (joined as the input's `multiline:` joins them, the
/// last record flushed as by its timeout), then flushes what stateful filters hold, upstream first.
struct PipelineTestRunner {
    let config: AgentConfig
    let logger: Logger

    struct Failure {
        var lines: [String]
    }

    /// The records that came out at the expected component, as JSON objects, or a setup problem.
    func records(for test: PipelineTestCase) throws -> [[String: Any]] {
        let stats = StatsRegistry()
        var filters: [String: any Filter] = [:]
        for d in config.components {
            guard case .filter(var fc) = d.config else { continue }
            if var k = fc as? KubernetesConfig {
                k.api = .off  // `anduin test` never talks to an API server
                fc = k
            }
            var l = logger
            l[metadataKey: "component"] = "\(d.name)"
            let ctx = ComponentContext(name: d.name, kind: d.kind, dataDirectory: config.dataDirectory, logger: l,
                                       stats: stats.stats(for: d.name, kind: d.kind, type: d.type))
            do { filters[d.name] = try fc.build(ctx) } catch { throw PipelineTestError("filter \"\(d.name)\": \(error)") }
        }
        defer { for f in filters.values { f.close() } }

        var consumers: [String: [String]] = [:]
        for d in config.components where d.kind != .input {
            for upstream in d.from { consumers[upstream, default: []].append(d.name) }
        }
        let target = config.components.first { $0.name == test.expectComponent }
        var captured: [RecordBatch] = []

        // Routes a batch that left `name` (as the pipeline does), capturing what the test reads.
        func route(_ batch: RecordBatch, from name: String) {
            if target?.kind != .output, name == test.expectComponent { captured.append(batch) }
            for next in consumers[name] ?? [] {
                if next == test.expectComponent, target?.kind == .output { captured.append(batch) }
                if filters[next] != nil { feed(batch, to: next) }
            }
        }
        func feed(_ batch: RecordBatch, to name: String) {
            guard let filter = filters[name] else { return }
            if let stateful = filter as? any StatefulFilter {
                stateful.process(batch, ack: .none()) { b, _ in route(b, from: name) }
            } else {
                var b = batch
                filter.process(&b)
                route(b, from: name)
            }
        }

        let batch = decode(test)
        if filters[test.inputComponent] != nil {
            feed(batch, to: test.inputComponent)
        } else {
            route(batch, from: test.inputComponent)
        }
        // Held records (multiline) come out as at a stop, upstream filters first.
        for name in topologicalFilterOrder() {
            (filters[name] as? any StatefulFilter)?.flushAll { b, _ in route(b, from: name) }
        }

        // In file order of each record's first line: a filter that holds records (multiline, per stream)
        // releases them in an order that depends on timing, which a test must not.
        var order: [(offset: Int64, batch: Int, index: Int)] = []
        for (n, b) in captured.enumerated() {
            for (i, r) in b.records.enumerated() { order.append((r.offset, n, i)) }
        }
        order.sort { ($0.offset, $0.batch, $0.index) < ($1.offset, $1.batch, $1.index) }
        var out: [[String: Any]] = []
        var bytes: [UInt8] = []
        for (_, n, i) in order {
            bytes.removeAll(keepingCapacity: true)
            RecordEncoder.append(captured[n], i, to: &bytes)
            guard let obj = JSONAny.object(bytes) else {
                throw PipelineTestError("a record is not a JSON object: \(String(decoding: bytes, as: UTF8.self))")
            }
            out.append(obj)
        }
        return out
    }

    /// The test's lines as the tail input would emit them from one file (partial lines merged).
    private func decode(_ test: PipelineTestCase) -> RecordBatch {
        let inputName = inputUpstream(of: test.inputComponent) ?? test.inputComponent
        var batch = RecordBatch(source: SourceInfo(path: test.path, sourceID: 0x7e57), inputName: inputName)
        var decoder = LineDecoder(format: test.format, maxRecordBytes: 1 << 20)
        // `multiline:` of the tail input the lines come from: joined as it joins them.
        var joiner: LineJoiner?
        if let d = config.components.first(where: { $0.name == inputName }), case .input(let ic) = d.config,
           let tail = ic as? TailConfig, let ml = tail.multiline {
            joiner = LineJoiner(ml)
        }
        var offset: Int64 = 0
        let now = wallClockNanos()
        for line in test.lines {
            var bytes = Array(line.utf8)
            if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
            let before = batch.records.count
            bytes.withUnsafeBytes { decoder.decode(line: $0, offset: offset, truncated: false, readTime: now, into: &batch) }
            joiner?.join(&batch, from: before, now: 0)
            offset += Int64(bytes.count + 1)
        }
        let before = batch.records.count
        decoder.flushPending(into: &batch)
        joiner?.join(&batch, from: before, now: 0)
        // Open records come out as at a flush_timeout.
        joiner?.flush(into: &batch, now: 0, all: true)
        return batch
    }

    private func inputUpstream(of name: String) -> String? {
        var seen = Set<String>()
        var queue = [name]
        while let n = queue.popLast() {
            guard seen.insert(n).inserted, let d = config.components.first(where: { $0.name == n }) else { continue }
            if d.kind == .input { return n }
            queue.append(contentsOf: d.from)
        }
        return nil
    }

    private func topologicalFilterOrder() -> [String] {
        var order: [String] = []
        var done = Set<String>()
        func visit(_ name: String) {
            guard !done.contains(name), let d = config.components.first(where: { $0.name == name }),
                  d.kind == .filter else { return }
            done.insert(name)
            for u in d.from { visit(u) }
            order.append(name)
        }
        for d in config.components where d.kind == .filter { visit(d.name) }
        return order
    }

    // MARK: comparing

    /// Empty when the records meet the expectations; otherwise what differs, ready to print.
    static func compare(_ records: [[String: Any]], _ test: PipelineTestCase) -> [String] {
        var problems: [String] = []
        if records.count != test.records.count {
            problems.append("expected \(test.records.count) record\(test.records.count == 1 ? "" : "s") at \(test.expectComponent), got \(records.count)")
        }
        for (i, e) in test.records.enumerated() where i < records.count {
            var diff: [String] = []
            let r = records[i]
            for (p, want) in e.equals {
                guard let got = lookup(r, p.path) else {
                    diff.append("  \(p.path): expected \(show(want)), got nothing (absent)  (\(p.mark))")
                    continue
                }
                let typed = scalar(got)
                if typed.map({ same($0, want) }) != true {
                    let shown = typed.map(show) ?? json(got)
                    let kinds = typed?.typeName != want.typeName
                        ? " (expected \(want.typeName), got \(typed?.typeName ?? "an object or list"))" : ""
                    diff.append("  \(p.path): expected \(show(want)), got \(shown)\(kinds)  (\(p.mark))")
                }
            }
            for (p, regex, source) in e.matches {
                guard let got = lookup(r, p.path) else {
                    diff.append("  \(p.path): expected a match of /\(source)/, got nothing (absent)  (\(p.mark))")
                    continue
                }
                if (try? regex.firstMatch(in: text(got))) == nil {
                    diff.append("  \(p.path): expected a match of /\(source)/, got \(quote(text(got)))  (\(p.mark))")
                }
            }
            for p in e.absent {
                if let got = lookup(r, p.path) {
                    diff.append("  \(p.path): expected absent, got \(quote(text(got)))  (\(p.mark))")
                }
            }
            if !diff.isEmpty { problems.append("record \(i + 1) (\(e.mark)):\n" + diff.joined(separator: "\n")) }
        }
        if !problems.isEmpty {
            problems.append("records at \(test.expectComponent):" + (records.isEmpty ? " none" : ""))
            for (i, r) in records.enumerated() { problems.append("  \(i + 1): \(json(r))") }
        }
        return problems
    }

    /// A JSON scalar with its type; nil for an object or a list.
    static func scalar(_ value: Any) -> ExpectedScalar? {
        if let s = value as? String { return .string(s) }
        if let b = value as? Bool { return .bool(b) }
        guard let n = value as? JSONNumber else { return nil }
        return .number(n.text)
    }

    /// Equal values of one type; numbers by value (`1.0` is `1`).
    static func same(_ a: ExpectedScalar, _ b: ExpectedScalar) -> Bool {
        if case .number(let x) = a, case .number(let y) = b {
            return x == y || (Double(x).map { $0 == Double(y) } ?? false)
        }
        return a == b
    }

    /// As JSON writes it: strings quoted, numbers and booleans bare.
    static func show(_ v: ExpectedScalar) -> String {
        switch v {
        case .string(let s): return quote(s)
        case .number(let n): return n
        case .bool(let b): return b ? "true" : "false"
        }
    }

    static func lookup(_ record: [String: Any], _ path: FieldPath) -> Any? {
        var node: Any = record
        for key in path.keys {
            guard let obj = node as? [String: Any], let next = obj[String(decoding: key, as: UTF8.self)] else { return nil }
            node = next
        }
        return node is JSONNull ? nil : node
    }

    /// Strings as they are; numbers, booleans, objects and lists as their JSON text.
    static func text(_ value: Any) -> String {
        if let s = value as? String { return s }
        return json(value)
    }

    static func json(_ value: Any) -> String { JSONAny.text(value) }

    static func quote(_ s: String) -> String { json(s) }
}

/// A test that could not run (a filter that cannot be built), as opposed to one that failed.
struct PipelineTestError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
