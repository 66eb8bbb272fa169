/// What a reload changed, in one line: `added output x; removed filter y; changed
/// es.batch.max_records 500 → 1000`, from the configs' settings as written (after `${ENV}`).
public enum ConfigDiff {
    /// Every leaf of `root` by its dotted path (`outputs.es.batch.max_records`); a list is one
    /// leaf, written in flow style.
    public static func flatten(_ root: ConfigValue) -> [String: String] {
        var out: [String: String] = [:]
        func walk(_ v: ConfigValue, _ path: String) {
            switch v {
            case .mapping(let entries, _):
                if entries.isEmpty && !path.isEmpty { out[path] = "{}" }
                for e in entries { walk(e.value, path.isEmpty ? e.key : path + "." + e.key) }
            default:
                if !path.isEmpty { out[path] = text(v) }
            }
        }
        walk(root, "")
        return out
    }

    static func text(_ v: ConfigValue) -> String {
        switch v {
        // A URL's user:password@ is left out (hosts, uri).
        case .scalar(let s, _, _): return s.contains("://") && s.contains("@") ? URLUserinfo(s).url : s
        case .null: return "null"
        case .sequence(let items, _): return "[" + items.map(text).joined(separator: ", ") + "]"
        case .mapping(let entries, _): return "{" + entries.map { "\($0.key): \(text($0.value))" }.joined(separator: ", ") + "}"
        }
    }

    /// Values of settings whose name suggests a credential are not shown, only that they changed.
    static func isSecret(_ path: String) -> Bool {
        let p = path.lowercased()
        return ["password", "secret", "token", "key", "auth", "header", "credential"].contains { p.contains($0) }
    }

    /// `old` → `new` in words; "no change" when the settings are the same.
    public static func describe(old: [String: String], new: [String: String]) -> String {
        let sections = ["inputs": "input", "filters": "filter", "outputs": "output"]
        func component(_ path: String) -> (section: String, name: String)? {
            let parts = path.split(separator: ".", maxSplits: 2)
            guard parts.count >= 2, sections[String(parts[0])] != nil else { return nil }
            return (String(parts[0]), String(parts[1]))
        }
        func components(_ s: [String: String]) -> Set<String> {
            Set(s.keys.compactMap { component($0).map { "\($0.section).\($0.name)" } })
        }
        let before = components(old), after = components(new)
        var parts: [String] = []
        func named(_ key: String) -> String {
            let p = key.split(separator: ".", maxSplits: 1)
            return "\(sections[String(p[0])] ?? String(p[0])) \(p.count > 1 ? String(p[1]) : "")"
        }
        for c in after.subtracting(before).sorted() { parts.append("added " + named(c)) }
        for c in before.subtracting(after).sorted() { parts.append("removed " + named(c)) }
        let common = before.intersection(after)
        var changed: [String] = []
        for key in Set(old.keys).union(new.keys).sorted() where old[key] != new[key] {
            var shown = key
            if let c = component(key) {
                guard common.contains("\(c.section).\(c.name)") else { continue }
                shown = String(key.dropFirst(c.section.count + 1))  // `es.batch.max_records`
            }
            if isSecret(key) {
                changed.append(shown)
            } else {
                changed.append("\(shown) \(old[key] ?? "(unset)") → \(new[key] ?? "(unset)")")
            }
        }
        if !changed.isEmpty { parts.append("changed " + changed.joined(separator: ", ")) }
        return parts.isEmpty ? "no change" : parts.joined(separator: "; ")
    }
}
