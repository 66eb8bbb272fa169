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

struct DeadLetterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letter",
        abstract: "List or replay the records an output dead-lettered.",
        subcommands: [List.self, Replay.self])

    struct Selection: ParsableArguments {
        @OptionGroup var options: ConfigOption
        @Option(help: "The output (elasticsearch or http) whose dead letters to use; may be left out when the config has only one.")
        var output: String?
        @Option(help: "Only dead letters written at or after this time: RFC 3339 (2026-12-01T08:00:00Z) or an age (30m, 2h).")
        var since: String?

        /// The config, the output's name, its dead-letter folder and the --since cutoff.
        func load() throws -> (AgentConfig, String, String, Int64?) {
            guard let cfg = loadConfig(options.config) else { throw ExitCode(1) }
            let candidates = DeadLetterReplay.outputsWithStore(cfg)
            let names = candidates.map { "\"\($0)\"" }.joined(separator: ", ")
            let output: String
            if let given = self.output {
                guard candidates.contains(given) else {
                    if candidates.isEmpty {
                        throw RuntimeError("\(options.config) has no elasticsearch or http output: only those have dead letters")
                    }
                    let other = cfg.components(.output).contains { $0.name == given }
                        ? "output \"\(given)\" has no dead letters (only elasticsearch and http outputs have them)"
                        : "no output named \"\(given)\" in \(options.config)"
                    throw ValidationError("\(other); outputs with dead letters: \(names)")
                }
                output = given
            } else {
                switch candidates.count {
                case 0: throw RuntimeError("\(options.config) has no elasticsearch or http output: only those have dead letters")
                case 1: output = candidates[0]
                default: throw ValidationError("\(options.config) has several outputs with dead letters: give --output with one of \(names)")
                }
            }
            var cutoff: Int64?
            if let since {
                if let ns = Array(since.utf8).withUnsafeBytes({ Timestamp.parseRFC3339($0) }) {
                    cutoff = ns
                } else if let age = DurationText.parse(since) {
                    cutoff = wallClockNanos().subtractingSaturating(Int64(saturating: age * 1e9))
                } else {
                    throw ValidationError("--since \(since): expected RFC 3339 (2026-12-01T08:00:00Z) or an age such as 30m")
                }
            }
            return (cfg, output, DeadLetterStore.directory(dataDirectory: cfg.dataDirectory, output: output), cutoff)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print one line per dead letter: time, status, attempts, event.id, replayed, reason.")
        @OptionGroup var selection: Selection

        func run() throws {
            let (_, _, dir, since) = try selection.load()
            var unreadable = 0
            let all = DeadLetterReplay.read(directory: dir, since: since) { path, offset in
                unreadable += 1
                writeToStandardError("\(path): the line at offset \(offset) is not a dead letter this version can read (torn by a crash mid-write, or damaged); skipped\n")
            }
            for d in all {
                let reason = d.reason.count > 160 ? String(d.reason.prefix(160)) + "…" : d.reason
                print("\(d.time)  \(d.status)  attempts=\(d.attempts)  \(d.eventID)  \(d.replayed ? "replayed" : "pending ")  \(reason)")
            }
            let pending = all.filter { !$0.replayed }.count
            let skipped = unreadable > 0 ? ", \(unreadable) unreadable line(s) skipped" : ""
            writeToStandardError("\(all.count) dead letter(s) in \(dir), \(pending) not replayed\(skipped)\n")
        }
    }

    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-submit the dead letters not replayed yet through the output (same _id: no duplicate); exits 1 if some are still refused.")
        @OptionGroup var selection: Selection

        func run() throws {
            let (cfg, output, dir, since) = try selection.load()
            let (sender, batch): (any BatchSender, Int)
            do {
                (sender, batch) = try DeadLetterReplay.sender(config: cfg, output: output)
            } catch {
                throw RuntimeError("cannot replay to \(output): \(error)")
            }
            let r = DeadLetterReplay.replay(directory: dir, since: since, sender: sender, batchRecords: batch)
            print("replayed \(r.delivered) record(s) to \(output); \(r.refused.count) refused again")
            for line in r.refused.prefix(20) { print("  refused: \(line)") }
            if let why = r.stopped {
                writeToStandardError("replay stopped: \(why)\n")
                throw ExitCode(1)
            }
            if !r.refused.isEmpty { throw ExitCode(1) }
        }
    }
}
