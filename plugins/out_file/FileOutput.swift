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

/// The `file` output: appends records as newline-delimited JSON, behind the delivery runtime every
/// output shares (`buffer:`, `batch:`, `retry:`, `dead_letter:`, `ready:`).
///
/// Delivery: a batch is delivered once write(2) returned for all of it (with `fsync: true`, once it is
/// on disk). A failed write is an outage: retried with backoff for as long as it lasts (the buffer
/// holds the records; the retry budget is for refusals, which a file does not make). After kill -9,
/// the records of the write that was not acknowledged yet are written again, with a memory buffer
/// also those read since the input's last checkpoint.
public struct FileOutputConfig: LocalOutputConfig {
    @OptionField(.path("path", required: true, "appended to, one JSON record a line"), adjust: { _, p in p })
    public var path = ""
    @OptionField(.bool("fsync", "fsync after each batch (survives power loss; kill -9 loses nothing either way)"))
    public var fsync = false
    @OptionField(group: DocumentMetadata.self)
    public var metadata = DocumentMetadata()
    public var runtime = DeliveryOptions(buffer: DeliveryOptions.localDefaultBuffer)

    public init(path: String) { self.path = path }

    public func makeSender(_ context: ComponentContext) throws -> any BatchSender {
        try FileSender(path: path, fsync: fsync, log: { [logger = context.logger] in logger.warning("\($0)") })
    }
}

public enum FileOutputPlugin {
    public static let spec = PluginSpec.localOutput("file", "append records to a file as newline-delimited JSON",
                                                    OptionTable(fields: FileOutputConfig(path: "")))
}

/// The one sender of a file output (its runner has one delivery thread, so batches are appended in order).
final class FileSender: BatchSender {
    let path: String
    let fsync: Bool
    private let log: (String) -> Void
    private var fd: Int32 = -1
    private var scratch: [UInt8] = []

    init(path: String, fsync: Bool, log: @escaping (String) -> Void) throws {
        self.path = path
        self.fsync = fsync
        self.log = log
        try reopen()
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    private func reopen() throws {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
        let dir = parentDirectory(of: path)
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let opened = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        if opened < 0 { throw POSIXFailure("open \(path)") }
        fd = opened
        try terminateTornLine()
    }

    /// A write cut short (a crash, a full disk) can leave the file ending in part of a line. Its
    /// records were not acknowledged and are written again whole; the newline keeps the fragment on a
    /// line of its own instead of gluing it to the first of them.
    private func terminateTornLine() throws {
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0 else { return }
        var last: UInt8 = 0
        guard pread(fd, &last, 1, size - 1) == 1 else { throw POSIXFailure("read \(path)") }
        guard last != UInt8(ascii: "\n") else { return }
        var newline = UInt8(ascii: "\n")
        guard Glibc.write(fd, &newline, 1) == 1 else { throw POSIXFailure("write \(path)") }
        log("output file \(path): ended in a partial line (a write cut short); terminated it, its records are written again whole")
    }

    func send(_ batch: EncodedBatch) -> SendResult {
        do {
            try write(batch)
            return .delivered
        } catch {
            return .unreachable("\(error)")
        }
    }

    private func write(_ batch: EncodedBatch) throws {
        if fd < 0 { try reopen() }
        let ok = batch.withNDJSON { writeAll(fd: fd, $0) } ?? {
            scratch.removeAll(keepingCapacity: true)
            for i in batch.records.indices {
                batch.withDocument(i) { scratch.append(contentsOf: $0) }
                scratch.append(UInt8(ascii: "\n"))
            }
            defer { if scratch.capacity > 16 << 20 { scratch = [] } }  // don't keep a huge buffer after one big batch
            return scratch.withUnsafeBytes { writeAll(fd: fd, $0) }
        }()
        if !ok || (fsync && Glibc.fsync(fd) != 0) {
            let failure = POSIXFailure("write \(path)")
            // Reopened for the retry, which rewrites the whole batch (at-least-once).
            Glibc.close(fd)
            fd = -1
            throw failure
        }
    }
}
