/// Reading declared options: the declaration gives the key, the default and the allowed range.
public extension ConfigReader {
    func get(_ o: ConfigKey<Int>) -> Int {
        switch o.spec.kind {
        case .size(let range): return size(o.key, default: o.defaultValue, range: range)
        case .int(let range): return int(o.key, default: o.defaultValue, range: range)
        default: return int(o.key, default: o.defaultValue)
        }
    }

    func get(_ o: ConfigKey<Double>) -> Double {
        guard case .duration(let range) = o.spec.kind else { return duration(o.key, default: o.defaultValue) }
        return duration(o.key, default: o.defaultValue, range: range)
    }

    func get(_ o: ConfigKey<Bool>) -> Bool { bool(o.key, default: o.defaultValue) }

    func get(_ o: ConfigKey<String>) -> String {
        let s = string(o.key, default: o.defaultValue)
        if case .path = o.spec.kind { return resolvePath(s) }
        return s
    }

    /// An optional string or path; reports a missing required one.
    func get(_ o: ConfigKey<String?>) -> String? {
        let s = o.spec.required ? requiredString(o.key) : string(o.key) ?? o.defaultValue
        if case .path = o.spec.kind { return s.map(resolvePath) }
        return s
    }

    func get(_ o: ConfigKey<Secret?>) -> Secret? { string(o.key).map(Secret.init) ?? o.defaultValue }

    func get(_ o: ConfigKey<[String]>) -> [String] {
        if o.spec.required && !has(o.key) {
            diagnostics.error(mark, "\(context): missing required key \"\(o.key)\"")
            return []
        }
        let list = stringList(o.key, default: o.defaultValue)
        if case .pathList = o.spec.kind { return list.map(resolvePath) }
        return list
    }

    func get<E: RawRepresentable & CaseIterable>(_ o: ConfigKey<E>) -> E where E.RawValue == String {
        choice(o.key, default: o.defaultValue)
    }

    /// A value the plugin checks itself; reports a missing required one.
    func get(_ o: ConfigKey<ConfigValue?>) -> ConfigValue? {
        if o.spec.required && !has(o.key) {
            diagnostics.error(mark, "\(context): missing required key \"\(o.key)\"")
        }
        return value(o.key) ?? o.defaultValue
    }

    /// The reader of a nested group, or nil when the group is not written.
    func group(_ g: ConfigGroup) -> ConfigReader? { mapping(g.key) }
}
