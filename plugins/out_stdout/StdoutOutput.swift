import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

/// The `stdout` output: records as newline-delimited JSON on standard output, for trying a config.
public struct StdoutOutputConfig: RecordOutputConfig {
    public func build(_ context: ComponentContext) throws -> any Output { StdoutOutput() }
}

public enum StdoutOutputPlugin {
    public static let spec = PluginSpec.output("stdout", "print records as newline-delimited JSON", options: []) { _ in
        StdoutOutputConfig()
    }
}

/// Owned by the output runner's thread (an `Output` is not shared).
final class StdoutOutput: Output {
    private var scratch: [UInt8] = []

    func write(_ batch: RecordBatch) throws {
        scratch.removeAll(keepingCapacity: true)
        RecordEncoder.appendNDJSON(batch, to: &scratch)
        guard scratch.withUnsafeBytes({ writeAll(fd: 1, $0) }) else { throw POSIXFailure("write to stdout") }
    }
}
