import AnduinCore

/// The `modify` filter: sets, adds, removes, renames and copies fields.
///
///     filters:
///       tidy:
///         type: modify
///         from: [kube]
///         rename: {msg: message, kubernetes.pod_name: pod}
///         set: {env: prod, kubernetes.labels["app.kubernetes.io/part-of"]: shop}
///         add: {severity: info}            # only when absent
///         copy: {kubernetes.namespace_name: ns}
///         remove: [kubernetes.annotations, password]
///
/// Operations run in the order their keys are written, entries in order within each. Paths are field
/// paths (`FieldPath`); nested paths create objects (an intermediate value that is not an object is
/// replaced by `set`, left alone by `add`). A value is a string unless it is an unquoted JSON number
/// or `true`/`false` (`"200"` in quotes stays a string). `message` may be set, renamed or removed;
/// `@timestamp`, `stream`, `log.*` and `event.*` are the agent's own and may only be read (copied).
public enum ModifyPlugin {
    /// The operations are applied in the order they are written, so the table's check reads them
    /// all, in file order (the fields only declare them).
    static let table = OptionTable(fields: ModifyConfig(operations: []), check: readOperations)
    static let operations = table.options.map(\.key)

    public static let spec: PluginSpec = .filter("modify", "set, add, remove, rename or copy fields", table)

    @Sendable static func readOperations(_ reader: ConfigReader, _ config: inout ModifyConfig, _: Bool) {
        let errorsBefore = reader.diagnostics.items.count
        var ops: [ModifyOperation] = []
        func path(_ op: String, _ text: String, writable: Bool) -> FieldPath? {
            switch FieldPath.parse(text) {
            case .success(let p):
                if writable && !p.isWritable {
                    reader.error(op, "\(text): written by the agent itself; it can be read (copy) but not changed")
                    return nil
                }
                return p
            case .failure(let problem):
                reader.error(op, problem.message)
                return nil
            }
        }
        for key in reader.keys where operations.contains(key) {
            guard let v = reader.value(key) else { continue }
            switch key {
            case "remove":
                for text in reader.stringList(key) {
                    if let p = path(key, text, writable: true) { ops.append(.remove(p)) }
                }
            default:
                guard case .mapping(let entries, _) = v else {
                    reader.error(key, "expected a mapping, such as {from.path: to.path} or {path: value}")
                    continue
                }
                for e in entries {
                    guard case .scalar(let text, _, let plain) = e.value else {
                        reader.diagnostics.error(e.value.mark, "\(reader.context): \(key).\(e.key): expected a scalar value, got \(e.value.kindName)")
                        continue
                    }
                    switch key {
                    case "set", "add":
                        guard let p = path(key, e.key, writable: true) else { continue }
                        // A quoted YAML scalar is a string even when it looks like a number.
                        let json = plain ? FieldEdit.jsonLiteral(text) : FieldEdit.jsonLiteral(quoted: text)
                        ops.append(key == "set" ? .set(p, json) : .add(p, json))
                    default:
                        guard let from = path(key, e.key, writable: key == "rename"),
                              let to = path(key, text, writable: true) else { continue }
                        if from.keys == to.keys {
                            reader.error(key, "\(e.key): source and target are the same")
                            continue
                        }
                        ops.append(key == "rename" ? .rename(from, to) : .copy(from, to))
                    }
                }
            }
        }
        if ops.isEmpty && reader.diagnostics.items.count == errorsBefore {
            reader.error(nil, "give at least one operation: set, add, remove, rename or copy")
        }
        config.operations = ops
    }
}

public enum ModifyOperation: Sendable {
    /// Path and raw JSON value.
    case set(FieldPath, [UInt8])
    case add(FieldPath, [UInt8])
    case remove(FieldPath)
    case rename(FieldPath, FieldPath)
    case copy(FieldPath, FieldPath)
}

public struct ModifyConfig: FilterConfig {
    /// Read from the options below by `ModifyPlugin.readOperations`, in the order they are written.
    public var operations: [ModifyOperation]
    @OptionField(declared: .free("set", "mapping: path → value", "set each field (a value is a string unless it is an unquoted JSON number or `true`/`false`)"), default: nil)
    var set: Void
    @OptionField(declared: .free("add", "mapping: path → value", "set each field that is absent"), default: nil)
    var add: Void
    @OptionField(declared: .list("remove", "remove each field"), default: [])
    var remove: Void
    @OptionField(declared: .free("rename", "mapping: path → path", "move each field"), default: nil)
    var rename: Void
    @OptionField(declared: .free("copy", "mapping: path → path", "copy each field"), default: nil)
    var copy: Void

    public init(operations: [ModifyOperation]) { self.operations = operations }
    public func build(_ context: ComponentContext) throws -> any Filter {
        ModifyFilter(config: self, stats: context.stats)
    }
}

extension FieldEdit {
    /// `text` as a JSON string.
    static func jsonLiteral(quoted text: String) -> [UInt8] {
        var w = JSONWriter()
        w.writeString(text)
        return w.bytes
    }
}

/// Stateless (operations are immutable, buffers are per call): safe on any number of input threads.
///
/// Fields that live in the batch's `sharedFields` (the `kubernetes` object) are edited once per batch
/// when the change is the same for every record (set/add/remove of a constant, rename/copy between
/// shared paths). When a record-specific value must go under a shared key, that key is first copied
/// into every record's own fields and removed from the shared ones, so no document has a key twice.
public final class ModifyFilter: Filter {
    let operations: [ModifyOperation]
    let modified: Counter
    let invalid: Counter

    init(config: ModifyConfig, stats: ComponentStats) {
        operations = config.operations
        modified = stats.counter("records_modified", "records changed by at least one operation")
        invalid = stats.counter("edit_errors", "edits skipped because the record's fields were not valid JSON")
    }

    /// Per-call working state.
    struct Work {
        var scratch: [UInt8] = []
        var value: [UInt8] = []
        var changed: [Bool] = []
        var sharedChanged = false
        var invalid = 0
    }

    public func process(_ batch: inout RecordBatch) {
        guard !batch.isEmpty else { return }
        var w = Work()
        w.changed = Array(repeating: false, count: batch.count)
        for op in operations {
            switch op {
            case .set(let p, let v): writeConstant(p, v, onlyIfAbsent: false, &batch, &w)
            case .add(let p, let v): writeConstant(p, v, onlyIfAbsent: true, &batch, &w)
            case .remove(let p): remove(p, &batch, &w)
            case .rename(let from, let to): move(from, to, removeSource: true, &batch, &w)
            case .copy(let from, let to): move(from, to, removeSource: false, &batch, &w)
            }
        }
        let n = w.sharedChanged ? batch.count : w.changed.reduce(0) { $0 + ($1 ? 1 : 0) }
        if n > 0 { modified.add(n) }
        if w.invalid > 0 { invalid.add(w.invalid) }
    }

    // MARK: operations

    private func writeConstant(_ p: FieldPath, _ json: [UInt8], onlyIfAbsent: Bool, _ batch: inout RecordBatch, _ w: inout Work) {
        if p.kind == .message {
            // Decoded once; every record not lifted points at the same bytes.
            var text: [UInt8] = []
            Self.decodeJSONText(json, into: &text)
            let range = text.withUnsafeBytes { batch.append(bytes: $0) }
            for i in batch.records.indices {
                if batch.records[i].flags.contains(.messageLifted) {
                    editFields(i, p, json, onlyIfAbsent ? .add : .set, &batch, &w)
                } else if !onlyIfAbsent {
                    batch.records[i].message = range
                    w.changed[i] = true
                }
            }
            return
        }
        guard let top = p.keys.first else { return }
        let inShared = FieldPath.hasMember(batch.sharedFields, 0..<batch.sharedFields.count, [top])
        let owners = recordsHaving(top, batch)
        // Constant value: once in the shared fields, unless some records carry the key themselves;
        // then in every record (a shared copy would duplicate theirs).
        if inShared || owners.isEmpty {
            editShared(p, json, onlyIfAbsent ? .add : .set, &batch, &w)
            for i in owners { editFields(i, p, json, onlyIfAbsent ? .add : .set, &batch, &w) }
        } else {
            for i in batch.records.indices { editFields(i, p, json, onlyIfAbsent ? .add : .set, &batch, &w) }
        }
    }

    private func remove(_ p: FieldPath, _ batch: inout RecordBatch, _ w: inout Work) {
        if p.kind == .message {
            for i in batch.records.indices {
                if batch.records[i].flags.contains(.messageLifted) {
                    editFields(i, p, [], .remove, &batch, &w)
                } else {
                    // Not written by the encoder any more, exactly as if a filter had lifted it.
                    batch.records[i].flags.insert(.messageLifted)
                    w.changed[i] = true
                }
            }
            return
        }
        guard let top = p.keys.first else { return }
        if FieldPath.hasMember(batch.sharedFields, 0..<batch.sharedFields.count, [top]) {
            editShared(p, [], .remove, &batch, &w)
        }
        for i in recordsHaving(top, batch) { editFields(i, p, [], .remove, &batch, &w) }
    }

    private func move(_ from: FieldPath, _ to: FieldPath, removeSource: Bool, _ batch: inout RecordBatch, _ w: inout Work) {
        // The same value for every record: a shared field no record overrides, or the file path.
        var constant = from.kind == .filePath
        if from.kind == .field, let top = from.keys.first,
           FieldPath.hasMember(batch.sharedFields, 0..<batch.sharedFields.count, [top]),
           recordsHaving(top, batch).isEmpty {
            constant = true
        }
        if constant {
            var value: [UInt8] = []
            guard from.appendJSON(batch, 0, to: &value) else { return }
            if removeSource { remove(from, &batch, &w) }
            writeConstant(to, value, onlyIfAbsent: false, &batch, &w)
            return
        }
        // Record-specific values cannot go into the shared fields: give each record its own copy.
        if to.kind == .field, let top = to.keys.first,
           FieldPath.hasMember(batch.sharedFields, 0..<batch.sharedFields.count, [top]) {
            materialize(top, &batch, &w)
        }
        for i in batch.records.indices {
            w.value.removeAll(keepingCapacity: true)
            guard from.appendJSON(batch, i, to: &w.value) else { continue }
            if removeSource { removeFromRecord(i, from, &batch, &w) }
            let value = w.value
            if to.kind == .message && !batch.records[i].flags.contains(.messageLifted) {
                w.scratch.removeAll(keepingCapacity: true)
                Self.decodeJSONText(value, into: &w.scratch)
                batch.records[i].message = w.scratch.withUnsafeBytes { batch.append(bytes: $0) }
                w.changed[i] = true
            } else {
                editFields(i, to, value, .set, &batch, &w)
            }
        }
    }

    /// Removes `p` from one record: its message, its own fields, or (shared value) by first giving it
    /// its own copy of the shared key.
    private func removeFromRecord(_ i: Int, _ p: FieldPath, _ batch: inout RecordBatch, _ w: inout Work) {
        switch p.kind {
        case .message where !batch.records[i].flags.contains(.messageLifted):
            batch.records[i].flags.insert(.messageLifted)
            w.changed[i] = true
        case .message, .field:
            guard let top = p.keys.first else { return }
            if FieldPath.hasMember(batch.sharedFields, 0..<batch.sharedFields.count, [top])
                && !FieldPath.hasMember(batch.bytes, batch.records[i].fields, [top]) {
                materialize(top, &batch, &w)
            }
            editFields(i, p, [], .remove, &batch, &w)
        default:
            break  // agent values: rejected at config time
        }
    }

    // MARK: edits

    enum Kind { case set, add, remove }

    private func recordsHaving(_ top: [UInt8], _ batch: RecordBatch) -> [Int] {
        let path = [top]
        return batch.records.indices.filter { FieldPath.hasMember(batch.bytes, batch.records[$0].fields, path) }
    }

    private func editFields(_ i: Int, _ p: FieldPath, _ json: [UInt8], _ kind: Kind, _ batch: inout RecordBatch, _ w: inout Work) {
        let r = batch.records[i]
        guard r.fields.lowerBound >= 0, r.fields.upperBound <= batch.bytes.count else {
            w.invalid += 1
            return
        }
        w.scratch.removeAll(keepingCapacity: true)
        let outcome = Self.apply(kind, json, p.keys, to: &w.scratch) { body in
            batch.bytes.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[r.fields])) }
        }
        switch outcome {
        case .changed:
            batch.records[i].fields = w.scratch.withUnsafeBytes { batch.append(bytes: $0) }
            w.changed[i] = true
        case .invalid: w.invalid += 1
        case .unchanged: break
        }
    }

    private func editShared(_ p: FieldPath, _ json: [UInt8], _ kind: Kind, _ batch: inout RecordBatch, _ w: inout Work) {
        w.scratch.removeAll(keepingCapacity: true)
        let outcome = Self.apply(kind, json, p.keys, to: &w.scratch) { body in
            batch.sharedFields.withUnsafeBytes { body($0) }
        }
        switch outcome {
        case .changed:
            batch.sharedFields = w.scratch
            w.sharedChanged = true
        case .invalid: w.invalid += 1
        case .unchanged: break
        }
    }

    /// Moves the shared member `top` into every record's own fields.
    private func materialize(_ top: [UInt8], _ batch: inout RecordBatch, _ w: inout Work) {
        var value: [UInt8] = []
        let found: Bool = batch.sharedFields.withUnsafeBytes { shared in
            guard let r = JSONScan.lookup(shared, path: [top]) else { return false }
            value.append(contentsOf: shared[r])
            return true
        }
        guard found else { return }
        let path = FieldPath(keys: [top])
        editShared(path, [], .remove, &batch, &w)
        for i in batch.records.indices { editFields(i, path, value, .set, &batch, &w) }
    }

    private static func apply(_ kind: Kind, _ json: [UInt8], _ keys: [[UInt8]], to out: inout [UInt8],
                              members: ((UnsafeRawBufferPointer) -> FieldEdit.Outcome) -> FieldEdit.Outcome) -> FieldEdit.Outcome {
        json.withUnsafeBytes { v in
            let op: FieldEdit.Op
            switch kind {
            case .set: op = .set(v)
            case .add: op = .add(v)
            case .remove: op = .remove
            }
            return members { m in FieldEdit.apply(op, at: keys[...], in: m, to: &out) }
        }
    }

    /// A JSON value as message text: strings decoded, anything else as its JSON.
    static func decodeJSONText(_ json: [UInt8], into out: inout [UInt8]) {
        if json.count >= 2, json[0] == UInt8(ascii: "\"") {
            let ok = json.withUnsafeBytes { raw -> Bool in
                var i = 1
                return JSONScan.appendUnescapedString(raw, from: &i, to: &out)
            }
            if ok { return }
        }
        out.append(contentsOf: json)
    }
}
