#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The disk ring's only contact with the filesystem. Everything the ring does to its directory goes
// through `RingStorage`, so tests can run the ring on `FaultyRingStorage` (Tests/AnduinCoreTests): an
// in-memory directory that injects errors (ENOSPC, EIO) and forgets unsynced writes to simulate a crash.

enum ReadOutcome: Equatable {
    case ok
    /// The file ends before the requested bytes.
    case eof
    case failed(Int32)
}

/// An open file of a `RingStorage`. Only meaningful to the storage that opened it.
struct RingFile: Hashable, Sendable {
    let raw: Int32
}

/// The ring directory's files. Names are plain file names inside `directory`. Failures carry errno.
///
/// Durability contract (what a crash may lose): bytes written to a file survive a power failure once
/// `sync` of that file returned; a created or renamed name survives once `syncDirectory` returned;
/// `remove` is durable at once. A process crash (kill -9) loses nothing that a call returned for.
protocol RingStorage: Sendable {
    var directory: String { get }
    /// Creates the directory (and parents) and checks that it can be written.
    func prepareDirectory() throws(POSIXFailure)
    func list() throws(POSIXFailure) -> [String]
    /// Opens `name` for reading and writing; `create` creates it, emptied.
    func open(_ name: String, create: Bool) throws(POSIXFailure) -> RingFile
    /// A second handle to the same file: it stays valid when the first is closed.
    func duplicate(_ file: RingFile) throws(POSIXFailure) -> RingFile
    func close(_ file: RingFile)
    func size(_ file: RingFile) throws(POSIXFailure) -> Int
    /// Reads exactly `buffer.count` bytes at `offset` (short reads and EINTR retried).
    func read(_ file: RingFile, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> ReadOutcome
    /// Writes every byte at `offset` (short writes and EINTR retried).
    func write(_ file: RingFile, _ bytes: UnsafeRawBufferPointer, at offset: Int) throws(POSIXFailure)
    /// Makes the file's data (and size) durable (fdatasync).
    func sync(_ file: RingFile) throws(POSIXFailure)
    func truncate(_ file: RingFile, to size: Int) throws(POSIXFailure)
    /// Removes `name`; a missing file is not an error.
    func remove(_ name: String) throws(POSIXFailure)
    /// Replaces `to` with `from` atomically.
    func rename(_ from: String, to: String) throws(POSIXFailure)
    /// Makes created names durable. Best effort: some filesystems refuse it.
    func syncDirectory()
    /// False when the open file no longer has a name (its directory was deleted behind the ring's
    /// back); true when it has one or when that cannot be told.
    func isLinked(_ file: RingFile) -> Bool
}

extension RingStorage {
    func path(_ name: String) -> String { directory + "/" + name }

    func write(_ file: RingFile, bytes: [UInt8], at offset: Int) throws(POSIXFailure) {
        let failure: POSIXFailure? = bytes.withUnsafeBytes { b in
            do throws(POSIXFailure) { try write(file, b, at: offset) } catch { return error }
            return nil
        }
        if let failure { throw failure }
    }
}

/// `RingStorage` on the real filesystem: pread/pwrite/fdatasync/ftruncate/unlink.
struct PosixRingStorage: RingStorage {
    let directory: String

    func prepareDirectory() throws(POSIXFailure) {
        var prefix = directory.hasPrefix("/") ? "" : "."
        for part in directory.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + part
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST { throw POSIXFailure("cannot create directory \(prefix)") }
        }
        var st = stat()
        guard stat(directory, &st) == 0 else { throw POSIXFailure("cannot stat the directory") }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw POSIXFailure("exists but is not a directory", code: ENOTDIR) }
        guard access(directory, W_OK | X_OK) == 0 else { throw POSIXFailure("directory is not writable") }
    }

    func list() throws(POSIXFailure) -> [String] {
        guard let dir = opendir(directory) else { throw POSIXFailure("cannot list directory \(directory)") }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            names.append(name)
        }
        return names
    }

    func open(_ name: String, create: Bool) throws(POSIXFailure) -> RingFile {
        let flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0)
        let fd = posixOpen(path(name), flags, 0o600)  // data_dir is private (README)
        guard fd >= 0 else { throw POSIXFailure((create ? "create " : "open ") + path(name)) }
        return RingFile(raw: fd)
    }

    func duplicate(_ file: RingFile) throws(POSIXFailure) -> RingFile {
        let fd = dup(file.raw)
        guard fd >= 0 else { throw POSIXFailure("dup") }
        return RingFile(raw: fd)
    }

    func close(_ file: RingFile) { posixClose(file.raw) }

    func size(_ file: RingFile) throws(POSIXFailure) -> Int {
        var st = stat()
        guard fstat(file.raw, &st) == 0 else { throw POSIXFailure("fstat") }
        return Int(st.st_size)
    }

    func read(_ file: RingFile, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> ReadOutcome {
        guard let base = buffer.baseAddress else { return .ok }
        var done = 0
        while done < buffer.count {
            let n = pread(file.raw, base + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                return .failed(errno)
            }
            if n == 0 { return .eof }
            done += n
        }
        return .ok
    }

    func write(_ file: RingFile, _ bytes: UnsafeRawBufferPointer, at offset: Int) throws(POSIXFailure) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = pwrite(file.raw, base + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw POSIXFailure("write")
            }
            done += n
        }
    }

    func sync(_ file: RingFile) throws(POSIXFailure) {
        #if os(Linux)
        guard fdatasync(file.raw) == 0 else { throw POSIXFailure("fsync") }
        #else
        guard fsync(file.raw) == 0 else { throw POSIXFailure("fsync") }
        #endif
    }

    func truncate(_ file: RingFile, to size: Int) throws(POSIXFailure) {
        guard ftruncate(file.raw, off_t(size)) == 0 else { throw POSIXFailure("truncate") }
    }

    func remove(_ name: String) throws(POSIXFailure) {
        if unlink(path(name)) != 0 && errno != ENOENT { throw POSIXFailure("delete \(path(name))") }
    }

    func rename(_ from: String, to: String) throws(POSIXFailure) {
        guard posixRename(path(from), path(to)) == 0 else { throw POSIXFailure("rename \(path(from)) to \(path(to))") }
    }

    func isLinked(_ file: RingFile) -> Bool {
        var st = stat()
        return fstat(file.raw, &st) != 0 || st.st_nlink > 0
    }

    func syncDirectory() {
        let fd = posixOpen(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
        if fd >= 0 {
            fsync(fd)
            posixClose(fd)
        }
    }
}

func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) }

// The storage's methods are named like the system calls they wrap, which hides the globals inside it.
private func posixOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
private func posixClose(_ fd: Int32) { _ = close(fd) }
private func posixRename(_ from: String, _ to: String) -> Int32 { rename(from, to) }
