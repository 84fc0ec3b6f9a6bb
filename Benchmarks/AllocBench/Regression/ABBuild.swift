// The two binaries of a same-machine A/B: today's harness built against REF's allocator (the base),
// and the working tree as it is (the head).
//
// 1. Only the allocator differs
// -----------------------------
//   The base is staged in .build-ab/base-<commit>: every file git tracks in the working tree (today's
//   Package.swift, harness, workloads and tests), with the allocator's two targets, Sources/Slab and
//   Sources/CSlab, replaced by REF's (`git archive REF`). So a change to a workload or to the runner
//   never reads as a change of the allocator. Only when today's harness does not build against
//   REF's allocator (an API the harness needs did not exist yet) is REF built whole, and the A/B
//   says so; REF's own bench then reports its workloads' versions (a tiny quick run), and cells
//   whose version differs from today's are not judged.
//
// 2. Builds
// ---------
//   `swift build -c release --product bench`, each side in its own scratch folder that persists
//   between runs (.build-ab/scratch-base, and the package's own .build for the head), so that a
//   second A/B against the same REF rebuilds nothing. `extraSwiftFlags` (e.g. -DSLAB_INJECT_DELAY)
//   go to the head only: that is how the gate's proof slows the head on purpose.
//
// 3. One snapshot of the working tree
// -----------------------------------
//   An A/B runs for minutes, and its author goes on editing. So the working tree is copied once,
//   before anything is built (.build-ab/tree), and both sides come from that copy: the base's stage
//   is the copy with REF's allocator, and the head is built in place (reusing .build) and then
//   checked against the copy: a file changed while the head was building stops the A/B with the
//   files' names, since the head binary may hold either version. The head binary is then copied
//   out of .build (.build-ab/head/bench), so a rebuild of the package during the run does not
//   replace what is being measured. From "building the base" on, the tree is free to change.
import Foundation

public struct ABBuildError: Error, CustomStringConvertible {
    public var description: String
}

public struct ABBinaries: Sendable {
    /// Full commit hash of REF and its short form.
    public var baseCommit: String
    public var baseShort: String
    public var base: String
    public var head: String
    /// How the base's harness relates to the head's: "today's harness with REF's allocator", or why not.
    public var harness: String
    public var harnessIsToday: Bool
    /// With REF built whole: its workloads' versions as its own bench reports them (empty when
    /// it cannot say); a cell is judged only where REF's version equals today's.
    public var baseWorkloadVersions: [String: Int] = [:]

    /// The version a base cell of `workload` ran: today's when the harness is today's, else REF's
    /// own (0, never equal to a real version, when unknown).
    public func baseVersion(of workload: String, today: Int) -> Int {
        harnessIsToday ? today : (baseWorkloadVersions[workload] ?? 0)
    }
}

public enum ABBuild {
    /// The package root: the folder holding Package.swift, found from the working directory up.
    public static func packageRoot() throws -> String {
        var url = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        while true {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
            if url.path == "/" { throw ABBuildError(description: "no Package.swift in this folder or above it: run bench ab inside the package") }
            url.deleteLastPathComponent()
        }
    }

    /// The commit that last changed the baseline's manifest: the code the baseline measured, and
    /// the default REF (a commit that updates the baseline makes itself the reference).
    public static func baselineCommit(root: String) throws -> String {
        let path = Baseline.defaultDirectory + "/" + Baseline.manifestFile
        guard let c = git(["log", "-1", "--format=%H", "--", path], in: root), !c.isEmpty else {
            throw ABBuildError(description: "no commit has \(path) yet: give --base REF, or create the baseline with `bench baseline update`")
        }
        return c
    }

    /// Builds both sides; `log` gets one line per step.
    public static func build(ref: String, root: String, extraSwiftFlags: [String], log: (String) -> Void) throws -> ABBinaries {
        guard let full = git(["rev-parse", "--verify", "--quiet", ref + "^{commit}"], in: root), !full.isEmpty else {
            throw ABBuildError(description: "'\(ref)' is not a commit of this repository")
        }
        guard run(["git", "-C", root, "merge-base", "--is-ancestor", full, "HEAD"]).status == 0 else {
            throw ABBuildError(description: "\(ref) (\(full.prefix(9))) is not an ancestor of HEAD: an A/B compares HEAD with a commit it grew from")
        }
        let short = git(["rev-parse", "--short", full], in: root) ?? String(full.prefix(7))
        let work = root + "/.build-ab"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)

        let snapshot = work + "/tree"
        try stageToday(root: root, into: snapshot)
        log("bench ab: building the head (working tree\(extraSwiftFlags.isEmpty ? "" : ", " + extraSwiftFlags.joined(separator: " "))); leave it unchanged until the base is building\n")
        let headScratch = extraSwiftFlags.isEmpty ? root + "/.build" : work + "/scratch-head-" + flagTag(extraSwiftFlags)
        let built = try swiftBuild(package: root, scratch: headScratch, flags: extraSwiftFlags)
        let changed = try changedFiles(root: root, snapshot: snapshot)
        guard changed.isEmpty else {
            let shown = changed.prefix(5).joined(separator: ", ") + (changed.count > 5 ? " and \(changed.count - 5) more" : "")
            throw ABBuildError(description: "the working tree changed while the head was building (\(shown)): the head binary may hold either version; run bench ab again")
        }
        let head = try keepBinary(built, in: work + "/head")

        log("bench ab: building the base: today's harness with the allocator of \(short) (the working tree is free to change from here on)\n")
        let stage = work + "/base-" + short
        try? FileManager.default.removeItem(atPath: stage)
        try FileManager.default.copyItem(atPath: snapshot, toPath: stage)
        try replaceAllocator(root: root, commit: full, stage: stage)
        let scratch = work + "/scratch-base"
        do {
            let base = try swiftBuild(package: stage, scratch: scratch, flags: [])
            return ABBinaries(baseCommit: full, baseShort: short, base: base, head: head,
                              harness: "today's harness on both sides; the allocator (Sources/Slab, Sources/CSlab) of \(short) against the working tree's",
                              harnessIsToday: true)
        } catch let error as ABBuildError {
            let firstError = error.description.split(separator: "\n").first { $0.contains("error:") }.map(String.init) ?? error.description
            log("bench ab: today's harness does not build against \(short)'s allocator (\(firstError)); building \(short) whole\n")
            let whole = work + "/whole-" + short
            try? FileManager.default.removeItem(atPath: whole)
            try FileManager.default.createDirectory(atPath: whole, withIntermediateDirectories: true)
            try extract(root: root, commit: full, paths: [], into: whole)
            let base = try swiftBuild(package: whole, scratch: work + "/scratch-whole", flags: [])
            var binaries = ABBinaries(
                baseCommit: full, baseShort: short, base: base, head: head,
                harness: "HARNESS DIFFERS: \(short) built whole with its own harness, because today's harness does not build against its allocator (\(firstError)); cells whose workload version differs are not judged",
                harnessIsToday: false)
            binaries.baseWorkloadVersions = workloadVersions(of: base, scratch: work + "/versions-" + short)
            return binaries
        }
    }

    /// The workload versions a bench reports, read from the run file of a tiny quick run of
    /// every workload on glibc (a few seconds); empty when that bench cannot say.
    static func workloadVersions(of bench: String, scratch: String) -> [String: Int] {
        try? FileManager.default.removeItem(atPath: scratch)
        let r = run([bench, "run", "--quick", "--allocators", "glibc", "--sizes", "20", "--threads", "1",
                     "--repetitions", "1", "--no-history", "--output", scratch])
        guard r.status == 0, case let .run(record)? = try? BenchFile.load(scratch + "/latest.json") else { return [:] }
        return Dictionary(record.workloads.map { ($0.name, $0.version) }, uniquingKeysWith: { a, _ in a })
    }

    /// Every file git tracks in the working tree, and every untracked one it does not ignore.
    static func trackedFiles(root: String) throws -> [String] {
        guard let list = git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], in: root) else {
            throw ABBuildError(description: "git ls-files failed in \(root)")
        }
        return list.split(separator: "\0").map(String.init).filter { !$0.isEmpty }
    }

    /// Copies every tracked file of the working tree (as it is now) into `stage`, replacing what
    /// was there but keeping nothing stale (a file deleted since is deleted there too).
    public static func stageToday(root: String, into stage: String) throws {
        try? FileManager.default.removeItem(atPath: stage)
        for name in try trackedFiles(root: root) {
            let source = root + "/" + name
            guard FileManager.default.fileExists(atPath: source) else { continue }  // deleted, not yet committed
            let target = stage + "/" + name
            try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: source, toPath: target)
        }
    }

    /// The files of the working tree that differ from `snapshot` (a `stageToday` copy): changed,
    /// added or deleted since, sorted. Empty when the tree is as it was copied.
    public static func changedFiles(root: String, snapshot: String) throws -> [String] {
        let now = Set(try trackedFiles(root: root).filter { FileManager.default.fileExists(atPath: root + "/" + $0) })
        var copied = Set<String>()
        if let walk = FileManager.default.enumerator(atPath: snapshot) {
            while let name = walk.nextObject() as? String {
                // The entry itself, not what a symbolic link points to: git lists a link as a file.
                let type = (try? FileManager.default.attributesOfItem(atPath: snapshot + "/" + name))?[.type] as? FileAttributeType
                if type != .typeDirectory { copied.insert(name) }
            }
        }
        var changed = now.symmetricDifference(copied)
        for name in now.intersection(copied)
        where !FileManager.default.contentsEqual(atPath: root + "/" + name, andPath: snapshot + "/" + name) {
            changed.insert(name)
        }
        return changed.sorted()
    }

    /// Copies a built bench to `folder`/bench, so that a later build in its scratch folder does not
    /// replace the binary an A/B is running. Returns the copy's path.
    static func keepBinary(_ path: String, in folder: String) throws -> String {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let kept = folder + "/bench"
        try? FileManager.default.removeItem(atPath: kept)
        try FileManager.default.copyItem(atPath: path, toPath: kept)
        return kept
    }

    static func replaceAllocator(root: String, commit: String, stage: String) throws {
        for target in ["Sources/Slab", "Sources/CSlab"] {
            try? FileManager.default.removeItem(atPath: stage + "/" + target)
        }
        try extract(root: root, commit: commit, paths: ["Sources/Slab", "Sources/CSlab"], into: stage)
    }

    /// `git archive commit paths | tar -x -C dir`.
    static func extract(root: String, commit: String, paths: [String], into dir: String) throws {
        let r = run(["bash", "-c", "set -o pipefail; git -C \"$1\" archive \"$2\" -- \"${@:4}\" | tar -x -C \"$3\"", "bash", root, commit, dir] + paths)
        guard r.status == 0 else {
            throw ABBuildError(description: "could not extract \(paths.joined(separator: ", ")) of \(commit.prefix(9)): \(r.output)")
        }
    }

    static func flagTag(_ flags: [String]) -> String {
        flags.joined(separator: "_").filter { $0.isLetter || $0.isNumber || $0 == "_" }
    }

    /// Builds the bench in release mode and returns its path.
    static func swiftBuild(package: String, scratch: String, flags: [String]) throws -> String {
        var args = ["swift", "build", "-c", "release", "--product", "bench", "--package-path", package, "--scratch-path", scratch]
        for f in flags { args += ["-Xswiftc", f] }
        let r = run(args)
        guard r.status == 0 else {
            let errors = r.output.split(separator: "\n").filter { $0.contains("error") }.prefix(5).joined(separator: "\n")
            throw ABBuildError(description: "swift build of \(package) failed:\n" + (errors.isEmpty ? String(r.output.suffix(2000)) : errors))
        }
        let path = scratch + "/release/bench"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ABBuildError(description: "swift build of \(package) left no \(path)")
        }
        return path
    }

    static func git(_ args: [String], in root: String) -> String? {
        let r = run(["git", "-C", root] + args)
        return r.status == 0 ? r.output.trimmingCharacters(in: .whitespacesAndNewlines) : nil
    }

    /// Runs a command, stdout and stderr together.
    static func run(_ command: [String]) -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = command
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return (127, "\(command[0]): \(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
