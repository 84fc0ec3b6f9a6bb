// Launching one child with posix_spawn, collecting its stdout and stderr, and killing it when it
// outlives its deadline or the user presses Ctrl-C: the bench's cells, valgrind and objcopy for
// `bench instructions`, and the tests' children (this test binary re-run on one test, slabinfo).
// Both pipes are read as they fill (poll), so a chatty child never blocks on a full one.
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

/// How a child ended, and everything it wrote.
public struct ChildOutcome: CustomStringConvertible {
    public enum Ending: Equatable, Sendable {
        case exited(Int32)
        case signaled(Int32)
        case timedOut
        case interrupted
        case spawnFailed(String)
    }
    public var ending: Ending
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var seconds: Double

    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }

    /// How it ended, then the tails of what it wrote: for a test's failure message.
    public var description: String {
        "child \(ending)\n--- stdout (tail) ---\n\(stdoutText.suffix(3000))\n--- stderr (tail) ---\n\(stderrText.suffix(3000))"
    }

    /// What stderr says about a failure, in one line: the lines that name the cause (a Swift fatal
    /// error, the backtracer's "Program crashed" line) when present, else the last lines. A Swift
    /// backtrace runs to hundreds of lines; `latest.json` keeps only this digest.
    public var stderrTail: String {
        let text = stderrText.trimmingCharacters(in: .whitespacesAndNewlines)
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

public enum ChildProcess {
    /// The path of the running executable (what /proc/self/exe points to): the bench, to launch
    /// itself as a cell's child; the test binary, to run one of its tests in a child.
    public static var currentExecutable: String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return CommandLine.arguments[0] }
        buf[n] = 0
        return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Runs `executable arguments...` with exactly `environment`, and waits for it (at most
    /// `timeout` seconds; then SIGKILL).
    public static func run(executable: String, arguments: [String], environment: [String], timeout: Double,
                    interrupt: Interrupt?) -> ChildOutcome {
        let start = monotonicSeconds()
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
            let remaining = deadline - monotonicSeconds()
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
            if timedOut || monotonicSeconds() >= deadline {
                timedOut = true
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                break
            }
            usleep(2000)
        }
        let seconds = monotonicSeconds() - start
        if interrupt?.isRequested == true {
            return ChildOutcome(ending: .interrupted, stdout: out, stderr: err, seconds: seconds)
        }
        if timedOut { return ChildOutcome(ending: .timedOut, stdout: out, stderr: err, seconds: seconds) }
        // WIFEXITED / WTERMSIG are macros Swift does not import; the layout is glibc's.
        let ending: ChildOutcome.Ending = (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
        return ChildOutcome(ending: ending, stdout: out, stderr: err, seconds: seconds)
    }

    static func failed(_ message: String, _ start: Double) -> ChildOutcome {
        ChildOutcome(ending: .spawnFailed(message), stdout: [], stderr: [], seconds: monotonicSeconds() - start)
    }

    public static func signalName(_ s: Int32) -> String {
        let names: [Int32: String] = [SIGABRT: "SIGABRT", SIGSEGV: "SIGSEGV", SIGBUS: "SIGBUS", SIGILL: "SIGILL",
                                      SIGKILL: "SIGKILL", SIGTERM: "SIGTERM", SIGINT: "SIGINT", SIGFPE: "SIGFPE",
                                      SIGTRAP: "SIGTRAP"]
        return names[s] ?? "signal \(s)"
    }
}
