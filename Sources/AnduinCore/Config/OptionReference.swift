/// The README's option tables, rendered from the declarations (`anduin config reference`). A test
/// compares them with the README, so the documentation cannot drift from the code.
public enum OptionReference {
    public static let header = "| Option | Type | Default | Meaning |\n| --- | --- | --- | --- |\n"

    /// A markdown table of `options`; a group's options follow it as `group.key`.
    public static func table(_ options: [OptionSpec]) -> String {
        if options.isEmpty { return "No options.\n" }
        return header + rows(options, prefix: "")
    }

    private static func rows(_ options: [OptionSpec], prefix: String) -> String {
        var out = ""
        for o in options {
            let key = prefix + o.key
            out += "| `\(key)` | \(cell(o.kind.typeName)) | \(cell(defaultCell(o.defaultText))) | \(cell(o.doc)) |\n"
            if let children = o.children { out += rows(children, prefix: key + ".") }
        }
        return out
    }

    /// A plain value in code style; prose (spaces, backticks, a parenthesis) as written.
    private static func defaultCell(_ text: String) -> String {
        if text.isEmpty || text.first == "(" || text.contains("`") || text.contains(" ") { return text }
        return "`\(text)`"
    }

    /// One table cell: `|` escaped, on one line.
    private static func cell(_ text: String) -> String {
        var out = ""
        var previous: Character = " "
        for c in text {
            if c == "|" && previous != "\\" { out += "\\|" } else if c == "\n" { out += " " } else { out.append(c) }
            previous = c
        }
        return out
    }

    /// The README block markers of one table, so a test (and `--update`) can find it.
    public static func begin(_ name: String) -> String { "<!-- anduin config reference \(name): generated, do not edit -->" }
    public static let end = "<!-- end of generated reference -->"

    /// `readme` with each generated block replaced by `tables[name]`, and the names of blocks that
    /// have no table.
    public static func update(readme: String, tables: [String: String]) -> (text: String, unknown: [String]) {
        var out = "", unknown: [String] = []
        var lines = readme.split(separator: "\n", omittingEmptySubsequences: false)[...]
        while let line = lines.popFirst() {
            out += line + "\n"
            let prefix = "<!-- anduin config reference "
            guard line.hasPrefix(prefix), let name = line.dropFirst(prefix.count).split(separator: ":").first else { continue }
            while let l = lines.first, l != end { lines.removeFirst() }
            if let table = tables[String(name)] { out += table } else { unknown.append(String(name)) }
        }
        return (String(out.dropLast()), unknown)
    }
}
