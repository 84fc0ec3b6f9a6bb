// Any allocator as a peer: `--allocators preload:PATH[=NAME]`. The library is checked before the
// run (a missing path, a folder, a text file, a 32-bit library are refused with a message saying
// which); in each cell the child proves the library really serves malloc, or fails the cell.
// Uses the system's libjemalloc.so.2 by path as the real peer (skipped when it is not installed).

import Foundation
import XCTest
@testable import AllocBench
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

final class PreloadPeerTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws { dir = try temporaryFolder("preload-tests") }

    func jemallocPath() throws -> String {
        guard let path = PeerLibraries.locate(.jemalloc) else { throw XCTSkip("libjemalloc.so.2 is not installed") }
        return path
    }

    /// A shared library of the system that defines no malloc.
    func libraryWithoutMalloc() throws -> String {
        for path in ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1",
                     "/lib/x86_64-linux-gnu/libutil.so.1", "/usr/lib/x86_64-linux-gnu/libutil.so.1"]
            where access(path, R_OK) == 0 {
            return path
        }
        throw XCTSkip("no libz or libutil to preload")
    }

    // MARK: Parsing and checking

    func test_parse_libraryByPath_withAndWithoutName() throws {
        let path = try jemallocPath()
        let named = try SuitePlan.parseAllocators("glibc,preload:\(path)=je")
        XCTAssertEqual(named.map(\.name), ["glibc", "je"])
        XCTAssertEqual(named[1].preloadSpec?.path, path)
        XCTAssertEqual(named[1].rawValue, "preload:\(path)=je")
        XCTAssertTrue(named[1].isPreloaded)
        XCTAssertFalse(named[1].isOurs, "a preloaded library is a peer")
        XCTAssertEqual(try SuitePlan.parseAllocators("preload:\(path)").first?.name, (path as NSString).lastPathComponent)
        XCTAssertEqual(PeerLibraries.locate(named[1]), path)
    }

    func test_parse_relativePath_isMadeAbsolute() throws {
        let path = try jemallocPath()
        let link = dir + "/libpeer.so"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: path)
        let saved = FileManager.default.currentDirectoryPath
        _ = FileManager.default.changeCurrentDirectoryPath(dir)
        defer { _ = FileManager.default.changeCurrentDirectoryPath(saved) }
        let a = try SuitePlan.parseAllocators("preload:libpeer.so=peer")
        XCTAssertEqual(a.first?.preloadSpec?.path, FileManager.default.currentDirectoryPath + "/libpeer.so")
    }

    func test_parse_nonexistentPath_saysNoSuchFile() {
        let path = dir + "/libnothere.so"
        XCTAssertThrowsError(try SuitePlan.parseAllocators("preload:\(path)")) {
            XCTAssertEqual("\($0)", "'preload:\(path)': \(path): no such file")
        }
    }

    func test_parse_fileThatIsNotALibrary_saysSo() throws {
        let text = dir + "/notes.txt"
        try "not a library\n".write(toFile: text, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try SuitePlan.parseAllocators("preload:\(text)")) {
            XCTAssertEqual("\($0)", "'preload:\(text)': \(text) is not a shared library (not an ELF file)")
        }
        XCTAssertThrowsError(try SuitePlan.parseAllocators("preload:\(dir!)")) {
            XCTAssertEqual("\($0)", "'preload:\(self.dir!)': \(self.dir!) is not a file (a shared library is one)")
        }
        // An ELF object file (relocatable): a library's header with e_type 1.
        let object = dir + "/peer.o"
        var header = [UInt8](repeating: 0, count: 64)
        header[0...6] = [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1]
        header[16] = 1
        _ = FileManager.default.createFile(atPath: object, contents: Data(header))
        XCTAssertThrowsError(try SuitePlan.parseAllocators("preload:\(object)")) {
            XCTAssertEqual("\($0)", "'preload:\(object)': \(object) is an object file (.o), not a shared library")
        }
        header[4] = 1   // ELFCLASS32
        _ = FileManager.default.createFile(atPath: object, contents: Data(header))
        XCTAssertThrowsError(try SuitePlan.parseAllocators("preload:\(object)")) {
            XCTAssertEqual("\($0)", "'preload:\(object)': \(object) is a 32-bit ELF file; the bench is a 64-bit program")
        }
    }

    func test_parse_badNames_andDuplicates_areRefused() throws {
        let path = try jemallocPath()
        XCTAssertThrowsError(try SuitePlan.parseAllocators("preload:")) {
            XCTAssertTrue("\($0)".contains("needs the library's path"), "\($0)")
        }
        XCTAssertThrowsError(try SuitePlan.parseAllocators("preload:\(path)=glibc")) {
            XCTAssertEqual("\($0)", "'preload:\(path)=glibc': 'glibc' is a built-in allocator's name; give the library another")
        }
        // Unnamed, a library whose file is called like one of the built-ins would be shown under its name.
        let link = dir + "/slab"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: path)
        XCTAssertThrowsError(try SuitePlan.parseAllocators("preload:\(link)")) {
            XCTAssertEqual("\($0)", "'preload:\(link)': the file's name 'slab' is a built-in allocator's name; name the library with =NAME")
        }
        XCTAssertEqual(try SuitePlan.parseAllocators("preload:\(link)=myslab").first?.name, "myslab")
        XCTAssertThrowsError(try SuitePlan.parseAllocators("preload:\(path)=")) {
            XCTAssertTrue("\($0)".contains("must be one word"), "\($0)")
        }
        XCTAssertEqual(try SuitePlan.parseAllocators("preload:\(path)=x,preload:\(path)=x").count, 1,
                       "the same library under the same name is one allocator")
        // Two libraries, one name in the reports: refused.
        let other = try libraryWithoutMalloc()
        XCTAssertThrowsError(try SuitePlan.parseAllocators("preload:\(path)=x,preload:\(other)=x")) {
            XCTAssertEqual("\($0)", "two allocators are named 'x' in the reports; name one with preload:PATH[=NAME]")
        }
        let sameFileName = dir + "/" + (path as NSString).lastPathComponent
        try FileManager.default.createSymbolicLink(atPath: sameFileName, withDestinationPath: other)
        XCTAssertThrowsError(try SuitePlan.parseAllocators("preload:\(path),preload:\(sameFileName)")) {
            XCTAssertTrue("\($0)".hasPrefix("two allocators are named"), "\($0)")
        }
    }

    // MARK: Cells

    func runner() throws -> SuiteRunner {
        SuiteRunner(options: SuiteOptions(allocators: [.glibc], workloads: [], repetitions: 1, quick: true, timeout: 30,
                                          outputDirectory: dir),
                    catalog: BenchCatalog.standard, executable: try builtExecutable("bench"), interrupt: nil)
    }

    func test_cell_jemallocByPath_servesMalloc_andReportsItsVersion() throws {
        let path = try jemallocPath()
        let a = try SuitePlan.parseAllocators("preload:\(path)=je")[0]
        let cell = CellParameters(allocator: a, workload: "pair", size: 20, threads: 1, repetitions: 1, quick: true)
        let r = try runner().runCell(cell, library: PeerLibraries.locate(a))
        XCTAssertEqual(r.status, .ok, r.message ?? "")
        XCTAssertTrue(r.allocatorVersion?.hasPrefix("jemalloc ") == true, r.allocatorVersion ?? "nil")
    }

    func test_cell_libraryWithoutMalloc_failsSayingWhoServesMalloc() throws {
        let path = try libraryWithoutMalloc()
        let a = try SuitePlan.parseAllocators("preload:\(path)=nomalloc")[0]
        let cell = CellParameters(allocator: a, workload: "pair", size: 20, threads: 1, repetitions: 1, quick: true)
        let r = try runner().runCell(cell, library: path)
        XCTAssertEqual(r.status, .failed)
        let message = r.message ?? ""
        XCTAssertTrue(message.hasPrefix("nomalloc does not serve malloc in the child: malloc comes from "), message)
        XCTAssertTrue(message.contains("libc.so.6, not from \(path)"), message)
    }

    func test_cli_jemallocByPath_runsItsCells_namedInEveryReport() throws {
        let path = try jemallocPath()
        let run = try runBench(["--allocators", "glibc,preload:\(path)=je", "--workloads", "pair,batch-mixed", "--sizes", "20",
                                "--quick", "--repetitions", "1", "--output", dir, "--no-history"], in: dir, limit: 120)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stderr.contains("[4/4] je batch-mixed 1024 B x1"), run.stderr)
        let csv = CSVReport.parse(try String(contentsOfFile: dir + "/latest.csv", encoding: .utf8))
        let col = Dictionary(uniqueKeysWithValues: csv[0].enumerated().map { ($1, $0) })
        let rows = csv.dropFirst().map { ($0[col["allocator"]!], $0[col["workload"]!], $0[col["status"]!], $0[col["allocator_version"]!]) }
        XCTAssertEqual(rows.map { "\($0.0)/\($0.1)/\($0.2)" }.sorted(), ["glibc/batch-mixed/ok", "glibc/pair/ok", "je/batch-mixed/ok", "je/pair/ok"])
        XCTAssertTrue(rows.filter { $0.0 == "je" }.allSatisfy { $0.3.hasPrefix("jemalloc ") }, "\(rows)")
        let text = try String(contentsOfFile: dir + "/latest.txt", encoding: .utf8)
        XCTAssertTrue(text.contains("best peer je") || text.contains("best peer glibc"), text)
        let record = try JSONDecoder().decode(RunRecord.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/latest.json")))
        XCTAssertTrue(record.results.contains { $0.parameters.allocator.rawValue == "preload:\(path)=je" })
    }

    func test_cli_preloadOfAMissingOrNonLibraryFile_exits2WithTheReason() throws {
        let missing = dir + "/libmissing.so"
        let run = try runBench(["--allocators", "preload:\(missing)", "--workloads", "pair"], in: dir)
        XCTAssertEqual(run.status, 2, run.stderr)
        XCTAssertTrue(run.stderr.contains("\(missing): no such file"), run.stderr)
        let text = dir + "/readme.txt"
        try "hello\n".write(toFile: text, atomically: true, encoding: .utf8)
        let run2 = try runBench(["--allocators", "glibc,preload:\(text)=x", "--workloads", "pair"], in: dir)
        XCTAssertEqual(run2.status, 2, run2.stderr)
        XCTAssertTrue(run2.stderr.contains("\(text) is not a shared library (not an ELF file)"), run2.stderr)
    }
}
