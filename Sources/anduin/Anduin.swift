import AnduinCore
import ArgumentParser
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
import Logging
import Synchronization

let anduinVersion = BuildInfo.version

@main
struct Anduin: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "anduin",
        abstract: "Ships container logs from a node to Elasticsearch or HTTP, without losing or duplicating a line.",
        version: anduinVersion,
        subcommands: [Run.self, Validate.self, TestCommand.self, Tap.self, Status.self, DeadLetterCommand.self, ConfigCommand.self, Version.self]
    )

    /// ArgumentParser's own main, except that a `RuntimeError` is its message and exit 1: the command
    /// was used correctly, so a `Usage:` trailer (and exit 64, EX_USAGE) would point at the wrong thing.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let e as RuntimeError {
            writeToStandardError(e.message + "\n")
            Glibc.exit(1)
        } catch {
            exit(withError: error)
        }
    }
}

/// A command that was given correct arguments failed (the agent is not reachable, the config lacks a
/// section the command needs): printed as the message alone, exit 1. Wrong arguments stay
/// `ValidationError`s: usage and exit 64.
struct RuntimeError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

struct ConfigOption: ParsableArguments {
    @Option(name: .shortAndLong, help: "The YAML config file.")
    var config: String
}

/// Loads the config, printing every problem as FILE:LINE:COLUMN: message.
func loadConfig(_ path: String) -> AgentConfig? {
    switch AgentConfig.load(path: path, registry: allPlugins) {
    case .success(let c):
        return c
    case .failure(let errors):
        for d in errors.items { writeToStandardError(d.description + "\n") }
        let n = errors.items.count
        writeToStandardError("\(n) problem\(n == 1 ? "" : "s") in \(path)\n")
        return nil
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a config file; print each problem as FILE:LINE:COLUMN: message.")
    @OptionGroup var options: ConfigOption

    func run() throws {
        guard let cfg = loadConfig(options.config) else { throw ExitCode(1) }
        let counts = ComponentKind.allCases.map { "\(cfg.components($0).count) \($0.section)" }
        print("\(options.config): ok (\(counts.joined(separator: ", ")))")
    }
}

/// Batches live in buffers of 256 KiB to a few MiB. By default glibc serves those with mmap and
/// gives them back with munmap, so every batch pays page faults and page zeroing, a large share of
/// the CPU of a disk-buffered network output. Keeping them in the heap costs a little retained
/// memory (bounded by the trim threshold) and saves that work.
func tuneAllocator() {
    #if canImport(Glibc)
    // <malloc.h> is not in Swift's Glibc module; these values are glibc's stable ABI.
    let mTrimThreshold: Int32 = -1, mMmapThreshold: Int32 = -3
    _ = glibcMallopt(mMmapThreshold, 32 << 20)
    _ = glibcMallopt(mTrimThreshold, 16 << 20)
    #endif
}

#if canImport(Glibc)
@_silgen_name("mallopt")
private func glibcMallopt(_ param: Int32, _ value: Int32) -> Int32
#endif

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version.")
    func run() { print("anduin \(anduinVersion)") }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the pipeline until SIGTERM or SIGINT, then deliver what was read, checkpoint, and exit 0.",
        discussion: "SIGHUP reloads the config; with --watch-config (or watch_config: true) a change of the file's content does too, including a Kubernetes ConfigMap update. An invalid config is refused and the running pipeline kept.")
    @OptionGroup var options: ConfigOption
    @Flag(help: "Reload when the config file's content changes (also: watch_config: true in the config).")
    var watchConfig = false

    func run() throws {
        // Everything written under data_dir holds log content: private to the agent's user.
        DataDirectory.restrictUmask()
        guard let cfg = loadConfig(options.config) else { throw ExitCode(1) }
        bootstrapLogging(level: cfg.logLevel, format: cfg.logFormat)
        tuneAllocator()
        let logger = Logger(label: "anduin")

        // Signals are taken by sigwait on this thread only: block them before any thread starts.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGHUP)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
        // A write past the file size limit (ulimit -f) fails with EFBIG, retried like a full disk,
        // instead of killing the agent.
        signal(SIGXFSZ, SIG_IGN)

        // The argument and YAML parsing code, before any thread runs (none races the page-out) and
        // before the inputs fill the queues: P2's peak is then the running agent's, not the running
        // agent's plus start-up's (peak file-backed RSS 27 -> 16.5 MiB).
        releaseStartupPages()
        let agent = Agent(config: cfg, logger: logger)
        do {
            try agent.start()
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }

        // A watched change is turned into a SIGHUP to ourselves, so both reload paths run here, one
        // at a time. The flag only says which one it was, for the log.
        let fromWatcher = Atomic<Bool>(false)
        let path = options.config
        let flag = watchConfig
        let watcher = ConfigFileWatcher(path: path) {
            guard flag || agent.currentConfig.watchConfig else { return }
            fromWatcher.store(true, ordering: .releasing)
            kill(getpid(), SIGHUP)
        }
        // Started only when asked for (here, or by a reload that turns `watch_config` on): it reads
        // the file every second.
        var watching = false
        func watchIfAsked() {
            guard !watching, flag || agent.currentConfig.watchConfig else { return }
            watcher.start()
            watching = true
            logger.info("watching \(path) for changes")
        }
        watchIfAsked()
        // Once the pipeline's threads are past their start-up code (a first scan of the inputs).
        _ = startThread(name: "release-pages") {
            sleep(5)
            releaseStartupPages()
        }

        var sig: Int32 = 0
        while true {
            sigwait(&set, &sig)
            if sig != SIGHUP { break }
            if fromWatcher.exchange(false, ordering: .acquiringAndReleasing) {
                logger.info("\(path) changed: reloading")
            } else {
                logger.info("received SIGHUP: reloading \(path)")
            }
            agent.reload(configPath: path, registry: allPlugins, precheck: validateInChild)
            watchIfAsked()
            releaseStartupPages()  // the parser and plugin set-up code again
        }
        if watching { watcher.stop() }
        logger.info("received \(sig == SIGTERM ? "SIGTERM" : "SIGINT"): stopping reads, delivering what was read, writing checkpoints")
        let stopped = startThread(name: "stop") { agent.stop() }
        // A second signal means "now": exit without waiting for outputs (nothing unacknowledged is
        // checkpointed, so what was not delivered is read again at the next start).
        var timeout = timespec(tv_sec: 0, tv_nsec: 200_000_000)
        while !stopped.join(timeout: 0) {
            let s = sigtimedwait(&set, nil, &timeout)
            if s == SIGTERM || s == SIGINT {
                logger.warning("second signal: exiting without waiting for outputs")
                throw ExitCode(130)
            }
        }
    }
}

/// Validates `path` with `anduin validate` in a child process before the running agent parses it: if
/// some config made the parser trap, only the child would die and the agent keeps its pipeline.
/// Returns why the file is refused when the child crashed; nil otherwise (an ordinary invalid config
/// exits 1 and is reported by the in-process parse, with every problem).
func validateInChild(_ path: String) -> String? {
    var attrs = posix_spawnattr_t()
    posix_spawnattr_init(&attrs)
    defer { posix_spawnattr_destroy(&attrs) }
    // The child must not inherit the blocked signals of the agent's sigwait loop.
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attrs, &empty)
    posix_spawnattr_setflags(&attrs, Int16(POSIX_SPAWN_SETSIGMASK))
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    for fd: Int32 in [0, 1, 2] { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
    let exe = "/proc/self/exe"
    let args = [exe, "validate", "--config", path]
    var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid = pid_t()
    let rc = posix_spawn(&pid, exe, &actions, &attrs, &argv, environ)
    // Could not start a child (fd or process limit): fall back to parsing in process.
    guard rc == 0 else { return nil }
    // A config can also make the parser take forever (YAML aliases expanding exponentially): such
    // a file is refused after 30 s (ANDUIN_RELOAD_VALIDATION_TIMEOUT, for tests) rather than hanging
    // the reload.
    let validationTimeout = ProcessInfo.processInfo.environment["ANDUIN_RELOAD_VALIDATION_TIMEOUT"]
        .flatMap(Double.init).map(clampedSeconds) ?? 30
    var status: Int32 = 0
    let deadline = monotonicSeconds() + validationTimeout
    while true {
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { break }
        if r < 0 && errno != EINTR { return nil }
        if monotonicSeconds() > deadline {
            kill(pid, SIGKILL)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            return "\(path): validating it took more than \(Int(validationTimeout)) s (deeply nested YAML aliases?); refused"
        }
        usleep(20_000)
    }
    let termsig = status & 0x7F
    if termsig != 0 && termsig != 0x7F {
        return "\(path): validating it crashed the parser (signal \(termsig)); please report this config (without its secrets)"
    }
    return nil
}
