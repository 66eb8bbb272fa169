import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

/// The `stdout` output: records as newline-delimited JSON on standard output, for trying a config.
/// A failed write (EPIPE once the reader is gone: SIGPIPE is ignored) is retried like an outage.
public struct StdoutOutputConfig: EncodedOutputConfig {
    public var delivery = DeliveryOptions(buffer: DeliveryOptions.localDefaultBuffer)
    public var refusesRecords: Bool { false }
    public func makeSender(_ context: ComponentContext) throws -> any BatchSender { StdoutSender() }
}

public enum StdoutOutputPlugin {
    static let table = OptionTable(StdoutOutputConfig()) { _ in [DocumentMetadata.row(\.delivery.metadata)] }

    public static let spec = PluginSpec.localOutput("stdout", "print records as newline-delimited JSON", table, delivery: \.delivery)
}

/// The one sender of a stdout output.
final class StdoutSender: BatchSender {
    private var scratch: [UInt8] = []

    func send(_ batch: EncodedBatch) -> SendResult {
        let ok = batch.withNDJSON { writeAll(fd: 1, $0) } ?? {
            scratch.removeAll(keepingCapacity: true)
            for i in batch.records.indices {
                batch.withDocument(i) { scratch.append(contentsOf: $0) }
                scratch.append(UInt8(ascii: "\n"))
            }
            return scratch.withUnsafeBytes { writeAll(fd: 1, $0) }
        }()
        return ok ? .delivered : .unreachable("\(POSIXFailure("write to stdout"))")
    }
}
