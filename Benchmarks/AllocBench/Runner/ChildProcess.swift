// Launching one child with posix_spawn, collecting its stdout and stderr, and killing it when it
// outlives its deadline or the user presses Ctrl-C.
//
// The parent ignores SIGINT (a dispatch source handles it, see Interrupt), and ignored signals
// stay ignored across exec: so the child's SIGINT, SIGTERM and SIGPIPE are reset to their defaults
// explicitly (POSIX_SPAWN_SETSIGDEF), and its signal mask cleared.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// Written once, by Interrupt.install() on the main thread, and never read.
nonisolated(unsafe) private var interruptSource: DispatchSourceSignal?

/// Ctrl-C in the parent: the flag the run loop checks, and the child to kill at once.
public final class Interrupt: Sendable {
    /// Set by the SIGINT handler; read by the run loop and the child's poll loop.
    let requested = Atomic<Bool>(false)
    /// The pid of the child in flight, 0 when none.
    let childPID = Atomic<Int32>(0)

    public init() {}

    public var isRequested: Bool { requested.load(ordering: .acquiring) }

    /// Routes SIGINT to this object. A second Ctrl-C exits at once with status 130.
    public func install() {
        signal(SIGINT, SIG_IGN)
        let src = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        src.setEventHandler { [self] in
            if requested.exchange(true, ordering: .acquiringAndReleasing) {
                _exit(130)
            }
            let pid = childPID.load(ordering: .acquiring)
            if pid > 0 { kill(pid, SIGKILL) }
        }
        src.resume()
        interruptSource = src  // kept alive for the life of the process
    }

    /// For tests: behave as if Ctrl-C was pressed.
    public func request() { requested.store(true, ordering: .releasing) }
}

struct ChildOutcome {
    enum Ending: Equatable {
        case exited(Int32)
        case signaled(Int32)
        case timedOut
        case interrupted
        case spawnFailed(String)
    }
    var ending: Ending
    var stdout: [UInt8]
    var stderr: [UInt8]
    var seconds: Double

    /// What stderr says about a failure, in one line: the lines that name the cause (a Swift fatal
    /// error, the backtracer's "Program crashed" line) when present, else the last lines. A Swift
    /// backtrace runs to hundreds of lines; `latest.json` keeps only this digest.
    var stderrTail: String {
        let text = String(decoding: stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let causes = lines.filter {
            $0.contains("Fatal error") || $0.contains("fatal error") || $0.contains("Program crashed")
                || $0.hasPrefix("error") || $0.contains("Precondition failed") || $0.contains("Assertion failed")
        }
        let chosen = causes.isEmpty ? Array(lines.suffix(3)) : Array(causes.prefix(3))
        let digest = chosen.joined(separator: " | ")
        return digest.count > 400 ? String(digest.prefix(400)) + "..." : digest
    }
}

enum ChildProcess {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Runs `executable arguments...` with exactly `environment`, and waits for it (at most
    /// `timeout` seconds; then SIGKILL).
    static func run(executable: String, arguments: [String], environment: [String], timeout: Double,
                    interrupt: Interrupt?) -> ChildOutcome {
        let start = now()
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        // Close-on-exec, so the child keeps only the ends dup2'd onto its fds 1 and 2. (pipe2 is not
        // imported; the runner launches from one thread, so nothing can fork in between.)
        guard pipe(&outPipe) == 0 else { return failed("pipe: \(errnoText())", start) }
        guard pipe(&errPipe) == 0 else {
            close(outPipe[0]); close(outPipe[1])
            return failed("pipe: \(errnoText())", start)
        }
        for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGINT, SIGTERM, SIGPIPE, SIGQUIT] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attr, argv, envp)
        close(outPipe[1])
        close(errPipe[1])
        guard rc == 0 else {
            close(outPipe[0]); close(errPipe[0])
            return failed("posix_spawn \(executable): \(String(cString: strerror(rc)))", start)
        }
        interrupt?.childPID.store(pid, ordering: .releasing)
        defer { interrupt?.childPID.store(0, ordering: .releasing) }
        // A Ctrl-C that arrived between the check in the run loop and the store above.
        if interrupt?.isRequested == true { kill(pid, SIGKILL) }

        var out: [UInt8] = []
        var err: [UInt8] = []
        var open: [Int32: Bool] = [outPipe[0]: true, errPipe[0]: true]
        var timedOut = false
        let deadline = start + timeout
        var buffer = [UInt8](repeating: 0, count: 65536)

        // Read both pipes until both reach EOF (the child exited, or closed them), or time runs out.
        while open.values.contains(true) {
            let remaining = deadline - now()
            if remaining <= 0 { timedOut = true; break }
            var fds = open.filter(\.value).keys.sorted().map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let n = poll(&fds, nfds_t(fds.count), Int32(min(remaining, 0.1) * 1000) + 1)
            if n < 0 && errno != EINTR { break }
            for f in fds where f.revents != 0 {
                let got = buffer.withUnsafeMutableBytes { read(f.fd, $0.baseAddress!, $0.count) }
                if got > 0 {
                    if f.fd == outPipe[0] { out += buffer[0..<got] } else { err += buffer[0..<got] }
                } else if got == 0 || (errno != EINTR && errno != EAGAIN) {
                    open[f.fd] = false
                }
            }
        }
        close(outPipe[0])
        close(errPipe[0])

        // Reap it: by the deadline, or kill it.
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { return failed("waitpid: \(errnoText())", start) }
            if timedOut || now() >= deadline {
                timedOut = true
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                break
            }
            usleep(2000)
        }
        let seconds = now() - start
        if interrupt?.isRequested == true {
            return ChildOutcome(ending: .interrupted, stdout: out, stderr: err, seconds: seconds)
        }
        if timedOut { return ChildOutcome(ending: .timedOut, stdout: out, stderr: err, seconds: seconds) }
        // WIFEXITED / WTERMSIG are macros Swift does not import; the layout is glibc's.
        let ending: ChildOutcome.Ending = (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
        return ChildOutcome(ending: ending, stdout: out, stderr: err, seconds: seconds)
    }

    static func failed(_ message: String, _ start: Double) -> ChildOutcome {
        ChildOutcome(ending: .spawnFailed(message), stdout: [], stderr: [], seconds: now() - start)
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }

    static func signalName(_ s: Int32) -> String {
        let names: [Int32: String] = [SIGABRT: "SIGABRT", SIGSEGV: "SIGSEGV", SIGBUS: "SIGBUS", SIGILL: "SIGILL",
                                      SIGKILL: "SIGKILL", SIGTERM: "SIGTERM", SIGINT: "SIGINT", SIGFPE: "SIGFPE",
                                      SIGTRAP: "SIGTRAP"]
        return names[s] ?? "signal \(s)"
    }
}
