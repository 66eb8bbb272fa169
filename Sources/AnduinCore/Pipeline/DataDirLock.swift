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

/// One agent per `data_dir`: an exclusive `flock` on `data_dir/anduin.lock`, held for the life of the
/// process. Two agents on one directory would overwrite each other's checkpoints and buffer cursors.
/// The kernel releases the lock when its holder dies, so a lock left by a killed agent never blocks.
/// The holder's pid is written into the file so the refusal can name it.
public final class DataDirLock: Sendable {
    public let path: String
    private let fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { close(fd) }  // closing the last descriptor releases the flock

    /// Takes the lock, or throws a `StartupError` naming the pid that holds it.
    public static func acquire(dataDirectory dir: String) throws -> DataDirLock {
        if let problem = DataDirectory.problem(dir) { throw StartupError("data_dir \(dir): \(problem)") }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw StartupError("data_dir \(dir): cannot create it: \(describeFileError(error))")
        }
        let path = dir + "/anduin.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StartupError("data_dir \(dir) is not writable (cannot open \(path): \(String(cString: strerror(errno)))): checkpoints and buffers live there; give the agent write access or set data_dir")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let err = errno
            let holder = readPid(fd)
            close(fd)
            if err == EWOULDBLOCK {
                let who = holder.map { "pid \($0)" } ?? "another process"
                throw StartupError("data_dir \(dir) is in use by another anduin (\(who) holds \(path)); two agents on one data_dir would overwrite each other's checkpoints and buffers: stop it, or give this one its own data_dir")
            }
            throw StartupError("data_dir \(dir): cannot lock \(path): \(String(cString: strerror(err)))")
        }
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return DataDirLock(path: path, fd: fd)
    }

    private static func readPid(_ fd: Int32) -> Int32? {
        var buf = [UInt8](repeating: 0, count: 32)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Int32(String(decoding: buf[0..<n], as: UTF8.self).trimmed(.whitespacesAndNewlines))
    }
}
