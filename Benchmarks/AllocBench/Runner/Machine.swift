// What the run measured on: the machine, the software versions, and where the peers' libraries
// are. Everything here is read once, in the parent, before the first cell.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Slab

public enum PeerLibraries {
    /// Directories searched for a peer's library, in the dynamic loader's usual order.
    static var searchDirectories: [String] {
        var dirs: [String] = []
        if let ld = ProcessInfo.processInfo.environment["LD_LIBRARY_PATH"] {
            dirs += ld.split(separator: ":").map(String.init)
        }
        let arch = Machine.uname().machine
        dirs += ["/usr/local/lib", "/usr/lib/\(arch)-linux-gnu", "/lib/\(arch)-linux-gnu", "/usr/lib64", "/usr/lib", "/lib"]
        return dirs
    }

    /// The full path of the allocator's library, nil when it is not installed (or `a` is not a
    /// peer). A `preload:` peer's library is the path it was given.
    public static func locate(_ a: AllocatorID) -> String? {
        if let spec = a.preloadSpec { return spec.path }
        guard let lib = a.preload?.library else { return nil }
        for dir in searchDirectories {
            let path = dir + "/" + lib
            if access(path, R_OK) == 0 { return path }
        }
        return nil
    }

    /// True for glibc and ours (nothing to load), and for peers whose library is present.
    public static func isAvailable(_ a: AllocatorID) -> Bool { !a.isPreloaded || locate(a) != nil }

    /// The one-line note printed for a peer that is not installed.
    public static func missingNote(_ a: AllocatorID) -> String {
        let p = a.preload!
        return "skipping \(a.rawValue): \(p.library) not found; install it with: apt-get install \(p.debianPackage)"
    }

    /// The Debian package's version (dpkg-query), nil when unknown.
    public static func debianVersion(_ package: String) -> String? {
        let v = Machine.capture(["dpkg-query", "-W", "-f=${Version}", package])?.trimmingCharacters(in: .whitespacesAndNewlines)
        return (v?.isEmpty ?? true) ? nil : v
    }
}

public enum Machine {
    /// Probes everything; `allocators` are the ones whose versions to record.
    public static func probe(allocators: [AllocatorID], date: Date = Date()) -> MachineInfo {
        let u = uname()
        var versions: [String: String] = [:]
        let glibc = glibcVersion()
        for a in allocators {
            if a == .glibc {
                versions[a.rawValue] = "glibc " + glibc
            } else if let p = a.preload {
                if let v = PeerLibraries.debianVersion(p.debianPackage) { versions[a.rawValue] = "\(p.debianPackage) \(v)" }
            } else if let spec = a.preloadSpec {
                if let v = PreloadLibrary.debianVersion(of: spec.path) { versions[a.rawValue] = v }
            }
            // The slab and kmalloc: the child reports the mode (and magazine size or classes).
        }
        let (commit, dirty) = gitCommit()
        return MachineInfo(
            cpuModel: cpuModel(), cores: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))),
            kernel: "\(u.sysname) \(u.release) \(u.version) \(u.machine)", glibc: glibc,
            swift: swiftVersion(), commit: commit, dirty: dirty, slabMode: slabMode(),
            allocatorVersions: versions, date: iso8601(date))
    }

    public static func iso8601(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.timeZone = TimeZone(identifier: "UTC")
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: date)
    }

    /// "2.36": confstr(_CS_GNU_LIBC_VERSION) says "glibc 2.36".
    static func glibcVersion() -> String {
        var buf = [CChar](repeating: 0, count: 64)
        guard confstr(Int32(_CS_GNU_LIBC_VERSION), &buf, buf.count) > 0 else { return "unknown" }
        let s = buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return s.hasPrefix("glibc ") ? String(s.dropFirst(6)) : s
    }

    static func cpuModel() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return "unknown"
    }

    static func uname() -> (sysname: String, release: String, version: String, machine: String) {
        var u = utsname()
        _ = Glibc.uname(&u)
        func field<T>(_ t: T) -> String {
            withUnsafeBytes(of: t) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return (field(u.sysname), field(u.release), field(u.version), field(u.machine))
    }

    /// `swift --version`'s first line; without a toolchain on PATH, the compiler that built us.
    static func swiftVersion() -> String {
        if let out = capture(["swift", "--version"]),
           let line = out.split(separator: "\n").first(where: { $0.contains("Swift version") }) {
            return String(line).trimmingCharacters(in: .whitespaces)
        }
        return builtWith
    }

    static var builtWith: String {
        #if compiler(>=6.4)
        return "built with Swift 6.4 or later"
        #elseif compiler(>=6.3)
        return "built with Swift 6.3"
        #elseif compiler(>=6.2)
        return "built with Swift 6.2"
        #elseif compiler(>=6.1)
        return "built with Swift 6.1"
        #else
        return "built with Swift 6.0"
        #endif
    }

    /// The short commit of the tree the bench was started in (else the one its sources live in)
    /// and whether tracked files that make up the measured code (Package.swift, Sources/,
    /// Benchmarks/) had changes. Other changes (results/, which the bench writes itself, the
    /// README, the tests) do not count: the code measured is still the commit's.
    public static func gitCommit() -> (String, Bool) {
        let sourceDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path
        for dir in [FileManager.default.currentDirectoryPath, sourceDir] {
            guard let c = capture(["git", "-C", dir, "rev-parse", "--short", "HEAD"])?
                .trimmingCharacters(in: .whitespacesAndNewlines), !c.isEmpty else { continue }
            let status = capture(["git", "-C", dir, "status", "--porcelain", "--untracked-files=no", "--",
                                  ":(top)Package.swift", ":(top)Sources", ":(top)Benchmarks"]) ?? ""
            return (c, !status.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        }
        return ("unknown", false)
    }

    /// The slab's per-CPU layer mode here: a throwaway cache tells.
    static func slabMode() -> String {
        guard let cache = try? SlabCache(name: "bench-probe-\(getpid())", size: 64) else { return "unknown" }
        let mode = cache.mode.rawValue
        try? cache.destroy()
        return mode
    }

    /// Runs a command found on PATH and returns its stdout, nil when it fails or is missing.
    static func capture(_ command: [String]) -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = command
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        do { try p.run() } catch { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
