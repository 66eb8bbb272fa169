import AnduinCore
import Foundation

/// The `file` output: appends records as newline-delimited JSON.
///
/// Delivery: a batch is acknowledged once write(2) returned for all of it (with `fsync: true`, once
/// it is on disk). After kill -9 the records written since the last checkpoint are written again at
/// restart: at-least-once, duplicates bounded by the input's checkpoint interval.
public struct FileOutputConfig: RecordOutputConfig {
    public var path: String
    public var fsync = false
    public var metadata = DocumentMetadata.all

    public func build(_ context: ComponentContext) throws -> any Output {
        try FileOutput(path: path, fsync: fsync, metadata: metadata)
    }
}

public enum FileOutputPlugin {
    static let table = OptionTable(FileOutputConfig(path: "")) { d in [
        .key(.path("path", required: true, "appended to, one JSON record a line"), \.path) { _, p in p ?? "" },
        .key(.bool("fsync", default: d.fsync, "fsync after each batch (survives power loss; kill -9 loses nothing either way)"), \.fsync),
        DocumentMetadata.row(\.metadata),
    ]}

    public static let spec = PluginSpec.output("file", "append records to a file as newline-delimited JSON", table)
}

/// Owned by the output runner's thread (an `Output` is not shared).
final class FileOutput: Output {
    let path: String
    let fsync: Bool
    let metadata: DocumentMetadata
    private var fd: Int32 = -1
    private var scratch: [UInt8] = []

    init(path: String, fsync: Bool, metadata: DocumentMetadata) throws {
        self.path = path
        self.fsync = fsync
        self.metadata = metadata
        try reopen()
    }

    private func reopen() throws {
        if fd >= 0 { Foundation.close(fd) }
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        if fd < 0 { throw POSIXFailure("open \(path)") }
    }

    func write(_ batch: RecordBatch) throws {
        if fd < 0 { try reopen() }
        scratch.removeAll(keepingCapacity: true)
        RecordEncoder.appendNDJSON(batch, metadata: metadata, to: &scratch)
        let ok = scratch.withUnsafeBytes { writeAll(fd: fd, $0) }
        if !ok || (fsync && Foundation.fsync(fd) != 0) {
            let failure = POSIXFailure("write \(path)")
            // A partial write may have left half a line: reopening appends after it; the retry
            // rewrites the whole batch (at-least-once).
            Foundation.close(fd)
            fd = -1
            throw failure
        }
        if scratch.capacity > 16 << 20 { scratch = [] }  // don't keep a huge buffer after one big batch
    }

    func close() {
        if fd >= 0 { Foundation.close(fd) }
        fd = -1
    }
}
