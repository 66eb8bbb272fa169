import AnduinCore
import Foundation
import Synchronization

/// The `blackhole` output: counts records and discards them, for measuring the rest of the pipeline.
/// With `count_file`, the running count is written there (atomically) so a benchmark harness can
/// tell when every record arrived. `encode: true` also serialises each record as the other outputs
/// do, to measure that cost.
public struct BlackholeConfig: RecordOutputConfig {
    public var countFile: String?
    public var encode = false
    public var metadata = DocumentMetadata.all

    public func build(_ context: ComponentContext) throws -> any Output {
        BlackholeOutput(countFile: countFile, encode: encode, metadata: metadata)
    }
}

public enum BlackholePlugin {
    static let table = OptionTable(BlackholeConfig()) { d in [
        .key(.path("count_file", "keeps the running count there"), \.countFile),
        .key(.bool("encode", default: d.encode, "serialise each record as the other outputs would"), \.encode),
        DocumentMetadata.row(\.metadata),
    ]}

    public static let spec = PluginSpec.output("blackhole", "count records and discard them (benchmarks)", table)
}

/// Owned by the output runner's thread (an `Output` is not shared).
final class BlackholeOutput: Output {
    private let countFile: String?
    private let encode: Bool
    private let metadata: DocumentMetadata
    private var count = 0
    private var scratch: [UInt8] = []

    init(countFile: String?, encode: Bool, metadata: DocumentMetadata) {
        self.countFile = countFile
        self.encode = encode
        self.metadata = metadata
    }

    func write(_ batch: RecordBatch) throws {
        count += batch.count
        if encode {
            scratch.removeAll(keepingCapacity: true)
            RecordEncoder.appendNDJSON(batch, metadata: metadata, to: &scratch)
        }
        // Every batch (about one per 1,300 lines): a reader must see the final count without waiting
        // for another batch.
        publish()
    }

    private func publish() {
        guard let countFile else { return }
        try? AtomicFile.write(Data("\(count)\n".utf8), to: countFile, durable: false)
    }

    func close() { publish() }
}
