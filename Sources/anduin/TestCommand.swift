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
import Logging

/// `anduin test`: unit tests of a pipeline's filters, next to its config (like `vector test`).
struct TestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Feed lines to a component of the config and check the records that come out at another, in-process (no files, network or API server).")
    @OptionGroup var options: ConfigOption
    @Option(name: .shortAndLong, help: "The tests YAML file (default: the config's name with .tests.yaml).")
    var tests: String?

    func run() throws {
        guard let cfg = loadConfig(options.config) else { throw ExitCode(1) }
        let testsPath = tests ?? Self.defaultTestsPath(options.config)
        let cases: [PipelineTestCase]
        switch PipelineTestSpec.load(path: testsPath, config: cfg) {
        case .success(let c): cases = c
        case .failure(let errors):
            for d in errors.items { writeToStandardError(d.description + "\n") }
            let n = errors.items.count
            writeToStandardError("\(n) problem\(n == 1 ? "" : "s") in \(testsPath)\n")
            throw ExitCode(1)
        }
        // Filters log through swift-log; only their warnings and errors matter here.
        bootstrapLogging(level: .warning, format: .text)
        let runner = PipelineTestRunner(config: cfg, logger: Logger(label: "anduin test"))
        var failed = 0
        for test in cases {
            let problems: [String]
            do {
                problems = PipelineTestRunner.compare(try runner.records(for: test), test)
            } catch {
                problems = ["cannot run: \((error as? PipelineTestError)?.message ?? "\(error)")"]
            }
            if problems.isEmpty {
                print("ok    \(test.name)")
            } else {
                failed += 1
                print("FAIL  \(test.name)  (\(test.mark))")
                for p in problems { print("  " + p.replacing("\n", with: "\n  ")) }
            }
        }
        print("\(cases.count) test\(cases.count == 1 ? "" : "s"): \(cases.count - failed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }

    /// `anduin.yaml` → `anduin.tests.yaml`, in the same folder.
    static func defaultTestsPath(_ config: String) -> String {
        for ext in [".yaml", ".yml"] where config.hasSuffix(ext) {
            return String(config.dropLast(ext.count)) + ".tests" + ext
        }
        return config + ".tests.yaml"
    }
}
