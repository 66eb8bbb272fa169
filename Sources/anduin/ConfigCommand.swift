import AnduinCore
import ArgumentParser
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

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "About the config file.", subcommands: [Reference.self])

    struct Reference: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the option reference (markdown tables), generated from the options' declarations.")
        @Option(help: "Only this plugin type (e.g. tail, elasticsearch) with the options it shares with others, or `agent` for the top level.")
        var type: String?
        @Option(help: "Rewrite the generated tables of this markdown file (the README) in place.")
        var updateReadme: String?

        func run() throws {
            let tables = referenceTables()
            if let path = updateReadme {
                let text = try String(contentsOfFile: path, encoding: .utf8)
                let (updated, unknown) = OptionReference.update(readme: text, tables: tables)
                if !unknown.isEmpty { throw RuntimeError("\(path): no options declared for \(unknown.joined(separator: ", "))") }
                try updated.write(toFile: path, atomically: true, encoding: .utf8)
                return
            }
            if let type {
                // A type's own options and the ones it shares (an elasticsearch output's buffer, batch,
                // TLS, password...): everything it accepts, in one table.
                if let spec = allPlugins.spec(named: type) {
                    print(OptionReference.table(spec.allOptions), terminator: "")
                    return
                }
                guard let table = tables[type] else {
                    var msg = "no plugin type \"\(type)\""
                    if let guess = closest(type, in: tables.keys) { msg += " (did you mean \"\(guess)\"?)" }
                    throw ValidationError(msg + "; known: \(tables.keys.sorted().joined(separator: ", "))")
                }
                print(table, terminator: "")
                return
            }
            if let top = tables["agent"] { print("### Top level\n\n" + top) }
            var sharedShown = Set<String>()
            for kind in ComponentKind.allCases {
                for type in allPlugins.types(kind) {
                    guard let table = tables[type], let spec = allPlugins.spec(kind, type) else { continue }
                    var text = "### \(kind.rawValue.capitalized) `\(type)`: \(spec.summary)\n\n" + table
                    if let shared = spec.shared {
                        text += "\nAnd the options in `\(shared.name)`.\n"
                        if sharedShown.insert(shared.name).inserted, let t = tables[shared.name] {
                            let sharers = allPlugins.types(kind).filter { allPlugins.spec(kind, $0)?.shared?.name == shared.name }
                            text += "\n### Options `\(shared.name)`: shared by \(sharers.joined(separator: ", "))\n\n" + t
                        }
                    }
                    print(text)
                }
            }
        }
    }
}

/// Every declared table by name: each plugin type, and `agent` for the top level.
func referenceTables() -> [String: String] {
    var tables = ["agent": OptionReference.table(AgentConfig.options)]
    for kind in ComponentKind.allCases {
        for type in allPlugins.types(kind) {
            guard let spec = allPlugins.spec(kind, type) else { continue }
            tables[type] = OptionReference.table(spec.options)
            if let shared = spec.shared { tables[shared.name] = OptionReference.table(shared.options) }
        }
    }
    return tables
}
