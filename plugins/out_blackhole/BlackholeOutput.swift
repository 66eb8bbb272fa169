import AnduinCore
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

/// The `blackhole` output: counts records and discards them, for measuring the rest of the pipeline.
/// With `count_file`, the running count is written there (atomically) so a benchmark harness can
/// tell when every record arrived. `encode: true` also serialises each record as the other outputs
/// do, to measure that cost.
public struct BlackholeConfig: LocalOutputConfig {
    @OptionField(.path("count_file", "keeps the running count there"))
    public var countFile: String? = nil
    @OptionField(.bool("encode", "serialise each record as the other outputs would"))
    public var encode = false
    @OptionField(group: DocumentMetadata.self)
    public var metadata = DocumentMetadata()
    public var runtime = DeliveryOptions(buffer: DeliveryOptions.localDefaultBuffer)

    public init() {}

    public func makeSender(_ context: ComponentContext) throws -> any BatchSender {
        BlackholeSender(countFile: countFile)
    }
}

public enum BlackholePlugin {
    public static let spec = PluginSpec.localOutput("blackhole", "count records and discard them (benchmarks)", OptionTable(fields: BlackholeConfig()))
}

/// The one sender of a blackhole output (one delivery thread, so one count).
final class BlackholeSender: BatchSender {
    private let countFile: String?
    private var count = 0

    init(countFile: String?) { self.countFile = countFile }

    func send(_ batch: EncodedBatch) -> SendResult {
        count = count.addingSaturating(batch.count)
        // Every batch: a reader must see the final count without waiting for another batch.
        if let countFile {
            try? AtomicFile.write(Data("\(count)\n".utf8), to: countFile, durable: false)
        }
        return .delivered
    }
}
