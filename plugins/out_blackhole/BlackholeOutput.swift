import AnduinCore
import Foundation

/// The `blackhole` output: counts records and discards them, for measuring the rest of the pipeline.
/// With `count_file`, the running count is written there (atomically) so a benchmark harness can
/// tell when every record arrived. `encode: true` also serialises each record as the other outputs
/// do, to measure that cost.
public struct BlackholeConfig: EncodedOutputConfig {
    public var countFile: String?
    public var delivery = DeliveryOptions(buffer: DeliveryOptions.localDefaultBuffer)

    public init() { delivery.encode = false }
    public var refusesRecords: Bool { false }

    public func makeSender(_ context: ComponentContext) throws -> any BatchSender {
        BlackholeSender(countFile: countFile)
    }
}

public enum BlackholePlugin {
    static let countFile = ConfigKey<String?>.path("count_file", "keeps the running count there")
    static let encode = ConfigKey<Bool>.bool("encode", default: false, "serialise each record as the other outputs would")
    public static let options = [countFile.spec, encode.spec, MetadataKeys.group.spec]

    public static let spec = PluginSpec.output("blackhole", "count records and discard them (benchmarks)",
                                               options: options, shared: localOutputOptions) { r in
        var c = BlackholeConfig()
        c.countFile = r.get(countFile)
        c.delivery = DeliveryOptions.parse(r, defaultBuffer: DeliveryOptions.localDefaultBuffer, concurrent: false)
        c.delivery.encode = r.get(encode)
        return c
    }
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
