import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

/// The `stdout` output: records as newline-delimited JSON on standard output, for trying a config.
/// A failed write (EPIPE once the reader is gone: SIGPIPE is ignored) is retried like an outage.
public struct StdoutOutputConfig: LocalOutputConfig {
    @OptionField(group: DocumentMetadata.self)
    public var metadata = DocumentMetadata()
    public var runtime = DeliveryOptions(buffer: DeliveryOptions.localDefaultBuffer)
    public init() {}
    public func makeSender(_ context: ComponentContext) throws -> any BatchSender { StdoutSender() }
}

public enum StdoutOutputPlugin {
    public static let spec = PluginSpec.localOutput("stdout", "print records as newline-delimited JSON", OptionTable(fields: StdoutOutputConfig()))
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
