// slabinfo: argument parsing only. The seed lab is in SeedLab.swift; reading, parsing and the
// slabtop-style view of /proc/slabinfo, and /proc/buddyinfo and its view, are in the SlabTop
// target (Sources/SlabTop); the text of this library's own caches and page allocators is
// written by the Slab library (SlabInfo, BuddyInfo).
//
// Exit status: 0 success; 1 the file cannot be read or parsed, or the library refused an
// operation; 2 a usage error (unknown option, bad --sort key, options that do not go together),
// as getopt-style tools report them.

import ArgumentParser
import Slab
import SlabTop

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

@main
struct Slabinfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slabinfo",
        abstract: "Show the kernel's slab caches as `slabtop -o` does, or its free pages per order, or run the seed lab on this library.",
        discussion: """
            Without --demo: reads /proc/slabinfo (root only) and prints the totals and one row per \
            cache, sorted by --sort; with --buddyinfo, reads /proc/buddyinfo (anyone may) and \
            prints the free blocks per order of each memory zone. With --demo: creates mycache \
            (size 20, align 8, flags 0), allocates one object, kmallocs a small and a large block, \
            prints each step and this library's slabinfo (kmalloc's caches included; with \
            --buddyinfo, its page allocators too), then frees everything and destroys the cache.
            """
    )

    @Flag(help: "Run the seed lab on this library's allocator instead of reading the kernel's caches.")
    var demo = false

    @Flag(help: """
        Print the plain slabinfo text: the file as it is, or with --demo this library's caches in \
        /proc/slabinfo 2.1 format while the object is live.
        """)
    var raw = false

    @Flag(help: """
        Free blocks per order instead of slab caches: the kernel's /proc/buddyinfo (or --file), or \
        with --demo this library's page allocators, in the same format with --raw.
        """)
    var buddyinfo = false

    @Option(name: .long, help: ArgumentHelp(
        "Sort key, slabtop's letter or a name: \(ProcSlabInfo.SortKey.validKeys). Default: c.",
        valueName: "key"), transform: parseSortKey)
    var sort: ProcSlabInfo.SortKey?

    @Option(help: ArgumentHelp("Show at most N caches.", valueName: "N"))
    var limit: Int?

    @Option(help: ArgumentHelp("Read this file instead of \(ProcSlabInfo.defaultPath) (with --buddyinfo, \(ProcBuddyInfo.defaultPath)).", valueName: "path"))
    var file: String?

    static func parseSortKey(_ text: String) throws -> ProcSlabInfo.SortKey {
        guard let key = ProcSlabInfo.SortKey(argument: text) else {
            throw ValidationError("unknown sort key '\(text)'; valid keys: \(ProcSlabInfo.SortKey.validKeys)")
        }
        return key
    }

    func validate() throws {
        if let limit, limit < 0 { throw ValidationError("--limit must be 0 or more, not \(limit)") }
        if demo {
            let extra = [sort != nil ? "--sort" : nil, limit != nil ? "--limit" : nil, file != nil ? "--file" : nil]
                .compactMap { $0 }
            if !extra.isEmpty {
                throw ValidationError("--demo shows this library's caches; \(extra.joined(separator: ", ")) apply only without it")
            }
        }
        if raw, sort != nil || limit != nil {
            throw ValidationError("--raw prints the file as it is; --sort and --limit apply only without it")
        }
        if buddyinfo, sort != nil || limit != nil {
            throw ValidationError("--buddyinfo shows free blocks per order; --sort and --limit apply to the slab view")
        }
    }

    func run() throws {
        if demo {
            try SeedLab.run(raw: raw, buddyinfo: buddyinfo)
            return
        }
        let path = file ?? (buddyinfo ? ProcBuddyInfo.defaultPath : ProcSlabInfo.defaultPath)
        do {
            if raw {
                print(try ProcFile.readText(path: path), terminator: "")
            } else if buddyinfo {
                print(try ProcBuddyInfo.read(path: path).report(), terminator: "")
            } else {
                let info = try ProcSlabInfo.read(path: path)
                print(info.slabtopReport(sortedBy: sort ?? .cacheSize, limit: limit), terminator: "")
            }
        } catch let error as ProcFile.ReadError {
            throw fail("\(error)")
        } catch let error as ProcSlabInfo.ParseError {
            throw fail("\(error)")
        } catch let error as ProcBuddyInfo.ParseError {
            throw fail("\(error)")
        }
    }

    /// Usage errors exit with 2 (ArgumentParser's own code for them is 64, EX_USAGE).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                writeStandardError(fullMessage(for: error) + "\n")
                systemExit(2)
            }
            exit(withError: error)
        }
    }
}

/// Prints "slabinfo: message" on standard error and returns the error that exits with status 1.
func fail(_ message: String) -> ExitCode {
    writeStandardError("slabinfo: \(message)\n")
    return ExitCode.failure
}

/// write(2) to descriptor 2: unbuffered, and free of the C `stderr` global, which Swift 6
/// treats as shared mutable state.
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue } else { return } }
        bytes = bytes.dropFirst(n)
    }
}

/// exit(3): flushes standard output first (named apart from ParsableCommand.exit(withError:)).
func systemExit(_ status: Int32) -> Never {
    #if canImport(Glibc)
    Glibc.exit(status)
    #else
    Musl.exit(status)
    #endif
}
