import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

/// The `stdout` output: records as newline-delimited JSON on standard output, for trying a config.
public struct StdoutOutputConfig: RecordOutputConfig {
    public var metadata = DocumentMetadata.all
    public func build(_ context: ComponentContext) throws -> any Output { StdoutOutput(metadata: metadata) }
}

public enum StdoutOutputPlugin {
    static let table = OptionTable(StdoutOutputConfig()) { _ in [DocumentMetadata.row(\.metadata)] }

    public static let spec = PluginSpec.output("stdout", "print records as newline-delimited JSON", table)
}

/// Owned by the output runner's thread (an `Output` is not shared).
final class StdoutOutput: Output {
    private let metadata: DocumentMetadata
    private var scratch: [UInt8] = []

    init(metadata: DocumentMetadata) { self.metadata = metadata }

    func write(_ batch: RecordBatch) throws {
        scratch.removeAll(keepingCapacity: true)
        RecordEncoder.appendNDJSON(batch, metadata: metadata, to: &scratch)
        guard scratch.withUnsafeBytes({ writeAll(fd: 1, $0) }) else { throw POSIXFailure("write to stdout") }
    }
}
